package physical_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/restage/restage/dbrestore/physical"
)

// TestSeed: the first restore, copied into the other slot before its first start, makes
// the next restore into that slot a delta by size and time that ends with production's
// data. A failed copy leaves no partial slot; a slot already started is no copy of the
// backup and seeds nothing; an existing other slot is never replaced.
func TestSeed(t *testing.T) {
	w := newWorld(t, true)
	ctx := context.Background()
	_, a := w.restored(t)
	b := filepath.Join(w.dir, "b")

	// A cp that fails half-way (it writes a file first): nothing of slot b is left.
	bad := t.TempDir()
	script := "#!/bin/sh\nfor last; do :; done\nmkdir -p \"$last\" && echo partial > \"$last/PG_VERSION\"\nexit 1\n"
	if err := os.WriteFile(filepath.Join(bad, "cp"), []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	path := os.Getenv("PATH")
	t.Setenv("PATH", bad+":"+path)
	if s, err := w.cl.Seed(ctx, a); err == nil || s != nil {
		t.Fatalf("Seed with a failing cp: %v, %v", s, err)
	}
	if _, err := os.Lstat(b); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("a failed seed left slot b: %v", err)
	}
	t.Setenv("PATH", path)

	s, err := w.cl.Seed(ctx, a)
	if err != nil || s == nil || s.Name != "b" {
		t.Fatalf("Seed: %v, %v", s, err)
	}
	// The copy keeps production's times, which a delta by size and time trusts.
	for _, f := range []string{"PG_VERSION", "global/pg_control"} {
		fa, err1 := os.Stat(filepath.Join(a.Data, f))
		fb, err2 := os.Stat(filepath.Join(s.Data, f))
		if err1 != nil || err2 != nil || !fa.ModTime().Equal(fb.ModTime()) || fa.Size() != fb.Size() {
			t.Fatalf("%s in the seeded slot: %v %v (%v, %v)", f, fa, fb, err1, err2)
		}
	}
	if again, err := w.cl.Seed(ctx, a); err != nil || again != nil {
		t.Fatalf("a second Seed with slot b there: %v, %v", again, err)
	}

	if err := w.cl.StartSide(ctx, a); err != nil {
		t.Fatal(err)
	}
	if _, err := w.cl.Seed(ctx, a); !errors.Is(err, physical.ErrSlot) {
		t.Fatalf("Seed from a started slot: %v", err)
	}
	if _, err := w.cl.Switch(ctx, a); err != nil {
		t.Fatal(err)
	}
	if !w.cl.Delta() || !w.cl.DeltaByTime() {
		t.Fatalf("with a live and b seeded: delta %v, by time %v", w.cl.Delta(), w.cl.DeltaByTime())
	}

	if err := w.prod.Exec(ctx, "shop", "UPDATE item SET name = name || ' (changed)' WHERE id % 20 = 0"); err != nil {
		t.Fatal(err)
	}
	if err := w.prod.Backup(ctx, "incr"); err != nil {
		t.Fatal(err)
	}
	_, next := w.restored(t)
	if next.Name != "b" {
		t.Fatalf("the second restore went to slot %s", next.Name)
	}
	if err := w.cl.StartSide(ctx, next); err != nil {
		t.Fatal(err)
	}
	if n := w.count(t, next, false, "shop", "SELECT count(*) FROM item WHERE name LIKE '%(changed)'"); n != 250 {
		t.Fatalf("%d changed items after the delta over the seeded slot, want 250", n)
	}
	if n := w.count(t, next, false, "shop", "SELECT count(*) FROM item"); n != 5000 {
		t.Fatalf("%d items after the delta over the seeded slot, want 5000", n)
	}
}
