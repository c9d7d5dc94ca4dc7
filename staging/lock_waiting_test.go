package staging

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"
)

// A rebuild waiting for running cron jobs keeps new jobs out, so that a stream of
// overlapping jobs cannot hold it off until its bound passes.
func TestNoNewSharedHolderWhileRebuildWaits(t *testing.T) {
	path := filepath.Join(t.TempDir(), "staging.lock")
	job, err := AcquireShared(path, "long-job")
	if err != nil {
		t.Fatal(err)
	}
	got := make(chan error, 1)
	go func() {
		l, err := AcquireExclusive(context.Background(), path, LockOptions{WaitShared: 5 * time.Minute, Poll: 10 * time.Millisecond})
		if err == nil {
			l.Release()
		}
		got <- err
	}()
	for deadline := time.Now().Add(time.Minute); ; time.Sleep(10 * time.Millisecond) {
		if _, err := os.Stat(path + ".waiting"); err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the waiting rebuild left no record")
		}
	}
	_, err = AcquireShared(path, "next-job")
	var le *LockedError
	if !errors.As(err, &le) || le.Owner == nil || le.Owner.PID != os.Getpid() {
		t.Fatalf("new job while a rebuild waits: %v", err)
	}
	job.Release()
	if err := <-got; err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(path + ".waiting"); !os.IsNotExist(err) {
		t.Fatalf("waiting record left: %v", err)
	}
	l, err := AcquireShared(path, "after")
	if err != nil {
		t.Fatal(err)
	}
	l.Release()

	// A rebuild that gives up (BusyError) removes its record too.
	job, _ = AcquireShared(path, "long-job")
	if _, err := AcquireExclusive(context.Background(), path, LockOptions{WaitShared: 50 * time.Millisecond, Poll: 10 * time.Millisecond}); !errors.Is(err, ErrBusy) {
		t.Fatal(err)
	}
	job.Release()
	if _, err := os.Stat(path + ".waiting"); !os.IsNotExist(err) {
		t.Fatalf("waiting record left after BusyError: %v", err)
	}
}

func TestDeadWaitingRebuildDoesNotBlockJobs(t *testing.T) {
	path := filepath.Join(t.TempDir(), "staging.lock")
	cmd := exec.Command("true")
	if err := cmd.Run(); err != nil {
		t.Skip(err)
	}
	data, _ := json.Marshal(Owner{PID: cmd.ProcessState.Pid(), Host: "h", Start: time.Now()})
	if err := os.WriteFile(path+".waiting", data, 0o644); err != nil {
		t.Fatal(err)
	}
	l, err := AcquireShared(path, "job")
	if err != nil {
		t.Fatal(err)
	}
	l.Release()
	if _, err := os.Stat(path + ".waiting"); !os.IsNotExist(err) {
		t.Fatal("a dead rebuild's waiting record was kept")
	}
}
