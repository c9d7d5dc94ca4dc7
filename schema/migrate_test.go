package schema_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/golang-migrate/migrate/v4/database"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/restage/restage/dbrestore/pgtest"
	"github.com/restage/restage/schema"
)

func TestMain(m *testing.M) { os.Exit(pgtest.Main(m)) }

// fixture is a fresh database on the shared staging server and a migrations folder.
type fixture struct {
	srv *pgtest.Server
	db  string
	dir string
}

func newFixture(t testing.TB) *fixture {
	t.Helper()
	srv := pgtest.Shared(t, "staging")
	return &fixture{srv: srv, db: srv.Database(t), dir: t.TempDir()}
}

func (f *fixture) target() schema.Target {
	return schema.Target{DSN: f.srv.DSN(f.db), Dir: f.dir}
}

// write writes migration files (name → SQL) into the fixture's folder.
func (f *fixture) write(t testing.TB, files map[string]string) {
	t.Helper()
	writeFiles(t, f.dir, files)
}

func writeFiles(t testing.TB, dir string, files map[string]string) {
	t.Helper()
	for name, body := range files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

// three is a folder of three good migrations.
var three = map[string]string{
	"1_users.up.sql":    "CREATE TABLE users (id bigint PRIMARY KEY, name text NOT NULL);\n",
	"1_users.down.sql":  "DROP TABLE users;\n",
	"2_email.up.sql":    "ALTER TABLE users ADD COLUMN email text;\nCREATE INDEX users_email ON users (email);\n",
	"2_email.down.sql":  "ALTER TABLE users DROP COLUMN email;\n",
	"3_orders.up.sql":   "CREATE TABLE orders (id bigint PRIMARY KEY, user_id bigint REFERENCES users);\n",
	"3_orders.down.sql": "DROP TABLE orders;\n",
}

func newUpgrader(t testing.TB, cfg schema.Config) *schema.MigrateUpgrader {
	t.Helper()
	u, err := schema.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return u
}

func ctxFor(t testing.TB) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	t.Cleanup(cancel)
	return ctx
}

func versions(ms []schema.Migration) []uint {
	var out []uint
	for _, m := range ms {
		out = append(out, m.Version)
	}
	return out
}

func appliedVersions(as []schema.Applied) []uint {
	var out []uint
	for _, a := range as {
		out = append(out, a.Version)
	}
	return out
}

func equal(a, b []uint) bool { return fmt.Sprint(a) == fmt.Sprint(b) }

// tableExists reports whether a table exists in the fixture's database.
func (f *fixture) tableExists(t testing.TB, name string) bool {
	t.Helper()
	return f.srv.QueryInt(t, f.db, "SELECT count(*) FROM pg_tables WHERE schemaname = 'public' AND tablename = $1", name) == 1
}

// waitNoConnections polls until no session is connected to the fixture's database, then
// renames it and back (what the Rebuilder does right after an upgrade).
func (f *fixture) waitNoConnections(t testing.TB) {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for {
		n := f.srv.QueryInt(t, "postgres", "SELECT count(*) FROM pg_stat_activity WHERE datname = $1", f.db)
		if n == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d sessions still connected to %s", n, f.db)
		}
		time.Sleep(50 * time.Millisecond)
	}
	moved := f.db + "_moved"
	f.srv.Exec(t, "postgres", "ALTER DATABASE "+pgx.Identifier{f.db}.Sanitize()+" RENAME TO "+pgx.Identifier{moved}.Sanitize())
	f.srv.Exec(t, "postgres", "ALTER DATABASE "+pgx.Identifier{moved}.Sanitize()+" RENAME TO "+pgx.Identifier{f.db}.Sanitize())
}

func TestStatusOfEmptyDatabaseChangesNothing(t *testing.T) {
	f := newFixture(t)
	f.write(t, three)
	u := newUpgrader(t, schema.Config{})
	st, err := u.Status(ctxFor(t), f.target())
	if err != nil {
		t.Fatal(err)
	}
	if st.HasVersion || st.Version != 0 || st.Dirty || st.Latest != 3 {
		t.Fatalf("status = %+v", st)
	}
	if got := versions(st.Pending); !equal(got, []uint{1, 2, 3}) {
		t.Fatalf("pending = %v", got)
	}
	if st.Pending[1].Name != "email" || st.Pending[1].Path != filepath.Join(f.dir, "2_email.up.sql") {
		t.Fatalf("pending[1] = %+v", st.Pending[1])
	}
	if f.tableExists(t, "schema_migrations") {
		t.Fatal("Status created the version table")
	}
	plan, err := u.Plan(ctxFor(t), f.target())
	if err != nil {
		t.Fatal(err)
	}
	if !equal(versions(plan), []uint{1, 2, 3}) {
		t.Fatalf("plan = %v", versions(plan))
	}
	f.waitNoConnections(t)
}

