package dbrestore

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/restage/restage/dbrestore/pgtest"
	"github.com/restage/restage/internal/testutil"
)

func TestRestoreRestoresChecksAndSanitises(t *testing.T) {
	for _, jobs := range []int{1, 2} {
		t.Run(map[int]string{1: "serial", 2: "parallel"}[jobs], func(t *testing.T) {
			_, staging, b := backupOf(t, 400, DumpOptions{Counts: true})
			target := dbName(t, staging, `it's a "restored" db`)
			sanitize := testutil.WriteTemp(t, "sanitize.sql", `
UPDATE users SET email = 'user' || id || '@example.invalid';
TRUNCATE sessions;
DO $$ BEGIN RAISE NOTICE 'scrubbed'; END $$;
`)
			var (
				mu     sync.Mutex
				events []Progress
			)
			log, logs := testLogger(t)
			srv := newServer(t, staging, ServerConfig{Logger: log})
			res, err := srv.Restore(testCtx(t), b, RestoreOptions{
				Target: target, Jobs: jobs, PostRestore: []string{sanitize},
				Progress: func(p Progress) { mu.Lock(); events = append(events, p); mu.Unlock() },
			})
			if err != nil {
				t.Fatal(err)
			}
			if res.Database != target || res.Objects == 0 || res.Restore <= 0 {
				t.Errorf("result %+v", res)
			}
			// Row counts were compared before sanitising (which truncates sessions).
			if res.RowCounts["public.users"] != 400 || res.RowCounts["public.sessions"] != 200 || res.RowCounts[`Odd "schema".we ird 'table'`] != 7 {
				t.Errorf("compared counts %v", res.RowCounts)
			}
			if n := staging.QueryInt(t, target, "SELECT count(*) FROM users WHERE email LIKE '%@example.invalid'"); n != 400 {
				t.Errorf("sanitised %d users, want 400", n)
			}
			if n := staging.QueryInt(t, target, "SELECT count(*) FROM sessions"); n != 0 {
				t.Errorf("sessions not truncated: %d", n)
			}
			if n := staging.QueryInt(t, target, `SELECT count(*) FROM "Odd ""schema"""."we ird 'table'"`); n != 7 {
				t.Errorf("odd table has %d rows", n)
			}
			if n := staging.QueryInt(t, target, "SELECT count(*) FROM pg_stat_user_tables WHERE last_analyze IS NOT NULL AND relname = 'users'"); n != 1 {
				t.Error("users not analysed")
			}
			if strings.Contains(res.Output, "scrubbed") || !strings.Contains(res.Output, "sanitize.sql: done") ||
				!strings.Contains(res.Output, "1 server notice (NOTICE 1), their text withheld") ||
				!slices.Equal(res.Notices, []string{"sanitize.sql: 1 server notice (NOTICE 1), their text withheld"}) {
				t.Errorf("output lacks the post-restore messages, or shows a notice's text:\n%s", res.Output)
			}
			// Progress: monotonic, ends at total, names objects.
			mu.Lock()
			defer mu.Unlock()
			if len(events) < 5 {
				t.Fatalf("%d progress events", len(events))
			}
			last := events[len(events)-1]
			if last.Done != last.Total || last.Total != res.Objects {
				t.Errorf("last event %+v, objects %d", last, res.Objects)
			}
			sawData := false
			for i, e := range events {
				if i > 0 && e.Done < events[i-1].Done {
					t.Errorf("progress went back: %+v after %+v", e, events[i-1])
				}
				if strings.Contains(e.Item, "TABLE DATA") && strings.Contains(e.Item, "users") {
					sawData = true
				}
			}
			if !sawData {
				t.Errorf("no TABLE DATA users event in %+v", events)
			}
			if !strings.Contains(logs.String(), "restore complete") {
				t.Errorf("log:\n%s", logs)
			}
		})
	}
}

