package physical_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/restage/restage/dbrestore/physical"
	"github.com/restage/restage/dbrestore/physical/physicaltest"
	"github.com/restage/restage/internal/testutil"
	"github.com/restage/restage/progress"
)

// world is a production cluster with a backup and the staging clusters' folder.
type world struct {
	prod *physicaltest.Production
	src  *physical.PgBackRest
	cl   *physical.Clusters
	dir  string
}

func newWorld(t *testing.T, backup bool) *world {
	t.Helper()
	bin := physicaltest.Require(t)
	ctx := context.Background()
	prod := physicaltest.Start(t, physicaltest.Options{})
	for _, sql := range []string{
		"CREATE DATABASE shop", "CREATE DATABASE billing", "CREATE DATABASE reports",
		"SELECT pg_create_physical_replication_slot('standby1')",
	} {
		if err := prod.Exec(ctx, "postgres", sql); err != nil {
			t.Fatal(err)
		}
	}
	for _, sql := range []string{
		"CREATE TABLE item (id int PRIMARY KEY, name text)",
		"INSERT INTO item SELECT g, 'item ' || g FROM generate_series(1, 5000) g",
		"CREATE PUBLICATION pub FOR TABLE item",
		"CREATE SUBSCRIPTION sub CONNECTION 'host=127.0.0.1 port=1 dbname=x connect_timeout=1' PUBLICATION pub WITH (connect = false)",
	} {
		if err := prod.Exec(ctx, "shop", sql); err != nil {
			t.Fatal(err)
		}
	}
	if backup {
		if err := prod.Backup(ctx, "full"); err != nil {
			t.Fatal(err)
		}
	}
	return worldOf(t, bin, prod)
}

// worldOf is the world of production prod: its pgBackRest source and fresh staging
// clusters, stopped when the test ends.
func worldOf(t *testing.T, bin string, prod *physicaltest.Production) *world {
	t.Helper()
	src, err := physical.NewPgBackRest(physical.PgBackRestConfig{Stanza: physicaltest.Stanza, Config: prod.Config})
	if err != nil {
		t.Fatal(err)
	}
	cl, dir := newClusters(t, bin, map[string]string{"shared_buffers": "32MB", "fsync": "off"})
	t.Cleanup(func() {
		for _, n := range []string{"a", "b"} {
			_ = cl.Stop(context.Background(), &physical.Slot{Name: n, Dir: filepath.Join(dir, n), Data: filepath.Join(dir, n, "data")})
		}
	})
	return &world{prod: prod, src: src, cl: cl, dir: dir}
}