func TestUpgradeAppliesEachMigrationTimed(t *testing.T) {
	f := newFixture(t)
	f.write(t, three)
	var logs bytes.Buffer
	var mu sync.Mutex
	var seen []uint
	u := newUpgrader(t, schema.Config{
		Logger: slog.New(slog.NewTextHandler(&lockedWriter{w: &logs}, nil)),
		OnApplied: func(a schema.Applied) {
			mu.Lock()
			seen = append(seen, a.Version)
			mu.Unlock()
		},
	})
	ctx := ctxFor(t)
	res, err := u.Upgrade(ctx, f.target())
	if err != nil {
		t.Fatal(err)
	}
	if res.From != 0 || res.To != 3 || !equal(appliedVersions(res.Applied), []uint{1, 2, 3}) {
		t.Fatalf("result = %+v", res)
	}
	for _, a := range res.Applied {
		if a.Duration <= 0 {
			t.Errorf("migration %d has duration %v", a.Version, a.Duration)
		}
		if a.Name == "" || !strings.HasSuffix(a.Path, ".up.sql") {
			t.Errorf("applied %+v", a)
		}
	}
	if !equal(seen, []uint{1, 2, 3}) {
		t.Fatalf("OnApplied saw %v", seen)
	}
	if !f.tableExists(t, "orders") {
		t.Fatal("orders table missing")
	}
	if got := f.srv.QueryInt(t, f.db, "SELECT count(*) FROM pg_indexes WHERE indexname = 'users_email'"); got != 1 {
		t.Fatal("users_email index missing")
	}
	if n := strings.Count(logs.String(), "applied migration"); n != 3 {
		t.Fatalf("%d 'applied migration' log records:\n%s", n, logs.String())
	}
	if !strings.Contains(logs.String(), "duration=") {
		t.Fatalf("no durations logged:\n%s", logs.String())
	}

	st, err := u.Status(ctx, f.target())
	if err != nil {
		t.Fatal(err)
	}
	if !st.HasVersion || st.Version != 3 || st.Dirty || len(st.Pending) != 0 {
		t.Fatalf("status after upgrade = %+v", st)
	}

	// Up to date: nothing runs.
	res, err = u.Upgrade(ctx, f.target())
	if err != nil {
		t.Fatal(err)
	}
	if res.From != 3 || res.To != 3 || len(res.Applied) != 0 {
		t.Fatalf("second upgrade = %+v", res)
	}

	// New code brings one more migration: only it runs.
	f.write(t, map[string]string{"4_orders_total.up.sql": "ALTER TABLE orders ADD COLUMN total numeric;"})
	res, err = u.Upgrade(ctx, f.target())
	if err != nil {
		t.Fatal(err)
	}
	if res.From != 3 || res.To != 4 || !equal(appliedVersions(res.Applied), []uint{4}) {
		t.Fatalf("third upgrade = %+v", res)
	}
	f.waitNoConnections(t)
}

func TestUpgradeKeywordValueDSN(t *testing.T) {
	f := newFixture(t)
	f.write(t, three)
	tg := schema.Target{
		DSN: fmt.Sprintf("host=%s port=%d user=%s dbname=%s sslmode=disable", f.srv.Host, f.srv.Port, f.srv.User, f.db),
		Dir: f.dir,
	}
	res, err := newUpgrader(t, schema.Config{}).Upgrade(ctxFor(t), tg)
	if err != nil {
		t.Fatal(err)
	}
	if res.To != 3 {
		t.Fatalf("result = %+v", res)
	}
}

func TestDirtyDatabaseNeedsExplicitForce(t *testing.T) {
	f := newFixture(t)
	f.write(t, three)
	u := newUpgrader(t, schema.Config{})
	ctx := ctxFor(t)
	// Version 2 was interrupted half-way in an earlier run.
	f.srv.Exec(t, f.db, three["1_users.up.sql"])
	f.srv.Exec(t, f.db, "CREATE TABLE schema_migrations (version bigint NOT NULL PRIMARY KEY, dirty boolean NOT NULL); INSERT INTO schema_migrations VALUES (2, true)")

	st, err := u.Status(ctx, f.target())
	if err != nil {
		t.Fatal(err)
	}
	if !st.Dirty || st.Version != 2 {
		t.Fatalf("status = %+v", st)
	}
	_, err = u.Upgrade(ctx, f.target())
	if !errors.Is(err, schema.ErrDirty) {
		t.Fatalf("Upgrade of a dirty database: %v", err)
	}
	t.Logf("dirty: %v", err)
	for _, want := range []string{"dirty at version 2", "2_email.up.sql", "by hand", "Force(ctx, target, 2)", "Force(ctx, target, 1)",
		"UPDATE schema_migrations SET version = 2, dirty = false", "UPDATE schema_migrations SET version = 1, dirty = false"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q lacks %q", err, want)
		}
	}
	if _, err := u.Plan(ctx, f.target()); !errors.Is(err, schema.ErrDirty) {
		t.Fatalf("Plan of a dirty database: %v", err)
	}
	// Still dirty: nothing was forced automatically.
	if got := f.srv.QueryInt(t, f.db, "SELECT count(*) FROM schema_migrations WHERE dirty"); got != 1 {
		t.Fatal("the dirty flag was cleared")
	}

	if err := u.Force(ctx, f.target(), 7); !errors.Is(err, schema.ErrMigrations) {
		t.Fatalf("Force to an unknown version: %v", err)
	}
	// The operator checked: 2 left nothing behind, so the database is at 1.
	if err := u.Force(ctx, f.target(), 1); err != nil {
		t.Fatal(err)
	}
	f.waitNoConnections(t)
	res, err := u.Upgrade(ctx, f.target())
	if err != nil {
		t.Fatal(err)
	}
	if res.From != 1 || res.To != 3 || !equal(appliedVersions(res.Applied), []uint{2, 3}) {
		t.Fatalf("result = %+v", res)
	}
}

func TestDatabaseAheadOfCode(t *testing.T) {
	f := newFixture(t)
	f.write(t, three)
	f.write(t, map[string]string{"4_x.up.sql": "CREATE TABLE x (i int);", "5_y.up.sql": "CREATE TABLE y (i int);"})
	u := newUpgrader(t, schema.Config{})
	ctx := ctxFor(t)
	if _, err := u.Upgrade(ctx, f.target()); err != nil {
		t.Fatal(err)
	}

	older := t.TempDir()
	writeFiles(t, older, three)
	tg := schema.Target{DSN: f.srv.DSN(f.db), Dir: older}
	_, err := u.Upgrade(ctx, tg)
	if !errors.Is(err, schema.ErrAhead) || !strings.Contains(err.Error(), "is at 5, code knows 3") {
		t.Fatalf("Upgrade with older code: %v", err)
	}
	t.Logf("ahead: %v", err)
	if _, err := u.Plan(ctx, tg); !errors.Is(err, schema.ErrAhead) {
		t.Fatalf("Plan with older code: %v", err)
	}

	// A version the folder does not know, below its latest.
	gap := t.TempDir()
	writeFiles(t, gap, three)
	writeFiles(t, gap, map[string]string{"6_z.up.sql": "CREATE TABLE z (i int);"})
	if err := os.Remove(filepath.Join(gap, "3_orders.up.sql")); err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(filepath.Join(gap, "3_orders.down.sql")); err != nil {
		t.Fatal(err)
	}
	_, err = u.Upgrade(ctx, schema.Target{DSN: f.srv.DSN(f.db), Dir: gap})
	if !errors.Is(err, schema.ErrAhead) || !strings.Contains(err.Error(), "is at 5") {
		t.Fatalf("Upgrade with a folder lacking the database's version: %v", err)
	}
	t.Logf("unknown: %v", err)
	if f.tableExists(t, "z") {
		t.Fatal("a migration ran although the database version is unknown to the folder")
	}
	f.waitNoConnections(t)
}

