package notify

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"syscall"
	"time"

	"github.com/restage/restage/internal/atomicfile"
	"github.com/restage/restage/internal/flock"
	"github.com/restage/restage/internal/safefile"
)

// Spool file layout (all inside the spool folder):
//
//	<unix-nanos, 20 digits>-<id>.json   one undelivered report, oldest name first
//	*.new                               a file being written by atomicfile.WriteFile
//	                                    (removed if a crash left it; .tmp-* of older versions too)
//	*.corrupt                           a report file that could not be read, moved aside
//	delivered                           IDs of the last reports delivered, one per line
//	.lock                               flock(2) serialising spool users across processes
const (
	spoolExt       = ".json"
	corruptExt     = ".corrupt"
	tmpSuffix      = ".new"  // atomicfile.WriteFile's temporary
	oldTmpPrefix   = ".tmp-" // the temporaries of versions before atomicfile
	deliveredName  = "delivered"
	lockName       = ".lock"
	deliveredKeep  = 1000 // IDs kept in the delivered record
	lockPollPeriod = 50 * time.Millisecond
	// maxSpoolFile bounds what is read back from the spool: a report with its log is far
	// smaller, so a larger file is not one a Spool wrote.
	maxSpoolFile = 1 << 30
)

// Flusher is implemented by notifiers that hold undelivered reports (Spool, and a FanOut
// of them): Flush tries to deliver them now.
type Flusher interface {
	// Flush tries to deliver the held reports now, within ctx; its error says which
	// stay undelivered.
	Flush(ctx context.Context) error
}

// Spool wraps a Notifier so that no report is lost and none is sent twice.
//
// Notify first delivers the reports spooled by earlier calls, oldest first (stopping at
// the first failure, as the target is then most likely still down, unless the target
// answered that it rejects that report for good, ErrRejected: it stays spooled, and the
// next ones are tried), then the new one.
// A report that cannot be delivered is written atomically (temporary file, fsync,
// rename, fsync of the folder) into the spool folder as JSON, and Notify returns an error
// wrapping ErrSpooled and the delivery error. A report without an ID is given one
// (NewID) first; the caller's Message is not modified.
//
// Once-only delivery: after a report is delivered its ID is appended (and fsynced) to
// the "delivered" record, then its spool file is removed. A report whose ID is in the
// record is never sent again: a crash between the record and the removal, or a caller
// that retries Notify with the same ID, does not cause a second delivery. The only
// window left is a crash after the target accepted a report and before its ID was
// recorded; that report is sent again on the next run (at least once rather than at most
// once: a duplicate report is better than a lost one), and it carries the same ID
// (SMTP Message-ID, webhook Idempotency-Key) so the receiver can recognise it.
//
// A spool file that cannot be read back is renamed to *.corrupt and reported (Flush and
// Pending return ErrCorruptSpoolFile; Notify logs it), never deleted silently.
//
// Wrap each target in its own Spool (SpoolEach does this) rather than a FanOut in one:
// a spooled report is re-sent to everything its Notifier reaches, so a Spool around a
// FanOut would re-send to the healthy targets too.
//
// Users of one spool folder, in this and in other processes, are serialised with
// flock(2). A Spool is safe for concurrent use.
type Spool struct {
	dir    string
	next   Notifier
	logger *slog.Logger
}

var (
	_ Notifier = (*Spool)(nil)
	_ Flusher  = (*Spool)(nil)
	_ Flusher  = (*FanOut)(nil)
)

// NewSpool returns a Spool that delivers through next and keeps undelivered reports in
// dir: created with mode 0700 if missing (its missing parents too), narrowed to 0700 if
// wider, refused if it is a symbolic link or not a folder, or if another user owns it
// or may write to it (safefile.ErrNotPrivate). Every file in it is created
// with mode 0600 and opened without following a symbolic link at its path. A nil logger
// means slog.Default().
func NewSpool(dir string, next Notifier, logger *slog.Logger) (*Spool, error) {
	if dir == "" {
		return nil, fmt.Errorf("%w: spool dir: missing", ErrInvalidConfig)
	}
	if next == nil {
		return nil, fmt.Errorf("%w: spool %s: nil Notifier", ErrInvalidConfig, dir)
	}
	if logger == nil {
		logger = slog.Default()
	}
	if err := privateDir(dir); err != nil {
		return nil, fmt.Errorf("notify: spool: %w", err)
	}
	return &Spool{dir: dir, next: next, logger: logger}, nil
}

