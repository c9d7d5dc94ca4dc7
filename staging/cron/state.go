package cron

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/restage/restage/internal/atomicfile"
	"github.com/restage/restage/internal/flock"
	"github.com/restage/restage/internal/safefile"
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
	// Results holds, per job, its last run and skip counts: the metrics' source.
	Results map[string]*jobRecord `json:"results,omitempty"`
}

// maxStateSize bounds the state and control copy files read.
const maxStateSize = 4 << 20

func readState(path string) (*state, error) {
	data, err := safefile.ReadFile(path, maxStateSize)
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
	return atomicfile.WriteFile(path, append(data, '\n'), safefile.FileMode)
}

// lockState makes state_dir and its jobs folder, takes the state lock (waiting until
// ctx is done) and reads the state. The caller closes the lock file to release it.
func (r *Runner) lockState(ctx context.Context) (*os.File, *state, error) {
	for _, dir := range []string{r.cfg.StateDir, jobsDir(r.cfg.StateDir)} {
		if err := safefile.MkdirPrivate(dir); err != nil {
			return nil, nil, fmt.Errorf("state_dir: %w", err)
		}
	}
	l, err := safefile.OpenPrivate(filepath.Join(r.cfg.StateDir, "state.lock"), os.O_RDWR|os.O_CREATE)
	if err != nil {
		return nil, nil, fmt.Errorf("state_dir: %w", err)
	}
	if err := flock.Wait(ctx, l, flock.Exclusive, 0); err != nil {
		l.Close()
		return nil, nil, err
	}
	st, err := readState(filepath.Join(r.cfg.StateDir, StateFile))
	if err != nil {
		r.log.Warn("cron state cannot be read: starting afresh (only jobs due this minute run)", logKeyErr, err)
		st = &state{Jobs: map[string]time.Time{}}
	}
	return l, st, nil
}

// saveState records that the run of minute is done with, each job through done[job].
func (r *Runner) saveState(st *state, minute time.Time, done map[string]time.Time) error {
	st.LastRun, st.Jobs = minute, done
	if err := writeState(filepath.Join(r.cfg.StateDir, StateFile), st); err != nil {
		return fmt.Errorf("state_dir: %w", err)
	}
	return nil
}

// recordResult notes a finished job's result in the state and rewrites the metrics,
// under the state lock. Failing to is logged: the job has run either way.
func (r *Runner) recordResult(ctx context.Context, res *JobResult) {
	lctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Minute)
	defer cancel()
	l, st, err := r.lockState(lctx)
	if err != nil {
		r.log.Warn("job result not recorded for the metrics", logKeyJob, res.Job, logKeyErr, err)
		return
	}
	defer l.Close()
	st.record(res)
	if err := writeState(filepath.Join(r.cfg.StateDir, StateFile), st); err != nil {
		r.log.Warn("job result not recorded for the metrics", logKeyJob, res.Job, logKeyErr, err)
		return
	}
	r.writeMetrics(st)
}

// tryJobLock takes a job's lock (state_dir/jobs/<name>.lock) without waiting; nil,
// nil when another run of the job holds it. The caller closes the file to release it;
// a job started with the file among its descriptors holds the lock until it ends.
func (r *Runner) tryJobLock(j *job) (*os.File, error) {
	// Read-only: the job inherits it (fd 4) and must not write it.
	f, err := safefile.OpenPrivate(filepath.Join(jobsDir(r.cfg.StateDir), j.Name+".lock"), os.O_RDONLY|os.O_CREATE)
	if err != nil {
		return nil, err
	}
	ok, err := flock.Try(f, flock.Exclusive)
	if err != nil || !ok {
		f.Close()
		return nil, err
	}
	return f, nil
}

// tail keeps the last max bytes written to it, and copies to w (if set) the first
// logMax of them (all when logMax is 0); close then adds to w, past a line saying how
// much was left out, the end it kept. A job that writes without end cannot fill the
// disk with its log.
type tail struct {
	mu      sync.Mutex
	max     int
	buf     []byte
	total   int64
	w       *os.File
	logMax  int64
	written int64 // bytes copied to w
}

// Write keeps the end of p and copies p to w, up to logMax bytes in all.
func (t *tail) Write(p []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.total += int64(len(p))
	if t.w != nil {
		head := p
		if t.logMax > 0 {
			head = p[:min(int64(len(p)), max(t.logMax-t.written, 0))]
		}
		if len(head) > 0 {
			n, _ := t.w.Write(head)
			t.written += int64(n)
		}
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

// close ends the copy to w: when output was left out of it, a line saying how much,
// then the end of the output that tail kept.
func (t *tail) close() {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.w == nil || t.written == t.total {
		return
	}
	kept := t.buf
	gap := t.total - int64(len(kept)) - t.written
	if gap < 0 {
		kept = kept[-gap:]
	} else {
		_, _ = fmt.Fprintf(t.w, "\n[restage: %d bytes of output left out: the log keeps the first %d and the last %d]\n", gap, t.written, len(kept))
	}
	_, _ = t.w.Write(kept)
	t.written = t.total
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