func TestFailingMigrationNamesFileMessageAndPosition(t *testing.T) {
	f := newFixture(t)
	f.write(t, three)
	bad := "-- add a column\nALTER TABLE users ADD COLUMN age int;\nSELECT nosuchcolumn FROM users;\n"
	f.write(t, map[string]string{"2_email.up.sql": bad})
	u := newUpgrader(t, schema.Config{})
	ctx := ctxFor(t)
	res, err := u.Upgrade(ctx, f.target())
	if err == nil {
		t.Fatal("Upgrade succeeded")
	}
	t.Logf("failed: %v", err)
	var me *schema.MigrationError
	if !errors.As(err, &me) {
		t.Fatalf("error %T %v is not a *MigrationError", err, err)
	}
	var pe *pgconn.PgError
	if !errors.As(err, &pe) || pe.Code != "42703" {
		t.Fatalf("no undefined_column PgError in %v", err)
	}
	if !errors.Is(err, schema.ErrMigrationFailed) || !errors.Is(err, schema.ErrDirty) || !me.Dirty {
		t.Fatalf("error %v: want ErrMigrationFailed and ErrDirty", err)
	}
	if me.Line != 3 || me.Column != 8 {
		t.Fatalf("position line %d column %d, want line 3 column 8", me.Line, me.Column)
	}
	for _, want := range []string{filepath.Join(f.dir, "2_email.up.sql"), `column "nosuchcolumn" does not exist`, "line 3, column 8", "dirty at version 2", "Force(ctx, target, 1)"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q lacks %q", err, want)
		}
	}
	if res == nil || !equal(appliedVersions(res.Applied), []uint{1}) || res.To != 1 {
		t.Fatalf("result = %+v", res)
	}
	// The failed file ran in one implicit transaction: its first statement was rolled back.
	if got := f.srv.QueryInt(t, f.db, "SELECT count(*) FROM information_schema.columns WHERE table_name = 'users' AND column_name = 'age'"); got != 0 {
		t.Fatal("the failed migration's first statement stayed")
	}
	f.waitNoConnections(t)

	// The next run refuses the dirty database.
	if _, err := u.Upgrade(ctx, f.target()); !errors.Is(err, schema.ErrDirty) {
		t.Fatalf("Upgrade after a failure: %v", err)
	}
	// Fixed code and an explicit Force let it through.
	f.write(t, map[string]string{"2_email.up.sql": three["2_email.up.sql"]})
	if err := u.Force(ctx, f.target(), 1); err != nil {
		t.Fatal(err)
	}
	if res, err := u.Upgrade(ctx, f.target()); err != nil || res.To != 3 {
		t.Fatalf("Upgrade after Force: %+v, %v", res, err)
	}
}

func TestFailingFunctionBodyReportsContext(t *testing.T) {
	f := newFixture(t)
	f.write(t, map[string]string{
		"1_fn.up.sql": "CREATE FUNCTION f() RETURNS int LANGUAGE plpgsql AS $$\nBEGIN\n  RETURN 1;\nEND $$;\n" +
			"DO $$ BEGIN RAISE EXCEPTION 'boom %', 42; END $$;\n",
	})
	_, err := newUpgrader(t, schema.Config{}).Upgrade(ctxFor(t), f.target())
	if err == nil || !strings.Contains(err.Error(), "boom 42") || !strings.Contains(err.Error(), "1_fn.up.sql") || !strings.Contains(err.Error(), "CONTEXT: PL/pgSQL") {
		t.Fatalf("error = %v", err)
	}
	f.waitNoConnections(t)
}

func TestBadFoldersFailBeforeAnythingRuns(t *testing.T) {
	f := newFixture(t)
	u := newUpgrader(t, schema.Config{})
	ctx := ctxFor(t)
	cases := []struct {
		name  string
		files map[string]string
		dir   func(string) string
		want  []string
	}{
		{name: "missing", dir: func(d string) string { return filepath.Join(d, "nope") }, want: []string{"does not exist", "nope"}},
		{name: "file", dir: func(d string) string {
			p := filepath.Join(d, "plain")
			writeFiles(t, d, map[string]string{"plain": "x"})
			return p
		}, want: []string{"is not a folder"}},
		{name: "empty", files: map[string]string{"README.md": "hi"}, want: []string{"holds no migrations"}},
		{name: "duplicate", files: map[string]string{
			"1_a.up.sql": "SELECT 1", "2_b.up.sql": "SELECT 1", "2_c.up.sql": "SELECT 1",
		}, want: []string{"duplicate up migrations for version 2", "2_b.up.sql", "2_c.up.sql"}},
		{name: "duplicate-leading-zero", files: map[string]string{
			"1_a.up.sql": "SELECT 1", "002_b.up.sql": "SELECT 1", "2_b.up.sql": "SELECT 1",
		}, want: []string{"002_b.up.sql", "2_b.up.sql"}},
		{name: "malformed", files: map[string]string{
			"1_a.up.sql": "SELECT 1", "2-b.up.sql": "SELECT 1", "3_c.sql": "SELECT 1", "4_d.UP.sql": "SELECT 1", "README.md": "fine",
		}, want: []string{"malformed", "2-b.up.sql", "3_c.sql", "4_d.UP.sql"}},
		{name: "huge-version", files: map[string]string{
			"1_a.up.sql": "SELECT 1", "99999999999999999999999_b.up.sql": "SELECT 1",
		}, want: []string{"malformed", "99999999999999999999999_b.up.sql"}},
		{name: "down-only", files: map[string]string{
			"1_a.up.sql": "SELECT 1", "2_b.down.sql": "SELECT 1",
		}, want: []string{"2_b.down.sql has no .up file"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			dir := t.TempDir()
			writeFiles(t, dir, c.files)
			if c.dir != nil {
				dir = c.dir(dir)
			}
			tg := schema.Target{DSN: f.srv.DSN(f.db), Dir: dir}
			_, upErr := u.Upgrade(ctx, tg)
			_, stErr := u.Status(ctx, tg)
			_, planErr := u.Plan(ctx, tg)
			forceErr := u.Force(ctx, tg, 1)
			_, readErr := schema.ReadFolder(dir)
			for _, err := range []error{upErr, stErr, planErr, forceErr, readErr} {
				if !errors.Is(err, schema.ErrMigrations) {
					t.Fatalf("error %v does not wrap ErrMigrations", err)
				}
				if err == readErr {
					t.Logf("%s: %v", c.name, err)
				}
				for _, w := range c.want {
					if !strings.Contains(err.Error(), w) {
						t.Errorf("error %q lacks %q", err, w)
					}
				}
			}
		})
	}
	if f.tableExists(t, "schema_migrations") {
		t.Fatal("a bad folder still touched the database")
	}
}