func TestRestoreKeepOwners(t *testing.T) {
	prod, staging := servers(t)
	db := prod.Database(t)
	prod.Exec(t, "postgres", "DO $$ BEGIN CREATE ROLE restage_owner; EXCEPTION WHEN duplicate_object THEN NULL; END $$")
	staging.Exec(t, "postgres", "DO $$ BEGIN CREATE ROLE restage_owner; EXCEPTION WHEN duplicate_object THEN NULL; END $$")
	prod.Exec(t, db, "CREATE TABLE owned (id int); ALTER TABLE owned OWNER TO restage_owner")
	b := dumpOf(t, prod, db, DumpOptions{})
	srv := newServer(t, staging, ServerConfig{})
	for _, keep := range []bool{false, true} {
		target := dbName(t, staging, "owners")
		if _, err := srv.Restore(testCtx(t), b, RestoreOptions{Target: target, KeepOwners: keep}); err != nil {
			t.Fatal(err)
		}
		owner := staging.QueryInt(t, target, "SELECT (tableowner = 'restage_owner')::int FROM pg_tables WHERE tablename = 'owned'")
		if (owner == 1) != keep {
			t.Errorf("KeepOwners %v: owned by restage_owner = %v", keep, owner == 1)
		}
	}
}

// Safety rule 1: the production server is refused by its system_identifier, whatever the
// names, before anything happens.
func TestRestoreRefusesProductionServer(t *testing.T) {
	prod, staging, db := seeded(t, 10)
	b := dumpOf(t, prod, db, DumpOptions{})
	ctx := testCtx(t)

	onProd := newServer(t, prod, ServerConfig{})
	target := dbName(t, prod, "would_be_next")
	_, err := onProd.Restore(ctx, b, RestoreOptions{Target: target})
	if !errors.Is(err, ErrProduction) {
		t.Fatalf("restore onto the source server: %v", err)
	}
	requireErrContains(t, err, "system_identifier")
	if dbExists(t, prod, target) {
		t.Fatal("a database was created on production")
	}
	// Replace would drop an existing database: refused just the same, and it survives.
	_, err = onProd.Restore(ctx, b, RestoreOptions{Target: db, Replace: true})
	if !errors.Is(err, ErrProduction) || !dbExists(t, prod, db) {
		t.Fatalf("replace on production: %v, exists %v", err, dbExists(t, prod, db))
	}
	// Having seen that backup, the Server refuses every change on production.
	victim := prod.Database(t)
	for name, err := range map[string]error{
		"drop":      onProd.Drop(ctx, victim),
		"swap":      onProd.Swap(ctx, victim, db, victim+"_prev"),
		"clone":     onProd.Clone(ctx, db, victim),
		"rename":    onProd.Rename(ctx, victim, victim+"_x"),
		"terminate": func() error { _, err := onProd.Terminate(ctx, victim); return err }(),
	} {
		if !errors.Is(err, ErrProduction) {
			t.Errorf("%s on production: %v", name, err)
		}
	}
	if !dbExists(t, prod, victim) || !dbExists(t, prod, db) {
		t.Fatal("production databases touched")
	}

	// A server listed in Production is refused without having seen a backup.
	listed := newServer(t, staging, ServerConfig{Production: []uint64{staging.SystemIdentifier(t)}})
	other := staging.Database(t)
	if err := listed.Drop(ctx, other); !errors.Is(err, ErrProduction) || !dbExists(t, staging, other) {
		t.Fatalf("drop on a listed production server: %v", err)
	}
	_, err = listed.Restore(ctx, b, RestoreOptions{Target: dbName(t, staging, "listed")})
	if !errors.Is(err, ErrProduction) {
		t.Fatalf("restore onto a listed production server: %v", err)
	}
}

// Safety rule 1: protected names, template0/1 and postgres are refused.
func TestRestoreRefusesProtectedNames(t *testing.T) {
	_, staging, b := backupOf(t, 10, DumpOptions{})
	live := staging.Database(t)
	staging.Exec(t, live, "CREATE TABLE marker (id int); INSERT INTO marker VALUES (42)")
	srv := newServer(t, staging, ServerConfig{Protect: []string{live}})
	ctx := testCtx(t)
	for _, target := range []string{"template0", "template1", "postgres", live} {
		_, err := srv.Restore(ctx, b, RestoreOptions{Target: target, Replace: true})
		if !errors.Is(err, ErrProtected) {
			t.Errorf("restore into %s: %v", target, err)
		}
		if err := srv.Drop(ctx, target); !errors.Is(err, ErrProtected) {
			t.Errorf("drop %s: %v", target, err)
		}
		if err := srv.Clone(ctx, "template1", target); !errors.Is(err, ErrProtected) {
			t.Errorf("clone into %s: %v", target, err)
		}
		if err := srv.Swap(ctx, "live_x", target, "prev_x"); !errors.Is(err, ErrProtected) {
			t.Errorf("swap %s: %v", target, err)
		}
	}
	if n := staging.QueryInt(t, live, "SELECT id FROM marker"); n != 42 {
		t.Fatal("protected database changed")
	}
	if _, err := srv.Restore(ctx, b, RestoreOptions{}); err == nil {
		t.Error("restore without target")
	}
	if _, err := srv.Restore(ctx, nil, RestoreOptions{Target: "x"}); err == nil {
		t.Error("restore without backup")
	}
}

