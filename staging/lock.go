package staging

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/restage/restage/internal/atomicfile"
	"github.com/restage/restage/internal/flock"
	"github.com/restage/restage/internal/proc"
	"github.com/restage/restage/internal/safefile"
)

// Owner records who holds an environment's lock.
type Owner struct {
	PID   int       `json:"pid"`           // the holder's process ID
	Host  string    `json:"host"`          // the host it runs on
	Start time.Time `json:"start"`         // when it took the lock (or started to wait for it)
	Job   string    `json:"job,omitempty"` // cron job name, for shared holders
	// ProcStart is the process's start time in clock ticks since boot (field 22 of
	// /proc/<pid>/stat) and BootID the kernel's boot id: with them, a record whose pid
	// now belongs to another process, or that is from before a reboot, is known to be
	// stale. 0 and "": not recorded (a record written before they existed, or without
	// /proc), then the pid alone is checked.
	ProcStart uint64 `json:"proc_start,omitempty"`
	BootID    string `json:"boot_id,omitempty"`
}

// String describes the owner for messages.
func (o Owner) String() string {
	s := fmt.Sprintf("pid %d on %s since %s", o.PID, o.Host, o.Start.Format(time.RFC3339))
	if o.Job != "" {
		s = fmt.Sprintf("job %q (%s)", o.Job, s)
	}
	return s
}

// LockedError is returned when another rebuild (an exclusive holder) holds the lock,
// or, to AcquireShared, when a rebuild waits for it.
type LockedError struct {
	Path  string // the lock file
	Owner *Owner // nil when the holder left no record (e.g. flock(1) in a shell script)
	// Waiting: the rebuild does not hold the lock yet; it waits for the shared holders
	// (its "<lock file>.waiting" record), and no new shared holder may start meanwhile.
	Waiting bool
}

// Error describes the failure.
func (e *LockedError) Error() string {
	switch {
	case e.Waiting:
		return fmt.Sprintf("%s is awaited by a rebuild, %s", e.Path, e.Owner)
	case e.Owner == nil:
		return fmt.Sprintf("%s is locked by a process that left no owner record", e.Path)
	}
	return fmt.Sprintf("%s is locked by %s", e.Path, e.Owner)
}

// Is makes errors.Is(err, ErrLocked) true.
func (e *LockedError) Is(target error) bool { return target == ErrLocked }

// BusyError is returned when shared holders (cron jobs) still hold the lock after the wait.
type BusyError struct {
	Path    string        // the lock file
	Waited  time.Duration // how long the rebuild waited
	Holders []Owner       // live holders that left a record
}

// Error describes the failure.
func (e *BusyError) Error() string {
	return fmt.Sprintf("%s still held after %s by %s", e.Path, e.Waited, holderNames(e.Holders))
}

// holderNames names the shared holders of a lock for an error.
func holderNames(holders []Owner) string {
	names := make([]string, 0, len(holders))
	for _, h := range holders {
		names = append(names, h.String())
	}
	if len(names) == 0 {
		return "a holder that left no record"
	}
	return strings.Join(names, ", ")
}

// Is makes errors.Is(err, ErrBusy) true.
func (e *BusyError) Is(target error) bool { return target == ErrBusy }

// Lock is a held environment lock: flock(2) on the lock file, so that flock(1) in an
// operator's shell script interoperates, plus an owner record. An exclusive holder
// writes its record into the lock file; shared holders each write one into the folder
// "<lock file>.holders". The kernel releases the flock when a holder dies, so a record
// found under a lock that could be taken belongs to a dead owner.
//
// The lock file, the records and "<lock file>.waiting" are opened without following a
// symbolic link (a link planted there is refused, its target untouched); files it
// creates are 0600, folders 0700.
type Lock struct {
	f         *os.File
	path      string
	exclusive bool
	record    string // shared holder's record file
	// TookOver is the record of a dead exclusive owner whose lock this one replaced.
	TookOver *Owner
	// RecordErr says why a shared holder's record could not be written. The lock is
	// held all the same, but a rebuild waiting for it cannot name this holder: callers
	// should log it.
	RecordErr error
}

// LockOptions are the options of AcquireExclusive.
type LockOptions struct {
	// WaitShared is how long to wait for shared holders (running cron jobs) to finish;
	// 0: do not wait.
	WaitShared time.Duration
	// Poll is the interval between tries while waiting; 0: 200ms.
	Poll time.Duration
}

