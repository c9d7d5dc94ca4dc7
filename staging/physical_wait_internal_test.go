package staging

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/restage/restage/dbrestore"
	"github.com/restage/restage/dbrestore/physical"
)

// noSets is a physical source whose repository never holds a backup set.
type noSets struct{ looks int }

func (s *noSets) Latest(context.Context) (*physical.BackupSet, error) {
	s.looks++
	return nil, dbrestore.ErrNoBackup
}
func (s *noSets) Verify(context.Context, *physical.BackupSet) error { return nil }
func (s *noSets) Restore(context.Context, *physical.BackupSet, string, physical.RestoreOptions) error {
	return errors.New("no set")
}
func (s *noSets) Origin() physical.Origin { return physical.Origin{} }

// [backup] wait bounds the wait for a backup set: with a poll longer than the wait, the
// physical backup step gave up a whole poll (10s by default) after it, not at it.
func TestPhysicalBackupWaitEndsAtWait(t *testing.T) {
	src := &noSets{}
	ru := &run{r: &Rebuilder{cfg: Config{
		Physical: &PhysicalConfig{Source: src},
		Options: Options{
			Backup: dbrestore.WaitOptions{Wait: 300 * time.Millisecond, Poll: 10 * time.Second},
			Now:    time.Now,
		},
	}}}
	start := time.Now()
	_, err := ru.latestSet(context.Background())
	took := time.Since(start)
	if !errors.Is(err, dbrestore.ErrNoBackup) {
		t.Fatalf("err = %v, want ErrNoBackup", err)
	}
	if took > 3*time.Second {
		t.Errorf("the wait took %s with backup.wait 300ms (it waited out the poll)", took)
	}
	if src.looks != 2 {
		t.Errorf("looked %d times, want 2 (at the start and when the wait is over)", src.looks)
	}
	if !strings.Contains(err.Error(), "waited 300ms") {
		t.Errorf("the error does not say how long it waited: %v", err)
	}
}
