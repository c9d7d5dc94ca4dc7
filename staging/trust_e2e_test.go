package staging_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/restage/restage/dbrestore"
	"github.com/restage/restage/internal/gittest"
	"github.com/restage/restage/internal/redact"
	"github.com/restage/restage/staging"
	"github.com/restage/restage/staging/stagingtest"
)

// editConfig replaces old by repl in the config file at path (old must be there).
func editConfig(t *testing.T, path, old, repl string) {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(data), old) {
		t.Fatalf("%s does not hold %q", path, old)
	}
	if err := os.WriteFile(path, []byte(strings.Replace(string(data), old, repl, 1)), 0o600); err != nil {
		t.Fatal(err)
	}
}

func databases(t *testing.T, w *stagingtest.World) string {
	t.Helper()
	return w.Production.QueryString(t, "postgres", `SELECT string_agg(datname, ' ' ORDER BY datname) FROM pg_database`)
}

// Rule 7 for deploys: experimental's admin DSN pointed at production (by mistake) is
// refused by system_identifier before anything is dropped or renamed.
func TestExperimentalRefusesProductionServer(t *testing.T) {
	w := newWorld(t, stagingtest.Options{Experimental: true})
	w.Production.Exec(t, "postgres", "CREATE DATABASE bugs_experimental_next")
	editConfig(t, w.Exp.ConfigPath, w.Staging.AdminDSN(), w.Production.AdminDSN())
	before := databases(t, w)
	rep, err := openEnv(t, w.Exp.ConfigPath, nil).Deploy(context.Background(), staging.DeployOptions{})
	if !errors.Is(err, dbrestore.ErrProduction) || rep.FailedStep != "guard" {
		t.Fatalf("err %v, failed step %q\n%s", err, rep.FailedStep, rep.Text())
	}
	if after := databases(t, w); after != before {
		t.Fatalf("production's databases changed: %s -> %s", before, after)
	}

	// Without production_ids (and no backup folder) the config is refused outright.
	editConfig(t, w.Exp.ConfigPath, "production_ids", "# production_ids")
	if _, err := staging.LoadEnvironment(w.Exp.ConfigPath); !errors.Is(err, staging.ErrConfig) || !strings.Contains(err.Error(), "database.production_ids") {
		t.Fatalf("config without a production identity: %v", err)
	}
}

// README: experimental.toml needs production's identity from production_ids "or a
// [backup] dir whose manifests name it" (no [backup] database: a deploy takes no
// backup). A folder without a manifest is refused, naming database.production_ids.
func TestExperimentalProductionFromBackupDir(t *testing.T) {
	w := newWorld(t, stagingtest.Options{Experimental: true})
	mustRun(t, w) // the nightly leaves the clone the first deploy takes
	editConfig(t, w.Exp.ConfigPath, "production_ids", "# production_ids")
	data, err := os.ReadFile(w.Exp.ConfigPath)
	if err != nil {
		t.Fatal(err)
	}
	empty := t.TempDir()
	for _, tc := range []struct {
		dir  string
		want string // "": the deploy succeeds
	}{{empty, "database.production_ids"}, {w.BackupDir, ""}} {
		text := string(data) + "\n[backup]\ndir = \"" + tc.dir + "\"\n"
		if err := os.WriteFile(w.Exp.ConfigPath, []byte(text), 0o600); err != nil {
			t.Fatal(err)
		}
		rep, err := openEnv(t, w.Exp.ConfigPath, nil).Deploy(context.Background(), staging.DeployOptions{})
		switch {
		case tc.want == "" && err != nil:
			t.Errorf("[backup] dir = %s: %v\n%s", tc.dir, err, rep.Text())
		case tc.want != "" && (!errors.Is(err, staging.ErrConfig) || !strings.Contains(err.Error(), tc.want)):
			t.Errorf("[backup] dir = %s (no manifest): %v; want a config error naming %s", tc.dir, err, tc.want)
		}
	}
}

