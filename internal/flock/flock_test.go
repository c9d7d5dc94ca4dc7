package flock

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// open opens path as a new open file description (each has its own lock).
func open(t *testing.T, path string) *os.File {
	t.Helper()
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	return f
}

func try(t *testing.T, f *os.File, m Mode) bool {
	t.Helper()
	ok, err := Try(f, m)
	if err != nil {
		t.Fatal(err)
	}
	return ok
}

func TestSharedAndExclusive(t *testing.T) {
	path := filepath.Join(t.TempDir(), "lock")
	a, b, c := open(t, path), open(t, path), open(t, path)
	if !try(t, a, Shared) || !try(t, b, Shared) {
		t.Fatal("two shared holders excluded each other")
	}
	if try(t, c, Exclusive) {
		t.Fatal("an exclusive lock was taken under shared holders")
	}
	a.Close()
	if try(t, c, Exclusive) {
		t.Fatal("an exclusive lock was taken under the remaining shared holder")
	}
	b.Close() // closing releases
	if !try(t, c, Exclusive) {
		t.Fatal("the exclusive lock is not free once the shared holders closed")
	}
	d := open(t, path)
	if try(t, d, Shared) || try(t, d, Exclusive) {
		t.Fatal("a lock was taken under an exclusive holder")
	}
	if !try(t, c, Exclusive) {
		t.Fatal("taking a lock already held failed")
	}
	if _, err := Try(c, Mode(0)); err == nil || !strings.Contains(err.Error(), "bad mode") {
		t.Fatalf("bad mode: %v", err)
	}
}

func TestWait(t *testing.T) {
	path := filepath.Join(t.TempDir(), "lock")
	holder, waiter := open(t, path), open(t, path)
	if !try(t, holder, Exclusive) {
		t.Fatal("not taken")
	}
	ctx, cancel := context.WithTimeout(t.Context(), 50*time.Millisecond)
	defer cancel()
	err := Wait(ctx, waiter, Shared, time.Millisecond)
	if !errors.Is(err, context.DeadlineExceeded) || !strings.Contains(err.Error(), "shared lock of "+path) {
		t.Fatalf("Wait under a holder: %v", err)
	}
	time.AfterFunc(50*time.Millisecond, func() { holder.Close() })
	if err := Wait(t.Context(), waiter, Exclusive, 0); err != nil {
		t.Fatal(err)
	}
	if try(t, open(t, path), Shared) {
		t.Fatal("Wait returned without the lock")
	}
}

// flock(1) in an operator's script and a child given the descriptor hold the same
// locks.
func TestInteroperatesWithFlockCommandAndChildren(t *testing.T) {
	if _, err := exec.LookPath("flock"); err != nil {
		t.Skip("no flock(1):", err)
	}
	path := filepath.Join(t.TempDir(), "lock")
	f := open(t, path)
	if !try(t, f, Shared) {
		t.Fatal("not taken")
	}
	if out, err := exec.Command("flock", "--shared", "--nonblock", path, "true").CombinedOutput(); err != nil {
		t.Fatalf("flock(1) --shared under a shared holder: %v %s", err, out)
	}
	if err := exec.Command("flock", "--exclusive", "--nonblock", path, "true").Run(); err == nil {
		t.Fatal("flock(1) --exclusive got the lock under a shared holder")
	}
	// A child given the descriptor keeps the lock after its parent closed it.
	child := exec.Command("sleep", "600")
	child.ExtraFiles = []*os.File{f}
	if err := child.Start(); err != nil {
		t.Skip(err)
	}
	defer child.Wait()
	defer child.Process.Kill()
	f.Close()
	if try(t, open(t, path), Exclusive) {
		t.Fatal("the lock was released while a child still holds its descriptor")
	}
	child.Process.Kill()
	child.Wait()
	if !try(t, open(t, path), Exclusive) {
		t.Fatal("the lock outlived the child")
	}
}

func TestModeString(t *testing.T) {
	if Shared.String() != "shared" || Exclusive.String() != "exclusive" || Mode(0).String() != "Mode(0)" {
		t.Fatal(Shared.String(), Exclusive.String(), Mode(0).String())
	}
}