// Safety rule 2: a backup that fails verification destroys nothing.
func TestRestoreVerifiesBeforeDestroying(t *testing.T) {
	prod, staging, db := seeded(t, 50)
	b := dumpOf(t, prod, db, DumpOptions{})
	target := staging.Database(t)
	staging.Exec(t, target, "CREATE TABLE marker (id int); INSERT INTO marker VALUES (7)")
	data, _ := os.ReadFile(b.Path)
	data[len(data)-10] ^= 0x55
	if err := os.WriteFile(b.Path, data, 0o644); err != nil {
		t.Fatal(err)
	}
	_, err := newServer(t, staging, ServerConfig{}).Restore(testCtx(t), b, RestoreOptions{Target: target, Replace: true})
	if !errors.Is(err, ErrChecksum) {
		t.Fatalf("restore of a damaged backup: %v", err)
	}
	if n := staging.QueryInt(t, target, "SELECT id FROM marker"); n != 7 {
		t.Fatal("the existing target was touched")
	}
	// Without Replace an existing target is an error.
	fresh := dumpOf(t, prod, db, DumpOptions{})
	_, err = newServer(t, staging, ServerConfig{}).Restore(testCtx(t), fresh, RestoreOptions{Target: target})
	if !errors.Is(err, ErrExists) || staging.QueryInt(t, target, "SELECT id FROM marker") != 7 {
		t.Fatalf("restore onto an existing target without Replace: %v", err)
	}
}

func TestRestoreReplacesLeftover(t *testing.T) {
	_, staging, b := backupOf(t, 30, DumpOptions{Counts: true})
	target := dbName(t, staging, "leftover_next")
	staging.Exec(t, "postgres", "CREATE DATABASE "+ident(target))
	staging.Exec(t, target, "CREATE TABLE junk (id int)")
	holder := staging.Connect(t, target) // a session still connected to the leftover
	_ = holder
	if _, err := newServer(t, staging, ServerConfig{}).Restore(testCtx(t), b, RestoreOptions{Target: target, Replace: true}); err != nil {
		t.Fatal(err)
	}
	if n := staging.QueryInt(t, target, "SELECT count(*) FROM pg_tables WHERE tablename = 'junk'"); n != 0 {
		t.Fatal("leftover not replaced")
	}
	if n := staging.QueryInt(t, target, "SELECT count(*) FROM users"); n != 30 {
		t.Fatalf("users %d", n)
	}
}

// A restore killed half-way: the live database is untouched and the half-built one dropped.
func TestRestoreCancelledDropsHalfBuiltTarget(t *testing.T) {
	prod, staging, db := seeded(t, 100)
	prod.Exec(t, db, "CREATE TABLE big AS SELECT g AS id, md5(g::text) AS h FROM generate_series(1, 400000) g; CREATE INDEX ON big (h)")
	b := dumpOf(t, prod, db, DumpOptions{})
	srv := newServer(t, staging, ServerConfig{})
	ctx := testCtx(t)
	live := dbName(t, staging, "cancel_live")
	if _, err := srv.Restore(ctx, b, RestoreOptions{Target: live}); err != nil {
		t.Fatal(err)
	}
	staging.Exec(t, live, "INSERT INTO users (email) VALUES ('live-only@example.org')")

	next := dbName(t, staging, "cancel_next")
	cctx, cancel := context.WithCancel(ctx)
	defer cancel()
	_, err := srv.Restore(cctx, b, RestoreOptions{Target: next, Progress: func(p Progress) {
		if strings.Contains(p.Item, "TABLE DATA") {
			cancel() // half-way: tables exist, data is loading
		}
	}})
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled restore: %v", err)
	}
	if dbExists(t, staging, next) {
		t.Fatal("half-built target left behind")
	}
	if n := staging.QueryInt(t, live, "SELECT count(*) FROM users WHERE email = 'live-only@example.org'"); n != 1 {
		t.Fatal("live database touched")
	}
	if n := staging.QueryInt(t, live, "SELECT count(*) FROM big"); n != 400000 {
		t.Fatalf("live big has %d rows", n)
	}
	// No pg_restore left running against the server.
	if n := staging.QueryInt(t, "postgres", "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'pg_restore'"); n != 0 {
		t.Errorf("%d pg_restore sessions left", n)
	}
}