// Rule 10: a token in code.git and a password in the admin DSN reach git and
// PostgreSQL, but no report, mail, history line, release file or log.
func TestSecretsNeverLeak(t *testing.T) {
	const token, password = "tok3n-SECRET-git", "pw-SECRET-dsn"
	w := newWorld(t, stagingtest.Options{})
	repo := gitRepo(t, w)
	bare := filepath.Join(w.Dir, "served", "bugs.git")
	if out, err := exec.Command("git", "clone", "-q", "--bare", repo, bare).CombinedOutput(); err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	base := gittest.ServeHTTP(t, filepath.Dir(bare), "dev", token)
	url := strings.Replace(base, "http://", "http://dev:"+token+"@", 1) + "/bugs.git"
	editConfig(t, w.ConfigPath, `source   = "build/bugs"`, "git = \""+url+"\"\nref = \"main\"")
	dsn := strings.Replace(w.Staging.AdminDSN(), "postgres@", "postgres:"+password+"@", 1)
	editConfig(t, w.ConfigPath, w.Staging.AdminDSN(), dsn)

	var logs strings.Builder
	rep, err := runLogged(t, w, &logs)
	if err != nil {
		t.Fatalf("rebuild from the git server: %v\n%s", err, rep.Text())
	}
	texts := []string{rep.Text(), rep.Log, rep.Subject()}
	// A failing run: its error, step output and state go into the report too.
	editConfig(t, w.ConfigPath, `ref = "main"`, `ref = "broken"`)
	rep2, err := runLogged(t, w, &logs)
	if err == nil {
		t.Fatal("the broken branch rebuilt")
	}
	texts = append(texts, rep2.Text(), rep2.Log, err.Error(), logs.String())
	texts = append(texts, written(w, w.StateDir, w.Releases)...)
	if rep.Release == nil || !strings.Contains(rep.Release.Revision, "127.0.0.1") {
		t.Fatalf("the report does not name the repository: %+v", rep.Release)
	}
	for _, text := range texts {
		for _, secret := range []string{token, password} {
			if i := strings.Index(text, secret); i >= 0 {
				t.Errorf("%s leaked: ...%s...", secret, text[max(0, i-200):min(len(text), i+50)])
			}
		}
	}
}

