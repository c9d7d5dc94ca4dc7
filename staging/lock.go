package staging

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// Owner records who holds an environment's lock.
type Owner struct {
	PID   int       `json:"pid"`
	Host  string    `json:"host"`
	Start time.Time `json:"start"`
	Job   string    `json:"job,omitempty"` // cron job name, for shared holders
}

// String describes the owner for messages.
func (o Owner) String() string {
	s := fmt.Sprintf("pid %d on %s since %s", o.PID, o.Host, o.Start.Format(time.RFC3339))
	if o.Job != "" {
		s = fmt.Sprintf("job %q (%s)", o.Job, s)
	}
	return s
}

// LockedError is returned when another rebuild (an exclusive holder) holds the lock.
type LockedError struct {
	Path  string
	Owner *Owner // nil when the holder left no record (e.g. flock(1) in a shell script)
}

// Error describes the failure.
func (e *LockedError) Error() string {
	if e.Owner == nil {
		return fmt.Sprintf("%s is locked by a process that left no owner record", e.Path)
	}
	return fmt.Sprintf("%s is locked by %s", e.Path, e.Owner)
}

// Is makes errors.Is(err, ErrLocked) true.
func (e *LockedError) Is(target error) bool { return target == ErrLocked }

// BusyError is returned when shared holders (cron jobs) still hold the lock after the wait.
type BusyError struct {
	Path    string
	Waited  time.Duration
	Holders []Owner // live holders that left a record
}

// Error describes the failure.
func (e *BusyError) Error() string {
	names := make([]string, 0, len(e.Holders))
	for _, h := range e.Holders {
		names = append(names, h.String())
	}
	if len(names) == 0 {
		names = append(names, "a holder that left no record")
	}
	return fmt.Sprintf("%s still held after %s by %s", e.Path, e.Waited, strings.Join(names, ", "))
}

// Is makes errors.Is(err, ErrBusy) true.
func (e *BusyError) Is(target error) bool { return target == ErrBusy }

// Lock is a held environment lock: flock(2) on the lock file, so that flock(1) in an
// operator's shell script interoperates, plus an owner record. An exclusive holder
// writes its record into the lock file; shared holders each write one into the folder
// "<lock file>.holders". The kernel releases the flock when a holder dies, so a record
// found under a lock that could be taken belongs to a dead owner.
type Lock struct {
	f         *os.File
	path      string
	exclusive bool
	record    string // shared holder's record file
	// TookOver is the record of a dead exclusive owner whose lock this one replaced.
	TookOver *Owner
}

// LockOptions are the options of AcquireExclusive.
type LockOptions struct {
	// WaitShared is how long to wait for shared holders (running cron jobs) to finish;
	// 0: do not wait.
	WaitShared time.Duration
	// Poll is the interval between tries while waiting; 0: 200ms.
	Poll time.Duration
}

func openLockFile(path string) (*os.File, error) {
	if path == "" {
		return nil, errors.New("lock: no lock file given")
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return nil, fmt.Errorf("lock: %w", err)
	}
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		return nil, fmt.Errorf("lock: %w", err)
	}
	return f, nil
}

func tryFlock(f *os.File, how int) (bool, error) {
	for {
		err := syscall.Flock(int(f.Fd()), how|syscall.LOCK_NB)
		switch {
		case err == nil:
			return true, nil
		case errors.Is(err, syscall.EWOULDBLOCK):
			return false, nil
		case errors.Is(err, syscall.EINTR):
			continue
		default:
			return false, fmt.Errorf("lock %s: %w", f.Name(), err)
		}
	}
}

func self(job string) Owner {
	host, _ := os.Hostname()
	return Owner{PID: os.Getpid(), Host: host, Start: time.Now().UTC().Truncate(time.Second), Job: job}
}