// Dir returns the spool folder.
func (s *Spool) Dir() string { return s.dir }

// String names the spool and what it wraps.
func (s *Spool) String() string {
	if st, ok := s.next.(fmt.Stringer); ok {
		return "spool " + s.dir + " (" + st.String() + ")"
	}
	return "spool " + s.dir
}

// Notify delivers the spooled reports, then m; see Spool. It returns nil when m was
// delivered (or had been delivered before), even if older reports stay spooled (they are
// logged); an error wrapping ErrSpooled when m was spooled; any other error means m
// could not even be spooled.
func (s *Spool) Notify(ctx context.Context, m *Message) error {
	if err := checkMessage(m); err != nil {
		return err
	}
	msg := *m
	if msg.ID == "" {
		msg.ID = NewID()
	}
	unlock, err := s.lock(ctx)
	if err != nil {
		// Without the lock the spool cannot be used safely; still try to deliver.
		if derr := s.next.Notify(ctx, &msg); derr != nil {
			return errors.Join(fmt.Errorf("notify: %w", derr), err)
		}
		return nil
	}
	defer unlock()

	delivered := s.readDelivered()
	pending, flushErr := s.flushLocked(ctx, delivered)
	if flushErr != nil {
		s.logger.Warn("notify: spooled reports not delivered", logKeyError, flushErr.Error(),
			logKeyPending, len(pending), logKeyFile, s.dir)
	}
	if delivered[msg.ID] {
		s.logger.Info("notify: report already delivered; not sending it again", logKeyID, msg.ID)
		return nil
	}
	if path, ok := pending[msg.ID]; ok {
		return fmt.Errorf("%w (already spooled as %s)", ErrSpooled, path)
	}
	derr := s.next.Notify(ctx, &msg)
	if derr == nil {
		s.markDelivered(msg.ID)
		return nil
	}
	path, serr := s.write(&msg)
	if serr != nil {
		s.logger.Error("notify: report LOST: neither delivered nor spooled", logKeyID, msg.ID,
			logKeyError, errors.Join(derr, serr).Error())
		return errors.Join(fmt.Errorf("notify: %w", derr), fmt.Errorf("notify: cannot spool report: %w", serr))
	}
	s.logger.Warn("notify: report spooled", logKeyID, msg.ID, logKeyFile, path, logKeyError, derr.Error())
	return fmt.Errorf("%w (%s): %w", ErrSpooled, path, derr)
}

// Flush delivers the spooled reports, oldest first, stopping at the first delivery
// failure. The error also reports corrupt spool files (ErrCorruptSpoolFile).
func (s *Spool) Flush(ctx context.Context) error {
	unlock, err := s.lock(ctx)
	if err != nil {
		return err
	}
	defer unlock()
	_, err = s.flushLocked(ctx, s.readDelivered())
	return err
}

// Pending returns the spooled reports, oldest first, without delivering them. Corrupt
// files are skipped and reported in the error (ErrCorruptSpoolFile), left in place.
func (s *Spool) Pending() ([]*Message, error) {
	entries, err := s.list(false)
	if err != nil {
		return nil, err
	}
	delivered := s.readDelivered()
	var out []*Message
	var errs []error
	for _, name := range entries {
		m, err := readSpoolFile(filepath.Join(s.dir, name))
		if errors.Is(err, fs.ErrNotExist) {
			continue // delivered meanwhile
		}
		if err != nil {
			errs = append(errs, err)
			continue
		}
		if !delivered[m.ID] {
			out = append(out, m)
		}
	}
	return out, errors.Join(errs...)
}

