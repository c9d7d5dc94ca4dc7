package physical

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"testing"
)

// TestSlotTablespacesGoWithIt: a slot's tablespace folder (where pgBackRest's restore
// maps the tablespaces) is emptied with its data directory, by the repair of a
// half-restored slot and by a full restore into a slot that held a copy.
func TestSlotTablespacesGoWithIt(t *testing.T) {
	c := newTestClusters(t)
	ctx := context.Background()
	boom := errors.New("killed")
	var leftover []string
	src := &fakeSource{restore: func(_ context.Context, _ *BackupSet, dir string, _ RestoreOptions) error {
		ts := tablespaceDir(dir)
		leftover, _ = filepath.Glob(filepath.Join(ts, "*", "*"))
		for _, d := range []string{filepath.Join(dir, "base"), filepath.Join(ts, "16384")} {
			if err := os.MkdirAll(d, 0o700); err != nil {
				return err
			}
		}
		if err := os.WriteFile(filepath.Join(ts, "16384", "PG_15_x"), []byte("old"), 0o600); err != nil {
			return err
		}
		return boom
	}}
	ts := filepath.Join(c.cfg.Dir, "a", "tablespaces")
	if _, err := c.Restore(ctx, src, &BackupSet{Label: "x"}, false); !errors.Is(err, boom) {
		t.Fatalf("want the source's error, got %v", err)
	}
	if _, err := os.Stat(filepath.Join(ts, "16384", "PG_15_x")); err != nil {
		t.Fatalf("the fake restore wrote no tablespace: %v", err)
	}
	if _, err := c.Repair(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(ts); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the repair left the half-restored slot's tablespaces (%v)", err)
	}

	// A full restore into a slot whose tablespaces were left: they are gone first.
	if _, err := c.Restore(ctx, src, &BackupSet{Label: "y"}, false); !errors.Is(err, boom) {
		t.Fatalf("want the source's error, got %v", err)
	}
	if _, err := c.Restore(ctx, src, &BackupSet{Label: "z"}, false); !errors.Is(err, boom) {
		t.Fatalf("want the source's error, got %v", err)
	}
	if len(leftover) > 0 {
		t.Errorf("a full restore found the slot's old tablespaces: %v", leftover)
	}
}