// AcquireExclusive takes the lock for a rebuild. It fails at once with a *LockedError
// when another rebuild holds it; when cron jobs hold it shared, it waits up to
// opts.WaitShared for them and then fails with a *BusyError naming them.
func AcquireExclusive(ctx context.Context, path string, opts LockOptions) (*Lock, error) {
	f, err := openLockFile(path)
	if err != nil {
		return nil, err
	}
	poll := opts.Poll
	if poll <= 0 {
		poll = 200 * time.Millisecond
	}
	start := time.Now()
	// While it waits for shared holders, a rebuild leaves its record in "<lock>.waiting"
	// so that no new cron job starts meanwhile (flock has no writer preference: a
	// stream of overlapping jobs would otherwise keep it out until WaitShared passes).
	waiting, marked := path+".waiting", false
	defer func() {
		if o, _ := readOwner(waiting); o != nil && o.PID == os.Getpid() {
			_ = os.Remove(waiting)
		}
	}()
	for {
		ok, err := tryFlock(f, syscall.LOCK_EX)
		if err != nil {
			f.Close()
			return nil, err
		}
		if ok {
			break
		}
		// Held. By another exclusive holder (a rebuild), or only by shared ones (jobs)?
		probe, err := os.Open(path)
		if err != nil {
			f.Close()
			return nil, fmt.Errorf("lock: %w", err)
		}
		shared, err := tryFlock(probe, syscall.LOCK_SH)
		probe.Close() // releases the probe's shared lock, if taken
		if err != nil {
			f.Close()
			return nil, err
		}
		if !shared {
			owner, _ := readOwner(path)
			f.Close()
			return nil, &LockedError{Path: path, Owner: owner}
		}
		if opts.WaitShared > 0 && !marked {
			data, _ := json.Marshal(self(""))
			marked = os.WriteFile(waiting, append(data, '\n'), 0o644) == nil
		}
		if time.Since(start) >= opts.WaitShared {
			f.Close()
			return nil, &BusyError{Path: path, Waited: time.Since(start).Round(time.Millisecond), Holders: SharedHolders(path)}
		}
		select {
		case <-ctx.Done():
			f.Close()
			return nil, fmt.Errorf("lock %s: waiting for %v: %w", path, SharedHolders(path), ctx.Err())
		case <-time.After(poll):
		}
	}
	l := &Lock{f: f, path: path, exclusive: true}
	if prev, err := readOwner(path); err == nil && prev != nil {
		l.TookOver = prev
	}
	data, _ := json.Marshal(self(""))
	if err := f.Truncate(0); err == nil {
		_, err = f.WriteAt(append(data, '\n'), 0)
	}
	if err != nil {
		l.Release()
		return nil, fmt.Errorf("lock %s: write owner record: %w", path, err)
	}
	return l, nil
}

// AcquireShared takes the lock for a cron job. It fails at once with a *LockedError
// when a rebuild holds it or is waiting for it.
func AcquireShared(path, job string) (*Lock, error) {
	if o, _ := readOwner(path + ".waiting"); o != nil {
		if processAlive(o.PID) {
			return nil, &LockedError{Path: path, Owner: o}
		}
		_ = os.Remove(path + ".waiting") // left by a rebuild that died waiting
	}
	f, err := openLockFile(path)
	if err != nil {
		return nil, err
	}
	ok, err := tryFlock(f, syscall.LOCK_SH)
	if err != nil {
		f.Close()
		return nil, err
	}
	if !ok {
		owner, _ := readOwner(path)
		f.Close()
		return nil, &LockedError{Path: path, Owner: owner}
	}
	l := &Lock{f: f, path: path}
	dir := path + ".holders"
	if err := os.MkdirAll(dir, 0o755); err == nil {
		rec := filepath.Join(dir, strconv.Itoa(os.Getpid())+"-"+sanitizeFileName(job)+".json")
		data, _ := json.Marshal(self(job))
		if os.WriteFile(rec, data, 0o644) == nil {
			l.record = rec
		}
	}
	return l, nil
}

// Release releases the lock and removes its owner record. It is safe to call twice.
func (l *Lock) Release() error {
	if l == nil || l.f == nil {
		return nil
	}
	if l.exclusive {
		_ = l.f.Truncate(0)
	}
	if l.record != "" {
		_ = os.Remove(l.record)
	}
	err := l.f.Close() // closing the last descriptor releases the flock
	l.f = nil
	return err
}

// File returns the open lock file. A process started with it among its files (e.g.
// exec.Cmd.ExtraFiles) shares the flock: the lock stays held while that process lives,
// even if the holder that started it dies.
func (l *Lock) File() *os.File { return l.f }

// Path returns the lock file's path.
func (l *Lock) Path() string { return l.path }

func readOwner(path string) (*Owner, error) {
	data, err := os.ReadFile(path)
	if err != nil || len(strings.TrimSpace(string(data))) == 0 {
		return nil, err
	}
	var o Owner
	if err := json.Unmarshal(data, &o); err != nil {
		return nil, fmt.Errorf("lock %s: owner record: %w", path, err)
	}
	return &o, nil
}

// SharedHolders returns the records of the live shared holders of the lock at path,
// oldest first; records of dead processes are removed.
func SharedHolders(path string) []Owner {
	dir := path + ".holders"
	entries, _ := os.ReadDir(dir)
	var out []Owner
	for _, e := range entries {
		p := filepath.Join(dir, e.Name())
		data, err := os.ReadFile(p)
		if err != nil {
			continue
		}
		var o Owner
		if json.Unmarshal(data, &o) != nil {
			continue
		}
		if !processAlive(o.PID) {
			_ = os.Remove(p)
			continue
		}
		out = append(out, o)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Start.Before(out[j].Start) })
	return out
}

func processAlive(pid int) bool {
	if pid <= 0 {
		return false
	}
	err := syscall.Kill(pid, 0)
	return err == nil || errors.Is(err, syscall.EPERM)
}

func sanitizeFileName(s string) string {
	return strings.Map(func(r rune) rune {
		if r == '/' || r == 0 {
			return '_'
		}
		return r
	}, s)
}