// writeRecord writes an owner record to path (0600, no link followed).
func writeRecord(path string, o Owner) error {
	data, err := json.Marshal(o)
	if err != nil {
		return err
	}
	// Anything but a regular file planted at path is refused, as safefile refuses it.
	if _, err := os.Lstat(path); err == nil {
		f, err := safefile.OpenPrivate(path, os.O_RDONLY)
		if err != nil {
			return err
		}
		f.Close()
	}
	// Whole or not at all: a reader must never see an empty record (a cron job would take
	// a "<lock>.waiting" being written for no rebuild at all and start).
	return atomicfile.WriteFile(path, append(data, '\n'), 0o600)
}

// openLockFile opens (creates) the lock file, never through a symbolic link, in a
// folder it makes 0700. The file may be of any kind an operator's flock(1) can lock,
// but not one another user could replace (see replaceable).
func openLockFile(path string) (*os.File, error) {
	if path == "" {
		return nil, errors.New("lock: no lock file given")
	}
	if err := os.MkdirAll(filepath.Dir(path), safefile.DirMode); err != nil {
		return nil, fmt.Errorf("lock: %w", err)
	}
	f, err := safefile.Open(path, os.O_RDWR|os.O_CREATE, safefile.FileMode)
	if err != nil {
		return nil, fmt.Errorf("lock: %w", err)
	}
	if err := replaceable(f); err != nil {
		f.Close()
		return nil, err
	}
	if err := checkLockFile(f); err != nil {
		f.Close()
		return nil, err
	}
	return f, nil
}

// replaceable refuses a lock file another user could replace with a file of their
// own, so that a rebuild and a cron job would each hold "the lock" on another file: one
// in a folder others may write to without the sticky bit, or one another user owns
// (root excepted), who may replace it even in a sticky folder such as /tmp.
func replaceable(f *os.File) error {
	dir := filepath.Dir(f.Name())
	dst, err := os.Stat(dir)
	if err != nil {
		return fmt.Errorf("lock: %w", err)
	}
	if perm := dst.Mode().Perm(); perm&0o022 != 0 && dst.Mode()&os.ModeSticky == 0 {
		return fmt.Errorf("lock: %s: its folder's mode %#o lets other users replace it: refused (make the folder %#o, or give it the sticky bit)",
			f.Name(), perm, safefile.DirMode)
	}
	st, err := f.Stat()
	if err != nil {
		return fmt.Errorf("lock: %w", err)
	}
	if sys, ok := st.Sys().(*syscall.Stat_t); ok {
		if uid := int(sys.Uid); uid != os.Geteuid() && uid != 0 {
			return fmt.Errorf("lock: %s belongs to user id %d, not to this process's %d, who could replace it: refused (the nightly, its cron jobs and an operator's flock(1) run as one user)",
				f.Name(), uid, os.Geteuid())
		}
	}
	return nil
}

// checkLockFile refuses a lock file that restage would damage by writing its owner
// record into it (a rebuild truncates the file it holds): anything but a regular file
// (a device, a FIFO), and a file that holds something other than an owner record, such
// as another program's file that lock_file names by mistake (a pgBackRest repository's
// backup.info, a server's postmaster.pid). An empty file is a lock file: flock(1) and
// a released lock leave it so.
func checkLockFile(f *os.File) error {
	st, err := f.Stat()
	if err != nil {
		return fmt.Errorf("lock: %w", err)
	}
	if !st.Mode().IsRegular() {
		return fmt.Errorf("lock: %s is not a regular file (%s): refused, it is not a lock file", f.Name(), st.Mode().Type())
	}
	o, err := readOwnerFrom(f)
	if err == nil && o != nil && o.PID <= 0 {
		err = errors.New("no pid")
	}
	if err != nil && errors.Is(err, errPartialRecord) {
		// A record another rebuild is writing now (it truncates, then writes): that
		// rebuild holds the flock, which says so.
		err = nil
	}
	if err != nil {
		return fmt.Errorf("lock: %s holds %d bytes that are not restage's owner record (%v): refused, it may be another program's file (check lock_file)",
			f.Name(), st.Size(), err)
	}
	return nil
}

// self is the calling process's owner record.
func self(job string) Owner {
	host, _ := os.Hostname()
	id := proc.Self()
	return Owner{PID: id.PID, Host: host, Start: time.Now().UTC().Truncate(time.Second), Job: job, ProcStart: id.StartTime, BootID: id.BootID}
}

