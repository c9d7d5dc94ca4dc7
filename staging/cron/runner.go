package cron

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	cronspec "github.com/netresearch/go-cron"

	"github.com/restage/restage/internal/atomicfile"
	"github.com/restage/restage/internal/childenv"
	"github.com/restage/restage/internal/cloexec"
	"github.com/restage/restage/internal/redact"
	"github.com/restage/restage/internal/runas"
	"github.com/restage/restage/internal/safefile"
	"github.com/restage/restage/notify"
	"github.com/restage/restage/staging"
)

// Outcome says what became of a job that was due.
type Outcome string

// Outcomes.
const (
	OK       Outcome = "ok"
	Failed   Outcome = "failed"    // non-zero exit, killed by a signal, or could not start
	TimedOut Outcome = "timed-out" // killed after its timeout
	// SkippedDisabled: the control file disables the job. Not owed.
	SkippedDisabled Outcome = "skipped-disabled"
	// SkippedLocked: a rebuild holds the lock. Still owed: it runs at the next run
	// that can take the lock.
	SkippedLocked Outcome = "skipped-locked"
	// SkippedRunning: the job is still running from an earlier run. Not owed.
	SkippedRunning Outcome = "skipped-running"
	// NotStarted: the runner was stopping (its context was cancelled). Still owed.
	NotStarted Outcome = "not-started"
)

// Errors callers test with errors.Is (a skip for a held rebuild lock is a
// *staging.LockedError, errors.Is(err, staging.ErrLocked)).
var (
	ErrDisabled = errors.New("disabled by the control file")
	ErrRunning  = errors.New("still running from an earlier run")
	ErrTimeout  = errors.New("timed out")
)

// CommandError is a job that failed: it exited non-zero, was killed, timed out or
// could not be started (Err says which).
type CommandError struct {
	Job      string   // the job's name
	Args     []string // its command
	ExitCode int      // -1: not started, or killed by a signal
	Stderr   string   // tail of its output (standard output and error together)
	Err      error    // the cause: *exec.ExitError, ErrTimeout, exec.ErrNotFound, ...
}

// Error describes the failure.
func (e *CommandError) Error() string {
	return fmt.Sprintf("job %q %q: %v", e.Job, e.Args, e.Err)
}

// Unwrap returns the cause.
func (e *CommandError) Unwrap() error { return e.Err }

// JobResult is what became of one job that was due.
type JobResult struct {
	Job     string    // the job's name
	Due     time.Time // the first minute the job was due in the window the run covered
	Outcome Outcome   // what became of it
	// Err says why the job failed or was skipped; nil for OK.
	Err       error
	ExitCode  int            // -1: did not exit normally or did not run
	Output    []byte         // tail of the output (Config.TailBytes)
	Start     time.Time      // when it was started; zero: it was not
	End       time.Time      // when it ended
	LockOwner *staging.Owner // SkippedLocked: the rebuild holding the lock (nil: no record)
	NotifyErr error          // the report of a failure could not be delivered
}

// Summary is the result of one run.
type Summary struct {
	Minute   time.Time // the minute the run covered up to
	Disabled bool      // the environment's enabled = false: nothing ran
	// ControlErr is why the control file could not be read or parsed. Then the last
	// copy of it that parsed was used (ControlCopy names it) or, when there was never
	// one, every job was enabled (disabled with control_fail = "closed").
	ControlErr error
	// ControlCopy is the path of the last good copy of the control file (in
	// state_dir) used because of ControlErr; "": none was used.
	ControlCopy string
	Jobs        []JobResult // the jobs that were due, in config order
}

// Failed returns the results of the jobs that failed or timed out.
func (s *Summary) Failed() []JobResult {
	var out []JobResult
	for _, j := range s.Jobs {
		if j.Outcome == Failed || j.Outcome == TimedOut {
			out = append(out, j)
		}
	}
	return out
}

