package dbrestore

import (
	"context"
	"sync"
	"time"

	procfs "github.com/restage/restage/internal/proc"
	"github.com/restage/restage/progress"
)

// readInterval is how often a restore's progress in bytes is sampled.
var readInterval = 500 * time.Millisecond

// readWatch reports a restore's progress in bytes of the dump read: what its
// pg_restore processes (each a process group with its workers) have read, from
// /proc/<pid>/io, up to the dump's size. Where /proc cannot be read it reports nothing
// until the restore is done.
type readWatch struct {
	pc    *progress.Counter
	total int64

	mu     sync.Mutex
	groups []*procfs.GroupReads
	stop   chan struct{}
	done   chan struct{}
}

// newReadWatch follows the restore of a dump of total bytes for ctx's progress
// function; nil (a no-op) when ctx carries none.
func newReadWatch(ctx context.Context, total int64) *readWatch {
	pc := progress.NewCounter(ctx, total)
	if pc == nil {
		return nil
	}
	w := &readWatch{pc: pc, total: total, stop: make(chan struct{}), done: make(chan struct{})}
	go w.loop()
	return w
}

// started follows the process group of a pg_restore that has just started.
func (w *readWatch) started(pid int) {
	if w == nil {
		return
	}
	w.mu.Lock()
	w.groups = append(w.groups, procfs.NewGroupReads(pid))
	w.mu.Unlock()
	w.sample()
}

func (w *readWatch) loop() {
	defer close(w.done)
	t := time.NewTicker(readInterval)
	defer t.Stop()
	for {
		select {
		case <-w.stop:
			return
		case <-t.C:
			w.sample()
		}
	}
}

// sample reports what the groups have read so far, at most the dump's size (the
// processes also read their table of contents, and a little from their pipes).
func (w *readWatch) sample() {
	w.mu.Lock()
	defer w.mu.Unlock()
	var sum int64
	for _, g := range w.groups {
		n, _ := g.Sample()
		sum += n
	}
	if w.total > 0 {
		sum = min(sum, w.total)
	}
	w.pc.Set(sum)
}

// close stops following; a restore that succeeded has read the whole dump.
func (w *readWatch) close(ok bool) {
	if w == nil {
		return
	}
	close(w.stop)
	<-w.done
	if ok {
		w.pc.Set(w.total)
	}
}