// newClusters returns the staging clusters of environment "staging" on free ports, in
// a fresh folder dir whose parent other users may pass through (the clusters may run
// as another user); the parent is removed when the test ends.
func newClusters(t *testing.T, bin string, settings map[string]string) (cl *physical.Clusters, dir string) {
	t.Helper()
	parent, err := os.MkdirTemp("", "restage-cl-")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(parent, 0o711); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(parent) })
	port, err := testutil.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	side, err := testutil.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	dir = filepath.Join(parent, "pg")
	cl, err = physical.NewClusters(physical.ClustersConfig{Environment: "staging", Dir: dir, Port: port, SidePort: side,
		BinDir: bin, Settings: settings, Timeout: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	return cl, dir
}

func (w *world) count(t *testing.T, s *physical.Slot, onLive bool, db, sql string) int64 {
	t.Helper()
	return count(t, w.cl, s, onLive, db, sql)
}

// count runs sql, a query of one number, in database db of slot s (on the live port
// or the side port).
func count(t *testing.T, cl *physical.Clusters, s *physical.Slot, onLive bool, db, sql string) int64 {
	t.Helper()
	ctx := context.Background()
	conn, err := cl.Conn(ctx, s, db, onLive)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	var n int64
	if err := conn.QueryRow(ctx, sql).Scan(&n); err != nil {
		t.Fatalf("%s: %v", sql, err)
	}
	return n
}

func TestLatest(t *testing.T) {
	w := newWorld(t, true)
	set, err := w.src.Latest(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	id, err := w.prod.SystemIdentifier(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if set.SystemIdentifier != id || set.Type != "full" || set.Size == 0 || time.Since(set.Stopped) > time.Hour {
		t.Fatalf("set %+v, production's system_identifier %d", set, id)
	}
	if o := w.src.Origin(); o.Port != w.prod.Port || o.Dir != w.prod.Data {
		t.Fatalf("origin %+v", o)
	}
}

func TestLatestWithoutBackup(t *testing.T) {
	w := newWorld(t, false)
	if _, err := w.src.Latest(context.Background()); !errors.Is(err, physical.ErrNoBackup) {
		t.Fatalf("want ErrNoBackup, got %v", err)
	}
	src, err := physical.NewPgBackRest(physical.PgBackRestConfig{Stanza: "nosuch", Config: w.prod.Config})
	if err != nil {
		t.Fatal(err)
	}
	// pgBackRest reports a stanza it has no folder for as an error of the repository.
	_, err = src.Latest(context.Background())
	if !errors.Is(err, physical.ErrCorrupt) || !strings.Contains(err.Error(), "stanza nosuch") || !strings.Contains(err.Error(), "missing stanza path") {
		t.Fatalf("want ErrCorrupt naming stanza nosuch and its missing path, got %v", err)
	}
}

// TestRebuild restores, neutralizes and switches twice (the second time with --delta),
// and proves production's repository untouched throughout.
func TestRebuild(t *testing.T) {
	w := newWorld(t, true)
	ctx := context.Background()
	info0, err := w.prod.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	repo0, err := w.prod.Listing()
	if err != nil {
		t.Fatal(err)
	}
	if len(repo0) == 0 {
		t.Fatal("empty repository")
	}
	if err := w.cl.CheckOrigin(w.src.Origin()); err != nil {
		t.Fatal(err)
	}
	did, err := w.cl.Repair(ctx)
	if err != nil || len(did) > 0 {
		t.Fatalf("repair of nothing: %v %v", did, err)
	}
	set, err := w.src.Latest(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var reported, total atomic.Int64
	pctx := progress.With(ctx, func(done, tot int64) { reported.Store(done); total.Store(tot) })
	slot, err := w.cl.Restore(pctx, w.src, set, true)
	if err != nil {
		t.Fatal(err)
	}
	if slot.Name != "a" {
		t.Fatalf("first restore into %s", slot)
	}
	if reported.Load() == 0 || total.Load() != set.Size {
		t.Errorf("progress: %d of %d bytes reported, want some of %d", reported.Load(), total.Load(), set.Size)
	}
	// A copy of a standby: restage starts it as a primary of its own all the same.
	if err := os.WriteFile(filepath.Join(slot.Data, "standby.signal"), nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := w.cl.StartSide(ctx, slot); err != nil {
		t.Fatal(err)
	}
	detail, err := w.cl.Neutralize(ctx, slot, physical.NeutralizeOptions{From: "shop", To: "shop_staging", Keep: []string{"reports"}})
	if err != nil {
		t.Fatal(err)
	}
	t.Log(detail)
	if n := w.count(t, slot, false, "shop_staging", "SELECT count(*) FROM item"); n != 5000 {
		t.Fatalf("%d items", n)
	}
	if n := w.count(t, slot, false, "postgres", "SELECT count(*) FROM pg_database WHERE datname IN ('billing', 'shop')"); n != 0 {
		t.Fatal("billing or shop still there")
	}
	if n := w.count(t, slot, false, "postgres", "SELECT count(*) FROM pg_database WHERE datname = 'reports'"); n != 1 {
		t.Fatal("reports (kept) is gone")
	}
	if n := w.count(t, slot, false, "postgres", "SELECT count(*) FROM pg_subscription"); n != 0 {
		t.Fatal("subscription left")
	}
	if n := w.count(t, slot, false, "postgres", "SELECT count(*) FROM pg_replication_slots"); n != 0 {
		t.Fatal("replication slot left")
	}
	// The restored cluster writes WAL and switches segments: none may reach production's
	// repository.
	for _, sql := range []string{"CREATE TABLE x AS SELECT generate_series(1, 100000) g", "SELECT pg_switch_wal()", "CHECKPOINT"} {
		if err := w.cl.Exec(ctx, slot, "shop_staging", sql); err != nil {
			t.Fatal(err)
		}
	}
	if n := w.count(t, slot, false, "postgres", "SELECT count(*) FROM pg_stat_archiver WHERE archived_count > 0 OR failed_count > 0"); n != 0 {
		t.Fatal("the restored cluster archived")
	}
	old, err := w.cl.Switch(ctx, slot)
	if err != nil || old != nil {
		t.Fatalf("switch: %v %v", old, err)
	}
	if n := w.count(t, slot, true, "shop_staging", "SELECT count(*) FROM item"); n != 5000 {
		t.Fatalf("live: %d items", n)
	}

	// Production changes; a new backup; the second rebuild restores into b with --delta.
	if err := w.prod.Exec(ctx, "shop", "UPDATE item SET name = 'changed' WHERE id <= 250"); err != nil {
		t.Fatal(err)
	}
	if err := w.prod.Backup(ctx, "incr"); err != nil {
		t.Fatal(err)
	}
	info1, _ := w.prod.Info(ctx)
	repo1, _ := w.prod.Listing()
	if w.cl.Delta() {
		t.Fatal("idle slot b is empty: no delta restore possible")
	}
	set2, err := w.src.Latest(ctx)
	if err != nil || set2.Label == set.Label {
		t.Fatalf("latest %v %v", set2, err)
	}
	slot2, err := w.cl.Restore(ctx, w.src, set2, true)
	if err != nil || slot2.Name != "b" {
		t.Fatalf("second restore: %v %v", slot2, err)
	}
	if err := w.cl.StartSide(ctx, slot2); err != nil {
		t.Fatal(err)
	}
	if _, err := w.cl.Neutralize(ctx, slot2, physical.NeutralizeOptions{From: "shop", To: "shop_staging"}); err != nil {
		t.Fatal(err)
	}
	// A database of the live cluster's own (an experimental environment's) is carried over.
	if err := w.cl.Exec(ctx, slot, "postgres", "SELECT 1"); err == nil || !strings.Contains(err.Error(), "connect: no such file or directory") {
		t.Fatalf("the live slot on the side port: %v; want no server there", err)
	}
	live, err := w.cl.Conn(ctx, slot, "postgres", true)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := live.Exec(ctx, "CREATE DATABASE exp"); err != nil {
		t.Fatal(err)
	}
	live.Close(ctx)
	exp, err := w.cl.Conn(ctx, slot, "exp", true)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := exp.Exec(ctx, "CREATE TABLE note AS SELECT g AS id FROM generate_series(1, 42) g"); err != nil {
		t.Fatal(err)
	}
	exp.Close(ctx)
	if ok, err := w.cl.Carry(ctx, slot2, "exp"); !ok || err != nil {
		t.Fatalf("carry exp: %v %v", ok, err)
	}
	if ok, err := w.cl.Carry(ctx, slot2, "nosuch"); ok || err != nil {
		t.Fatalf("carry nosuch: %v %v", ok, err)
	}
	old, err = w.cl.Switch(ctx, slot2)
	if err != nil || old == nil || old.Name != "a" {
		t.Fatalf("switch: %v %v", old, err)
	}
	if n := w.count(t, slot2, true, "shop_staging", "SELECT count(*) FROM item WHERE name = 'changed'"); n != 250 {
		t.Fatalf("live: %d changed items", n)
	}
	if up, _ := w.cl.Running(ctx, old); up {
		t.Fatal("the old slot still runs")
	}
	if n := w.count(t, slot2, true, "exp", "SELECT count(*) FROM note"); n != 42 {
		t.Fatalf("carried database: %d notes", n)
	}
	// Third rebuild: a is idle and holds the first copy: --delta.
	if !w.cl.Delta() {
		t.Fatal("slot a should allow a delta restore")
	}
	start := time.Now()
	slot3, err := w.cl.Restore(ctx, w.src, set2, true)
	if err != nil || slot3.Name != "a" {
		t.Fatalf("third restore: %v %v", slot3, err)
	}
	t.Logf("delta restore in %s", time.Since(start))
	// Rollback: SwitchBack brings b back.
	if err := w.cl.StartSide(ctx, slot3); err != nil {
		t.Fatal(err)
	}
	if _, err := w.cl.Switch(ctx, slot3); err != nil {
		t.Fatal(err)
	}
	if err := w.cl.SwitchBack(ctx, slot3, slot2); err != nil {
		t.Fatal(err)
	}
	if live, _ := w.cl.Live(); live == nil || live.Name != "b" {
		t.Fatalf("live after switch back: %v", live)
	}
	if n := w.count(t, slot2, true, "shop_staging", "SELECT count(*) FROM item"); n != 5000 {
		t.Fatalf("live after switch back: %d items", n)
	}

	// Production's repository: only production's own backup changed it.
	info2, _ := w.prod.Info(ctx)
	repo2, _ := w.prod.Listing()
	if info2 != info1 || !slices.Equal(repo1, repo2) {
		t.Fatalf("the repository changed during the restores:\n%v\n%v", repo1, repo2)
	}
	if info0 == info1 {
		t.Fatal("the incremental backup did not show")
	}
	arch0 := filterArchive(repo0, set.Version)
	arch2, _ := w.prod.ArchiveListing()
	if len(arch0) == 0 {
		t.Fatal("no WAL archived by production")
	}
	for _, f := range arch0 {
		if !slices.Contains(arch2, f) {
			t.Fatalf("archive file %s changed", f)
		}
	}
}

// filterArchive returns the WAL files of the repository listing l archived by a
// cluster of PostgreSQL major version (archive/<stanza>/<version>-<id>/...).
func filterArchive(l []string, version string) []string {
	var out []string
	for _, s := range l {
		if strings.HasPrefix(s, "archive/") && version != "" && strings.Contains(s, "/"+version+"-") && !strings.HasSuffix(s, "/") {
			out = append(out, s)
		}
	}
	return out
}

// Production's server logs (logging_collector, log_directory inside the data
// directory) quote rows in their errors and statements with their values; pgBackRest
// copies them with the data directory, and no masking reaches them. A restore removes
// them, from the folder the restored configuration names and from the default one,
// before the slot's first start. (The tables' files hold production's rows until the
// masking, which runs on the side cluster.)
func TestRestoreRemovesProductionServerLogs(t *testing.T) {
	bin := physicaltest.Require(t)
	ctx := context.Background()
	prod := physicaltest.Start(t, physicaltest.Options{Settings: []string{
		"logging_collector = on", "log_directory = 'prodlogs'", "log_statement = 'all'"}})
	for _, sql := range []string{"CREATE TABLE person (email text UNIQUE)", "INSERT INTO person VALUES ('alice@prod.example.org')"} {
		if err := prod.Exec(ctx, "postgres", sql); err != nil {
			t.Fatal(err)
		}
	}
	// A folder of the default name, from before log_directory was changed.
	if err := os.Mkdir(filepath.Join(prod.Data, "log"), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(prod.Data, "log", "postgresql-old.log"), []byte("DETAIL: Key (email)=(bob@prod.example.org) already exists.\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	chownPostgres(t, filepath.Join(prod.Data, "log"))
	chownPostgres(t, filepath.Join(prod.Data, "log", "postgresql-old.log"))
	w := worldOf(t, bin, prod)
	slot := w.sideOfNewBackup(t)
	err := filepath.WalkDir(slot.Dir, func(p string, d os.DirEntry, err error) error {
		if err != nil || !d.Type().IsRegular() || strings.HasPrefix(p, filepath.Join(slot.Data, "base")+"/") {
			return err
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		if strings.Contains(string(b), "@prod.example.org") {
			t.Errorf("a production value is in %s", p)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if n := count(t, w.cl, slot, false, "postgres", "SELECT count(*) FROM person WHERE email = 'alice@prod.example.org'"); n != 1 {
		t.Fatalf("the restored table has %d rows, want 1", n)
	}
}

// The post-restore SQL runs on the restored cluster: PostgreSQL's errors quote the
// values a statement rejected, production's, and the error goes into the report. They
// are withheld, as in a logical restore's post-restore SQL.
func TestExecFilesWithholdsRowValues(t *testing.T) {
	w := newWorld(t, true)
	_, slot := w.restored(t)
	ctx := context.Background()
	if err := w.cl.StartSide(ctx, slot); err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(t.TempDir(), "post.sql")
	if err := os.WriteFile(file, []byte("SELECT name::int FROM item WHERE id = 7"), 0o600); err != nil {
		t.Fatal(err)
	}
	_, err := w.cl.ExecFiles(ctx, slot, "shop", "", []string{file})
	if err == nil || !strings.Contains(err.Error(), "invalid input syntax for type integer") || strings.Contains(err.Error(), "item 7") {
		t.Fatalf("err = %v, want the error without the row's value", err)
	}

	// Production's trigger and a DO block print row values as notices: only their
	// count is kept, in the result and in the error of a file that fails after them.
	loud := filepath.Join(t.TempDir(), "loud.sql")
	if err := os.WriteFile(loud, []byte(`
CREATE FUNCTION tell() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN RAISE NOTICE 'was %', OLD.name USING DETAIL = OLD.name; RETURN NEW; END $$;
CREATE TRIGGER tell BEFORE UPDATE ON item FOR EACH ROW EXECUTE FUNCTION tell();
UPDATE item SET name = 'x' WHERE id IN (7, 8);
DO $$ BEGIN RAISE WARNING '%', (SELECT name FROM item WHERE id = 9); END $$;`), 0o600); err != nil {
		t.Fatal(err)
	}
	res, err := w.cl.ExecFiles(ctx, slot, "shop", "", []string{loud})
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{"loud.sql: 3 server notices (NOTICE 2, WARNING 1), their text withheld"}; !slices.Equal(res.Notices, want) ||
		!slices.Equal(res.Written, []string{"public.item"}) {
		t.Errorf("result %+v, want notices %q and the table written", res, want)
	}
	_, err = w.cl.ExecFiles(ctx, slot, "shop", "", []string{file, loud})
	if err == nil || strings.Contains(err.Error(), "item ") || !strings.Contains(err.Error(), "post.sql") {
		t.Errorf("err = %v, want post.sql's error without the rows' values", err)
	}
	if err := os.WriteFile(file, []byte("DO $$ BEGIN RAISE NOTICE '%', (SELECT name FROM item WHERE id = 10); END $$; SELECT 1/0"), 0o600); err != nil {
		t.Fatal(err)
	}
	_, err = w.cl.ExecFiles(ctx, slot, "shop", "", []string{file})
	if err == nil || strings.Contains(err.Error(), "item 10") || !strings.Contains(err.Error(), "post.sql: 1 server notice (NOTICE 1), their text withheld") {
		t.Errorf("err = %v, want the count of its notice without its text", err)
	}
}

// A cluster restage starts runs for weeks: it gets no descriptor restage holds without
// close-on-exec (one restage inherited from its parent, a flock(1) wrapper's lock).
func TestClusterGetsNoInheritedDescriptor(t *testing.T) {
	w := newWorld(t, true)
	_, slot := w.restored(t)
	ctx := context.Background()
	fd, held := testutil.RawDescriptor(t)
	if err := w.cl.StartSide(ctx, slot); err != nil {
		t.Fatal(err)
	}
	pid := count(t, w.cl, slot, false, "postgres", "SELECT pg_backend_pid()") // forked from the postmaster
	if got, err := os.Readlink(fmt.Sprintf("/proc/%d/fd/%d", pid, fd)); err == nil && got == held {
		t.Errorf("the cluster's server (pid %d) holds descriptor %d: %s", pid, fd, got)
	}
}