// flushLocked delivers the spooled reports; it returns the IDs still spooled (with their
// paths) and the errors met. The caller holds the lock.
func (s *Spool) flushLocked(ctx context.Context, delivered map[string]bool) (map[string]string, error) {
	pending := map[string]string{}
	names, err := s.list(true)
	if err != nil {
		return pending, err
	}
	var errs []error
	failed := false
	for _, name := range names {
		path := filepath.Join(s.dir, name)
		m, err := readSpoolFile(path)
		if err != nil {
			errs = append(errs, s.moveAside(path, err))
			continue
		}
		if delivered[m.ID] {
			s.logger.Info("notify: spooled report was already delivered; removing it", logKeyID, m.ID, logKeyFile, path)
			if err := removeSynced(path); err != nil {
				errs = append(errs, fmt.Errorf("notify: spool: %w", err))
			}
			continue
		}
		if failed {
			pending[m.ID] = path
			continue
		}
		if err := s.next.Notify(ctx, m); err != nil {
			pending[m.ID] = path
			errs = append(errs, fmt.Errorf("spooled report %s: %w", m.ID, err))
			if errors.Is(err, ErrRejected) {
				// The target is up and refuses this one: it must not hold the others up.
				s.logger.Error("notify: spooled report rejected by the target; kept, the next ones are tried",
					logKeyID, m.ID, logKeyFile, path, logKeyError, err.Error())
				continue
			}
			failed = true
			continue
		}
		s.markDelivered(m.ID)
		delivered[m.ID] = true
		if err := removeSynced(path); err != nil {
			errs = append(errs, fmt.Errorf("notify: spool: delivered report %s: %w", m.ID, err))
		}
		s.logger.Info("notify: spooled report delivered", logKeyID, m.ID, logKeyTopic, m.Topic, logKeyFile, path)
	}
	s.trimDelivered()
	return pending, errors.Join(errs...)
}

// list returns the spool file names, oldest first. With locked (the caller holds the
// lock, so no write is in progress) it removes temporary files left by a crash: their
// writer never returned success, so they are not reports anyone counts on.
func (s *Spool) list(locked bool) ([]string, error) {
	des, err := os.ReadDir(s.dir)
	if err != nil {
		return nil, fmt.Errorf("notify: spool: %w", err)
	}
	var names []string
	for _, de := range des {
		n := de.Name()
		switch {
		case strings.HasSuffix(n, tmpSuffix), strings.HasPrefix(n, oldTmpPrefix):
			if locked {
				s.logger.Warn("notify: removing partial spool file left by a crash", logKeyFile, n)
				_ = os.Remove(filepath.Join(s.dir, n))
			}
		case strings.HasSuffix(n, spoolExt) && de.Type().IsRegular():
			names = append(names, n)
		}
	}
	sort.Strings(names)
	return names, nil
}

// readSpoolFile reads one spooled report; a file that does not parse or has no ID is
// reported with ErrCorruptSpoolFile.
func readSpoolFile(path string) (*Message, error) {
	b, err := safefile.ReadFile(path, maxSpoolFile)
	if err != nil {
		return nil, fmt.Errorf("notify: spool: %w", err)
	}
	var m Message
	if err := json.Unmarshal(b, &m); err != nil {
		return nil, fmt.Errorf("%w %s: %v", ErrCorruptSpoolFile, path, err)
	}
	if m.ID == "" {
		return nil, fmt.Errorf("%w %s: no report ID", ErrCorruptSpoolFile, path)
	}
	return &m, nil
}

// moveAside renames a corrupt spool file to *.corrupt and returns the error to report.
func (s *Spool) moveAside(path string, cause error) error {
	if !errors.Is(cause, ErrCorruptSpoolFile) {
		return cause
	}
	dst := strings.TrimSuffix(path, spoolExt) + corruptExt
	if err := os.Rename(path, dst); err != nil {
		return errors.Join(cause, fmt.Errorf("notify: spool: cannot move corrupt file aside: %w", err))
	}
	_ = atomicfile.SyncDir(s.dir)
	s.logger.Error("notify: corrupt spool file moved aside", logKeyFile, dst, logKeyError, cause.Error())
	return fmt.Errorf("%w (moved to %s)", cause, dst)
}

// write stores m atomically as a new spool file and returns its path.
func (s *Spool) write(m *Message) (string, error) {
	b, err := json.MarshalIndent(m, "", "  ")
	if err != nil {
		return "", err
	}
	id := safeName(m.ID)
	if len(id) > 100 {
		id = id[:100]
	}
	name := fmt.Sprintf("%020d-%s%s", time.Now().UnixNano(), id, spoolExt)
	path := filepath.Join(s.dir, name)
	if err := atomicfile.WriteFile(path, b, safefile.FileMode); err != nil {
		return "", err
	}
	return path, nil
}

// removeSynced removes path and syncs its folder.
func removeSynced(path string) error {
	if err := os.Remove(path); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	return atomicfile.SyncDir(filepath.Dir(path))
}

// readDelivered returns the IDs in the delivered record (empty when there is none).
func (s *Spool) readDelivered() map[string]bool {
	ids := map[string]bool{}
	for _, id := range s.deliveredIDs() {
		ids[id] = true
	}
	return ids
}