// Log keys.
const (
	logKeyJob      = "job"
	logKeyDue      = "due"
	logKeyOwner    = "owner"
	logKeyExit     = "exit_code"
	logKeyDuration = "duration"
	logKeyErr      = "err"
	logKeyRunning  = "running"
	logKeyControl  = "control"
	logKeyCopy     = "copy"
	logKeyLock     = "lock"
)

// Runner runs an environment's cron jobs. Create it with New.
type Runner struct {
	cfg         Config
	log         *slog.Logger
	jobs        []*job
	topic       string
	control     string // path or URL
	controlName string // control with any credential removed, for logs and the copy
	running     sync.WaitGroup
	flushing    atomic.Bool

	procMu sync.Mutex   // held while a job's command starts, is waited for or strays are killed
	procs  map[int]bool // the pids of the jobs' commands not yet waited for
}

type job struct {
	Job
	sched   cronspec.Schedule
	timeout time.Duration
	dir     string
	cred    *syscall.Credential // User's; nil: the runner's
	userEnv []string            // User's HOME, USER and LOGNAME
}

// New validates cfg, resolves its relative paths against cfg.Dir and returns a Runner.
func New(cfg Config) (*Runner, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg.LockFile = staging.ResolvePath(cfg.Dir, cfg.LockFile)
	cfg.StateDir = staging.ResolvePath(cfg.Dir, cfg.StateDir)
	if cfg.Metrics.Textfile != "" {
		cfg.Metrics.Textfile = staging.ResolvePath(cfg.Dir, cfg.Metrics.Textfile)
	}
	if cfg.TailBytes <= 0 {
		cfg.TailBytes = DefaultTailBytes
	}
	if cfg.LogBytes <= 0 {
		cfg.LogBytes = DefaultLogBytes
	}
	if cfg.KillDelay <= 0 {
		cfg.KillDelay = DefaultKillDelay
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.HTTPClient == nil {
		cfg.HTTPClient = &http.Client{Timeout: ControlTimeout}
	}
	r := &Runner{cfg: cfg, log: cfg.Logger, topic: cfg.Notify.Topic, control: staging.ResolvePath(cfg.Dir, cfg.Control)}
	r.controlName = redact.String(r.control)
	if r.log == nil {
		r.log = slog.Default()
	}
	if r.topic == "" {
		r.topic = cfg.Environment + "-cron"
	}
	for _, j := range cfg.Jobs {
		s, _ := parseSchedule(j.Schedule) // Validate parsed it
		jj := &job{Job: j, sched: s, timeout: j.Timeout.Duration, dir: cfg.Dir}
		if jj.timeout == 0 {
			jj.timeout = DefaultTimeout
		}
		if j.Dir != "" {
			jj.dir = staging.ResolvePath(cfg.Dir, j.Dir)
		}
		if j.User != "" {
			var err error
			if jj.cred, jj.userEnv, err = runas.Lookup(j.User); err != nil {
				return nil, fmt.Errorf("%w: job %q: user: %w", staging.ErrConfig, j.Name, err)
			}
		}
		r.jobs = append(r.jobs, jj)
	}
	return r, nil
}

// Topic returns the topic failure reports carry.
func (r *Runner) Topic() string { return r.topic }

// started is a job whose locks are taken, about to run.
type started struct {
	j       *job
	res     *JobResult
	jobLock *os.File // its per-job lock, held exclusive (opened read-only)
	envLock *staging.Lock
	envRO   *os.File // a read-only descriptor of envLock's file holding it too, for the job
}

// release releases the job's locks (the job's own process, if it was started, holds
// them until it ends).
func (s *started) release() {
	s.envLock.Release()
	s.envRO.Close()
	s.jobLock.Close()
}

// RunOnce runs every job due since the last run up to now's minute, once each, waits
// for them and returns what became of each. Job failures are in the Summary (and
// reported through the Notifier), not in the error, which is for the runner's own
// problems (state_dir unusable, ctx done before the start). When ctx is cancelled,
// jobs not yet started are not started (and stay owed); started ones run on until
// they end or reach their timeout.
func (r *Runner) RunOnce(ctx context.Context, now time.Time) (*Summary, error) {
	sum, jobs, err := r.begin(ctx, now)
	if err != nil {
		return sum, err
	}
	var wg sync.WaitGroup
	for _, s := range jobs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r.finish(ctx, s)
		}()
	}
	wg.Wait()
	r.flush(ctx)
	return sum, nil
}

