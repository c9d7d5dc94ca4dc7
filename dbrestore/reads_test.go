package dbrestore

import (
	"sync"
	"testing"
	"time"

	"github.com/restage/restage/progress"
)

func TestRestoreReportsBytesOfTheDumpRead(t *testing.T) {
	defer func(d time.Duration) { readInterval = d }(readInterval)
	readInterval = 10 * time.Millisecond
	_, staging, b := backupOf(t, 60000, DumpOptions{})
	// Verified first, without a progress function: the events are the restore's alone.
	if _, err := newServer(t, staging, ServerConfig{}).verifiedTOC(testCtx(t), b); err != nil {
		t.Fatal(err)
	}
	for _, jobs := range []int{1, 2} {
		var (
			mu     sync.Mutex
			events [][2]int64
		)
		ctx := progress.With(testCtx(t), func(done, total int64) {
			mu.Lock()
			events = append(events, [2]int64{done, total})
			mu.Unlock()
		})
		srv := newServer(t, staging, ServerConfig{})
		if _, err := srv.Restore(ctx, b, RestoreOptions{Target: dbName(t, staging, "bytes"), Jobs: jobs, Replace: true}); err != nil {
			t.Fatal(err)
		}
		mu.Lock()
		size := b.Manifest.Size
		if len(events) == 0 || events[len(events)-1] != [2]int64{size, size} {
			t.Fatalf("-j%d: events %v, want the last at %d of %d", jobs, events, size, size)
		}
		between := false
		for i, e := range events {
			if e[1] != size || (i > 0 && e[0] < events[i-1][0]) {
				t.Errorf("-j%d: event %v after %v (size %d)", jobs, e, events[max(i-1, 0)], size)
			}
			between = between || (e[0] > 0 && e[0] < size)
		}
		if !between {
			t.Errorf("-j%d: no progress between 0 and %d bytes while pg_restore read: %v", jobs, size, events)
		}
		mu.Unlock()
	}
}

func TestVerifyReportsBytesHashed(t *testing.T) {
	_, staging, b := backupOf(t, 2000, DumpOptions{})
	var last [2]int64
	calls := 0
	ctx := progress.With(testCtx(t), func(done, total int64) { last = [2]int64{done, total}; calls++ })
	fresh := *b
	fresh.verified, fresh.toc = false, nil
	if _, err := newServer(t, staging, ServerConfig{}).verifiedTOC(ctx, &fresh); err != nil {
		t.Fatal(err)
	}
	if size := b.Manifest.Size; calls == 0 || last != [2]int64{size, size} {
		t.Errorf("%d calls, last %v, want %d of %d bytes hashed", calls, last, size, size)
	}
}