func TestReadFolderIgnoresOtherFiles(t *testing.T) {
	dir := t.TempDir()
	writeFiles(t, dir, map[string]string{
		"README.md": "x", ".keep": "", "1_a.up.sql": "SELECT 1", "1_a.down.sql": "SELECT 1", "10_b.up.sql": "SELECT 1", "2_c.up.sql": "SELECT 1",
	})
	if err := os.Mkdir(filepath.Join(dir, "3_sub.up.sql"), 0o755); err != nil {
		t.Fatal(err)
	}
	fo, err := schema.ReadFolder(dir)
	if err != nil {
		t.Fatal(err)
	}
	if got := versions(fo.Migrations); !equal(got, []uint{1, 2, 10}) || fo.Latest() != 10 {
		t.Fatalf("versions %v latest %d", got, fo.Latest())
	}
}

func TestCancelStopsBetweenMigrations(t *testing.T) {
	f := newFixture(t)
	f.write(t, three)
	ctx, cancel := context.WithCancel(ctxFor(t))
	defer cancel()
	u := newUpgrader(t, schema.Config{OnApplied: func(a schema.Applied) {
		if a.Version == 1 {
			cancel()
		}
	}})
	res, err := u.Upgrade(ctx, f.target())
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("error = %v", err)
	}
	t.Logf("cancelled: %v", err)
	if !strings.Contains(err.Error(), "clean at version 1") || !strings.Contains(err.Error(), "2_email.up.sql") {
		t.Fatalf("error %q does not say where it stopped", err)
	}
	if !equal(appliedVersions(res.Applied), []uint{1}) || res.To != 1 {
		t.Fatalf("result = %+v", res)
	}
	st, err := u.Status(ctxFor(t), f.target())
	if err != nil {
		t.Fatal(err)
	}
	if st.Dirty || st.Version != 1 || !equal(versions(st.Pending), []uint{2, 3}) {
		t.Fatalf("status = %+v", st)
	}
	f.waitNoConnections(t)
}

// TestCancelDuringMigrationStopsIt cancels while migration 2 runs (it waits for an
// advisory lock the test holds, and goes on holding): Upgrade returns at once with ctx's
// error naming migration 2, whose changes are rolled back; 3 does not start.
func TestCancelDuringMigrationStopsIt(t *testing.T) {
	f := newFixture(t)
	holder, blocked := f.blockMigration2(t, 4242)
	ctx, cancel := context.WithCancel(ctxFor(t))
	defer cancel()
	type out struct {
		res *schema.Result
		err error
	}
	done := make(chan out, 1)
	u := newUpgrader(t, schema.Config{})
	go func() {
		res, err := u.Upgrade(ctx, f.target())
		done <- out{res, err}
	}()
	blocked()
	cancel()
	var o out
	select {
	case o = <-done:
	case <-time.After(30 * time.Second):
		t.Fatal("Upgrade still runs 30s after its context was cancelled")
	}
	t.Logf("cancelled: %v", o.err)
	if !errors.Is(o.err, context.Canceled) || !errors.Is(o.err, schema.ErrMigrationFailed) || !strings.Contains(o.err.Error(), "2_email.up.sql") {
		t.Fatalf("error = %v", o.err)
	}
	if !equal(appliedVersions(o.res.Applied), []uint{1}) {
		t.Fatalf("result = %+v", o.res)
	}
	if got := f.srv.QueryInt(t, f.db, "SELECT count(*) FROM information_schema.columns WHERE table_name = 'users' AND column_name = 'email'"); got != 0 {
		t.Fatal("the interrupted migration's changes stayed")
	}
	if f.tableExists(t, "orders") {
		t.Fatal("migration 3 ran after the cancel")
	}
	st, err := u.Status(ctxFor(t), f.target())
	if err != nil {
		t.Fatal(err)
	}
	if !st.Dirty || st.Version != 2 {
		t.Fatalf("status = %+v, want dirty at 2 (never cleared automatically)", st)
	}
	holder.Close(context.Background())
	f.waitNoConnections(t)
}