// flush delivers the reports the Notifier kept from earlier runs, if it keeps any.
func (r *Runner) flush(ctx context.Context) {
	f, ok := r.cfg.Notifier.(notify.Flusher)
	if !ok || !r.flushing.CompareAndSwap(false, true) {
		return
	}
	defer r.flushing.Store(false)
	fctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Minute)
	defer cancel()
	if err := f.Flush(fctx); err != nil {
		r.log.Warn("kept failure reports still not delivered", logKeyErr, err)
	}
}

// Run is the daemon: it runs the due jobs at once and then at the start of every
// minute, without waiting for them, until ctx is cancelled. Then it starts nothing
// more, waits for the running jobs (each until it ends or reaches its timeout, when it
// is killed) and returns nil.
func (r *Runner) Run(ctx context.Context) error {
	r.log.Info("cron daemon started", "environment", r.cfg.Environment, "jobs", len(r.jobs))
	for {
		now := r.cfg.Now()
		_, jobs, err := r.begin(ctx, now)
		if err != nil && ctx.Err() == nil {
			r.log.Error("cron run failed", logKeyErr, err)
		}
		for _, s := range jobs {
			r.running.Add(1)
			go func() {
				defer r.running.Done()
				r.finish(ctx, s)
			}()
		}
		r.running.Add(1)
		go func() {
			defer r.running.Done()
			r.flush(ctx)
		}()
		next := now.Truncate(time.Minute).Add(time.Minute)
		timer := time.NewTimer(max(next.Sub(r.cfg.Now()), 0) + 10*time.Millisecond)
		select {
		case <-ctx.Done():
			timer.Stop()
			r.log.Info("cron daemon stopping: no new jobs; waiting for running jobs up to their timeouts")
			r.running.Wait()
			r.log.Info("cron daemon stopped")
			return nil
		case <-timer.C:
		}
	}
}

// begin decides which jobs run for the window ending at now's minute, takes their
// locks and records the new state; the caller runs the returned jobs with finish.
func (r *Runner) begin(ctx context.Context, now time.Time) (*Summary, []*started, error) {
	minute := now.Truncate(time.Minute)
	sum := &Summary{Minute: minute}
	if err := ctx.Err(); err != nil {
		return sum, nil, err
	}
	stateLock, st, err := r.lockState(ctx)
	if err != nil {
		return sum, nil, err
	}
	defer stateLock.Close()
	if !r.cfg.enabled() {
		sum.Disabled = true
		r.log.Info("cron is disabled for this environment (enabled = false): no job runs")
		done := make(map[string]time.Time, len(r.jobs))
		for _, j := range r.jobs {
			done[j.Name] = minute
		}
		if err := r.saveState(st, minute, done); err != nil {
			return sum, nil, err
		}
		r.writeMetrics(st)
		return sum, nil, nil
	}
	dues, done := r.dueJobs(st, minute, now.Location())
	// The control file is read only when a job is due (a URL is fetched once per run).
	var ctl *Control
	if len(dues) > 0 && r.control != "" {
		ctl = r.readControl(ctx, sum, true)
	}
	sum.Jobs = make([]JobResult, len(dues))
	var run []*started
	var early []int // failed before starting: reported after the state lock is released
	for i, d := range dues {
		sum.Jobs[i] = JobResult{Job: d.j.Name, Due: d.next, ExitCode: -1}
		s, owed := r.claim(ctx, d.j, &sum.Jobs[i], ctl)
		if !owed {
			done[d.j.Name] = minute
		}
		if s == nil {
			st.record(&sum.Jobs[i])
		}
		switch {
		case s != nil:
			run = append(run, s)
		case sum.Jobs[i].Outcome == Failed:
			early = append(early, i)
		}
	}
	err = r.saveState(st, minute, done)
	if err == nil {
		r.writeMetrics(st)
	}
	if err != nil {
		for _, s := range run {
			s.release()
			s.res.Outcome, s.res.Err = NotStarted, err
		}
		return sum, nil, err
	}
	stateLock.Close()
	for _, i := range early {
		r.log.Error("job failed", logKeyJob, sum.Jobs[i].Job, logKeyErr, sum.Jobs[i].Err)
		r.report(ctx, dues[i].j, &sum.Jobs[i])
	}
	return sum, run, nil
}

