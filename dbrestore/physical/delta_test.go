package physical_test

import (
	"context"
	"os"
	"path/filepath"
	"testing"

	"github.com/jackc/pgx/v5"
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
	if err := w.prod.Backup(ctx, "full"); err != nil {
		t.Fatal(err)
	}
	set, err := w.src.Latest(ctx)
	if err != nil {
		t.Fatal(err)
	}
	slot, err := w.cl.Restore(ctx, w.src, set, true)
	if err != nil {
		t.Fatal(err)
	}
	if err := w.cl.StartSide(ctx, slot); err != nil {
		t.Fatal(err)
	}
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
	set2, err := w.src.Latest(ctx)
	if err != nil {
		t.Fatal(err)
	}
	slot2, err := w.cl.Restore(ctx, w.src, set2, true)
	if err != nil || slot2.Name != slot.Name {
		t.Fatalf("delta restore: %v %v", slot2, err)
	}
	if err := w.cl.StartSide(ctx, slot2); err != nil {
		t.Fatal(err)
	}
	if n := w.count(t, slot2, false, "shop", "SELECT count(*) FROM flag WHERE v = 'production-2'"); n != 1 {
		t.Fatal("the delta restore kept the page staging wrote")
	}
}