func (s *Spool) deliveredIDs() []string {
	b, err := safefile.ReadFile(filepath.Join(s.dir, deliveredName), maxSpoolFile)
	if err != nil {
		if !errors.Is(err, fs.ErrNotExist) {
			s.logger.Error("notify: cannot read delivered record", logKeyError, err.Error())
		}
		return nil
	}
	var ids []string
	sc := bufio.NewScanner(bytes.NewReader(b))
	sc.Buffer(make([]byte, 0, 4096), 1<<20)
	for sc.Scan() {
		if id := strings.TrimSpace(sc.Text()); id != "" {
			ids = append(ids, id)
		}
	}
	return ids
}

// markDelivered appends id to the delivered record and fsyncs it. A failure is logged:
// the report was delivered, and removing its spool file still prevents a second send.
func (s *Spool) markDelivered(id string) {
	err := func() error {
		f, err := safefile.OpenPrivate(filepath.Join(s.dir, deliveredName), os.O_WRONLY|os.O_APPEND|os.O_CREATE)
		if err != nil {
			return err
		}
		if _, err := f.WriteString(oneLine(id) + "\n"); err != nil {
			_ = f.Close()
			return err
		}
		if err := f.Sync(); err != nil {
			_ = f.Close()
			return err
		}
		return f.Close()
	}()
	if err != nil {
		s.logger.Error("notify: cannot record delivered report", logKeyID, id, logKeyError, err.Error())
	}
}

// trimDelivered keeps the delivered record to its last deliveredKeep IDs.
func (s *Spool) trimDelivered() {
	ids := s.deliveredIDs()
	if len(ids) <= 2*deliveredKeep {
		return
	}
	ids = slices.Clone(ids[len(ids)-deliveredKeep:])
	data := []byte(strings.Join(ids, "\n") + "\n")
	if err := atomicfile.WriteFile(filepath.Join(s.dir, deliveredName), data, safefile.FileMode); err != nil {
		s.logger.Error("notify: cannot trim delivered record", logKeyError, err.Error())
	}
}

// lock takes the spool folder's flock, polling until ctx ends, and returns what
// releases it.
func (s *Spool) lock(ctx context.Context) (func(), error) {
	f, err := safefile.OpenPrivate(filepath.Join(s.dir, lockName), os.O_RDWR|os.O_CREATE)
	if err != nil {
		return nil, fmt.Errorf("notify: spool lock: %w", err)
	}
	if err := flock.Wait(ctx, f, flock.Exclusive, lockPollPeriod); err != nil {
		_ = f.Close()
		return nil, fmt.Errorf("notify: spool lock: %w", err)
	}
	return func() { _ = f.Close() }, nil // closing releases the lock
}

// SpoolEach wraps every named notifier in its own Spool, in the subfolder dir/<name>,
// and fans out to them (in name order). A report that one target could not take is then
// re-sent to that target only. Names must be usable as folder names.
func SpoolEach(dir string, named map[string]Notifier, logger *slog.Logger) (*FanOut, error) {
	if len(named) == 0 {
		return nil, fmt.Errorf("%w: SpoolEach: no notifiers", ErrInvalidConfig)
	}
	names := make([]string, 0, len(named))
	for n := range named {
		if n == "" || n != safeName(n) || strings.HasPrefix(n, ".") {
			return nil, fmt.Errorf("%w: SpoolEach: name %q: use letters, digits, '-', '_' and '.'", ErrInvalidConfig, n)
		}
		names = append(names, n)
	}
	sort.Strings(names)
	targets := make([]Target, 0, len(names))
	for _, n := range names {
		sp, err := NewSpool(filepath.Join(dir, n), named[n], logger)
		if err != nil {
			return nil, err
		}
		targets = append(targets, Target{Name: n, Notifier: sp})
	}
	return NewFanOut(targets...)
}

// privateDir makes dir (and its missing parents) with mode safefile.DirMode, or narrows
// an existing one to it (a spool holds reports and their logs); a symbolic link or a
// non-folder at dir is an error. The folder is narrowed through a descriptor opened
// without following a link, so a link planted meanwhile is not followed either.
func privateDir(dir string) error {
	if err := safefile.MkdirPrivate(dir); err != nil {
		return err
	}
	d, err := safefile.Open(dir, os.O_RDONLY|syscall.O_DIRECTORY, 0)
	if err != nil {
		return err
	}
	defer d.Close()
	fi, err := d.Stat()
	if err != nil {
		return err
	}
	if fi.Mode().Perm() != safefile.DirMode {
		return d.Chmod(safefile.DirMode)
	}
	return nil
}