// TestDeadlineStopsRunningMigration: a migration that would run for two minutes is
// stopped by its caller's 1s deadline within seconds, and the error says which one and
// matches context.DeadlineExceeded. If the promise breaks, the test fails after 30s
// rather than waiting for the migration.
func TestDeadlineStopsRunningMigration(t *testing.T) {
	f := newFixture(t)
	f.write(t, map[string]string{
		"1_users.up.sql": three["1_users.up.sql"],
		"2_slow.up.sql":  "CREATE TABLE slow (i int);\nSELECT pg_sleep(120);\n",
	})
	u := newUpgrader(t, schema.Config{})
	// Migration 1 first, so that the deadline below only has migration 2 to cut short.
	one := t.TempDir()
	writeFiles(t, one, map[string]string{"1_users.up.sql": three["1_users.up.sql"]})
	if _, err := u.Upgrade(ctxFor(t), schema.Target{DSN: f.srv.DSN(f.db), Dir: one}); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(ctxFor(t), time.Second)
	defer cancel()
	start := time.Now()
	done := make(chan error, 1)
	go func() {
		_, err := u.Upgrade(ctx, f.target())
		done <- err
	}()
	var err error
	select {
	case err = <-done:
	case <-time.After(30 * time.Second):
		t.Fatal("Upgrade still runs 30s after its 1s deadline") // the cleanup's DROP ... WITH (FORCE) ends it
	}
	elapsed := time.Since(start)
	t.Logf("after %v: %v", elapsed, err)
	if elapsed > 10*time.Second {
		t.Errorf("Upgrade took %v after a 1s deadline", elapsed)
	}
	if !errors.Is(err, context.DeadlineExceeded) || !errors.Is(err, schema.ErrMigrationFailed) {
		t.Fatalf("error = %v, want a migration failure matching context.DeadlineExceeded", err)
	}
	var me *schema.MigrationError
	if !errors.As(err, &me) || me.Migration.Version != 2 || !errors.Is(me.Stopped, context.DeadlineExceeded) ||
		!strings.Contains(err.Error(), "2_slow.up.sql") || !strings.Contains(err.Error(), "context deadline exceeded") {
		t.Fatalf("error %v does not name 2_slow.up.sql", err)
	}
	if f.tableExists(t, "slow") {
		t.Fatal("the stopped migration's changes stayed")
	}
	if n := f.srv.QueryInt(t, "postgres", "SELECT count(*) FROM pg_stat_activity WHERE datname = $1 AND query LIKE '%pg_sleep(120)%'", f.db); n != 0 {
		t.Fatal("pg_sleep(120) still runs on the server")
	}
}

// blockMigration2 writes the three migrations, migration 2 first waiting for the
// advisory lock key, which it takes on a connection of the test (holder) until holder is
// closed. blocked waits until migration 2 waits for that lock and returns a query
// selecting the pid of the backend that runs it (its parameter $1 is the database name).
func (f *fixture) blockMigration2(t testing.TB, key int) (holder *pgx.Conn, blocked func() string) {
	t.Helper()
	lock := fmt.Sprintf("pg_advisory_xact_lock(%d)", key)
	f.write(t, three)
	f.write(t, map[string]string{"2_email.up.sql": "SELECT " + lock + ";\n" + three["2_email.up.sql"]})
	holder = f.srv.Connect(t, f.db)
	if _, err := holder.Exec(ctxFor(t), fmt.Sprintf("SELECT pg_advisory_lock(%d)", key)); err != nil {
		t.Fatal(err)
	}
	waiting := "SELECT pid FROM pg_stat_activity WHERE datname = $1 AND query LIKE '%" + lock + "%' AND wait_event_type = 'Lock'"
	return holder, func() string {
		t.Helper()
		deadline := time.Now().Add(2 * time.Minute)
		for f.srv.QueryInt(t, "postgres", "SELECT count(*) FROM ("+waiting+") w", f.db) == 0 {
			if time.Now().After(deadline) {
				t.Fatal("migration 2 never started")
			}
			time.Sleep(20 * time.Millisecond)
		}
		return waiting
	}
}

// holdMigrateLock takes golang-migrate's advisory lock on the fixture's database, as a
// concurrent migration run would, until the test ends.
func (f *fixture) holdMigrateLock(t testing.TB) {
	t.Helper()
	id, err := database.GenerateAdvisoryLockId(f.db, "public", "schema_migrations")
	if err != nil {
		t.Fatal(err)
	}
	holder := f.srv.Connect(t, f.db)
	if _, err := holder.Exec(ctxFor(t), "SELECT pg_advisory_lock("+id+")"); err != nil {
		t.Fatal(err)
	}
}

func TestLockHeldByAnotherRunTimesOut(t *testing.T) {
	f := newFixture(t)
	f.write(t, three)
	// Create the version table first, so that the lock is the only thing in the way.
	f.srv.Exec(t, f.db, "CREATE TABLE schema_migrations (version bigint NOT NULL PRIMARY KEY, dirty boolean NOT NULL)")
	f.holdMigrateLock(t)
	u := newUpgrader(t, schema.Config{LockTimeout: 500 * time.Millisecond})
	_, err := u.Upgrade(ctxFor(t), f.target())
	if !errors.Is(err, schema.ErrLockTimeout) {
		t.Fatalf("error = %v", err)
	}
	t.Logf("lock timeout: %v", err)
	if f.tableExists(t, "users") {
		t.Fatal("a migration ran without the lock")
	}
	// Only the holder's session is left.
	deadline := time.Now().Add(time.Minute)
	for {
		n := f.srv.QueryInt(t, "postgres", "SELECT count(*) FROM pg_stat_activity WHERE datname = $1 AND application_name = $2", f.db, schema.DefaultApplicationName)
		if n == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d restage sessions left", n)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func TestCancelWhileWaitingForLock(t *testing.T) {
	f := newFixture(t)
	f.write(t, three)
	f.holdMigrateLock(t)
	ctx, cancel := context.WithCancel(ctxFor(t))
	defer cancel()
	done := make(chan error, 1)
	u := newUpgrader(t, schema.Config{LockTimeout: time.Hour})
	go func() {
		_, err := u.Upgrade(ctx, f.target())
		done <- err
	}()
	deadline := time.Now().Add(2 * time.Minute)
	for f.srv.QueryInt(t, "postgres", "SELECT count(*) FROM pg_stat_activity WHERE datname = $1 AND application_name = $2 AND wait_event_type = 'Lock'", f.db, schema.DefaultApplicationName) == 0 {
		if time.Now().After(deadline) {
			t.Fatal("Upgrade never waited for the lock")
		}
		time.Sleep(20 * time.Millisecond)
	}
	cancel()
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Fatalf("error = %v", err)
	}
	if f.tableExists(t, "users") {
		t.Fatal("a migration ran without the lock")
	}
}

