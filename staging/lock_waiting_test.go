package staging

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
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
		if st, err := os.Stat(path + ".waiting"); err == nil {
			if st.Mode().Perm() != 0o600 {
				t.Errorf("waiting record mode %v, want 0600", st.Mode().Perm())
			}
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

// A rebuild that stops waiting for cron jobs names them, or says that a holder left no
// record (a job whose runner was killed), rather than print an empty list.
func TestCanceledWaitNamesTheHolders(t *testing.T) {
	path := filepath.Join(t.TempDir(), "staging.lock")
	job, err := AcquireShared(path, "long-job")
	if err != nil {
		t.Fatal(err)
	}
	defer job.Release()
	wait := func() error {
		ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
		defer cancel()
		_, err := AcquireExclusive(ctx, path, LockOptions{WaitShared: time.Minute, Poll: 10 * time.Millisecond})
		return err
	}
	if err := wait(); !errors.Is(err, context.DeadlineExceeded) || !strings.Contains(err.Error(), "long-job") {
		t.Fatalf("canceled wait: %v; want it to name the job long-job", err)
	}
	if err := os.Remove(job.record); err != nil {
		t.Fatal(err)
	}
	if err := wait(); !errors.Is(err, context.DeadlineExceeded) || !strings.Contains(err.Error(), "a holder that left no record") || strings.Contains(err.Error(), "[]") {
		t.Fatalf("canceled wait for a holder without a record: %v", err)
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

// procStartTicks reads the start time of the process pid from /proc/<pid>/stat (field
// 22, clock ticks since boot), independently of the code under test.
func procStartTicks(t *testing.T, pid int) uint64 {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		t.Skipf("no /proc: %v", err)
	}
	f := strings.Fields(string(b[bytes.LastIndexByte(b, ')')+1:]))
	n, err := strconv.ParseUint(f[22-3], 10, 64)
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// A rebuild's ".waiting" record is stale when its pid now belongs to another process
// (another start time) or is from another boot: it must not keep cron jobs out.
func TestWaitingRecordOfRecycledPidIsStale(t *testing.T) {
	pid := os.Getpid() // a live process, but not the one that wrote the records below
	start := procStartTicks(t, pid)
	boot, err := os.ReadFile("/proc/sys/kernel/random/boot_id")
	if err != nil {
		t.Skip(err)
	}
	id := strings.TrimSpace(string(boot))
	for _, tc := range []struct {
		name   string
		record string
		stale  bool
	}{
		{"other start time", fmt.Sprintf(`{"pid":%d,"host":"h","start":"2026-01-02T03:04:05Z","proc_start":%d,"boot_id":%q}`, pid, start+1, id), true},
		{"other boot", fmt.Sprintf(`{"pid":%d,"host":"h","start":"2026-01-02T03:04:05Z","proc_start":%d,"boot_id":"0-other-boot"}`, pid, start), true},
		{"the same process", fmt.Sprintf(`{"pid":%d,"host":"h","start":"2026-01-02T03:04:05Z","proc_start":%d,"boot_id":%q}`, pid, start, id), false},
		{"an old record: pid only", fmt.Sprintf(`{"pid":%d,"host":"h","start":"2026-01-02T03:04:05Z"}`, pid), false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "staging.lock")
			if err := os.WriteFile(path+".waiting", []byte(tc.record), 0o600); err != nil {
				t.Fatal(err)
			}
			l, err := AcquireShared(path, "job")
			if !tc.stale {
				if !errors.Is(err, ErrLocked) || !strings.Contains(err.Error(), "awaited by a rebuild") {
					t.Fatalf("a live waiting rebuild let a job start: %v", err)
				}
				return
			}
			if err != nil {
				t.Fatalf("a stale waiting record keeps jobs out: %v", err)
			}
			l.Release()
			if _, err := os.Stat(path + ".waiting"); !os.IsNotExist(err) {
				t.Fatal("the stale waiting record was kept")
			}
		})
	}
}

// Holder records of recycled pids are not listed as holders either.
func TestSharedHolderRecordOfRecycledPidIsStale(t *testing.T) {
	path := filepath.Join(t.TempDir(), "staging.lock")
	if err := os.Mkdir(path+".holders", 0o700); err != nil {
		t.Fatal(err)
	}
	rec := fmt.Sprintf(`{"pid":%d,"host":"h","start":"2026-01-02T03:04:05Z","job":"ghost","proc_start":%d}`, os.Getpid(), procStartTicks(t, os.Getpid())+1)
	if err := os.WriteFile(filepath.Join(path+".holders", "1-ghost.json"), []byte(rec), 0o600); err != nil {
		t.Fatal(err)
	}
	l, err := AcquireShared(path, "live")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Release()
	if h := SharedHolders(path); len(h) != 1 || h[0].Job != "live" {
		t.Fatalf("holders %+v, want only the live one", h)
	}
}