// due is a job due in the window a run covers.
type due struct {
	j    *job
	next time.Time // the first minute it is due
}

// dueJobs returns the jobs due in the window of each that ends at minute (it starts
// after the minute the job is done with; on the first run, and after the clock went
// back, it is minute alone), in config order, and the minute each job is done with
// if none of them runs: minute for the jobs not due, where they were for the others.
func (r *Runner) dueJobs(st *state, minute time.Time, loc *time.Location) ([]due, map[string]time.Time) {
	var dues []due
	done := make(map[string]time.Time, len(r.jobs))
	for _, j := range r.jobs {
		last, ok := st.Jobs[j.Name]
		if !ok {
			last = st.LastRun
		}
		if last.After(minute) {
			r.log.Warn("the clock went back: the job's window restarts at this minute", logKeyJob, j.Name, "last", last)
			last = time.Time{}
		}
		if last.IsZero() {
			last = minute.Add(-time.Minute) // first run: only what is due this minute
		}
		next := j.sched.Next(last.In(loc))
		if next.IsZero() || next.After(minute) {
			done[j.Name] = minute
			continue
		}
		done[j.Name] = last // until it is started or skipped for good
		dues = append(dues, due{j: j, next: next})
	}
	return dues, done
}

// claim decides whether the due job j starts now and, if so, takes its locks: the
// per-job lock (no second copy of a job runs) and the environment's lock, shared (no
// job runs during a rebuild). When it does not start, res says why and owed whether
// the job still owes its minute (the runner is stopping, or a rebuild holds the lock).
func (r *Runner) claim(ctx context.Context, j *job, res *JobResult, ctl *Control) (s *started, owed bool) {
	log := r.jobLog(j, res)
	if ctx.Err() != nil {
		res.Outcome, res.Err = NotStarted, ctx.Err()
		log.Info("job not started: the runner is stopping; it stays owed")
		return nil, true
	}
	if !ctl.Enabled(j.Name) {
		res.Outcome, res.Err = SkippedDisabled, ErrDisabled
		log.Info("job skipped: disabled by the control file", logKeyControl, r.controlName)
		return nil, false
	}
	jobLock, err := r.tryJobLock(j)
	switch {
	case err != nil:
		res.Outcome, res.Err = Failed, j.notStarted(err)
		return nil, false
	case jobLock == nil:
		res.Outcome, res.Err = SkippedRunning, ErrRunning
		log.Info("job skipped: still running from an earlier run")
		return nil, false
	}
	envLock, err := staging.AcquireShared(r.cfg.LockFile, j.Name)
	var locked *staging.LockedError
	switch {
	case errors.As(err, &locked):
		jobLock.Close()
		res.Outcome, res.Err, res.LockOwner = SkippedLocked, err, locked.Owner
		r.warnLocked(log, locked)
		return nil, true
	case err != nil:
		jobLock.Close()
		res.Outcome, res.Err = Failed, j.notStarted(err)
		return nil, false
	case envLock.RecordErr != nil:
		log.Warn("the job runs, but without its holder record a waiting rebuild cannot name it", logKeyErr, envLock.RecordErr)
	}
	envRO, err := envLock.ReadOnly()
	if err != nil {
		envLock.Release()
		jobLock.Close()
		res.Outcome, res.Err = Failed, j.notStarted(err)
		return nil, false
	}
	return &started{j: j, res: res, jobLock: jobLock, envLock: envLock, envRO: envRO}, false
}