func TestPasswordNeverInErrorsOrLogs(t *testing.T) {
	f := newFixture(t)
	f.write(t, three)
	f.write(t, map[string]string{"2_email.up.sql": "SELECT nosuchcolumn FROM users;"})
	const secret = "S3cr3t-pw-xyzzy"
	var logs bytes.Buffer
	u := newUpgrader(t, schema.Config{Logger: slog.New(slog.NewTextHandler(&lockedWriter{w: &logs}, &slog.HandlerOptions{Level: slog.LevelDebug}))})
	ctx := ctxFor(t)
	dsns := []string{
		// Trust authentication ignores the password: the run gets as far as the failing migration.
		fmt.Sprintf("postgres://%s:%s@%s:%d/%s?sslmode=disable", f.srv.User, secret, f.srv.Host, f.srv.Port, f.db),
		fmt.Sprintf("host=%s port=%d user=%s password=%s dbname=%s sslmode=disable", f.srv.Host, f.srv.Port, f.srv.User, secret, f.db),
		// Nothing listens on port 1.
		fmt.Sprintf("postgres://%s:%s@127.0.0.1:1/%s?sslmode=disable&connect_timeout=5", f.srv.User, secret, f.db),
		fmt.Sprintf("host=127.0.0.1 port=1 user=x password='%s' dbname=x connect_timeout=5", secret),
		// Unparseable.
		fmt.Sprintf("postgres://x:%s@127.0.0.1:notaport/db", secret),
		fmt.Sprintf("host=127.0.0.1 password=%s port=notaport", secret),
		// Every form internal/redact knows, where pgconn's own redaction of its parse errors
		// falls short (a quoted value with an escaped quote, spaces around '=', upper case).
		fmt.Sprintf(`host=127.0.0.1 port=notaport password='a\'b %s'`, secret),
		fmt.Sprintf("host=127.0.0.1 port=notaport password = %s", secret),
		fmt.Sprintf("host=127.0.0.1 port=notaport PASSWORD=%s", secret),
		fmt.Sprintf("postgres://:%s@127.0.0.1:notaport/db", secret),
		fmt.Sprintf("postgres://:%s@127.0.0.1:1/db?connect_timeout=5", secret),
		fmt.Sprintf(`host=127.0.0.1 port=1 user=x password='a\'b %s' dbname=x connect_timeout=5`, secret),
	}
	for i, dsn := range dsns {
		tg := schema.Target{DSN: dsn, Dir: f.dir}
		_, upErr := u.Upgrade(ctx, tg)
		_, stErr := u.Status(ctx, tg)
		forceErr := u.Force(ctx, tg, 99)
		forceErr2 := u.Force(ctx, schema.Target{DSN: dsn, Dir: f.dir}, 1)
		for _, err := range []error{upErr, stErr, forceErr, forceErr2} {
			if i >= 2 && err == nil {
				t.Errorf("dsn %d: no error", i)
			}
			t.Logf("dsn %d: %v", i, err)
			if err != nil && strings.Contains(err.Error(), secret) {
				t.Errorf("dsn %d: error holds the password: %v", i, err)
			}
		}
		if i < 2 && !errors.Is(upErr, schema.ErrMigrationFailed) && !errors.Is(upErr, schema.ErrDirty) {
			t.Errorf("dsn %d: Upgrade error = %v", i, upErr)
		}
	}
	if strings.Contains(logs.String(), secret) {
		t.Fatalf("logs hold the password:\n%s", logs.String())
	}
	f.waitNoConnections(t)
}

func TestNewRejectsBadConfig(t *testing.T) {
	if _, err := schema.New(schema.Config{LockTimeout: -time.Second}); err == nil {
		t.Fatal("negative LockTimeout accepted")
	}
	if _, err := schema.New(schema.Config{MigrationsTable: `a"b`}); err == nil {
		t.Fatal("quoted MigrationsTable accepted")
	}
}

func TestCustomMigrationsTable(t *testing.T) {
	f := newFixture(t)
	f.write(t, three)
	u := newUpgrader(t, schema.Config{MigrationsTable: "patch_level"})
	if _, err := u.Upgrade(ctxFor(t), f.target()); err != nil {
		t.Fatal(err)
	}
	if got := f.srv.QueryInt(t, f.db, "SELECT version FROM patch_level"); got != 3 {
		t.Fatalf("patch_level version = %d", got)
	}
	st, err := u.Status(ctxFor(t), f.target())
	if err != nil || st.Version != 3 {
		t.Fatalf("status %+v, %v", st, err)
	}
}

type lockedWriter struct {
	mu sync.Mutex
	w  *bytes.Buffer
}

func (l *lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}

// TestLockTakenBetweenMigrations: another run takes the lock after migration 1; the wait for
// migration 2 times out, and the database is clean at 1.
func TestLockTakenBetweenMigrations(t *testing.T) {
	f := newFixture(t)
	f.write(t, three)
	// The timeout is long enough that taking a free lock never hits it on a loaded machine.
	u := newUpgrader(t, schema.Config{LockTimeout: 3 * time.Second, OnApplied: func(a schema.Applied) {
		if a.Version == 1 {
			f.holdMigrateLock(t)
		}
	}})
	res, err := u.Upgrade(ctxFor(t), f.target())
	if !errors.Is(err, schema.ErrLockTimeout) || errors.Is(err, schema.ErrDirty) {
		t.Fatalf("error = %v", err)
	}
	t.Logf("lock timeout between migrations: %v", err)
	if !strings.Contains(err.Error(), "2_email.up.sql not started") || !strings.Contains(err.Error(), "clean at version 1") || !strings.Contains(err.Error(), "after 3s") {
		t.Fatalf("error %q does not name the migration that did not start", err)
	}
	if !equal(appliedVersions(res.Applied), []uint{1}) {
		t.Fatalf("result = %+v", res)
	}
	st, err := u.Status(ctxFor(t), f.target())
	if err != nil || st.Dirty || st.Version != 1 {
		t.Fatalf("status %+v, %v", st, err)
	}
}

