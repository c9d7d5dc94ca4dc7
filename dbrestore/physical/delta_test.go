package physical_test

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"

	"github.com/restage/restage/dbrestore/pgtest"
	"github.com/restage/restage/dbrestore/physical"
	"github.com/restage/restage/dbrestore/physical/physicaltest"
)

// TestDeltaByTimeNeverKeepsStagingsWrite: a delta restore that trusts size and time
// must not keep a page staging wrote, even when the file's size and time happen to
// equal the new backup's (production wrote the same file in the same second). Here the
// coincidence is made on purpose: restage must give the file staging wrote a time no
// backup holds, and pgBackRest then copies it again.
func TestDeltaByTimeNeverKeepsStagingsWrite(t *testing.T) {
	w := newWorld(t, false)
	ctx := context.Background()
	// One row on one page with room to spare: updates stay on the page, the file's size
	// stays 8 kB on both sides.
	if err := w.prod.Exec(ctx, "shop", `CREATE TABLE flag (id int PRIMARY KEY, v text) WITH (fillfactor = 10);
		INSERT INTO flag VALUES (1, 'production-1')`); err != nil {
		t.Fatal(err)
	}
	slot := w.sideOfNewBackup(t)
	if err := w.cl.Exec(ctx, slot, "shop", "UPDATE flag SET v = 'staging-xx-1'; CHECKPOINT"); err != nil {
		t.Fatal(err)
	}
	if err := w.cl.Discard(ctx, slot); err != nil {
		t.Fatal(err)
	}
	if err := w.prod.Exec(ctx, "shop", "UPDATE flag SET v = 'production-2'; CHECKPOINT"); err != nil {
		t.Fatal(err)
	}
	var rel string
	conn, err := pgx.Connect(ctx, w.prod.DSN("shop"))
	if err != nil {
		t.Fatal(err)
	}
	err = conn.QueryRow(ctx, "SELECT pg_relation_filepath('flag')").Scan(&rel)
	conn.Close(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := w.prod.Backup(ctx, "incr"); err != nil {
		t.Fatal(err)
	}
	prodFile, err := os.Stat(filepath.Join(w.prod.Data, rel))
	if err != nil {
		t.Fatal(err)
	}
	stagingFile := filepath.Join(slot.Data, rel)
	st, err := os.Stat(stagingFile)
	if err != nil {
		t.Fatal(err)
	}
	if st.Size() != prodFile.Size() {
		t.Fatalf("the table's file is %d bytes on staging, %d on production: the test needs them equal", st.Size(), prodFile.Size())
	}
	// The coincidence: staging's write carries production's time for that file.
	if err := os.Chtimes(stagingFile, prodFile.ModTime(), prodFile.ModTime()); err != nil {
		t.Fatal(err)
	}
	_, slot2 := w.restored(t)
	if slot2.Name != slot.Name {
		t.Fatalf("the delta restore went to slot %s, not %s", slot2.Name, slot.Name)
	}
	if err := w.cl.StartSide(ctx, slot2); err != nil {
		t.Fatal(err)
	}
	if n := w.count(t, slot2, false, "shop", "SELECT count(*) FROM flag WHERE v = 'production-2'"); n != 1 {
		t.Fatal("the delta restore kept the page staging wrote")
	}
}

// TestSyncOnce: with SyncOnce, pgbackrest restore runs under eatmydata (its per-file
// fsyncs are no-ops) and restage syncs the slot's filesystem once before the slot is
// marked restored; the restored cluster starts and holds production's rows.
func TestSyncOnce(t *testing.T) {
	if _, err := exec.LookPath("eatmydata"); err != nil {
		if os.Getenv(pgtest.RequireEnv) == "1" {
			t.Fatalf("eatmydata not on PATH (%s=1): install Debian's eatmydata", pgtest.RequireEnv)
		}
		t.Skip("eatmydata not on PATH")
	}
	w := newWorld(t, true)
	ctx := context.Background()
	// A pgbackrest that notes the library preloaded into it, then runs the real one.
	wrapper, seen := spyPgBackRest(t, `"$LD_PRELOAD"`)
	src, err := physical.NewPgBackRest(physical.PgBackRestConfig{Stanza: physicaltest.Stanza, Config: w.prod.Config,
		Command: wrapper, SyncOnce: true})
	if err != nil {
		t.Fatal(err)
	}
	syncs := physical.CountSyncs(t)
	set, err := src.Latest(ctx)
	if err != nil {
		t.Fatal(err)
	}
	slot, err := w.cl.Restore(ctx, src, set, true)
	if err != nil {
		t.Fatal(err)
	}
	if *syncs != 1 {
		t.Fatalf("%d syncs of the restored folder, want 1", *syncs)
	}
	b, _ := os.ReadFile(seen)
	lines := strings.Fields(string(b))
	// info ran plainly, restore under eatmydata.
	if len(lines) != 1 || !strings.Contains(lines[0], "eatmydata") {
		t.Fatalf("LD_PRELOAD of the restore: %q", b)
	}
	if err := w.cl.StartSide(ctx, slot); err != nil {
		t.Fatal(err)
	}
	if n := w.count(t, slot, false, "shop", "SELECT count(*) FROM item"); n != 5000 {
		t.Fatalf("%d items", n)
	}
}

// spyPgBackRest writes a pgbackrest that appends what (shell words, e.g. "$*") as a
// line to the file seen, then runs the real one.
func spyPgBackRest(t *testing.T, what string) (wrapper, seen string) {
	t.Helper()
	dir, err := os.MkdirTemp("", "restage-spy-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o777); err != nil {
		t.Fatal(err)
	}
	real, err := exec.LookPath("pgbackrest")
	if err != nil {
		t.Fatal(err)
	}
	seen = filepath.Join(dir, "seen")
	wrapper = filepath.Join(dir, "pgbackrest")
	script := "#!/bin/sh\nprintf '%s\\n' " + what + " >> " + seen + "\nexec " + real + " \"$@\"\n"
	if err := os.WriteFile(wrapper, []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	return wrapper, seen
}

// TestProcessMax: pgbackrest restore writes ProcessMax files at once, the CPU count by
// default (pgBackRest's own default is one), whatever its config says.
func TestProcessMax(t *testing.T) {
	w := newWorld(t, true)
	ctx := context.Background()
	for _, c := range []struct{ set, want int }{{3, 3}, {0, runtime.NumCPU()}} {
		wrapper, seen := spyPgBackRest(t, `"$*"`)
		src, err := physical.NewPgBackRest(physical.PgBackRestConfig{Stanza: physicaltest.Stanza, Config: w.prod.Config,
			Command: wrapper, ProcessMax: c.set})
		if err != nil {
			t.Fatal(err)
		}
		set, err := src.Latest(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := w.cl.Restore(ctx, src, set, false); err != nil {
			t.Fatal(err)
		}
		b, _ := os.ReadFile(seen)
		var restore string
		for _, l := range strings.Split(string(b), "\n") {
			if strings.HasSuffix(l, " restore") {
				restore = l
			}
		}
		if !strings.Contains(restore, fmt.Sprintf(" --process-max=%d ", c.want)) {
			t.Fatalf("ProcessMax %d: the restore ran as %q, want --process-max=%d", c.set, restore, c.want)
		}
	}
	if _, err := physical.NewPgBackRest(physical.PgBackRestConfig{Stanza: physicaltest.Stanza, ProcessMax: -1}); err == nil {
		t.Fatal("ProcessMax -1 accepted")
	}
}