// warnLocked says that a job is skipped, and still owed, because a rebuild holds or
// awaits the lock: a warning naming the rebuild, so that -once (which prints warnings
// only) names it.
func (r *Runner) warnLocked(log *slog.Logger, le *staging.LockedError) {
	owner := "a process that left no owner record"
	if le.Owner != nil {
		owner = le.Owner.String()
	}
	msg := "job skipped: a rebuild holds the lock; it runs after the rebuild"
	if le.Waiting {
		msg = "job skipped: a rebuild is waiting for the lock; it runs after the rebuild"
	}
	log.Warn(msg, logKeyOwner, owner, logKeyLock, r.cfg.LockFile)
}

// jobLog is the logger of one due run of j.
func (r *Runner) jobLog(j *job, res *JobResult) *slog.Logger {
	return r.log.With(logKeyJob, j.Name, logKeyDue, res.Due.Format("2006-01-02T15:04"))
}

// notStarted is the error of j when it could not be started because of err.
func (j *job) notStarted(err error) *CommandError {
	return &CommandError{Job: j.Name, Args: j.Command, ExitCode: -1, Err: err}
}

// readControl reads the control file. When it parses and keep is set, it becomes the
// last good copy (ControlCopyFile in state_dir; the caller holds the state lock). When
// it cannot be read or parsed, the last good copy is used and, when there was never
// one, control_fail applies.
func (r *Runner) readControl(ctx context.Context, sum *Summary, keep bool) *Control {
	data, err := fetchControl(ctx, r.cfg.HTTPClient, r.control)
	if err == nil && len(bytes.TrimSpace(data)) == 0 {
		// Most likely caught mid-write (or an empty answer): not a decision to run all.
		err = fmt.Errorf("control file %s is empty", r.controlName)
	}
	var c *Control
	if err == nil {
		c, err = ParseControl(bytes.NewReader(data))
	}
	if err == nil {
		if keep {
			if err := r.keepControl(data); err != nil {
				r.log.Warn("the control file parsed, but its copy cannot be kept for when it does not", logKeyControl, r.controlName, logKeyErr, err)
			}
		}
		return c
	}
	err = redact.Error(err)
	sum.ControlErr = err
	copyPath := filepath.Join(r.cfg.StateDir, ControlCopyFile)
	last, saved, cerr := r.lastGoodControl(copyPath)
	switch {
	case last != nil:
		sum.ControlCopy = copyPath
		r.log.Warn("control file cannot be read or parsed: using the last copy of it that parsed", logKeyControl, r.controlName,
			logKeyErr, err, logKeyCopy, copyPath, "copied", saved.Format(time.RFC3339))
		return last
	case cerr != nil:
		r.log.Warn("the last good copy of the control file cannot be used", logKeyCopy, copyPath, logKeyErr, cerr)
	}
	if r.cfg.ControlFail == FailClosed {
		r.log.Warn("control file cannot be read or parsed, and there is no good copy of it: every job is disabled (control_fail = closed)", logKeyControl, r.controlName, logKeyErr, err)
		off := false
		return &Control{Default: &off}
	}
	r.log.Warn("control file cannot be read or parsed, and there is no good copy of it: every job is enabled (control_fail = open)", logKeyControl, r.controlName, logKeyErr, err)
	return nil
}

// controlCopyHeader is the first line of the last good copy: it names the control
// file it copies, so that a copy of another one (the config changed) is not used.
func (r *Runner) controlCopyHeader() string {
	return "# restage: the last copy that parsed of " + strings.ReplaceAll(r.controlName, "\n", " ") + "\n"
}