// Production's rows that PostgreSQL quotes in its errors (a failing row, COPY's line, a
// duplicated key) reach no report, mail, history or log: a restore that fails on
// production's first row and a migration that fails on its e-mail addresses are both
// reported, naming the constraint, with the values withheld.
func TestRowValuesNeverLeak(t *testing.T) {
	const domain = "users.example.com" // every production e-mail address's
	w := newWorld(t, stagingtest.Options{})
	ctx := context.Background()
	prod, err := pgx.Connect(ctx, w.Production.DSN(w.ProdDB))
	if err != nil {
		t.Fatal(err)
	}
	defer prod.Close(ctx)
	// A check that holds only on production's server: staging's restore of person fails
	// on its first row.
	if _, err := prod.Exec(ctx, fmt.Sprintf(`CREATE FUNCTION public.at_home() RETURNS boolean
		LANGUAGE sql STABLE AS $$ SELECT system_identifier = %d FROM pg_control_system() $$;
		ALTER TABLE person ADD CONSTRAINT person_at_home CHECK (public.at_home())`, int64(w.ProdID))); err != nil {
		t.Fatal(err)
	}
	if _, err := w.Backup(ctx); err != nil {
		t.Fatal(err)
	}
	var logs strings.Builder
	run := func(want string) []string {
		t.Helper()
		rep, err := runLogged(t, w, &logs)
		if err == nil {
			t.Fatalf("the rebuild passed:\n%s", rep.Text())
		}
		if !strings.Contains(rep.Text(), want) || !strings.Contains(rep.Text(), redact.Withheld) {
			t.Fatalf("the report does not name %s with the values %s:\n%s", want, redact.Withheld, rep.Text())
		}
		return []string{rep.Text(), rep.Log, rep.Subject(), err.Error()}
	}
	texts := run("person_at_home")

	// The restore passes; a migration's unique index fails on production's addresses
	// (nothing masks or sanitises them on this staging).
	if _, err := prod.Exec(ctx, `ALTER TABLE person DROP CONSTRAINT person_at_home`); err != nil {
		t.Fatal(err)
	}
	if _, err := w.Backup(ctx); err != nil {
		t.Fatal(err)
	}
	editConfig(t, w.ConfigPath, `post_restore = ["sanitize.sql"]`, "")
	for name, sql := range map[string]string{
		"6_one_per_domain.up.sql":   `CREATE UNIQUE INDEX person_domain ON person (split_part(email, '@', 2));`,
		"6_one_per_domain.down.sql": `DROP INDEX person_domain;`,
	} {
		if err := os.WriteFile(filepath.Join(w.Source, "migrations", name), []byte(sql), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	texts = append(texts, run("person_domain")...)

	texts = append(texts, logs.String())
	texts = append(texts, written(w, w.StateDir)...)
	for _, text := range texts {
		if i := strings.Index(text, domain); i >= 0 {
			t.Errorf("a production row leaked: ...%s...", text[max(0, i-300):min(len(text), i+100)])
		}
	}
}

// Item 6: a nightly killed with SIGKILL during its cutover (new database swapped in,
// current moved, waiting for the health gate) leaves a record; the next dry run repairs
// from it: the previous database and release back, connections allowed, the service
// started and healthy.
func TestKilledCutoverIsRepairedEndToEnd(t *testing.T) {
	w := newWorld(t, stagingtest.Options{})
	mustRun(t, w)
	before := snapshot(t, w)
	oldPid, err := os.ReadFile(w.Pidfile)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := w.Backup(context.Background()); err != nil {
		t.Fatal(err)
	}
	broken := filepath.Join(w.Source, stagingtest.FailHealthFile)
	if err := os.WriteFile(broken, []byte("slow\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	record := filepath.Join(w.StateDir, staging.IntentFile)
	// Killed while it waits for the health gate of the new release's service.
	killRunWhen(t, w, "the cutover", func() bool {
		data, _ := os.ReadFile(record)
		pid, _ := os.ReadFile(w.Pidfile)
		return strings.Contains(string(data), `"phase": "activated"`) && len(pid) > 0 && string(pid) != string(oldPid)
	})
	if err := os.Remove(broken); err != nil {
		t.Fatal(err)
	}
	// As if it had been killed inside a rename, with connections refused.
	w.Staging.Exec(t, "postgres", "ALTER DATABASE bugs_staging ALLOW_CONNECTIONS false")

	rep, err := open(t, w).Plan(context.Background())
	if err != nil {
		t.Fatalf("dry run: %v\n%s", err, rep.Text())
	}
	if !strings.Contains(strings.Join(rep.Notes, "\n"), "repaired the cutover") {
		t.Fatalf("the dry run does not say what it repaired:\n%s", rep.Text())
	}
	if after := snapshot(t, w); after != before {
		t.Fatalf("not repaired:\n--- before\n%s\n--- after\n%s\n%s", before, after, rep.Text())
	}
	if n := w.Staging.QueryString(t, "postgres", "SELECT count(*)::text FROM pg_database WHERE NOT datallowconn AND datname LIKE 'bugs%'"); n != "0" {
		t.Fatalf("%s databases still refuse connections", n)
	}
	if _, err := os.Stat(record); !os.IsNotExist(err) {
		t.Fatalf("the record is still there: %v", err)
	}
	mustRun(t, w)
}

// Items 5 and 11: with [schema] role, a migration cannot drop another environment's
// database; a migration that hangs is stopped by [schema] timeout, quickly, and staging
// is left as it was.
func TestSchemaRoleAndTimeout(t *testing.T) {
	w := newWorld(t, stagingtest.Options{})
	w.Staging.Exec(t, "postgres", "CREATE ROLE bugs_owner LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE")
	w.Staging.Exec(t, "postgres", "CREATE DATABASE bugs_other")
	editConfig(t, w.ConfigPath, `migrations = "migrations"`, "migrations = \"migrations\"\nrole = \"bugs_owner\"\ntimeout = \"3s\"")
	mustRun(t, w)
	for _, table := range []string{"bug", "schema_migrations"} {
		if owner := w.Staging.QueryString(t, w.StagingDB, "SELECT coalesce(max(tableowner), 'none') FROM pg_tables WHERE tablename = '"+table+"'"); owner != "bugs_owner" {
			t.Errorf("%s is owned by %s, want the schema role", table, owner)
		}
	}
	before := snapshot(t, w)
	mig := filepath.Join(w.Source, "migrations", "6_evil.up.sql")
	for name, sql := range map[string]string{
		"drops another database": "DROP DATABASE bugs_other;\n",
		"hangs":                  "SELECT pg_sleep(600);\n",
	} {
		t.Run(name, func(t *testing.T) {
			if err := os.WriteFile(mig, []byte(sql), 0o644); err != nil {
				t.Fatal(err)
			}
			defer os.Remove(mig)
			start := time.Now()
			rep, err := run(t, w)
			if err == nil || rep.FailedStep != "schema" || rep.Outcome != staging.OutcomeFailed {
				t.Fatalf("err %v, step %q, outcome %s", err, rep.FailedStep, rep.Outcome)
			}
			if took := time.Since(start); took > 2*time.Minute {
				t.Errorf("the run took %s", took)
			}
			if after := snapshot(t, w); after != before {
				t.Errorf("staging changed:\n%s\n%s", before, after)
			}
			if n := w.Staging.QueryString(t, "postgres", "SELECT count(*)::text FROM pg_database WHERE datname = 'bugs_other'"); n != "1" {
				t.Error("the migration dropped another environment's database")
			}
			if name == "hangs" && !strings.Contains(rep.Error, "schema.timeout") {
				t.Errorf("the error does not name the timeout: %s", rep.Error)
			}
		})
	}
}

// With [database] restore_dsn the whole nightly restores as that login (no superuser):
// the rebuild succeeds, the restored tables are the role's, and a restore_dsn that logs
// in as a superuser fails the verify step, in a dry run too, leaving staging as it was.
func TestNightlyWithARestoreLogin(t *testing.T) {
	w := newWorld(t, stagingtest.Options{})
	w.Staging.Exec(t, "postgres", "CREATE ROLE bugs_owner LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE")
	login, err := url.Parse(w.Staging.DSN("postgres"))
	if err != nil {
		t.Fatal(err)
	}
	login.User = url.User("bugs_owner")
	editConfig(t, w.ConfigPath, `migrations = "migrations"`, "migrations = \"migrations\"\nrole = \"bugs_owner\"")
	editConfig(t, w.ConfigPath, "[database]\n", "[database]\nrestore_dsn = \""+login.String()+"\"\n")
	mustRun(t, w)
	for _, table := range []string{"bug", "person"} {
		if owner := w.Staging.QueryString(t, w.StagingDB, "SELECT coalesce(max(tableowner), 'none') FROM pg_tables WHERE tablename = '"+table+"'"); owner != "bugs_owner" {
			t.Errorf("%s is owned by %s, want the restore login's role", table, owner)
		}
	}
	before := snapshot(t, w)
	editConfig(t, w.ConfigPath, "bugs_owner@", "postgres@")
	plan, err := open(t, w).Plan(context.Background())
	if err == nil || plan.FailedStep != "verify" || !strings.Contains(plan.Error, "a superuser") {
		t.Fatalf("a dry run with a superuser restore login: err %v, step %q", err, plan.FailedStep)
	}
	rep, err := run(t, w)
	if err == nil || rep.FailedStep != "verify" || !strings.Contains(rep.Error, "a superuser") {
		t.Fatalf("a superuser restore login: err %v, step %q", err, rep.FailedStep)
	}
	if after := snapshot(t, w); after != before {
		t.Errorf("staging changed:\n%s\n%s", before, after)
	}
}

// logger writes a run's log as text into b.
// runLogged runs one rebuild from w's config, its log written to logs.
func runLogged(t *testing.T, w *stagingtest.World, logs *strings.Builder) (*staging.Report, error) {
	t.Helper()
	c, err := staging.LoadEnvironment(w.ConfigPath)
	if err != nil {
		t.Fatal(err)
	}
	rb, err := staging.Open(c, staging.OpenOptions{Logger: logger(logs)})
	if err != nil {
		t.Fatal(err)
	}
	defer rb.Close()
	return rb.Run(context.Background())
}

// written is what a run left for people to read: every mail w's server received and
// every file under roots (with its path).
func written(w *stagingtest.World, roots ...string) []string {
	var texts []string
	for _, m := range w.Mail.Mails() {
		texts = append(texts, string(m.Data))
	}
	for _, root := range roots {
		_ = filepath.Walk(root, func(p string, fi os.FileInfo, err error) error {
			if err == nil && fi.Mode().IsRegular() && fi.Size() < 1<<20 {
				data, _ := os.ReadFile(p)
				texts = append(texts, p+":\n"+string(data))
			}
			return nil
		})
	}
	return texts
}

func logger(b *strings.Builder) *slog.Logger {
	return slog.New(slog.NewTextHandler(b, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

// TestPostRestoreNoticesAreCountedInTheReport: the notices production's code raises
// while the post-restore SQL runs (a DO block printing a row here) keep no text, but the
// restore step says how many each file raised, by severity, as README's "Production's
// rows stay out of reports" shows (it said so only in dbrestore's result, which no
// report showed).
func TestPostRestoreNoticesAreCountedInTheReport(t *testing.T) {
	w := newWorld(t, stagingtest.Options{})
	loud := "DO $$ BEGIN RAISE NOTICE 'row %', (SELECT email FROM person ORDER BY id LIMIT 1);\n" +
		"RAISE WARNING 'row %', (SELECT email FROM person ORDER BY id LIMIT 1); END $$;\n" + stagingtest.SanitizeSQL
	if err := os.WriteFile(filepath.Join(w.Dir, "sanitize.sql"), []byte(loud), 0o644); err != nil {
		t.Fatal(err)
	}
	rep := mustRun(t, w)
	var detail string
	for _, s := range rep.Steps {
		if s.Name == "restore" {
			detail = s.Detail
		}
	}
	if want := "sanitize.sql: 2 server notices (NOTICE 1, WARNING 1), their text withheld"; !strings.Contains(detail, want) {
		t.Errorf("the restore step's detail does not say %q: %q", want, detail)
	}
	for _, text := range []string{rep.Text(), rep.Log} {
		if strings.Contains(text, "@users.example.com") || strings.Contains(text, "row person") {
			t.Errorf("a notice's text is in the report:\n%s", text)
		}
	}
}
