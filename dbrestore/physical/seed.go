package physical

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
)

// Seed copies from, a slot just restored and never started, into the other slot when
// that slot has never been made (the first rebuild), so that the next rebuild, which
// restores into the other slot, is a delta instead of a second full copy. The copy is
// local (cp -a as the clusters' owner: the files keep production's times; reflinks
// where the filesystem has them), synced, and marked restored when from was, so that a
// delta by size and time trusts exactly the files production wrote. It returns the
// seeded slot, or nil when there is nothing to seed: the other slot exists, or from
// holds tablespaces (their links name from's folder; logged). A failed copy is removed
// whole; from is not changed.
func (c *Clusters) Seed(ctx context.Context, from *Slot) (*Slot, error) {
	m, err := c.readMarker(from)
	if err != nil {
		return nil, err
	}
	if err := c.ours(from); err != nil {
		return nil, err
	}
	if m.State != stateRestored {
		return nil, fmt.Errorf("%w: %s is %s, not restored", ErrSlot, from, m.State)
	}
	// A restore leaves recovery.signal; the first start (recovery, then promotion)
	// removes it and writes WAL of staging's own.
	if _, err := os.Stat(filepath.Join(from.Data, "recovery.signal")); err != nil {
		return nil, fmt.Errorf("%w: %s has been started since its restore (no recovery.signal), so it is no copy of the backup", ErrSlot, from)
	}
	if up, err := c.Running(ctx, from); err != nil {
		return nil, err
	} else if up {
		return nil, fmt.Errorf("%w: %s is running", ErrSlot, from)
	}
	to := c.slot("b")
	if from.Name == "b" {
		to = c.slot("a")
	}
	if _, err := os.Lstat(to.Dir); !errors.Is(err, os.ErrNotExist) {
		return nil, err
	}
	if links, err := os.ReadDir(filepath.Join(from.Data, "pg_tblspc")); err != nil && !errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("physical: %w", err)
	} else if len(links) > 0 {
		c.log.Info("the other slot is not seeded: the backup has tablespaces", "slot", to.Name)
		return nil, nil
	}
	if err := os.Mkdir(to.Dir, 0o700); err != nil {
		return nil, fmt.Errorf("physical: %w", err)
	}
	if err := c.seed(ctx, from, to, m); err != nil {
		if rerr := os.RemoveAll(to.Dir); rerr != nil {
			err = fmt.Errorf("%w (removing the partial copy %s failed too: %v)", err, to.Dir, rerr)
		}
		return nil, err
	}
	c.log.Info("seeded the other slot for the next delta", "slot", to.Name, "from", from.Name, "backup", m.Backup)
	return to, nil
}

// seed fills to, a folder Seed just made, with a copy of from's data directory, marked
// restored last.
func (c *Clusters) seed(ctx context.Context, from, to *Slot, m *marker) error {
	if err := c.owner.chown(to.Dir); err != nil {
		return fmt.Errorf("physical: %w", err)
	}
	if err := c.writeMarker(to, stateRestoring, m.Backup, m.Started); err != nil {
		return fmt.Errorf("physical: %w", err)
	}
	if _, err := c.owner.run(ctx, []string{"cp", "-a", "--reflink=auto", "--", from.Data, to.Data}); err != nil {
		return fmt.Errorf("physical: copy %s into %s: %w", from, to, err)
	}
	if err := checkLinks(to); err != nil {
		return err
	}
	if err := syncFS(to.Dir); err != nil {
		return fmt.Errorf("physical: sync %s: %w", to, err)
	}
	return c.writeMarker(to, stateRestored, m.Backup, m.Started)
}