// keepControl makes data, a control file that parsed, the last good copy, unless the
// copy already holds it.
func (r *Runner) keepControl(data []byte) error {
	path := filepath.Join(r.cfg.StateDir, ControlCopyFile)
	want := append([]byte(r.controlCopyHeader()), data...)
	if old, err := safefile.ReadFile(path, maxStateSize); err == nil && bytes.Equal(old, want) {
		return nil
	}
	return atomicfile.WriteFile(path, want, safefile.FileMode)
}

// lastGoodControl reads the last good copy of the control file at path: nil without
// one (or with a copy of another control file), an error when it cannot be used.
func (r *Runner) lastGoodControl(path string) (*Control, time.Time, error) {
	f, err := safefile.OpenPrivate(path, os.O_RDONLY)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, time.Time{}, nil
	}
	if err != nil {
		return nil, time.Time{}, err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, time.Time{}, err
	}
	data, err := io.ReadAll(io.LimitReader(f, maxControlSize+4096))
	if err != nil {
		return nil, time.Time{}, err
	}
	header := r.controlCopyHeader()
	if !bytes.HasPrefix(data, []byte(header)) {
		return nil, time.Time{}, nil
	}
	c, err := ParseControl(bytes.NewReader(data[len(header):]))
	if err != nil {
		return nil, time.Time{}, fmt.Errorf("%s: %w", path, err)
	}
	return c, st.ModTime(), nil
}

// finish runs a started job, releases its locks, logs and reports the result.
func (r *Runner) finish(ctx context.Context, s *started) {
	defer s.release()
	defer r.recordResult(ctx, s.res)
	j, res := s.j, s.res
	log := r.jobLog(j, res)
	logFile, err := safefile.OpenPrivate(filepath.Join(jobsDir(r.cfg.StateDir), j.Name+".log"), os.O_WRONLY|os.O_CREATE|os.O_TRUNC)
	if err != nil {
		res.Outcome, res.Err = Failed, j.notStarted(fmt.Errorf("job log: %w", err))
		log.Error("job not started", logKeyErr, res.Err)
		r.report(ctx, j, res)
		return
	}
	defer logFile.Close()
	out := &tail{max: r.cfg.TailBytes, w: logFile, logMax: r.cfg.LogBytes}
	res.Start = time.Now()
	ps, timedOut, err := r.execute(ctx, s, out, log)
	out.close()
	res.End = time.Now()
	res.Output = out.bytes()
	if ps != nil {
		res.ExitCode = ps.ExitCode()
	}
	dur := res.End.Sub(res.Start).Round(time.Millisecond)
	switch {
	case timedOut:
		res.Outcome = TimedOut
		err = fmt.Errorf("%w after %s; its process group was killed", ErrTimeout, j.timeout)
	case err != nil:
		res.Outcome = Failed
	default:
		res.Outcome = OK
		log.Info("job finished", logKeyDuration, dur)
		return
	}
	res.Err = &CommandError{Job: j.Name, Args: j.Command, ExitCode: res.ExitCode, Stderr: string(res.Output), Err: err}
	log.Error("job failed", logKeyExit, res.ExitCode, logKeyDuration, dur, logKeyErr, res.Err)
	r.report(ctx, j, res)
}