func TestRestoreFailuresDropTarget(t *testing.T) {
	prod, staging, db := seeded(t, 60)
	ctx := testCtx(t)
	srv := newServer(t, staging, ServerConfig{})

	t.Run("post-restore SQL error names the file and line", func(t *testing.T) {
		b := dumpOf(t, prod, db, DumpOptions{})
		bad := testutil.WriteTemp(t, "scrub.sql", "UPDATE users SET email = 'x' || id;\n\nDELETE FROM no_such_table;\n")
		target := dbName(t, staging, "sqlfail")
		_, err := srv.Restore(ctx, b, RestoreOptions{Target: target, PostRestore: []string{bad}})
		requireErrContains(t, err, "scrub.sql", "line 3", `relation "no_such_table" does not exist`)
		if dbExists(t, staging, target) {
			t.Fatal("target left after a failed post-restore file")
		}
		if _, err := srv.Restore(ctx, b, RestoreOptions{Target: target, PostRestore: []string{bad + ".missing"}}); err == nil || dbExists(t, staging, target) {
			t.Fatalf("missing post-restore file: %v", err)
		}
	})

	t.Run("row count mismatch names the tables", func(t *testing.T) {
		b := dumpOf(t, prod, db, DumpOptions{Counts: true})
		rewriteManifest(t, b, func(m *Manifest) {
			m.RowCounts["public.users"] = 61    // fewer rows restored than the manifest says
			m.RowCounts["public.sessions"] = 29 // more
			m.RowCounts["public.gone"] = 5
		})
		target := dbName(t, staging, "countfail")
		_, err := srv.Restore(ctx, b, RestoreOptions{Target: target})
		if !errors.Is(err, ErrRowCountMismatch) {
			t.Fatalf("mismatch: %v", err)
		}
		requireErrContains(t, err, "public.users has 60 rows, backup 61", "public.sessions has 30 rows, backup 29",
			"public.gone missing")
		if dbExists(t, staging, target) {
			t.Fatal("target left after a row count mismatch")
		}
		if _, err := srv.Restore(ctx, b, RestoreOptions{Target: target, SkipRowCounts: true}); err != nil {
			t.Fatalf("SkipRowCounts: %v", err)
		}
	})

	t.Run("truncated dump with a matching manifest", func(t *testing.T) {
		b := dumpOf(t, prod, db, DumpOptions{})
		// The table of contents is at the start: cut the end of the data.
		if err := os.Truncate(b.Path, b.Manifest.Size-50); err != nil {
			t.Fatal(err)
		}
		size, sum, _ := checksum(ctx, b.Path, FormatCustom, nil)
		rewriteManifest(t, b, func(m *Manifest) { m.Size, m.SHA256 = size, sum })
		target := dbName(t, staging, "truncated")
		_, err := srv.Restore(ctx, b, RestoreOptions{Target: target})
		var ce *CommandError
		if !errors.As(err, &ce) || ce.Args[0] != "pg_restore" || ce.ExitCode == 0 {
			t.Fatalf("truncated dump: %v", err)
		}
		if dbExists(t, staging, target) {
			t.Fatal("target left after a failed pg_restore")
		}
	})

	t.Run("pg_restore stops at the first error", func(t *testing.T) {
		owned := prod.Database(t)
		prod.Exec(t, "postgres", "DO $$ BEGIN CREATE ROLE restage_prod_only; EXCEPTION WHEN duplicate_object THEN NULL; END $$")
		prod.Exec(t, owned, "CREATE TABLE a (id int); ALTER TABLE a OWNER TO restage_prod_only; CREATE TABLE z (id int); INSERT INTO z VALUES (1)")
		b := dumpOf(t, prod, owned, DumpOptions{})
		target := dbName(t, staging, "firsterror")
		_, err := srv.Restore(ctx, b, RestoreOptions{Target: target, KeepOwners: true})
		var ce *CommandError
		if !errors.As(err, &ce) {
			t.Fatalf("restore with a missing role: %v", err)
		}
		requireErrContains(t, err, `role "restage_prod_only" does not exist`)
		if strings.Contains(ce.Stderr, "errors ignored on restore") || strings.Contains(ce.Stderr, "creating TABLE") {
			t.Errorf("stderr: %s", ce.Stderr)
		}
		if dbExists(t, staging, target) {
			t.Fatal("target left after a failed pg_restore")
		}
	})
}

