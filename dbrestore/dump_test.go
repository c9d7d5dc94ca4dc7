package dbrestore

import (
	"context"
	"encoding/json"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

func TestDumpWritesBackupAndManifest(t *testing.T) {
	prod, _, db := seeded(t, 500)
	dir := t.TempDir()
	before := time.Now().UTC()
	b := dumpOf(t, prod, db, DumpOptions{Dir: dir, Counts: true})

	m := b.Manifest
	if m.Database != db || m.Format != FormatCustom || m.Dump != filepath.Base(b.Path) {
		t.Fatalf("manifest %+v", m)
	}
	if m.SystemIdentifier != prod.SystemIdentifier(t) {
		t.Errorf("system_identifier %d, want production's %d", m.SystemIdentifier, prod.SystemIdentifier(t))
	}
	if m.Created.Before(before.Add(-time.Second)) || m.Created.After(time.Now().Add(time.Second)) {
		t.Errorf("created %s, dump started %s", m.Created, before)
	}
	if m.ServerVersion == "" || m.PgDumpVersion == "" || strings.Contains(m.PgDumpVersion, "pg_dump (") {
		t.Errorf("versions %q / %q", m.ServerVersion, m.PgDumpVersion)
	}
	want := map[string]int64{"public.users": 500, "public.sessions": 250, `Odd "schema".we ird 'table'`: 7}
	if len(m.RowCounts) != len(want) {
		t.Errorf("row counts %v, want %v", m.RowCounts, want)
	}
	for k, v := range want {
		if m.RowCounts[k] != v {
			t.Errorf("row count of %s = %d, want %d", k, m.RowCounts[k], v)
		}
	}
	st, err := os.Stat(b.Path)
	if err != nil || st.Size() != m.Size {
		t.Fatalf("dump %v size %d, manifest %d", err, st.Size(), m.Size)
	}
	// The manifest on disk is the one returned.
	data, err := os.ReadFile(b.ManifestPath)
	if err != nil {
		t.Fatal(err)
	}
	var onDisk Manifest
	if err := json.Unmarshal(data, &onDisk); err != nil {
		t.Fatal(err)
	}
	if onDisk.SHA256 != m.SHA256 || onDisk.SystemIdentifier != m.SystemIdentifier || !strings.Contains(string(data), `"system_identifier": "`) {
		t.Errorf("manifest on disk differs:\n%s", data)
	}
	// Only the two files, no temporary leftovers.
	entries, _ := os.ReadDir(dir)
	if len(entries) != 2 {
		t.Errorf("folder holds %d entries, want dump + manifest", len(entries))
	}
	cat, err := NewCatalog(dir, Config{})
	if err != nil {
		t.Fatal(err)
	}
	got, err := cat.Latest(db)
	if err != nil || got.Path != b.Path {
		t.Fatalf("Latest = %v, %v", got, err)
	}
	if err := cat.Verify(testCtx(t), got); err != nil {
		t.Fatalf("Verify: %v", err)
	}
}

func TestDumpDirectoryFormatRestores(t *testing.T) {
	prod, staging, db := seeded(t, 300)
	b := dumpOf(t, prod, db, DumpOptions{Jobs: 2, Counts: true})
	if b.Manifest.Format != FormatDirectory {
		t.Fatalf("format %s with -j 2", b.Manifest.Format)
	}
	if st, err := os.Stat(b.Path); err != nil || !st.IsDir() {
		t.Fatalf("dump %s: %v", b.Path, err)
	}
	cat, _ := NewCatalog(filepath.Dir(b.Path), Config{})
	if err := cat.Verify(testCtx(t), b); err != nil {
		t.Fatal(err)
	}
	target := dbName(t, staging, "dirfmt")
	res, err := newServer(t, staging, ServerConfig{}).Restore(testCtx(t), b, RestoreOptions{Target: target})
	if err != nil {
		t.Fatal(err)
	}
	if res.RowCounts["public.users"] != 300 {
		t.Errorf("row counts %v", res.RowCounts)
	}
	// A changed file in the folder is a checksum mismatch.
	files, _ := filepath.Glob(filepath.Join(b.Path, "*.dat*"))
	if len(files) == 0 {
		t.Fatal("no data files in the directory dump")
	}
	if err := os.WriteFile(files[0], []byte("garbage"), 0o644); err != nil {
		t.Fatal(err)
	}
	b2, _ := cat.Latest(db)
	if err := cat.Verify(testCtx(t), b2); !errors.Is(err, ErrChecksum) {
		t.Fatalf("Verify of a changed directory dump: %v, want ErrChecksum", err)
	}
}

func TestDumpRetentionKeepsNewest(t *testing.T) {
	prod, _, db := seeded(t, 10)
	other := prod.Database(t)
	dir := t.TempDir()
	otherBackup := dumpOf(t, prod, other, DumpOptions{Dir: dir})
	// A stale temporary file of a crashed dump of db, and a fresh one (perhaps running).
	stale := filepath.Join(dir, tmpPrefix+backupBase(db, time.Now().Add(-48*time.Hour))+dumpSuffix)
	fresh := filepath.Join(dir, tmpPrefix+backupBase(db, time.Now())+dumpSuffix)
	for _, p := range []string{stale, fresh} {
		if err := os.WriteFile(p, []byte("partial"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	old := time.Now().Add(-48 * time.Hour)
	if err := os.Chtimes(stale, old, old); err != nil {
		t.Fatal(err)
	}
	var made []*Backup
	for range 3 {
		made = append(made, dumpOf(t, prod, db, DumpOptions{Dir: dir, Keep: 2}))
	}
	cat, _ := NewCatalog(dir, Config{})
	list, err := cat.List(db)
	if err != nil {
		t.Fatal(err)
	}
	if len(list) != 2 || list[0].Path != made[2].Path || list[1].Path != made[1].Path {
		t.Fatalf("kept %v", names(list))
	}
	for _, p := range []string{made[0].Path, made[0].ManifestPath, stale} {
		if _, err := os.Stat(p); !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("%s not removed: %v", filepath.Base(p), err)
		}
	}
	for _, p := range []string{fresh, otherBackup.Path, otherBackup.ManifestPath} {
		if _, err := os.Stat(p); err != nil {
			t.Errorf("%s removed: %v", filepath.Base(p), err)
		}
	}
}

func names(bs []*Backup) []string {
	var out []string
	for _, b := range bs {
		out = append(out, b.Name())
	}
	return out
}

// The row counts describe exactly the dumped data, even with writes during the dump: a
// table lock makes pg_dump wait, rows are added meanwhile, and neither the dump nor the
// counts see them.
func TestDumpCountsInTheDumpSnapshot(t *testing.T) {
	prod, staging, db := seeded(t, 100)
	prod.Exec(t, db, "CREATE TABLE aaa_blocker (id int)")
	ctx := testCtx(t)
	locker := prod.Connect(t, db)
	tx, err := locker.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tx.Exec(ctx, "LOCK TABLE aaa_blocker IN ACCESS EXCLUSIVE MODE"); err != nil {
		t.Fatal(err)
	}
	type result struct {
		b   *Backup
		err error
	}
	done := make(chan result, 1)
	go func() {
		b, err := Dump(ctx, Config{}, DumpOptions{DSN: prod.DSN(db), Dir: t.TempDir(), Counts: true})
		done <- result{b, err}
	}()
	// Wait until pg_dump waits for the lock (it has imported the snapshot by then).
	watcher := prod.Connect(t, db)
	for {
		var waiting int
		err := watcher.QueryRow(ctx, `SELECT count(*) FROM pg_locks l JOIN pg_stat_activity a USING (pid)
			WHERE NOT l.granted AND l.relation = 'aaa_blocker'::regclass AND a.application_name = 'pg_dump'`).Scan(&waiting)
		if err != nil {
			t.Fatal(err)
		}
		if waiting > 0 {
			break
		}
		select {
		case r := <-done:
			t.Fatalf("dump finished before waiting for the lock: %v", r.err)
		case <-time.After(50 * time.Millisecond):
		}
	}
	if _, err := tx.Exec(ctx, "INSERT INTO users (email) SELECT 'late' || g || '@example.org' FROM generate_series(1, 40) g"); err != nil {
		t.Fatal(err)
	}
	if err := tx.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	r := <-done
	if r.err != nil {
		t.Fatal(r.err)
	}
	if n := prod.QueryInt(t, db, "SELECT count(*) FROM users"); n != 140 {
		t.Fatalf("users has %d rows now, want 140", n)
	}
	if got := r.b.Manifest.RowCounts["public.users"]; got != 100 {
		t.Fatalf("manifest counts %d users, want the snapshot's 100", got)
	}
	target := dbName(t, staging, "snap")
	res, err := newServer(t, staging, ServerConfig{}).Restore(ctx, r.b, RestoreOptions{Target: target})
	if err != nil {
		t.Fatal(err)
	}
	if res.RowCounts["public.users"] != 100 {
		t.Fatalf("restored %v", res.RowCounts)
	}
}

func TestDumpBadInput(t *testing.T) {
	prod, _ := servers(t)
	db := prod.Database(t)
	ctx := testCtx(t)
	for name, opts := range map[string]DumpOptions{
		"no dsn":            {Dir: t.TempDir()},
		"no dir":            {DSN: prod.DSN(db)},
		"missing dir":       {DSN: prod.DSN(db), Dir: filepath.Join(t.TempDir(), "nope")},
		"custom with jobs":  {DSN: prod.DSN(db), Dir: t.TempDir(), Format: FormatCustom, Jobs: 2},
		"sets file in args": {DSN: prod.DSN(db), Dir: t.TempDir(), Args: []string{"--file=/tmp/x"}},
		"unknown format":    {DSN: prod.DSN(db), Dir: t.TempDir(), Format: "tar"},
	} {
		if _, err := Dump(ctx, Config{}, opts); err == nil {
			t.Errorf("%s: no error", name)
		}
	}
	// A database that does not exist: nothing is left behind.
	dir := t.TempDir()
	_, err := Dump(ctx, Config{}, DumpOptions{DSN: prod.DSN("no_such_db"), Dir: dir})
	requireErrContains(t, err, "no_such_db")
	if entries, _ := os.ReadDir(dir); len(entries) != 0 {
		t.Errorf("left %d entries", len(entries))
	}
	// pg_dump failing half-way (a table it may not read): its message, no leftovers.
	prod.Exec(t, db, "CREATE TABLE secret (id int); CREATE ROLE dump_nobody LOGIN")
	t.Cleanup(func() { prod.Exec(t, "postgres", "DROP OWNED BY dump_nobody CASCADE; DROP ROLE dump_nobody") })
	cs, _ := parseConnString(prod.DSN(db))
	cs.u.User = nil
	nobody := cs.String() + "&user=dump_nobody"
	_, err = Dump(ctx, Config{}, DumpOptions{DSN: nobody, Dir: dir})
	var ce *CommandError
	if !errors.As(err, &ce) || !strings.Contains(ce.Stderr, "permission denied") {
		t.Fatalf("Dump without rights: %v", err)
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 0 {
		t.Errorf("left %d entries", len(entries))
	}
}

func TestDumpCancelledLeavesNothing(t *testing.T) {
	prod, _, db := seeded(t, 100)
	dir := t.TempDir()
	ctx, cancel := context.WithCancel(testCtx(t))
	defer cancel()
	// pg_dump waits for this lock until the dump is cancelled.
	locker := prod.Connect(t, db)
	tx, err := locker.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback(context.Background()) //nolint:errcheck
	if _, err := tx.Exec(ctx, "LOCK TABLE users IN ACCESS EXCLUSIVE MODE"); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() {
		_, err := Dump(ctx, Config{}, DumpOptions{DSN: prod.DSN(db), Dir: dir})
		done <- err
	}()
	watcher := prod.Connect(t, "postgres")
	for {
		var n int
		if err := watcher.QueryRow(ctx, `SELECT count(*) FROM pg_locks l JOIN pg_stat_activity a USING (pid)
			WHERE NOT l.granted AND a.application_name = 'pg_dump'`).Scan(&n); err != nil {
			t.Fatal(err)
		}
		if n > 0 {
			break
		}
		select {
		case err := <-done:
			t.Fatalf("dump finished while the table was locked: %v", err)
		case <-time.After(20 * time.Millisecond):
		}
	}
	if entries, _ := os.ReadDir(dir); len(entries) == 0 {
		t.Fatal("no temporary dump file while pg_dump runs")
	}
	cancel()
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled Dump: %v", err)
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 0 {
		t.Errorf("left %d entries", len(entries))
	}
}

// A dump is the whole production database: whatever the umask, its owner alone may read
// it, while it is written and once it is published.
func TestDumpIsReadableByItsOwnerOnly(t *testing.T) {
	prod, _, db := seeded(t, 10)
	old := syscall.Umask(0o022) // the usual one, which gave 0644 dumps
	t.Cleanup(func() { syscall.Umask(old) })
	for _, format := range []Format{FormatCustom, FormatDirectory} {
		b := dumpOf(t, prod, db, DumpOptions{Format: format})
		st, err := os.Stat(b.Path)
		if err != nil {
			t.Fatal(err)
		}
		if st.Mode().Perm()&0o077 != 0 {
			t.Errorf("%s dump %s has mode %v: others may read production's data", format, b.Name(), st.Mode().Perm())
		}
		// A directory dump's files too: a copy of the folder keeps their modes.
		if format == FormatDirectory {
			entries, err := os.ReadDir(b.Path)
			if err != nil || len(entries) == 0 {
				t.Fatalf("directory dump %s: %v, %d entries", b.Path, err, len(entries))
			}
			for _, e := range entries {
				if info, err := e.Info(); err != nil || info.Mode().Perm() != 0o600 {
					t.Errorf("file %s of directory dump: %v, mode %v; want 0600", e.Name(), err, info.Mode().Perm())
				}
			}
		}
		// The manifest holds no rows: 0644 less the umask, as the README says.
		if st, err := os.Stat(b.ManifestPath); err != nil || st.Mode().Perm() != 0o644 {
			t.Errorf("%s manifest %s: %v, mode %v; want 0644 under umask 022", format, b.ManifestPath, err, st.Mode().Perm())
		}
	}
}

// A table lock held on production (a migration, VACUUM FULL) makes the dump fail after
// LockWaitTimeout, releasing the locks it holds, instead of waiting while DDL, and the
// traffic queued behind it, waits for the dump.
func TestDumpLockWaitIsBounded(t *testing.T) {
	prod, _, db := seeded(t, 10)
	ctx := testCtx(t)
	locker := prod.Connect(t, db)
	tx, err := locker.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = tx.Rollback(context.WithoutCancel(ctx)) }()
	if _, err := tx.Exec(ctx, "LOCK TABLE users IN ACCESS EXCLUSIVE MODE"); err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	wctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	start := time.Now()
	_, err = Dump(wctx, Config{}, DumpOptions{DSN: prod.DSN(db), Dir: dir, Counts: true, LockWaitTimeout: 300 * time.Millisecond})
	if err == nil || wctx.Err() != nil {
		t.Fatalf("Dump behind a held lock: %v after %s; want it to fail after its lock wait", err, time.Since(start))
	}
	requireErrContains(t, err, "timeout")
	if left, _ := os.ReadDir(dir); len(left) != 0 {
		t.Errorf("the failed dump left %v", left)
	}
	if _, err := Dump(ctx, Config{}, DumpOptions{DSN: prod.DSN(db), Dir: dir, LockWaitTimeout: -time.Second}); err == nil {
		t.Error("a negative LockWaitTimeout was accepted")
	}
}