// execute runs the started job's command with its output to out, in a process group
// of its own that inherits the job's locks, and waits for it. Past the job's timeout
// the group gets SIGTERM, then SIGKILL after KillDelay; whatever is left of the group
// when the command ends is killed. ps is nil when the command could not be started.
func (r *Runner) execute(ctx context.Context, s *started, out io.Writer, log *slog.Logger) (ps *os.ProcessState, timedOut bool, err error) {
	j := s.j
	// The job's own timeout is its grace when the runner stops: not ctx's cancellation.
	jctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), j.timeout)
	defer cancel()
	cmd := exec.CommandContext(jctx, j.Command[0], j.Command[1:]...)
	cmd.Dir = j.dir
	cmd.Env = jobEnv(r.cfg.Environment, j)
	cmd.Stdout, cmd.Stderr = out, out
	// The job inherits a descriptor of the environment's lock (as fd 3) and its per-job
	// lock's (as fd 4): it holds both locks itself, so that a runner killed mid-job can
	// neither let a rebuild start under the job nor let the next runner start it again.
	// Both are read-only: the job's code cannot rewrite the files (an owner record that
	// every later rebuild and job would refuse), whatever user it runs as.
	cmd.ExtraFiles = []*os.File{s.envRO, s.jobLock}
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Credential: j.cred}
	cmd.Cancel = func() error {
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGTERM)
		return nil
	}
	cmd.WaitDelay = r.cfg.KillDelay // then SIGKILL, and the output pipes are closed
	log.Info("job started", "command", fmt.Sprintf("%q", j.Command))
	if err := becomeSubreaper(); err != nil {
		log.Warn("cannot make the runner the reaper of its jobs' processes: one that leaves the job's process group (setsid) would outlive the job, holding the lock", logKeyErr, err)
	}
	// The job gets its locks and standard streams, no descriptor the runner inherited.
	err = cloexec.Inherited()
	if err == nil {
		err = r.start(cmd)
	}
	if err == nil {
		err = r.wait(cmd)
	}
	timedOut = errors.Is(jctx.Err(), context.DeadlineExceeded)
	if cmd.Process != nil {
		// Nothing of the job may outlive its hold on the lock: kill what is left of
		// its process group (after a timeout, or processes it left behind), and what
		// left the group (setsid) and was reparented to the runner.
		left := syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) == nil
		strays := r.killStrays(j.Name, cmd.Process.Pid, strayBound)
		if strays > 0 {
			log.Warn("job left processes behind outside its process group (setsid); they were killed", "processes", strays)
		} else if left && !timedOut {
			log.Warn("job left processes behind; they were killed")
		}
	}
	if errors.Is(err, exec.ErrWaitDelay) && cmd.ProcessState != nil && cmd.ProcessState.Success() {
		err = nil // it exited 0; what kept its output open was killed above
	}
	return cmd.ProcessState, timedOut, err
}

// strayBound bounds how long the runner kills and reaps what a job left outside its
// process group.
const strayBound = 5 * time.Second

// start starts a job's command, recording its pid (under procMu, so that killStrays,
// which never touches a recorded pid, does not see it unrecorded).
func (r *Runner) start(cmd *exec.Cmd) error {
	r.procMu.Lock()
	defer r.procMu.Unlock()
	if err := cmd.Start(); err != nil {
		return err
	}
	if r.procs == nil {
		r.procs = map[int]bool{}
	}
	r.procs[cmd.Process.Pid] = true
	return nil
}

// wait waits for a job's command started by start, then forgets its pid.
func (r *Runner) wait(cmd *exec.Cmd) error {
	err := cmd.Wait()
	r.procMu.Lock()
	delete(r.procs, cmd.Process.Pid)
	r.procMu.Unlock()
	return err
}

// Descriptors a job inherits (in this order in exec.Cmd.ExtraFiles), named in its
// RESTAGE_LOCK_FD and RESTAGE_JOB_LOCK_FD.
const (
	// LockFD is the job's descriptor of the environment's lock, held shared.
	LockFD = 3
	// JobLockFD is the job's descriptor of its per-job lock (state_dir/jobs/<name>.lock).
	JobLockFD = 4
)

