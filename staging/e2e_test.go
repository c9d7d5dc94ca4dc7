package staging_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"mime"
	"net/http"
	"net/mail"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/restage/restage/dbrestore"
	"github.com/restage/restage/dbrestore/pgtest"
	"github.com/restage/restage/schema"
	"github.com/restage/restage/staging"
	"github.com/restage/restage/staging/stagingtest"
)

// The test binary doubles as the demo web app (the staging service) and as a nightly
// run that a test kills.
func TestMain(m *testing.M) {
	stagingtest.RunApp()
	if cfg := os.Getenv("RESTAGE_E2E_RUN"); cfg != "" {
		c, err := staging.LoadEnvironment(cfg)
		if err == nil {
			var rb *staging.Rebuilder
			if rb, err = staging.Open(c, staging.OpenOptions{}); err == nil {
				_, err = rb.Run(context.Background())
			}
		}
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	os.Exit(pgtest.Main(m))
}

// replaceFile returns a fault for a faults test: inject writes text to path, repair
// puts back what path held (removes it if it did not exist).
func replaceFile(path, text string) (inject, repair func(t *testing.T)) {
	var saved []byte
	inject = func(t *testing.T) {
		var err error
		if saved, err = os.ReadFile(path); err != nil && !os.IsNotExist(err) {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	repair = func(t *testing.T) {
		if saved == nil {
			_ = os.Remove(path)
		} else if err := os.WriteFile(path, saved, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return inject, repair
}

// killRunWhen starts a rebuild of w in a child process (this test binary, see TestMain)
// and kills it with SIGKILL as soon as ready says so. The test fails when the run ends
// before, or ready still says no after two minutes; what names what ready waits for.
func killRunWhen(t *testing.T, w *stagingtest.World, what string, ready func() bool) {
	t.Helper()
	exe, _ := os.Executable()
	cmd := exec.Command(exe, "-test.run=^$")
	cmd.Env = append(os.Environ(), "RESTAGE_E2E_RUN="+w.ConfigPath)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	deadline := time.Now().Add(2 * time.Minute)
	for !ready() {
		select {
		case err := <-exited:
			t.Fatalf("the run ended before %s began: %v", what, err)
		default:
		}
		if time.Now().After(deadline) {
			_ = cmd.Process.Kill()
			<-exited
			t.Fatalf("%s never began", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
	_ = cmd.Process.Signal(syscall.SIGKILL)
	<-exited
}

func newWorld(t testing.TB, opts stagingtest.Options) *stagingtest.World {
	t.Helper()
	if opts.Bugs == 0 {
		opts.People, opts.Bugs = 500, 3000
	}
	return stagingtest.Start(t, opts)
}

func open(t testing.TB, w *stagingtest.World) *staging.Rebuilder {
	t.Helper()
	c, err := staging.LoadEnvironment(w.ConfigPath)
	if err != nil {
		t.Fatal(err)
	}
	rb, err := staging.Open(c, staging.OpenOptions{Logger: discard()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { rb.Close() })
	return rb
}

func run(t testing.TB, w *stagingtest.World) (*staging.Report, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	return open(t, w).Run(ctx)
}

func mustRun(t testing.TB, w *stagingtest.World) *staging.Report {
	t.Helper()
	rep, err := run(t, w)
	if err != nil {
		t.Fatalf("rebuild: %v\n%s", err, rep.Text())
	}
	return rep
}

func get(t *testing.T, url string) string {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		return "unreachable: " + err.Error()
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return fmt.Sprintf("%d %s", resp.StatusCode, body)
}

// fingerprint identifies a database's contents: schema version and a hash of every table.
const fingerprint = `SELECT (SELECT version::text FROM schema_migrations) || ' ' || md5(
	(SELECT string_agg(p::text, ',' ORDER BY id) FROM person p) ||
	(SELECT string_agg(b::text, ',' ORDER BY id) FROM bug b) ||
	(SELECT string_agg(c::text, ',' ORDER BY id) FROM comment c) ||
	coalesce((SELECT string_agg(s::text, ',' ORDER BY id) FROM session s), ''))`

// snapshot is what an operator sees of staging: its databases, the live one's contents,
// the active release, and what the service answers.
func snapshot(t *testing.T, w *stagingtest.World) string {
	t.Helper()
	dbs := strings.Split(w.Staging.QueryString(t, "postgres",
		`SELECT string_agg(datname, ' ' ORDER BY datname) FROM pg_database WHERE datname LIKE 'bugs%'`), " ")
	sort.Strings(dbs)
	current, _ := os.Readlink(w.Current)
	return fmt.Sprintf("databases %v\nlive %s\ncurrent %s\nhealth %s\nrobots %s", dbs,
		w.Staging.QueryString(t, w.StagingDB, fingerprint), filepath.Base(current),
		get(t, w.AppURL+"/+health"), get(t, w.AppURL+"/robots.txt"))
}

func lockIsFree(t *testing.T, w *stagingtest.World) {
	t.Helper()
	l, err := staging.AcquireExclusive(context.Background(), w.LockFile, staging.LockOptions{})
	if err != nil {
		t.Fatalf("lock not free after the run: %v", err)
	}
	l.Release()
}

func lastMail(t *testing.T, w *stagingtest.World, n int) string {
	t.Helper()
	mails := w.Mail.Mails()
	if len(mails) != n {
		t.Fatalf("%d mails received, want %d", len(mails), n)
	}
	return string(mails[n-1].Data)
}

func subject(t *testing.T, raw string) string {
	t.Helper()
	m, err := mail.ReadMessage(strings.NewReader(raw))
	if err != nil {
		t.Fatal(err)
	}
	s, err := new(mime.WordDecoder).DecodeHeader(m.Header.Get("Subject"))
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestRebuildEndToEnd(t *testing.T) {
	w := newWorld(t, stagingtest.Options{})
	rep := mustRun(t, w)

	// Staging's data equals the backup's, sanitised; the migrations N+1..N+2 ran on
	// staging only.
	for _, table := range []string{"person", "bug", "comment"} {
		q := "SELECT count(*)::text FROM " + table
		if p, s := w.Production.QueryString(t, w.ProdDB, q), w.Staging.QueryString(t, w.StagingDB, q); p != s {
			t.Errorf("%s: production has %s rows, staging %s", table, p, s)
		}
	}
	if got := w.Staging.QueryString(t, w.StagingDB, `SELECT count(*)::text FROM person WHERE email NOT LIKE '%@staging.invalid'`); got != "0" {
		t.Errorf("%s real e-mail addresses left on staging", got)
	}
	if got := w.Staging.QueryString(t, w.StagingDB, `SELECT string_agg(title, '|' ORDER BY id) FROM bug`); got != w.Production.QueryString(t, w.ProdDB, `SELECT string_agg(title, '|' ORDER BY id) FROM bug`) {
		t.Error("bug titles differ between production and staging")
	}
	if v := w.Staging.QueryString(t, w.StagingDB, "SELECT version::text FROM schema_migrations"); v != fmt.Sprint(stagingtest.CodePatch) {
		t.Errorf("staging at patch %s, want %d", v, stagingtest.CodePatch)
	}
	if v := w.Production.QueryString(t, w.ProdDB, "SELECT version::text FROM schema_migrations"); v != fmt.Sprint(stagingtest.ProductionPatch) {
		t.Errorf("production at patch %s, want it untouched at %d", v, stagingtest.ProductionPatch)
	}
	if rep.Schema == nil || rep.Schema.From != stagingtest.ProductionPatch || rep.Schema.To != stagingtest.CodePatch || len(rep.Schema.Migrations) != 2 {
		t.Errorf("report schema %+v", rep.Schema)
	}
	// current points at the new release, with staging's robots.txt; the service answers
	// healthy from it.
	target, err := os.Readlink(w.Current)
	if err != nil || filepath.Base(target) != rep.Release.ID {
		t.Fatalf("current -> %q (%v), want release %s", target, err, rep.Release.ID)
	}
	if robots, _ := os.ReadFile(filepath.Join(w.Current, "robots.txt")); string(robots) != stagingtest.RobotsStaging {
		t.Errorf("robots.txt in the release: %q", robots)
	}
	if _, err := os.Stat(filepath.Join(w.Current, ".git")); !os.IsNotExist(err) {
		t.Errorf(".git not excluded from the release: %v", err)
	}
	if h := get(t, w.AppURL+"/+health"); !strings.HasPrefix(h, "200 ok release="+rep.Release.ID) {
		t.Errorf("health: %s", h)
	}
	if r := get(t, w.AppURL+"/robots.txt"); r != "200 "+stagingtest.RobotsStaging {
		t.Errorf("served robots.txt: %s", r)
	}
	// The report mail arrived under its topic.
	m := lastMail(t, w, 1)
	if s := subject(t, m); !strings.HasPrefix(s, "[staging-rebuild] staging rebuild OK") || !strings.Contains(m, "Keywords: staging-rebuild") {
		t.Errorf("mail subject %q:\n%s", s, m)
	}
	lockIsFree(t, w)
	hist, err := staging.History(w.StateDir)
	if err != nil || len(hist) != 1 || hist[0].Outcome != staging.OutcomeOK {
		t.Fatalf("history: %v %v", hist, err)
	}

	// The next night: yesterday's database is kept as <db>_prev, files unchanged since
	// the last release are hard-linked.
	if _, err := w.Backup(context.Background()); err != nil {
		t.Fatal(err)
	}
	rep = mustRun(t, w)
	if dbs := w.Staging.QueryString(t, "postgres", `SELECT string_agg(datname, ' ' ORDER BY datname) FROM pg_database WHERE datname LIKE 'bugs%'`); dbs != "bugs_staging bugs_staging_prev" {
		t.Errorf("databases after the second rebuild: %s", dbs)
	}
	if rep.Release.Previous == "" {
		t.Error("report does not name the previous release")
	}
}

// Every fault leaves staging exactly as before (or puts it back), the service healthy,
// the report delivered, the lock free, and the next run succeeds.
func TestRebuildFaults(t *testing.T) {
	w := newWorld(t, stagingtest.Options{BackupWait: 2 * time.Second})
	mustRun(t, w)
	mails := 1
	ctx := context.Background()

	// What the error must say, where the step alone does not prove which check caught it.
	errSays := map[string]string{"corrupt backup": "checksum mismatch"}
	fault := func(name, step string, outcome staging.Outcome, inject, repair func(t *testing.T)) {
		t.Run(name, func(t *testing.T) {
			before := snapshot(t, w)
			inject(t)
			rep, err := run(t, w)
			if err == nil {
				t.Fatalf("the rebuild succeeded:\n%s", rep.Text())
			}
			if rep.FailedStep != step || rep.Outcome != outcome {
				t.Errorf("failed step %q outcome %q, want %q %q\n%s", rep.FailedStep, rep.Outcome, step, outcome, rep.Text())
			}
			if want := errSays[name]; !strings.Contains(rep.Error, want) {
				t.Errorf("error %q does not say %q", rep.Error, want)
			}
			if after := snapshot(t, w); after != before {
				t.Errorf("staging changed:\n--- before\n%s\n--- after\n%s", before, after)
			}
			mails++
			want := "[staging-rebuild] FAILED: staging rebuild " + string(outcome) + " at step " + step
			if m := lastMail(t, w, mails); subject(t, m) != want {
				t.Errorf("report mail subject %q, want %q", subject(t, m), want)
			}
			lockIsFree(t, w)
			repair(t)
			mustRun(t, w)
			mails++
		})
	}
	swapAside := func(from, to string) func(t *testing.T) {
		return func(t *testing.T) {
			if err := os.Rename(from, to); err != nil {
				t.Fatal(err)
			}
		}
	}
	newestDump := func(t *testing.T) string {
		t.Helper()
		dumps, _ := filepath.Glob(filepath.Join(w.BackupDir, "*.dump"))
		sort.Strings(dumps)
		if len(dumps) == 0 {
			t.Fatal("no dump")
		}
		return dumps[len(dumps)-1]
	}

	away := filepath.Join(w.Dir, "backups.away")
	fault("no backup in time", "backup", staging.OutcomeFailed, func(t *testing.T) {
		swapAside(w.BackupDir, away)(t)
		if err := os.Mkdir(w.BackupDir, 0o755); err != nil {
			t.Fatal(err)
		}
	}, func(t *testing.T) {
		if err := os.Remove(w.BackupDir); err != nil {
			t.Fatal(err)
		}
		swapAside(away, w.BackupDir)(t)
	})
	var corruptRepair func(*testing.T)
	fault("corrupt backup", "verify", staging.OutcomeFailed, func(t *testing.T) {
		var inject func(*testing.T)
		// Bytes flipped in the middle, the size kept: only the checksum can tell.
		dump := newestDump(t)
		data, _ := os.ReadFile(dump)
		bad := []byte(string(data))
		for i := len(bad) / 2; i < len(bad)/2+16; i++ {
			bad[i] ^= 0xff
		}
		inject, corruptRepair = replaceFile(dump, string(bad))
		inject(t)
	}, func(t *testing.T) { corruptRepair(t) })
	fault("restore fails", "restore", staging.OutcomeFailed, func(t *testing.T) {
		// A classic: an index on a function that reads another table without its schema
		// restores badly, because pg_restore runs with an empty search_path.
		w.Production.Exec(t, w.ProdDB, `CREATE FUNCTION person_known(int) RETURNS int LANGUAGE sql IMMUTABLE AS 'SELECT $1 + (SELECT count(*)::int FROM person) * 0';
			CREATE INDEX bug_known ON bug (person_known(reporter))`)
		if _, err := w.Backup(ctx); err != nil {
			t.Fatal(err)
		}
	}, func(t *testing.T) {
		w.Production.Exec(t, w.ProdDB, `DROP INDEX bug_known; DROP FUNCTION person_known`)
		if _, err := w.Backup(ctx); err != nil {
			t.Fatal(err)
		}
	})
	inject, repair := replaceFile(filepath.Join(w.Dir, "sanitize.sql"), "UPDATE person SET emali = 'x';\n")
	fault("post-restore SQL fails", "restore", staging.OutcomeFailed, inject, repair)
	inject, repair = replaceFile(filepath.Join(w.Source, "migrations", "5_bug_heat.up.sql"), "ALTER TABLE bug ADD COLUMN heat int;\nUPDATE bug SET heat = 1 / 0;\n")
	fault("migration fails", "schema", staging.OutcomeFailed, inject, repair)
	inject, repair = replaceFile(filepath.Join(w.Source, stagingtest.FailStartFile), "broken\n")
	fault("service will not start", "start", staging.OutcomeRolledBack, inject, repair)
	inject, repair = replaceFile(filepath.Join(w.Source, stagingtest.FailHealthFile), "broken\n")
	fault("health gate stays red", "start", staging.OutcomeRolledBack, inject, repair)

	t.Run("SMTP down: spooled, then delivered", func(t *testing.T) {
		addr := w.Mail.Addr
		got := len(w.Mail.Mails())
		w.Mail.Close()
		rep, err := run(t, w)
		if err != nil {
			t.Fatalf("a rebuild whose report is spooled still succeeds: %v", err)
		}
		spooled, _ := filepath.Glob(filepath.Join(w.StateDir, "spool", "email", "*.json"))
		if len(spooled) != 1 {
			t.Fatalf("spool holds %v", spooled)
		}
		ms, err := stagingtest.StartMailServerAt(addr)
		if err != nil {
			t.Fatal(err)
		}
		w.Mail = ms
		rep2 := mustRun(t, w)
		mails := ms.Mails()
		if len(mails) != 2 || !strings.Contains(string(mails[0].Data), rep.ID) || !strings.Contains(string(mails[1].Data), rep2.ID) {
			t.Fatalf("after the SMTP server came back: %d mails (had %d before)", len(mails), got)
		}
		if spooled, _ := filepath.Glob(filepath.Join(w.StateDir, "spool", "email", "*.json")); len(spooled) != 0 {
			t.Fatalf("spool still holds %v", spooled)
		}
	})

	t.Run("concurrent run", func(t *testing.T) {
		before := snapshot(t, w)
		l, err := staging.AcquireExclusive(ctx, w.LockFile, staging.LockOptions{})
		if err != nil {
			t.Fatal(err)
		}
		rep, err := run(t, w)
		l.Release()
		var le *staging.LockedError
		if !errors.As(err, &le) || le.Owner == nil || le.Owner.PID != os.Getpid() || rep.Outcome != staging.OutcomeLocked {
			t.Fatalf("err %v outcome %s", err, rep.Outcome)
		}
		if snapshot(t, w) != before {
			t.Fatal("a locked-out run changed staging")
		}
	})

	t.Run("killed mid-restore", func(t *testing.T) {
		before := snapshot(t, w)
		// Kill it as soon as the restore is under way.
		killRunWhen(t, w, "the restore", func() bool {
			return w.Staging.QueryString(t, "postgres", `SELECT count(*)::text FROM pg_database WHERE datname = 'bugs_staging_next'`) != "0"
		})
		if after := snapshot(t, w); !strings.Contains(after, "bugs_staging_next") {
			t.Logf("killed after the restore's leftovers were gone:\n%s", after)
		}
		if strings.Split(snapshot(t, w), "\n")[1] != strings.Split(before, "\n")[1] {
			t.Fatal("the live database changed")
		}
		rep := mustRun(t, w)
		joined := strings.Join(rep.Notes, "\n")
		if !strings.Contains(joined, "took over the lock of a dead run") {
			t.Errorf("notes: %s", joined)
		}
		lockIsFree(t, w)
	})
}

func TestInPlaceRebuild(t *testing.T) {
	w := newWorld(t, stagingtest.Options{Strategy: "inplace"})
	rep := mustRun(t, w)
	if rep.Strategy != staging.InPlace || !strings.HasPrefix(get(t, w.AppURL+"/+health"), "200 ok") {
		t.Fatalf("report %+v", rep)
	}
	if dbs := w.Staging.QueryString(t, "postgres", `SELECT string_agg(datname, ' ') FROM pg_database WHERE datname LIKE 'bugs%'`); dbs != "bugs_staging" {
		t.Errorf("in place keeps one copy, found %s", dbs)
	}
}

func TestDryRunChangesNothing(t *testing.T) {
	w := newWorld(t, stagingtest.Options{})
	mustRun(t, w)
	before := snapshot(t, w)
	rep, err := open(t, w).Plan(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if rep.Backup == nil || rep.Schema == nil || rep.Release == nil {
		t.Fatalf("plan: %s", rep.Text())
	}
	// Staging is at the code's level already; the rebuild would start from production's.
	if rep.Schema.From != stagingtest.ProductionPatch || rep.Schema.To != stagingtest.CodePatch ||
		len(rep.Schema.Pending) != stagingtest.CodePatch-stagingtest.ProductionPatch ||
		!strings.Contains(rep.Text(), "against the backup "+rep.Backup.Name) {
		t.Errorf("plan's schema %+v:\n%s", rep.Schema, rep.Text())
	}
	if snapshot(t, w) != before {
		t.Fatal("a dry run changed staging")
	}
	if len(w.Mail.Mails()) != 1 {
		t.Fatal("a dry run sent a report")
	}
	_ = dbrestore.ErrNoBackup
	_ = schema.ErrDirty
}

func discard() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

// Rule 1 in the Rebuilder: an admin DSN that points at the production server (by mistake,
// under any name) is refused by system_identifier before anything is dropped.
func TestRebuildRefusesProductionServer(t *testing.T) {
	w := newWorld(t, stagingtest.Options{})
	cfg, err := os.ReadFile(w.ConfigPath)
	if err != nil {
		t.Fatal(err)
	}
	bad := strings.Replace(string(cfg), w.Staging.AdminDSN(), w.Production.AdminDSN(), 1)
	if err := os.WriteFile(w.ConfigPath, []byte(bad), 0o644); err != nil {
		t.Fatal(err)
	}
	before := w.Production.QueryString(t, "postgres", `SELECT string_agg(datname, ' ' ORDER BY datname) FROM pg_database`)
	rep, err := run(t, w)
	if !errors.Is(err, dbrestore.ErrProduction) || rep.FailedStep != "verify" {
		t.Fatalf("err %v, step %q", err, rep.FailedStep)
	}
	if after := w.Production.QueryString(t, "postgres", `SELECT string_agg(datname, ' ' ORDER BY datname) FROM pg_database`); after != before {
		t.Fatalf("production's databases changed: %s -> %s", before, after)
	}
	if v := w.Production.QueryString(t, w.ProdDB, "SELECT version::text FROM schema_migrations"); v != fmt.Sprint(stagingtest.ProductionPatch) {
		t.Fatalf("production schema changed to %s", v)
	}
}