// Safety rule 5: a password in the DSN appears in no error, log or CommandError.
func TestPasswordNeverLeaks(t *testing.T) {
	prod, _ := servers(t)
	const user, secret = "restage_pw", `S3cret "pass" w0rd`
	pw, withPassword := passwordServer(t, user, secret)
	log, logs := testLogger(t)
	ctx := testCtx(t)
	var errs []error

	// Production side: a dump through a password-checking server, and a wrong password.
	src := pw.Database(t)
	seed(t, pw, src, 20)
	b, err := Dump(ctx, Config{Logger: log}, DumpOptions{DSN: withPassword(secret, src), Dir: t.TempDir(), Counts: true})
	if err != nil {
		t.Fatalf("dump with password: %v", err)
	}
	_, err = Dump(ctx, Config{Logger: log}, DumpOptions{DSN: withPassword(secret+"x", src), Dir: t.TempDir()})
	if err == nil {
		t.Fatal("dump with a wrong password succeeded")
	}
	errs = append(errs, err)

	// Staging side: restore a production backup into it with the password in AdminDSN.
	pdb := prod.Database(t)
	seed(t, prod, pdb, 20)
	pb := dumpOf(t, prod, pdb, DumpOptions{Counts: true})
	srv := newServer(t, pw, ServerConfig{AdminDSN: withPassword(secret, "postgres"), Logger: log})
	if _, err := srv.Restore(ctx, pb, RestoreOptions{Target: "restored"}); err != nil {
		t.Fatalf("restore with password: %v", err)
	}
	if err := srv.Clone(ctx, "restored", "cloned"); err != nil {
		t.Fatal(err)
	}
	if err := srv.Swap(ctx, "live", "restored", "prev"); err != nil {
		t.Fatal(err)
	}
	// Failures: pg_restore failing (a role this server lacks), protected name, wrong password.
	prod.Exec(t, "postgres", "DO $$ BEGIN CREATE ROLE restage_prod_only; EXCEPTION WHEN duplicate_object THEN NULL; END $$")
	prod.Exec(t, pdb, "ALTER TABLE users OWNER TO restage_prod_only")
	ob := dumpOf(t, prod, pdb, DumpOptions{})
	_, err = srv.Restore(ctx, ob, RestoreOptions{Target: "broken", KeepOwners: true})
	var ce *CommandError
	if !errors.As(err, &ce) {
		t.Fatalf("restore with a missing role: %v", err)
	}
	errs = append(errs, err)
	if args := strings.Join(ce.Args, " "); !strings.Contains(args, user+"@") || !strings.Contains(args, "--dbname") {
		t.Errorf("CommandError.Args lack the connection: %q", ce.Args)
	}
	errs = append(errs, srv.Drop(ctx, "postgres"))
	bad := newServer(t, pw, ServerConfig{AdminDSN: withPassword(secret+"x", "postgres"), Logger: log})
	_, err = bad.Restore(ctx, b, RestoreOptions{Target: "nope"})
	errs = append(errs, err)
	errs = append(errs, bad.Drop(ctx, "nope"))
	bad2, err := NewServer(ServerConfig{AdminDSN: "host=127.0.0.1 password='" + secret + "' port=notaport", Logger: log})
	if err == nil {
		errs = append(errs, bad2.Drop(ctx, "x"))
	} else {
		errs = append(errs, err)
	}

	for _, e := range errs {
		if e == nil {
			t.Fatal("an expected failure did not fail")
		}
		msg := e.Error()
		t.Logf("error: %s", msg)
		var ce *CommandError
		if errors.As(e, &ce) {
			msg += strings.Join(ce.Args, " ") + ce.Stderr
		}
		for _, leak := range []string{secret, "S3cret", urlUser(user, secret).String()} {
			if strings.Contains(msg, leak) {
				t.Errorf("password in error: %s", msg)
			}
		}
	}
	for _, leak := range []string{secret, "S3cret"} {
		if strings.Contains(logs.String(), leak) {
			t.Errorf("password in the log:\n%s", logs)
		}
	}
	if !strings.Contains(logs.String(), "restore complete") {
		t.Errorf("nothing logged:\n%s", logs)
	}
}