// jobEnv returns a job's environment: no more of the runner's own than childenv
// passes on (PATH, HOME, the locale, ...: never a secret such as the SMTP password),
// its user's HOME, USER and LOGNAME (with Job.User), the job's configured env, then the
// runner's RESTAGE_* variables, which win.
func jobEnv(environment string, j *job) []string {
	keys := make([]string, 0, len(j.Env))
	for k := range j.Env {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	extra := make([]string, 0, len(j.userEnv)+len(keys)+4)
	extra = append(extra, j.userEnv...)
	for _, k := range keys {
		extra = append(extra, k+"="+j.Env[k])
	}
	extra = append(extra,
		"RESTAGE_ENVIRONMENT="+environment,
		"RESTAGE_CRON_JOB="+j.Name,
		fmt.Sprintf("RESTAGE_LOCK_FD=%d", LockFD),
		fmt.Sprintf("RESTAGE_JOB_LOCK_FD=%d", JobLockFD))
	return childenv.Env(nil, extra...)
}

// report sends a failed job's report to the Notifier.
func (r *Runner) report(ctx context.Context, j *job, res *JobResult) {
	if r.cfg.Notifier == nil {
		return
	}
	var cause error = res.Err
	var ce *CommandError
	if errors.As(res.Err, &ce) {
		cause = ce.Err
	}
	what := oneLine(cause.Error())
	if res.Outcome == TimedOut {
		what = fmt.Sprintf("timed out after %s (killed)", j.timeout)
	}
	var b strings.Builder
	fmt.Fprintf(&b, "Cron job %s in %s failed: %s.\n\n", j.Name, r.cfg.Environment, what)
	fmt.Fprintf(&b, "Command:  %q\n", j.Command)
	fmt.Fprintf(&b, "Folder:   %s\n", j.dir)
	fmt.Fprintf(&b, "Due:      %s\n", res.Due.Format(time.RFC3339))
	if !res.Start.IsZero() {
		fmt.Fprintf(&b, "Started:  %s\nDuration: %s\n", res.Start.Format(time.RFC3339), res.End.Sub(res.Start).Round(time.Millisecond))
	}
	if res.ExitCode >= 0 {
		fmt.Fprintf(&b, "Exit:     %d\n", res.ExitCode)
	}
	fmt.Fprintf(&b, "Error:    %v\n", res.Err)
	if len(res.Output) > 0 {
		fmt.Fprintf(&b, "\nLast output:\n%s", lastLines(res.Output, 40, 4096))
		if res.Output[len(res.Output)-1] != '\n' {
			b.WriteByte('\n')
		}
	} else {
		b.WriteString("\nNo output.\n")
	}
	end := res.End
	if end.IsZero() {
		end = time.Now()
	}
	m := &notify.Message{
		ID:          messageID(r.cfg.Environment, j.Name, end),
		Environment: r.cfg.Environment,
		Topic:       r.topic,
		Status:      notify.StatusFailed,
		Subject:     fmt.Sprintf("cron job %s: %s", j.Name, what), // notify adds "FAILED: "
		Body:        b.String(),
		Log:         res.Output,
		LogName:     j.Name + ".log",
		Time:        end,
	}
	nctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Minute)
	defer cancel()
	if err := r.cfg.Notifier.Notify(nctx, m); err != nil {
		res.NotifyErr = err
		if errors.Is(err, notify.ErrSpooled) {
			r.log.Warn("failure report spooled", logKeyJob, j.Name, logKeyErr, err)
		} else {
			r.log.Error("failure report not delivered", logKeyJob, j.Name, logKeyErr, err)
		}
	}
}

// messageID returns a unique message ID, safe for file names.
func messageID(env, job string, t time.Time) string {
	var b [6]byte
	_, _ = rand.Read(b[:])
	return fmt.Sprintf("%s-cron-%s-%s-%x", env, job, t.UTC().Format("20060102T150405.000000000Z"), b)
}

func oneLine(s string) string {
	s = strings.Join(strings.Fields(s), " ")
	if len(s) > 200 {
		s = s[:200] + "…"
	}
	return s
}

// lastLines returns at most n lines and maxBytes bytes from the end of b.
func lastLines(b []byte, n, maxBytes int) string {
	if len(b) > maxBytes {
		b = b[len(b)-maxBytes:]
	}
	s := strings.TrimRight(string(b), "\n")
	lines := strings.Split(s, "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
