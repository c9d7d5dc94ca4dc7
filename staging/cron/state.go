package cron

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sync"
	"syscall"
	"time"
)

// StateFile is the name of the runner's state in state_dir.
const StateFile = "state.json"

// state is what the runner remembers between runs.
type state struct {
	// LastRun is the last minute a run dealt with.
	LastRun time.Time `json:"last_run"`
	// Jobs holds, per job, the last minute through which the job is done with; a job
	// skipped because a rebuild held the lock stays behind, so its minute is still owed.
	Jobs map[string]time.Time `json:"jobs"`
}

func readState(path string) (*state, error) {
	data, err := readFileNoFollow(path)
	if errors.Is(err, fs.ErrNotExist) {
		return &state{Jobs: map[string]time.Time{}}, nil
	}
	if err != nil {
		return nil, err
	}
	var st state
	if err := json.Unmarshal(data, &st); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	if st.Jobs == nil {
		st.Jobs = map[string]time.Time{}
	}
	return &st, nil
}

func writeState(path string, st *state) error {
	data, err := json.MarshalIndent(st, "", "  ")
	if err != nil {
		return err
	}
	return writeFileAtomic(path, append(data, '\n'), 0o600)
}

// openNoFollow opens path like os.OpenFile, but refuses a symbolic link at path
// (O_NOFOLLOW) with an error that says so (errors.Is(err, syscall.ELOOP)).
func openNoFollow(path string, flag int, perm fs.FileMode) (*os.File, error) {
	f, err := os.OpenFile(path, flag|syscall.O_NOFOLLOW, perm)
	if errors.Is(err, syscall.ELOOP) {
		return nil, fmt.Errorf("%s is a symbolic link: refused (restage does not follow links to its lock and state files): %w", path, syscall.ELOOP)
	}
	return f, err
}

// readFileNoFollow reads the file at path (at most maxStateSize bytes) without
// following a symbolic link.
func readFileNoFollow(path string) ([]byte, error) {
	f, err := openNoFollow(path, os.O_RDONLY, 0)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, maxStateSize+1))
	if err == nil && len(data) > maxStateSize {
		err = fmt.Errorf("%s: larger than %d bytes", path, maxStateSize)
	}
	return data, err
}

// maxStateSize bounds the state and control copy files read.
const maxStateSize = 4 << 20

// mkdirPrivate makes the folder dir (0700, and its missing parents) unless it
// exists, and refuses a symbolic link or a file there.
func mkdirPrivate(dir string) error {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	st, err := os.Lstat(dir)
	switch {
	case err != nil:
		return err
	case st.Mode()&fs.ModeSymlink != 0:
		return fmt.Errorf("%s is a symbolic link: refused: %w", dir, syscall.ELOOP)
	case !st.IsDir():
		return fmt.Errorf("%s: %w", dir, syscall.ENOTDIR)
	}
	return nil
}

// fileLock is an flock(2) on a file of the state folder.
type fileLock struct{ f *os.File }

// tryLockFile takes an exclusive flock on path without waiting; ok is false when
// another open file description holds it.
func tryLockFile(path string) (l *fileLock, ok bool, err error) {
	f, err := openNoFollow(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, false, err
	}
	for {
		err = syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB)
		if !errors.Is(err, syscall.EINTR) {
			break
		}
	}
	switch {
	case err == nil:
		return &fileLock{f: f}, true, nil
	case errors.Is(err, syscall.EWOULDBLOCK):
		f.Close()
		return nil, false, nil
	default:
		f.Close()
		return nil, false, fmt.Errorf("flock %s: %w", path, err)
	}
}

// lockFile takes an exclusive flock on path, waiting until ctx is done.
func lockFile(ctx context.Context, path string) (*fileLock, error) {
	for {
		l, ok, err := tryLockFile(path)
		if err != nil || ok {
			return l, err
		}
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("waiting for %s: %w", path, ctx.Err())
		case <-time.After(20 * time.Millisecond):
		}
	}
}

func (l *fileLock) release() {
	if l != nil && l.f != nil {
		l.f.Close()
		l.f = nil
	}
}

// tail keeps the last max bytes written to it, and copies everything to w if set.
type tail struct {
	mu    sync.Mutex
	max   int
	buf   []byte
	total int64
	w     *os.File
}

func (t *tail) Write(p []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.total += int64(len(p))
	if t.w != nil {
		_, _ = t.w.Write(p)
	}
	if len(p) >= t.max {
		t.buf = append(t.buf[:0], p[len(p)-t.max:]...)
		return len(p), nil
	}
	t.buf = append(t.buf, p...)
	if over := len(t.buf) - t.max; over > 0 {
		t.buf = append(t.buf[:0], t.buf[over:]...)
	}
	return len(p), nil
}

// bytes returns the kept tail, starting at a line boundary when output was cut.
func (t *tail) bytes() []byte {
	t.mu.Lock()
	defer t.mu.Unlock()
	b := append([]byte(nil), t.buf...)
	if t.total > int64(len(b)) {
		for i, c := range b {
			if c == '\n' && i+1 < len(b) {
				b = b[i+1:]
				break
			}
		}
	}
	return b
}

func jobsDir(stateDir string) string { return filepath.Join(stateDir, "jobs") }