func urlUser(user, password string) *url.Userinfo { return url.UserPassword(user, password) }

// passwordServer starts a server of the test's own on which user, a superuser, must log
// in with secret, and returns it with the DSN of database db as user with password p.
func passwordServer(t *testing.T, user, secret string) (*pgtest.Server, func(p, db string) string) {
	t.Helper()
	pw := pgtest.Start(t)
	pw.Exec(t, "postgres", "CREATE ROLE "+user+" LOGIN SUPERUSER PASSWORD '"+strings.ReplaceAll(secret, "'", "''")+"'")
	hba := filepath.Join(pw.Dir, "data", "pg_hba.conf")
	old, err := os.ReadFile(hba)
	if err != nil {
		t.Fatal(err)
	}
	rule := "host all " + user + " 127.0.0.1/32 scram-sha-256\nhost all " + user + " ::1/128 scram-sha-256\n"
	if err := os.WriteFile(hba, append([]byte(rule), old...), 0o600); err != nil {
		t.Fatal(err)
	}
	pw.Exec(t, "postgres", "SELECT pg_reload_conf()")
	return pw, func(p, db string) string {
		cs, _ := parseConnString(pw.DSN(db))
		cs.u.User = urlUser(user, p)
		return cs.String()
	}
}

// A source database whose name has quotes, spaces and a slash: dumped, found and restored.
func TestAwkwardDatabaseNames(t *testing.T) {
	prod, staging := servers(t)
	src := dbName(t, prod, `prod "db" with spaces/and 'quotes'`)
	prod.Exec(t, "postgres", "CREATE DATABASE "+ident(src))
	seed(t, prod, src, 25)
	dir := t.TempDir()
	b := dumpOf(t, prod, src, DumpOptions{Dir: dir, Counts: true})
	if b.Manifest.Database != src || filepath.Dir(b.Path) != dir {
		t.Fatalf("manifest database %q, dump %s", b.Manifest.Database, b.Path)
	}
	cat, _ := NewCatalog(dir, Config{})
	found, err := cat.Wait(testCtx(t), WaitOptions{Database: src})
	if err != nil || found.Path != b.Path {
		t.Fatalf("Wait = %v, %v", found, err)
	}
	if err := cat.Verify(testCtx(t), found); err != nil {
		t.Fatal(err)
	}
	target := dbName(t, staging, `staging "db"; DROP DATABASE postgres; --`)
	res, err := newServer(t, staging, ServerConfig{}).Restore(testCtx(t), found, RestoreOptions{Target: target, Jobs: 2})
	if err != nil {
		t.Fatal(err)
	}
	if res.RowCounts["public.users"] != 25 || !dbExists(t, staging, "postgres") {
		t.Fatalf("restored %v", res.RowCounts)
	}
	if n := staging.QueryInt(t, target, "SELECT count(*) FROM users"); n != 25 {
		t.Fatalf("users %d", n)
	}
}

// The session settings reach pg_restore's connections: a bad one fails the restore.
func TestRestoreSessionSettingsReachPgRestore(t *testing.T) {
	_, staging, b := backupOf(t, 10, DumpOptions{})
	srv := newServer(t, staging, ServerConfig{Settings: map[string]string{"maintenance_work_mem": "lots"}})
	target := dbName(t, staging, "settings")
	_, err := srv.Restore(testCtx(t), b, RestoreOptions{Target: target})
	requireErrContains(t, err, "maintenance_work_mem")
	if dbExists(t, staging, target) {
		t.Fatal("target left after a failed restore")
	}
	if got := pgOptions("-c geqo=off", map[string]string{"b": "x y", "a": `1\2`}); got != `-c geqo=off -c a=1\\2 -c b=x\ y` {
		t.Fatalf("pgOptions = %q", got)
	}
}