// AcquireExclusive takes the lock for a rebuild. It fails at once with a *LockedError
// when another rebuild holds it; when cron jobs hold it shared, it waits up to
// opts.WaitShared for them and then fails with a *BusyError naming them.
func AcquireExclusive(ctx context.Context, path string, opts LockOptions) (*Lock, error) {
	f, err := openLockFile(path)
	if err != nil {
		return nil, err
	}
	if err := waitExclusive(ctx, f, path, opts); err != nil {
		f.Close()
		return nil, err
	}
	l := &Lock{f: f, path: path, exclusive: true}
	if prev, err := readOwnerFrom(f); err == nil && prev != nil {
		l.TookOver = prev
	}
	if err := writeOwnerInto(f, self("")); err != nil {
		l.Release()
		return nil, fmt.Errorf("lock %s: write owner record: %w", path, err)
	}
	return l, nil
}

// waitExclusive takes the exclusive flock on f, the lock file at path, waiting for
// shared holders as AcquireExclusive says.
//
// While it waits, it leaves its record in "<lock>.waiting", so that no new cron job
// starts meanwhile (flock has no writer preference: a stream of overlapping jobs would
// otherwise keep the rebuild out until WaitShared passes), and removes it at the end.
func waitExclusive(ctx context.Context, f *os.File, path string, opts LockOptions) error {
	poll := opts.Poll
	if poll <= 0 {
		poll = 200 * time.Millisecond
	}
	start := time.Now()
	waiting, marked := path+".waiting", false
	defer func() {
		if o, _ := readOwner(waiting); marked && o != nil && o.PID == os.Getpid() {
			_ = os.Remove(waiting)
		}
	}()
	for {
		ok, err := flock.Try(f, flock.Exclusive)
		if err != nil || ok {
			return err
		}
		// Held. By another exclusive holder (a rebuild), or only by shared ones (jobs)?
		shared, err := sharedFree(path)
		if err != nil {
			return err
		}
		if !shared {
			owner, _ := readOwner(path)
			return &LockedError{Path: path, Owner: owner}
		}
		if opts.WaitShared > 0 && !marked {
			// Without its record a waiting rebuild could be kept out by new jobs.
			if err := writeRecord(waiting, self("")); err != nil {
				return fmt.Errorf("lock %s: write waiting record: %w", path, err)
			}
			marked = true
		}
		if time.Since(start) >= opts.WaitShared {
			return &BusyError{Path: path, Waited: time.Since(start).Round(time.Millisecond), Holders: SharedHolders(path)}
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("lock %s: waiting for %s: %w", path, holderNames(SharedHolders(path)), ctx.Err())
		case <-time.After(poll):
		}
	}
}

// sharedFree reports whether a shared flock on the lock file at path could be taken
// now, that is whether only shared holders hold it. It probes through a descriptor
// of its own, closed at once (which releases the probe's lock).
func sharedFree(path string) (bool, error) {
	probe, err := safefile.Open(path, os.O_RDONLY, 0)
	if err != nil {
		return false, fmt.Errorf("lock: %w", err)
	}
	defer probe.Close()
	return flock.Try(probe, flock.Shared)
}

// writeOwnerInto replaces the contents of the held lock file f by o's record.
func writeOwnerInto(f *os.File, o Owner) error {
	data, err := json.Marshal(o)
	if err != nil {
		return err
	}
	if err := f.Truncate(0); err != nil {
		return err
	}
	_, err = f.WriteAt(append(data, '\n'), 0)
	return err
}

