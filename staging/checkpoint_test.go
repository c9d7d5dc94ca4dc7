package staging

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"
)

// checkpointWorld is a staging server that takes checkpoints: each says it began, waits
// for the service to be started and says whether yesterday's copy (staging_old) was
// still there.
type checkpointWorld struct {
	*world
	took  chan string
	slow  time.Duration // how long a checkpoint goes on after the start
	began chan struct{} // closed when a checkpoint begins
}

func (c checkpointWorld) Checkpoint(ctx context.Context) error {
	close(c.began)
	deadline := time.Now().Add(5 * time.Second)
	for {
		c.mu.Lock()
		up := c.running
		_, old := c.dbs["staging_old"]
		c.mu.Unlock()
		if up {
			c.took <- fmt.Sprintf("beside the start, staging_old there: %v", old)
			select {
			case <-time.After(c.slow):
				return nil
			case <-ctx.Done():
				c.took <- "cancelled"
				return ctx.Err()
			}
		}
		if time.Now().After(deadline) {
			c.took <- "the service did not start while the checkpoint waited"
			return errors.New("no start")
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// The checkpoint that spares the prune's DROP DATABASE its own runs while the service
// starts (not before it: it waits for the start; not after it: the health gate waits
// for it to begin) and before the drop, only when there is a database to drop, and a
// slow one does not count as downtime.
func TestCheckpointWhileTheServiceStarts(t *testing.T) {
	w := newWorld()
	cw := checkpointWorld{world: w, took: make(chan string, 4), slow: 500 * time.Millisecond, began: make(chan struct{})}
	w.failHealth = func() error {
		select {
		case <-cw.began:
			return nil
		case <-time.After(5 * time.Second):
			return errors.New("no checkpoint began while the service started")
		}
	}
	r := w.rebuilder(t, func(c *Config) { c.Databases = cw })
	rep, err := r.Run(context.Background())
	if err != nil {
		t.Fatalf("Run: %v\n%s", err, rep.Text())
	}
	if rep.Downtime >= cw.slow {
		t.Errorf("downtime %s: the checkpoint's %s counted", rep.Downtime, cw.slow)
	}
	select {
	case got := <-cw.took:
		if got != "beside the start, staging_old there: true" {
			t.Fatal(got)
		}
	default:
		t.Fatal("no checkpoint")
	}
	if _, ok := w.dbs["staging_old"]; ok {
		t.Fatal("staging_old not pruned")
	}

	// A first rebuild has nothing to drop: no checkpoint.
	w = newWorld()
	delete(w.dbs, "staging_prev")
	cw = checkpointWorld{world: w, took: make(chan string, 4), began: make(chan struct{})}
	r = w.rebuilder(t, func(c *Config) { c.Databases = cw })
	if rep, err := r.Run(context.Background()); err != nil {
		t.Fatalf("Run: %v\n%s", err, rep.Text())
	}
	if len(cw.took) != 0 {
		t.Fatalf("checkpoint without a drop: %s", <-cw.took)
	}
}

// When the service does not come up healthy, the rollback does not wait for the
// checkpoint: it is cancelled.
func TestCheckpointDoesNotHoldUpARollback(t *testing.T) {
	w := newWorld()
	w.failHealth = failOnce()
	cw := checkpointWorld{world: w, took: make(chan string, 4), slow: time.Minute, began: make(chan struct{})}
	r := w.rebuilder(t, func(c *Config) { c.Databases = cw })
	start := time.Now()
	rep, err := r.Run(context.Background())
	if !errors.Is(err, ErrRolledBack) {
		t.Fatalf("Run: %v\n%s", err, rep.Text())
	}
	if d := time.Since(start); d > 30*time.Second {
		t.Fatalf("the rollback waited %s for the checkpoint", d)
	}
	if got := []string{<-cw.took, <-cw.took}; got[1] != "cancelled" {
		t.Fatalf("checkpoint: %q", got)
	}
}
