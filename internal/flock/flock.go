// Package flock takes flock(2) locks on files restage has opened itself (with
// safefile, never through a symbolic link), so that flock(1) in an operator's shell
// script interoperates. The lock belongs to the open file description: a child given
// the file (exec.Cmd.ExtraFiles) holds it too, and it is released when the last
// descriptor of that description is closed, also when its holder is killed.
//
//	f, err := safefile.Open(path, os.O_RDWR|os.O_CREATE, 0o600)
//	...
//	ok, err := flock.Try(f, flock.Exclusive) // false: someone else holds it
//	...
//	f.Close() // releases it
//
// github.com/gofrs/flock does not fit: it opens the path itself (following a symbolic
// link planted there) and hides the file, while restage writes the owner record into
// the locked file and hands the locked descriptor to the jobs it starts.
package flock

import (
	"context"
	"errors"
	"fmt"
	"os"
	"syscall"
	"time"
)

// Mode is the kind of lock.
type Mode int

// Modes.
const (
	// Shared locks are held by any number of holders at once (cron jobs).
	Shared Mode = syscall.LOCK_SH
	// Exclusive excludes every other holder, shared or exclusive (a rebuild).
	Exclusive Mode = syscall.LOCK_EX
)

// String names the mode.
func (m Mode) String() string {
	switch m {
	case Shared:
		return "shared"
	case Exclusive:
		return "exclusive"
	}
	return fmt.Sprintf("Mode(%d)", int(m))
}

// Try takes the lock on f without waiting. ok is false when another open file
// description holds a lock that excludes it. Taking a lock f already holds converts it
// (shared to exclusive or back).
func Try(f *os.File, m Mode) (ok bool, err error) {
	if m != Shared && m != Exclusive {
		return false, fmt.Errorf("flock %s: bad mode %d", f.Name(), int(m))
	}
	for {
		err := syscall.Flock(int(f.Fd()), int(m)|syscall.LOCK_NB)
		switch {
		case err == nil:
			return true, nil
		case errors.Is(err, syscall.EWOULDBLOCK):
			return false, nil
		case errors.Is(err, syscall.EINTR):
			continue
		default:
			return false, fmt.Errorf("flock %s: %w", f.Name(), err)
		}
	}
}

// Wait takes the lock on f, trying again every poll (0: 20ms) until ctx is done; then
// it fails with an error wrapping ctx.Err().
func Wait(ctx context.Context, f *os.File, m Mode, poll time.Duration) error {
	if poll <= 0 {
		poll = 20 * time.Millisecond
	}
	for {
		ok, err := Try(f, m)
		if err != nil || ok {
			return err
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("waiting for the %s lock of %s: %w", m, f.Name(), ctx.Err())
		case <-time.After(poll):
		}
	}
}