// TestMigrationTimeoutLeavesDirtyAndSaysSo: a migration cancelled by MigrationTimeout is
// reported as a failure that left the database dirty at its version. (The slow migration is
// the only one, so that no other can exceed the short timeout on a loaded machine.)
func TestMigrationTimeoutLeavesDirtyAndSaysSo(t *testing.T) {
	f := newFixture(t)
	f.write(t, map[string]string{"1_slow.up.sql": "SELECT pg_sleep(600);\n"})
	u := newUpgrader(t, schema.Config{MigrationTimeout: 300 * time.Millisecond})
	res, err := u.Upgrade(ctxFor(t), f.target())
	if !errors.Is(err, schema.ErrMigrationFailed) || !errors.Is(err, schema.ErrDirty) {
		t.Fatalf("error = %v", err)
	}
	t.Logf("migration timeout: %v", err)
	for _, want := range []string{"1_slow.up.sql", "dirty at version 1", "MigrationTimeout 300ms", "Force(ctx, target, -1)", "TRUNCATE schema_migrations"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q lacks %q", err, want)
		}
	}
	if len(res.Applied) != 0 {
		t.Fatalf("result = %+v", res)
	}
	st, err := u.Status(ctxFor(t), f.target())
	if err != nil || !st.Dirty || st.Version != 1 {
		t.Fatalf("status %+v, %v", st, err)
	}
	f.waitNoConnections(t)
}

// TestTerminatedMigrationReportsDirty: the server ends the session during migration 2 (an
// operator's pg_terminate_backend, a restart); the error says the database is dirty at 2.
func TestTerminatedMigrationReportsDirty(t *testing.T) {
	f := newFixture(t)
	holder, blocked := f.blockMigration2(t, 4343)
	done := make(chan error, 1)
	u := newUpgrader(t, schema.Config{})
	go func() {
		_, err := u.Upgrade(ctxFor(t), f.target())
		done <- err
	}()
	waiting := blocked()
	f.srv.QueryInt(t, "postgres", "SELECT count(pg_terminate_backend(pid)) FROM ("+waiting+") w", f.db)
	err := <-done
	if !errors.Is(err, schema.ErrMigrationFailed) || !errors.Is(err, schema.ErrDirty) || !strings.Contains(err.Error(), "dirty at version 2") {
		t.Fatalf("error = %v", err)
	}
	t.Logf("terminated: %v", err)
	holder.Close(context.Background())
	f.waitNoConnections(t)
}

// TestFinalCheckCatchesMismatch: something else moves the version while Upgrade runs; the
// final "patch level matches code" check fails with ErrMismatch.
func TestFinalCheckCatchesMismatch(t *testing.T) {
	f := newFixture(t)
	f.write(t, three)
	u := newUpgrader(t, schema.Config{OnApplied: func(a schema.Applied) {
		if a.Version == 3 {
			f.srv.Exec(t, f.db, "UPDATE schema_migrations SET version = 2")
		}
	}})
	_, err := u.Upgrade(ctxFor(t), f.target())
	if !errors.Is(err, schema.ErrMismatch) || !strings.Contains(err.Error(), "is at 2") {
		t.Fatalf("error = %v", err)
	}
	t.Logf("mismatch: %v", err)
}

func TestFolderStatusAt(t *testing.T) {
	dir := t.TempDir()
	writeFiles(t, dir, map[string]string{"1_a.up.sql": "SELECT 1", "2_b.up.sql": "SELECT 1", "5_c.up.sql": "SELECT 1"})
	fo, err := schema.ReadFolder(dir)
	if err != nil {
		t.Fatal(err)
	}
	st, err := fo.StatusAt(1, true, false, "prod backup")
	if err != nil || !equal(versions(st.Pending), []uint{2, 5}) || st.Latest != 5 {
		t.Fatalf("at 1: %+v %v", st, err)
	}
	if st, err = fo.StatusAt(0, false, false, "prod backup"); err != nil || len(st.Pending) != 3 {
		t.Fatalf("no version: %+v %v", st, err)
	}
	if _, err = fo.StatusAt(2, true, true, "prod backup"); !errors.Is(err, schema.ErrDirty) || !strings.Contains(err.Error(), "prod backup is dirty at version 2") {
		t.Errorf("dirty: %v", err)
	}
	if _, err = fo.StatusAt(7, true, false, "prod backup"); !errors.Is(err, schema.ErrAhead) || !strings.Contains(err.Error(), "is at 7, code knows 5") {
		t.Errorf("ahead: %v", err)
	}
	if _, err = fo.StatusAt(3, true, false, "prod backup"); !errors.Is(err, schema.ErrAhead) {
		t.Errorf("unknown version: %v", err)
	}
}

// roleFixture makes a role that owns the fixture's database and nothing else (no
// superuser, no CREATEDB, no CREATEROLE), with a name that needs quoting.
func (f *fixture) roleFixture(t *testing.T) string {
	t.Helper()
	role := `Mig "Owner" ` + f.db
	id := pgx.Identifier{role}.Sanitize()
	f.srv.Exec(t, "postgres", "CREATE ROLE "+id+" NOLOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE")
	f.srv.Exec(t, "postgres", "ALTER DATABASE "+pgx.Identifier{f.db}.Sanitize()+" OWNER TO "+id)
	t.Cleanup(func() {
		f.srv.Exec(t, "postgres", "DROP DATABASE IF EXISTS "+pgx.Identifier{f.db}.Sanitize()+" WITH (FORCE)")
		f.srv.Exec(t, "postgres", "DROP ROLE IF EXISTS "+id)
	})
	return role
}

// owner returns the owner of a table in the fixture's database.
func (f *fixture) owner(t *testing.T, table string) string {
	t.Helper()
	conn := f.srv.Connect(t, f.db)
	var o string
	if err := conn.QueryRow(ctxFor(t), "SELECT tableowner FROM pg_tables WHERE schemaname = 'public' AND tablename = $1", table).Scan(&o); err != nil {
		t.Fatalf("owner of %s: %v", table, err)
	}
	return o
}

