package staging

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestRebuildWaitsForCronJobsThenGivesUpNamingThem(t *testing.T) {
	w := newWorld()
	r := w.rebuilder(t, func(c *Config) { c.CronWait = 300 * time.Millisecond })
	job, err := AcquireShared(r.cfg.LockFile, "expire-sessions")
	if err != nil {
		t.Fatal(err)
	}
	before := w.snapshot()
	rep, err := r.Run(context.Background())
	job.Release()
	if !errors.Is(err, ErrBusy) || !strings.Contains(err.Error(), `job "expire-sessions"`) {
		t.Fatalf("err = %v", err)
	}
	if w.snapshot() != before || rep.FailedStep != "lock" {
		t.Fatalf("staging changed or wrong step %q", rep.FailedStep)
	}
	if len(w.delivered) != 1 || !strings.Contains(w.delivered[0].Body, "expire-sessions") {
		t.Fatalf("the report does not name the job: %+v", w.delivered)
	}
}

func TestRebuildStartsOnceCronJobEnds(t *testing.T) {
	w := newWorld()
	r := w.rebuilder(t, func(c *Config) { c.CronWait = time.Minute })
	job, err := AcquireShared(r.cfg.LockFile, "job")
	if err != nil {
		t.Fatal(err)
	}
	time.AfterFunc(300*time.Millisecond, func() { job.Release() })
	if _, err := r.Run(context.Background()); err != nil {
		t.Fatal(err)
	}
	// And during a rebuild, a cron job cannot take the lock.
	l, err := AcquireExclusive(context.Background(), r.cfg.LockFile, LockOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Release()
	if _, err := AcquireShared(r.cfg.LockFile, "job"); !errors.Is(err, ErrLocked) {
		t.Fatalf("shared lock during a rebuild: %v", err)
	}
}

func TestDeadOwnersLockIsTakenOver(t *testing.T) {
	w := newWorld()
	r := w.rebuilder(t)
	// A crashed run leaves its record; the kernel released its flock when it died.
	dead := Owner{PID: 999999, Host: "staging-host", Start: time.Now().Add(-time.Hour)}
	data, _ := json.Marshal(dead)
	if err := os.WriteFile(r.cfg.LockFile, data, 0o644); err != nil {
		t.Fatal(err)
	}
	rep, err := r.Run(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.Notes) == 0 || !strings.Contains(rep.Notes[0], "pid 999999") {
		t.Fatalf("takeover not reported: %v", rep.Notes)
	}
	if data, _ := os.ReadFile(r.cfg.LockFile); len(data) != 0 {
		t.Fatalf("owner record left after release: %s", data)
	}
}

func TestLockInteroperatesWithSharedHoldersAcrossDescriptors(t *testing.T) {
	path := filepath.Join(t.TempDir(), "x", "env.lock")
	a, err := AcquireShared(path, "a")
	if err != nil {
		t.Fatal(err)
	}
	b, err := AcquireShared(path, "b")
	if err != nil {
		t.Fatal(err)
	}
	if h := SharedHolders(path); len(h) != 2 {
		t.Fatalf("holders %v", h)
	}
	_, err = AcquireExclusive(context.Background(), path, LockOptions{})
	var be *BusyError
	if !errors.As(err, &be) || len(be.Holders) != 2 {
		t.Fatalf("err = %v", err)
	}
	a.Release()
	b.Release()
	l, err := AcquireExclusive(context.Background(), path, LockOptions{})
	if err != nil {
		t.Fatal(err)
	}
	_, err = AcquireExclusive(context.Background(), path, LockOptions{})
	var le *LockedError
	if !errors.As(err, &le) || le.Owner == nil || le.Owner.PID != os.Getpid() {
		t.Fatalf("err = %v", err)
	}
	l.Release()
}
