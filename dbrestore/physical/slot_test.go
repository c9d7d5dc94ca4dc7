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

// TestEmpty: Empty removes a slot's data and tablespaces, keeps its marker (state
// restoring, so that a removal cut short is finished by Repair), and refuses the live
// slot; a restore into an emptied slot is a full copy.
func TestEmpty(t *testing.T) {
	c := newTestClusters(t)
	ctx := context.Background()
	var gotDelta bool
	src := &fakeSource{restore: func(_ context.Context, _ *BackupSet, dir string, o RestoreOptions) error {
		gotDelta = o.Delta
		for _, d := range []string{filepath.Join(dir, "base"), filepath.Join(tablespaceDir(dir), "16384")} {
			if err := os.MkdirAll(d, 0o700); err != nil {
				return err
			}
		}
		return os.WriteFile(filepath.Join(dir, "PG_VERSION"), []byte("15\n"), 0o600)
	}}
	s, err := c.Restore(ctx, src, &BackupSet{Label: "x"}, true)
	if err != nil {
		t.Fatal(err)
	}
	if err := c.setLive(s); err != nil {
		t.Fatal(err)
	}
	if err := c.Empty(ctx, s); !errors.Is(err, ErrSlot) {
		t.Fatalf("Empty of the live slot = %v, want ErrSlot", err)
	}
	if _, err := os.Stat(filepath.Join(s.Data, "PG_VERSION")); err != nil {
		t.Fatalf("the refused Empty removed the live slot's data: %v", err)
	}
	if err := c.setLive(nil); err != nil {
		t.Fatal(err)
	}
	if err := c.Empty(ctx, s); err != nil {
		t.Fatal(err)
	}
	for _, d := range []string{s.Data, tablespaceDir(s.Data)} {
		if _, err := os.Stat(d); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("%s left (%v)", d, err)
		}
	}
	if m, err := c.readMarker(s); err != nil || m.State != stateRestoring {
		t.Errorf("marker after Empty: %+v, %v; want state %s", m, err, stateRestoring)
	}
	if _, err := c.Restore(ctx, src, &BackupSet{Label: "y"}, true); err != nil || gotDelta {
		t.Errorf("restore into the emptied slot: delta %v, %v; want a full copy", gotDelta, err)
	}
}