// TestMigrationsRunAsRole: with Target.Role, a migration cannot drop another environment's
// database nor alter the superuser (permission denied, the other database still there), a
// normal one works and what it creates (and the version table) belongs to the role, and a
// migration that switches roles does not carry that into the next one.
func TestMigrationsRunAsRole(t *testing.T) {
	f := newFixture(t)
	other := f.srv.Database(t) // another environment's database on the same server
	role := f.roleFixture(t)
	t.Cleanup(func() { f.srv.Exec(t, "postgres", "ALTER ROLE postgres RESET application_name") })
	ctx := ctxFor(t)
	u := newUpgrader(t, schema.Config{})
	tg := f.target()
	tg.Role = role
	denied := func(what string, err error) {
		t.Helper()
		t.Logf("%s: %v", what, err)
		var pe *pgconn.PgError
		if !errors.Is(err, schema.ErrMigrationFailed) || !errors.As(err, &pe) || pe.Code != "42501" {
			t.Fatalf("%s: want permission denied (42501), got %v", what, err)
		}
	}

	f.write(t, map[string]string{
		"1_users.up.sql": three["1_users.up.sql"],
		"2_drop.up.sql":  "DROP DATABASE " + pgx.Identifier{other}.Sanitize() + ";\n",
	})
	_, err := u.Upgrade(ctx, tg)
	denied("DROP DATABASE", err)
	if n := f.srv.QueryInt(t, "postgres", "SELECT count(*) FROM pg_database WHERE datname = $1", other); n != 1 {
		t.Fatalf("the other environment's database %s is gone", other)
	}
	if got := f.owner(t, "users"); got != role {
		t.Fatalf("users is owned by %q, want %q", got, role)
	}
	if got := f.owner(t, "schema_migrations"); got != role {
		t.Fatalf("the version table is owned by %q, want %q", got, role)
	}

	if err := u.Force(ctx, tg, 1); err != nil {
		t.Fatal(err)
	}
	f.write(t, map[string]string{"2_drop.up.sql": "ALTER ROLE postgres SET application_name = 'pwned';\n"})
	_, err = u.Upgrade(ctx, tg)
	denied("ALTER ROLE postgres", err)
	if n := f.srv.QueryInt(t, "postgres", "SELECT count(*) FROM pg_db_role_setting WHERE setrole = 'postgres'::regrole"); n != 0 {
		t.Fatal("the migration altered the superuser")
	}

	// Normal migrations work; RESET ROLE stays with the role (it is the session's default),
	// and a migration that leaves another role set does not pass it on to the next one.
	if err := u.Force(ctx, tg, 1); err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(filepath.Join(f.dir, "2_drop.up.sql")); err != nil {
		t.Fatal(err)
	}
	f.write(t, map[string]string{
		"2_a.up.sql": "RESET ROLE;\nCREATE TABLE a (i int);\n",
		"3_b.up.sql": "SET ROLE NONE;\n",
		"4_c.up.sql": "CREATE TABLE c (i int);\n",
	})
	res, err := u.Upgrade(ctx, tg)
	if err != nil || res.To != 4 {
		t.Fatalf("Upgrade as %s: %+v, %v", role, res, err)
	}
	for _, table := range []string{"a", "c"} {
		if got := f.owner(t, table); got != role {
			t.Errorf("%s is owned by %q, want %q", table, got, role)
		}
	}

	// Status and Plan connect as the role too.
	st, err := u.Status(ctx, tg)
	if err != nil || st.Version != 4 || st.Dirty {
		t.Fatalf("Status as %s: %+v, %v", role, st, err)
	}
	bad := tg
	bad.Role = "restage_no_such_role"
	if _, err := u.Status(ctx, bad); err == nil || !strings.Contains(err.Error(), "restage_no_such_role") {
		t.Fatalf("Status with a role that does not exist: %v", err)
	}
	if _, err := u.Plan(ctx, bad); err == nil || !strings.Contains(err.Error(), "restage_no_such_role") {
		t.Fatalf("Plan with a role that does not exist: %v", err)
	}
}

// A migration on a live database meets a lock held by a long reader (a report, a
// session of the service's own user on another host): with LockWait it fails at once,
// rolled back, and the queries queued behind its ALTER TABLE go on, where it waited,
// and held every query on the table behind it, until the reader ended.
func TestLockWaitBoundsAMigrationBehindALock(t *testing.T) {
	f := newFixture(t)
	one := t.TempDir()
	writeFiles(t, one, map[string]string{"1_users.up.sql": three["1_users.up.sql"]})
	u := newUpgrader(t, schema.Config{})
	if _, err := u.Upgrade(ctxFor(t), schema.Target{DSN: f.srv.DSN(f.db), Dir: one}); err != nil {
		t.Fatal(err)
	}
	f.write(t, map[string]string{"1_users.up.sql": three["1_users.up.sql"], "2_email.up.sql": three["2_email.up.sql"]})
	reader := f.srv.Connect(t, f.db)
	ctx := ctxFor(t)
	tx, err := reader.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = tx.Rollback(context.Background()) }()
	if _, err := tx.Exec(ctx, "SELECT count(*) FROM users"); err != nil {
		t.Fatal(err)
	}
	tgt := f.target()
	tgt.LockWait = 300 * time.Millisecond
	uctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	start := time.Now()
	_, err = u.Upgrade(uctx, tgt)
	if uctx.Err() != nil || !errors.Is(err, schema.ErrMigrationFailed) || !strings.Contains(err.Error(), "lock timeout") {
		t.Fatalf("a migration behind a held lock: %v after %v; want it to fail on its lock wait", err, time.Since(start))
	}
	if n := f.srv.QueryInt(t, f.db, "SELECT count(*) FROM information_schema.columns WHERE table_name = 'users' AND column_name = 'email'"); n != 0 {
		t.Error("the failed migration's ALTER TABLE stayed")
	}
	tgt.LockWait = -time.Second
	if _, err := u.Status(ctx, tgt); err == nil {
		t.Error("a negative LockWait was accepted")
	}
}
