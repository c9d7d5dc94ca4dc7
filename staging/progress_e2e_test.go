package staging_test

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/restage/restage/staging"
	"github.com/restage/restage/staging/stagingtest"
)

// byteProgress keeps, per step, the byte progress events an observer saw.
type byteProgress struct {
	mu    sync.Mutex
	steps map[string][]staging.Progress
}

func (b *byteProgress) observer() staging.Observer {
	return staging.ObserverFuncs{OnStepProgress: func(_ staging.RunInfo, p staging.Progress) {
		if p.Unit != staging.UnitBytes {
			return
		}
		b.mu.Lock()
		defer b.mu.Unlock()
		b.steps[p.Step] = append(b.steps[p.Step], p)
	}}
}

// A real rebuild reports its long steps in bytes: the backup's bytes hashed, the dump's
// bytes read by pg_restore, the release's bytes; each ends at its total, never goes
// back, and carries a rate.
func TestRebuildReportsProgressInBytes(t *testing.T) {
	w := newWorld(t, stagingtest.Options{})
	c, err := staging.LoadEnvironment(w.ConfigPath)
	if err != nil {
		t.Fatal(err)
	}
	bp := &byteProgress{steps: map[string][]staging.Progress{}}
	rb, err := staging.Open(c, staging.OpenOptions{Logger: discard(), Observer: bp.observer()})
	if err != nil {
		t.Fatal(err)
	}
	defer rb.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	rep, err := rb.Run(ctx)
	if err != nil {
		t.Fatalf("rebuild: %v\n%s", err, rep.Text())
	}
	bp.mu.Lock()
	defer bp.mu.Unlock()
	size := rep.Backup.Size
	for step, total := range map[string]int64{"verify": size, "restore": size, "release": -1} {
		evs := bp.steps[step]
		if len(evs) == 0 {
			t.Errorf("%s: no progress in bytes", step)
			continue
		}
		last := evs[len(evs)-1]
		if total < 0 {
			total = last.Total
		}
		if last.Done != total || last.Total != total || total <= 0 {
			t.Errorf("%s: last %d of %d bytes, want %d of %d", step, last.Done, last.Total, total, total)
		}
		for i, p := range evs {
			if i > 0 && p.Done < evs[i-1].Done {
				t.Errorf("%s: progress went back: %d after %d", step, p.Done, evs[i-1].Done)
			}
		}
		if last.Rate <= 0 || last.Elapsed <= 0 {
			t.Errorf("%s: rate %v over %v", step, last.Rate, last.Elapsed)
		}
	}
}