// TestRestoreRowCountsFromStatistics checks the fast path of the row count comparison:
// tables whose insert statistics match the manifest are not scanned, and the others
// (inheritance parents, whose count(*) includes their children; tables whose statistics
// differ) are counted exactly.
func TestRestoreRowCountsFromStatistics(t *testing.T) {
	prod, staging, db := seeded(t, 50)
	ctx := testCtx(t)
	prod.Exec(t, db, `
CREATE TABLE parent (id int);
CREATE TABLE child (note text) INHERITS (parent);
INSERT INTO parent SELECT g FROM generate_series(1, 3) g;
INSERT INTO child SELECT g, 'c' FROM generate_series(1, 4) g;`)
	b := dumpOf(t, prod, db, DumpOptions{Counts: true})
	if b.Manifest.RowCounts["public.parent"] != 7 || b.Manifest.RowCounts["public.child"] != 4 {
		t.Fatalf("manifest counts %v", b.Manifest.RowCounts)
	}
	log, logs := testLogger(t)
	srv := newServer(t, staging, ServerConfig{Logger: log})
	target := dbName(t, staging, "fromstats")
	res, err := srv.Restore(ctx, b, RestoreOptions{Target: target})
	if err != nil {
		t.Fatal(err)
	}
	if !maps.Equal(res.RowCounts, b.Manifest.RowCounts) {
		t.Errorf("compared counts %v, manifest %v", res.RowCounts, b.Manifest.RowCounts)
	}
	m := regexp.MustCompile(`row counts match.* tables=(\d+) from_statistics=(\d+) counted=(\d+)`).FindStringSubmatch(logs.String())
	if m == nil {
		t.Fatalf("no row count record in the log:\n%s", logs)
	}
	tables, _ := strconv.Atoi(m[1])
	fromStats, _ := strconv.Atoi(m[2])
	counted, _ := strconv.Atoi(m[3])
	// The parent is always counted; the others are verified from the statistics unless
	// pg_restore's sessions published them later than statsWait (a loaded machine).
	if tables != len(b.Manifest.RowCounts) || fromStats+counted != tables || counted < 1 {
		t.Errorf("tables=%d from_statistics=%d counted=%d, manifest has %d tables", tables, fromStats, counted, len(b.Manifest.RowCounts))
	}
	t.Logf("restore verified %d tables from statistics, counted %d", fromStats, counted)

	// insertedFromStats itself, once the statistics are published (no timing involved).
	conn, err := pgx.Connect(ctx, staging.DSN(target))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(context.WithoutCancel(ctx))
	for deadline := time.Now().Add(2 * time.Minute); staging.QueryInt(t, target,
		"SELECT count(*) FROM pg_stat_user_tables WHERE relname IN ('users', 'child') AND n_tup_ins > 0") != 2; {
		if time.Now().After(deadline) {
			t.Fatal("restored rows never showed in pg_stat_user_tables")
		}
		time.Sleep(50 * time.Millisecond)
	}
	rels, err := listRelations(ctx, conn)
	if err != nil {
		t.Fatal(err)
	}
	want := maps.Clone(b.Manifest.RowCounts)
	verified, rest, err := insertedFromStats(ctx, conn, rels, want, "")
	if err != nil {
		t.Fatal(err)
	}
	wantVerified := maps.Clone(want)
	delete(wantVerified, "public.parent")
	if !maps.Equal(verified, wantVerified) || !maps.Equal(rest, map[string]int64{"public.parent": 7}) {
		t.Errorf("verified %v, rest %v", verified, rest)
	}

	// Statistics that differ from the manifest (either way) send the table to count(*).
	want["public.users"], want["public.sessions"] = 51, 24
	verified, rest, err = insertedFromStats(ctx, conn, rels, want, "")
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := verified["public.users"]; ok || rest["public.users"] != 51 || rest["public.sessions"] != 24 || len(verified)+len(rest) != len(want) {
		t.Errorf("mismatching statistics: verified %v, rest %v", verified, rest)
	}

	// track_counts set for pg_restore's sessions: nothing comes from the statistics.
	verified, rest, err = insertedFromStats(ctx, conn, rels, want, "-c track_counts=off")
	if err != nil {
		t.Fatal(err)
	}
	if len(verified) != 0 || !maps.Equal(rest, want) {
		t.Errorf("track_counts in the session options: verified %v, rest %v", verified, rest)
	}
}