// AcquireShared takes the lock for a cron job. It fails at once with a *LockedError
// when a rebuild holds it or is waiting for it (a "<lock file>.waiting" record whose
// process still runs: same pid, same start time, same boot). A failure to write the
// holder's record does not fail it: see Lock.RecordErr.
func AcquireShared(path, job string) (*Lock, error) {
	o, err := readOwner(path + ".waiting")
	if errors.Is(err, syscall.ELOOP) {
		return nil, fmt.Errorf("lock: %w", err)
	}
	if o != nil {
		if o.alive() {
			return nil, &LockedError{Path: path, Owner: o, Waiting: true}
		}
		_ = os.Remove(path + ".waiting") // left by a rebuild that died waiting
	}
	f, err := openLockFile(path)
	if err != nil {
		return nil, err
	}
	ok, err := flock.Try(f, flock.Shared)
	if err != nil || !ok {
		f.Close()
		if err != nil {
			return nil, err
		}
		owner, _ := readOwner(path)
		return nil, &LockedError{Path: path, Owner: owner}
	}
	l := &Lock{f: f, path: path}
	dir := path + ".holders"
	rec := filepath.Join(dir, strconv.Itoa(os.Getpid())+"-"+sanitizeFileName(job)+".json")
	if err := safefile.MkdirPrivate(dir); err != nil {
		l.RecordErr = fmt.Errorf("lock %s: holder record: %w", path, err)
	} else if err := writeRecord(rec, self(job)); err != nil {
		l.RecordErr = fmt.Errorf("lock %s: holder record: %w", path, err)
	} else {
		l.record = rec
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

// ReadOnly returns a new read-only descriptor of a shared lock's file that holds the
// lock too (taken without waiting: this Lock holds it already), for a child process to
// inherit (exec.Cmd.ExtraFiles) in place of File: the child holds the lock while it
// lives, even if the holder that started it dies, but cannot write the file through it
// (a cron job rewriting the owner record would make every later rebuild refuse the
// file). The caller closes it once the child has ended. An exclusive lock has none.
func (l *Lock) ReadOnly() (*os.File, error) {
	if l.exclusive {
		return nil, errors.New("lock: an exclusive lock cannot be shared with a child")
	}
	f, err := safefile.Open(l.path, os.O_RDONLY, 0)
	if err != nil {
		return nil, fmt.Errorf("lock: %w", err)
	}
	held, err1 := l.f.Stat()
	opened, err2 := f.Stat()
	if err := errors.Join(err1, err2); err != nil || !os.SameFile(held, opened) {
		f.Close()
		return nil, fmt.Errorf("lock: %s is no longer the file locked (%v)", l.path, err)
	}
	if ok, err := flock.Try(f, flock.Shared); err != nil || !ok {
		f.Close()
		return nil, fmt.Errorf("lock: sharing %s with a child: %v", l.path, err)
	}
	return f, nil
}

// Path returns the lock file's path.
func (l *Lock) Path() string { return l.path }

// readOwner reads the owner record at path without following a symbolic link; a
// missing or empty file is no record (nil, nil).
func readOwner(path string) (*Owner, error) {
	f, err := safefile.OpenPrivate(path, os.O_RDONLY)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return readOwnerFrom(f)
}

// maxRecordSize bounds what is read of an owner record.
const maxRecordSize = 64 << 10

// readOwnerFrom reads the owner record in f from its start.
func readOwnerFrom(f *os.File) (*Owner, error) {
	data, err := io.ReadAll(io.NewSectionReader(f, 0, maxRecordSize))
	if err != nil || len(bytes.TrimSpace(data)) == 0 {
		return nil, err
	}
	var o Owner
	if err := json.Unmarshal(data, &o); err != nil {
		if bytes.HasPrefix(bytes.TrimSpace(data), []byte("{")) {
			err = fmt.Errorf("%w: %w", errPartialRecord, err)
		}
		return nil, fmt.Errorf("lock %s: owner record: %w", f.Name(), err)
	}
	return &o, nil
}

// errPartialRecord: what an owner record holds is JSON cut short, as a record being
// written is.
var errPartialRecord = errors.New("an owner record cut short")

// SharedHolders returns the records of the live shared holders of the lock at path,
// oldest first; records of dead processes are removed.
func SharedHolders(path string) []Owner {
	dir := path + ".holders"
	entries, _ := os.ReadDir(dir)
	var out []Owner
	for _, e := range entries {
		p := filepath.Join(dir, e.Name())
		o, err := readOwner(p)
		if err != nil || o == nil {
			continue
		}
		if !o.alive() {
			_ = os.Remove(p)
			continue
		}
		out = append(out, *o)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Start.Before(out[j].Start) })
	return out
}

// alive reports whether the process that wrote the record still runs: its pid is
// used by a process that has not exited and, where the record has them, that process
// started at the recorded time of the recorded boot (so a recycled pid is not it).
func (o Owner) alive() bool {
	v, _, _ := proc.Check(proc.ID{PID: o.PID, StartTime: o.ProcStart, BootID: o.BootID})
	return v == proc.Alive // where /proc cannot tell, Alive comes from kill(pid, 0)
}

// sanitizeFileName makes s usable as a part of a file name.
func sanitizeFileName(s string) string {
	return strings.Map(func(r rune) rune {
		if r == '/' || r == 0 {
			return '_'
		}
		return r
	}, s)
}