// Issue 12 item 11: a restore's context bounds pg_restore and the post-restore SQL. When
// its deadline passes, Restore returns within seconds with context.DeadlineExceeded in
// the chain, nothing keeps running on the server, and the half-built target is gone.
func TestRestoreDeadlineStopsSlowSteps(t *testing.T) {
	prod, staging, b := backupOf(t, 20, DumpOptions{Counts: true})
	ctx := testCtx(t)
	const bound = 20 * time.Second // the deadline plus generous cleanup on a loaded machine; the slow steps take 60s

	check := func(t *testing.T, err error, took time.Duration, target, marker string) {
		t.Helper()
		if !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("restore past its deadline: %v, want context.DeadlineExceeded in the chain", err)
		}
		if took > bound {
			t.Fatalf("restore returned %s after it started, want within %s", took.Round(time.Millisecond), bound)
		}
		if dbExists(t, staging, target) {
			t.Fatal("half-built target left behind")
		}
		if marker == "" {
			return
		}
		if n := staging.QueryInt(t, "postgres", "SELECT count(*) FROM pg_stat_activity WHERE query LIKE '%' || $1 || '%' AND pid <> pg_backend_pid()", marker); n != 0 {
			t.Fatalf("%d sessions still run the slow step", n)
		}
	}

	t.Run("post-restore SQL", func(t *testing.T) {
		srv := newServer(t, staging, ServerConfig{Production: []uint64{prod.SystemIdentifier(t)}})
		slow := testutil.WriteTemp(t, "slow.sql", "UPDATE users SET email = email; SELECT pg_sleep(60) AS slow_step_marker;")
		target := dbName(t, staging, "deadline_sql")
		// The restore itself takes about a second; the deadline falls in the SQL.
		dctx, cancel := context.WithTimeout(ctx, 8*time.Second)
		defer cancel()
		start := time.Now()
		_, err := srv.Restore(dctx, b, RestoreOptions{Target: target, PostRestore: []string{slow}})
		took := time.Since(start)
		t.Logf("after %s: %v", took.Round(time.Millisecond), err)
		requireErrContains(t, err, "slow.sql")
		check(t, err, took, target, "slow_step_marker")
	})

	t.Run("pg_restore", func(t *testing.T) {
		// A pg_restore that hangs before it restores anything (a lock, a dead network).
		real, err := (Config{}).tool("pg_restore")
		if err != nil {
			t.Fatal(err)
		}
		bin := t.TempDir()
		nap := fmt.Sprintf("60.%09d", time.Now().Nanosecond()) // names this test's sleep among the machine's processes
		script := "#!/bin/sh\ncase \"$*\" in *--dbname*) sleep " + nap + " ;; esac\nexec " + real + " \"$@\"\n"
		if err := os.WriteFile(filepath.Join(bin, "pg_restore"), []byte(script), 0o755); err != nil {
			t.Fatal(err)
		}
		srv := newServer(t, staging, ServerConfig{Production: []uint64{prod.SystemIdentifier(t)}, BinDir: bin})
		target := dbName(t, staging, "deadline_restore")
		dctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		defer cancel()
		start := time.Now()
		_, err = srv.Restore(dctx, b, RestoreOptions{Target: target})
		took := time.Since(start)
		t.Logf("after %s: %v", took.Round(time.Millisecond), err)
		var ce *CommandError
		if !errors.As(err, &ce) || ce.Args[0] != "pg_restore" {
			t.Fatalf("want pg_restore's CommandError, got %v", err)
		}
		check(t, err, took, target, "")
		// pg_restore's whole process group is gone (here: the script's sleep).
		procs := commandLines(t)
		if !slices.ContainsFunc(procs, func(l string) bool { return strings.HasPrefix(l, os.Args[0]) }) {
			t.Fatalf("the process list lacks this test binary %s: %q", os.Args[0], procs)
		}
		if slices.Contains(procs, "sleep "+nap) {
			t.Fatal("a child of pg_restore survived the deadline")
		}
	})
}

// commandLines returns the command lines of the machine's processes, arguments joined by
// spaces: from /proc on Linux, else from ps(1).
func commandLines(t *testing.T) []string {
	t.Helper()
	var lines []string
	if procs, _ := filepath.Glob("/proc/[0-9]*/cmdline"); len(procs) > 0 {
		for _, p := range procs {
			if cmd, err := os.ReadFile(p); err == nil {
				lines = append(lines, strings.ReplaceAll(strings.TrimSuffix(string(cmd), "\x00"), "\x00", " "))
			}
		}
		return lines
	}
	out, err := exec.CommandContext(t.Context(), "ps", "-A", "-ww", "-o", "args=").Output()
	if err != nil {
		t.Fatalf("list processes: %v", err)
	}
	for _, l := range strings.Split(string(out), "\n") {
		lines = append(lines, strings.TrimSpace(l))
	}
	return lines
}
