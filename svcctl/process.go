package svcctl

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/restage/restage/internal/atomicfile"
	"github.com/restage/restage/internal/childenv"
	"github.com/restage/restage/internal/cloexec"
	"github.com/restage/restage/internal/proc"
	"github.com/restage/restage/internal/runas"
	"github.com/restage/restage/internal/safefile"
)

// ProcessConfig configures a Process controller.
type ProcessConfig struct {
	// Command is the service's argv (required). Command[0] is looked up in PATH unless it
	// holds a slash; a relative path is relative to Dir. It must run in the foreground (not
	// daemonize itself): a main process that exits counts as the service exiting.
	Command []string
	// Dir is the service's working folder; "": the caller's.
	Dir string
	// Env is the service's own environment ("KEY=value"; later entries win). The service
	// gets exactly childenv.Env(nil, Env...): PATH, HOME, USER, LOGNAME, LANG, LANGUAGE,
	// TZ, TMPDIR and LC_* from the caller (where set), then Env. Nothing else of the
	// caller's environment reaches it (no SMTP password, no PGPASSWORD, no token), also
	// when Env is empty. Last comes StartTokenEnv, which a later Start, Stop or Status
	// finds the service by if the program that started it died before its pidfile was
	// written.
	Env []string
	// Pidfile records the service's pid, its start time and the boot id (required). Its
	// folder must exist. The first line is the pid alone, as pkill -F and
	// start-stop-daemon expect. It is written with mode 0600 through a temporary file
	// (Pidfile + ".new"), fsync and a rename, never through a symbolic link, and read
	// without following one: a symbolic link (or anything but a regular file) at its path
	// is an error, never read nor signalled.
	Pidfile string
	// LogFile receives the service's stdout and stderr, appended; "": Pidfile + ".log".
	// It is created with mode 0600 (an existing one is narrowed to 0600) and opened with
	// O_NOFOLLOW: a symbolic link, FIFO or other non-regular file at its path is an error.
	LogFile string
	// StopTimeout is the grace between SIGTERM and SIGKILL; 0: 10s.
	StopTimeout time.Duration
	// StartWait is how long the service must stay up to count as started (supervisor's
	// startsecs); 0: 1s.
	StartWait time.Duration
	// User is the user the service runs as: its uid, primary group and supplementary
	// groups, and its HOME, USER and LOGNAME (before Env, which may set them again).
	// Another user than the caller's needs root (ErrUser). "": the caller's user, with
	// all its rights: the service's code (a branch's, on an experimental environment)
	// could then read whatever the caller reads (production's backups, its state, its
	// ~/.pgpass) and, as root, anything.
	User string
	// Logger receives progress; nil: slog.Default().
	Logger *slog.Logger
}

// StartTokenEnv is the variable, in a service's environment, holding the random token of
// the Start that spawned it. Start records the token (Pidfile + ".starting") before it
// spawns the service and removes the record once the pidfile is written: when the
// starting program dies in between (kill -9), the next Start, Stop or Status finds the
// service by its token, adopts it (writes its pidfile) and controls it as usual.
const StartTokenEnv = "RESTAGE_SERVICE_START"

// Process runs the service as a detached process: its own session and process group,
// stdin from /dev/null, output appended to a log file, a pidfile. The service outlives the
// program that started it; any later program with the same config can stop it.
type Process struct {
	cfg ProcessConfig
	log *slog.Logger
	// cred is User's credential (nil: the caller's); userEnv its HOME, USER and LOGNAME.
	cred    *syscall.Credential
	userEnv []string

	mu    sync.Mutex
	child *child // the last process this value started, reaped by a goroutine
	// afterSpawn, when set (by tests), runs between the spawn and the pidfile's write.
	afterSpawn func(pid int)
}

var (
	_ Controller = (*Process)(nil)
	_ PortServer = (*Process)(nil)
)

// child is a process started by this program: Wait runs in a goroutine so no zombie stays.
type child struct {
	pid     int
	started time.Time
	done    chan struct{}
	token   string // the StartTokenEnv value it was started with
	err     error  // the result of Wait, once done is closed
	code    int    // its exit code, once done is closed (-1: killed by a signal)
}

func (c *child) exited() bool {
	select {
	case <-c.done:
		return true
	default:
		return false
	}
}

// NewProcess returns a Process controller. The pidfile's and log file's folders must exist;
// the program itself is looked up at Start (it may be deployed later).
func NewProcess(cfg ProcessConfig) (*Process, error) {
	if len(cfg.Command) == 0 || cfg.Command[0] == "" {
		return nil, errors.New("svcctl: process: Command is required")
	}
	if cfg.Pidfile == "" {
		return nil, errors.New("svcctl: process: Pidfile is required")
	}
	if cfg.LogFile == "" {
		cfg.LogFile = cfg.Pidfile + ".log"
	}
	if cfg.StopTimeout <= 0 {
		cfg.StopTimeout = 10 * time.Second
	}
	if cfg.StartWait <= 0 {
		cfg.StartWait = time.Second
	}
	cfg.Command = append([]string(nil), cfg.Command...)
	p := &Process{cfg: cfg, log: loggerOr(cfg.Logger).With(logKeyService, cfg.Command[0])}
	if err := p.checkDirs(); err != nil {
		return nil, err
	}
	if cfg.User != "" {
		var err error
		if p.cred, p.userEnv, err = runas.Lookup(cfg.User); err != nil {
			return nil, fmt.Errorf("svcctl: process: %w", err)
		}
	}
	return p, nil
}

// Pidfile returns the pidfile's path.
func (p *Process) Pidfile() string { return p.cfg.Pidfile }

// LogFile returns the path of the service's log file.
func (p *Process) LogFile() string { return p.cfg.LogFile }

func (p *Process) checkDirs() error {
	for _, f := range []struct{ what, path string }{{"pidfile", p.cfg.Pidfile}, {"log file", p.cfg.LogFile}} {
		dir := filepath.Dir(f.path)
		fi, err := os.Stat(dir)
		if err != nil {
			return fmt.Errorf("svcctl: process: folder of %s %s: %w", f.what, f.path, err)
		}
		if !fi.IsDir() {
			return fmt.Errorf("svcctl: process: folder of %s %s: %s is not a folder", f.what, f.path, dir)
		}
	}
	return nil
}

// maxPidfile bounds what a pidfile read may hold: a pid, a start time and a boot id.
const maxPidfile = 4096

// pidRecord is a parsed pidfile.
type pidRecord struct {
	raw     []byte
	proc.ID        // StartTime 0, BootID "": not recorded (a pidfile written by another tool)
	token   string // the service's StartTokenEnv value; "": not recorded
}

func (r pidRecord) encode() []byte {
	return fmt.Appendf(nil, "%d\n%d\n%s\n%s\n", r.PID, r.StartTime, r.BootID, r.token)
}

func parsePidfile(b []byte) (pidRecord, error) {
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	rec := pidRecord{raw: b}
	pid, err := strconv.Atoi(strings.TrimSpace(lines[0]))
	if err != nil || pid <= 0 {
		return rec, fmt.Errorf("no pid in %q", tail(b))
	}
	rec.PID = pid
	if len(lines) > 1 {
		if rec.StartTime, err = strconv.ParseUint(strings.TrimSpace(lines[1]), 10, 64); err != nil {
			return rec, fmt.Errorf("bad start time in %q", tail(b))
		}
	}
	if len(lines) > 2 {
		rec.BootID = strings.TrimSpace(lines[2])
	}
	if len(lines) > 3 {
		if rec.token = strings.TrimSpace(lines[3]); !isToken(rec.token) {
			return rec, fmt.Errorf("bad start token in %q", tail(b))
		}
	}
	return rec, nil
}

// readPidfile reads the pidfile; ok is false when there is none.
func (p *Process) readPidfile() (rec pidRecord, ok bool, err error) {
	b, err := safefile.ReadFile(p.cfg.Pidfile, maxPidfile)
	if errors.Is(err, fs.ErrNotExist) {
		return rec, false, nil
	}
	if err != nil {
		return rec, false, fmt.Errorf("svcctl: process: %w", err)
	}
	rec, err = parsePidfile(b)
	return rec, true, err // a parse error means a stale pidfile, reported by check
}

// check tells whether the pidfile's process is alive and the one the pidfile names. If not,
// detail says why the pidfile is stale.
func (p *Process) check(rec pidRecord, parseErr error) (alive bool, st proc.Stat, detail string, err error) {
	if parseErr != nil {
		return false, st, fmt.Sprintf("stale pidfile %s: %v", p.cfg.Pidfile, parseErr), nil
	}
	v, st, err := proc.Check(rec.ID)
	if err != nil {
		return false, st, "", fmt.Errorf("svcctl: process: pid %d: %w", rec.PID, err)
	}
	switch v {
	case proc.Gone:
		return false, st, fmt.Sprintf("stale pidfile %s: pid %d is gone", p.cfg.Pidfile, rec.PID), nil
	case proc.Rebooted:
		return false, st, fmt.Sprintf("stale pidfile %s: written before the last reboot", p.cfg.Pidfile), nil
	case proc.Reused:
		return false, st, fmt.Sprintf("stale pidfile %s: pid %d now belongs to another process", p.cfg.Pidfile, rec.PID), nil
	case proc.Exited:
		return false, st, fmt.Sprintf("stale pidfile %s: pid %d has exited", p.cfg.Pidfile, rec.PID), nil
	}
	return true, st, "", nil
}

// Status reports whether the pidfile's process runs. A stale pidfile (process gone, pid
// reused, written before a reboot) means stopped, with Detail saying so; a process this
// value started that exited on its own means failed.
func (p *Process) Status(ctx context.Context) (Status, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.status(ctx)
}

func (p *Process) status(ctx context.Context) (Status, error) {
	starting, err := p.recoverStart(ctx, false)
	if err != nil {
		return Status{}, err
	}
	rec, ok, err := p.readPidfile()
	if !ok {
		if err != nil {
			return Status{}, err
		}
		if starting != "" {
			return Status{State: StateStopped, Detail: starting}, nil
		}
		return Status{State: StateStopped, Detail: "no pidfile"}, nil
	}
	alive, _, detail, cerr := p.check(rec, err)
	if cerr != nil {
		return Status{}, cerr
	}
	if alive {
		return Status{State: StateRunning, PID: rec.PID}, nil
	}
	if c := p.child; c != nil && c.pid == rec.PID && c.exited() {
		return Status{State: StateFailed, PID: rec.PID, Detail: fmt.Sprintf("exited on its own: %v", exitText(c.err))}, nil
	}
	return Status{State: StateStopped, Detail: detail}, nil
}

func exitText(err error) string {
	if err == nil {
		return "exit status 0"
	}
	return err.Error()
}

// removePidfile removes the pidfile if it still holds raw (another start may have
// replaced it).
func (p *Process) removePidfile(raw []byte) {
	b, err := safefile.ReadFile(p.cfg.Pidfile, maxPidfile)
	if err != nil || !bytes.Equal(b, raw) {
		return
	}
	if err := os.Remove(p.cfg.Pidfile); err != nil && !errors.Is(err, os.ErrNotExist) {
		p.log.Warn("svcctl: removing pidfile", logKeyError, err)
	}
}

// resolve finds the program to run, so that a missing one is a clear error.
func (p *Process) resolve() (string, error) {
	name := p.cfg.Command[0]
	if !strings.Contains(name, "/") {
		path, err := exec.LookPath(name)
		if err != nil {
			return "", fmt.Errorf("svcctl: process: program %q not found in PATH: %w: %w", name, ErrNotFound, err)
		}
		return path, nil
	}
	path := name
	if !filepath.IsAbs(path) && p.cfg.Dir != "" {
		path = filepath.Join(p.cfg.Dir, path)
	}
	abs, err := filepath.Abs(path)
	if err != nil {
		return "", fmt.Errorf("svcctl: process: program %q: %w", name, err)
	}
	fi, err := os.Stat(abs)
	if errors.Is(err, os.ErrNotExist) {
		return "", fmt.Errorf("svcctl: process: program %q (%s) does not exist: %w", name, abs, ErrNotFound)
	}
	if err != nil {
		return "", fmt.Errorf("svcctl: process: program %q: %w", name, err)
	}
	if fi.IsDir() || fi.Mode().Perm()&0o111 == 0 {
		return "", fmt.Errorf("svcctl: process: program %q (%s) is not an executable file", name, abs)
	}
	return abs, nil
}

// Start starts the service detached and returns once it has stayed up for StartWait. A
// running service (per the pidfile) is left alone. A service that exits within StartWait
// is an error wrapping ErrExited and a *CommandError holding the tail of its log.
func (p *Process) Start(ctx context.Context) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("svcctl: process: start: %w", err)
	}
	if err := p.checkDirs(); err != nil {
		return err
	}
	if inProgress, err := p.recoverStart(ctx, true); err != nil || inProgress != "" {
		if err == nil {
			err = fmt.Errorf("svcctl: process: start: %s", inProgress)
		}
		return err
	}
	if running, err := p.clearStale(); err != nil || running {
		return err
	}
	path, err := p.resolve()
	if err != nil {
		return err
	}
	token, err := p.recordStarting()
	if err != nil {
		return err
	}
	c, st, offset, err := p.spawn(ctx, path, token)
	if err != nil {
		p.removeStarting()
		return err
	}
	if p.afterSpawn != nil {
		p.afterSpawn(c.pid)
	}
	rec := pidRecord{ID: proc.ID{PID: c.pid, StartTime: st.StartTime, BootID: proc.BootID()}, token: token}
	rec.raw = rec.encode()
	if err := atomicfile.WriteFile(p.cfg.Pidfile, rec.raw, safefile.FileMode); err != nil {
		p.kill(context.WithoutCancel(ctx), c, c.pid)
		p.removeStarting()
		return fmt.Errorf("svcctl: process: writing pidfile: %w", err)
	}
	p.removeStarting()
	p.log.Info("svcctl: process started", logKeyPID, c.pid, logKeyArgs, p.cfg.Command)
	return p.awaitStartWait(ctx, c, rec, offset)
}

// clearStale reads the pidfile: running is true if its process runs; a stale pidfile is
// removed.
func (p *Process) clearStale() (running bool, err error) {
	rec, ok, perr := p.readPidfile()
	if !ok {
		return false, perr
	}
	alive, _, detail, err := p.check(rec, perr)
	if err != nil {
		return false, err
	}
	if alive {
		p.log.Info("svcctl: process already running", logKeyPID, rec.PID)
		return true, nil
	}
	p.log.Info("svcctl: removing stale pidfile", logKeyDetail, detail)
	p.removePidfile(rec.raw)
	return false, nil
}

// spawn starts the program at path detached (its own session, stdin from /dev/null,
// output appended to the log file) and reaps it in a goroutine. It returns the child, its
// /proc stat (for the pidfile's start time) and the log's size before the start, from
// which an error quotes the output.
func (p *Process) spawn(ctx context.Context, path, token string) (c *child, st proc.Stat, offset int64, err error) {
	logf, err := safefile.OpenPrivate(p.cfg.LogFile, os.O_WRONLY|os.O_APPEND|os.O_CREATE)
	if err != nil {
		return nil, st, 0, fmt.Errorf("svcctl: process: log file: %w", err)
	}
	defer logf.Close()
	if fi, err := logf.Stat(); err == nil {
		offset = fi.Size()
	}
	devnull, err := os.Open(os.DevNull)
	if err != nil {
		return nil, st, 0, fmt.Errorf("svcctl: process: %w", err)
	}
	defer devnull.Close()

	// Not CommandContext: the service must not die with the caller's context or process.
	cmd := exec.Command(path, p.cfg.Command[1:]...)
	cmd.Args[0] = p.cfg.Command[0]
	cmd.Dir = p.cfg.Dir
	cmd.Env = childenv.Env(nil, slices.Concat(p.userEnv, p.cfg.Env, []string{StartTokenEnv + "=" + token})...)
	cmd.Stdin = devnull
	cmd.Stdout = logf
	cmd.Stderr = logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true, Credential: p.cred}
	// The service outlives restage: no descriptor restage inherited goes with it.
	if err := cloexec.Inherited(); err != nil {
		return nil, st, 0, fmt.Errorf("svcctl: process: %w", err)
	}
	if err := cmd.Start(); err != nil {
		return nil, st, 0, fmt.Errorf("svcctl: process: starting %s: %w", p.cfg.Command[0], err)
	}
	c = &child{pid: cmd.Process.Pid, token: token, started: time.Now(), done: make(chan struct{})}
	// Before the reaper runs, so /proc/<pid> exists even if it already exited.
	st, err = proc.ReadStat(c.pid)
	go func() {
		c.err = cmd.Wait()
		c.code = cmd.ProcessState.ExitCode() // -1 if killed by a signal
		close(c.done)
	}()
	p.child = c
	if err != nil {
		p.kill(context.WithoutCancel(ctx), c, c.pid)
		return nil, st, 0, fmt.Errorf("svcctl: process: reading start time of pid %d: %w", c.pid, err)
	}
	return c, st, offset, nil
}

// awaitStartWait watches the child for StartWait. If it exits, its pidfile and whatever
// it left (in its process group or carrying its token) go, and the error quotes its log from offset on; if ctx
// ends first, the child is stopped again.
func (p *Process) awaitStartWait(ctx context.Context, c *child, rec pidRecord, offset int64) error {
	timer := time.NewTimer(p.cfg.StartWait)
	defer timer.Stop()
	select {
	case <-timer.C:
		return nil
	case <-ctx.Done():
		p.kill(context.WithoutCancel(ctx), c, c.pid)
		p.removePidfile(rec.raw)
		return fmt.Errorf("svcctl: process %s: start interrupted, stopped it again: %w", p.cfg.Command[0], ctx.Err())
	case <-c.done:
	}
	p.removePidfile(rec.raw)
	// Whatever it left in its process group, or outside it with its token (a daemonizing
	// program's child), goes too.
	leftovers, _ := proc.GroupMembers(c.pid)
	carriers, _ := proc.WithEnv(StartTokenEnv + "=" + c.token)
	for _, m := range slices.Concat(leftovers, carriers) {
		_ = syscall.Kill(m, syscall.SIGKILL)
	}
	out, _ := tailFile(p.cfg.LogFile, offset)
	hint := ""
	if c.code == 0 {
		hint = " (if it daemonizes itself, make it run in the foreground)"
	}
	return fmt.Errorf("svcctl: process %s exited %s after starting, within its start wait of %s ([service] start_wait)%s, log %s: %w: %w",
		p.cfg.Command[0], time.Since(c.started).Round(time.Millisecond), p.cfg.StartWait, hint, p.cfg.LogFile, ErrExited,
		&CommandError{Args: p.cfg.Command, ExitCode: c.code, Stderr: out})
}

// kill stops a process just started (TERM, then KILL after StopTimeout).
func (p *Process) kill(ctx context.Context, c *child, pid int) {
	if err := p.terminate(ctx, c, pid, pid, c.token); err != nil {
		p.log.Warn("svcctl: stopping process", logKeyPID, pid, logKeyError, err)
	}
}

// Stop sends SIGTERM to the service's process group and to the processes carrying its
// start token (children that left the group), waits up to StopTimeout for them all to
// exit, then sends SIGKILL. A missing or stale pidfile means stopped; the
// pidfile is removed. A ctx already done signals nothing and returns its error.
func (p *Process) Stop(ctx context.Context) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("svcctl: process: stop: %w", err) // not even SIGTERM: the caller gave up
	}
	if inProgress, err := p.recoverStart(ctx, true); err != nil || inProgress != "" {
		if err == nil {
			err = fmt.Errorf("svcctl: process: stop: %s", inProgress)
		}
		return err
	}
	rec, ok, perr := p.readPidfile()
	if !ok {
		if perr != nil {
			return perr
		}
		p.log.Info("svcctl: process not running (no pidfile)")
		return nil
	}
	alive, st, detail, err := p.check(rec, perr)
	if err != nil {
		return err
	}
	if !alive {
		p.log.Info("svcctl: process not running, removing pidfile", logKeyDetail, detail)
		p.removePidfile(rec.raw)
		return nil
	}
	var c *child
	if p.child != nil && p.child.pid == rec.PID {
		c = p.child
	}
	pgid := rec.PID
	if st.PGrp != rec.PID {
		pgid = 0 // not a group leader (pidfile of another tool): signal the pid alone
	}
	start := time.Now()
	if err := p.terminate(ctx, c, rec.PID, pgid, rec.token); err != nil {
		return err
	}
	p.removePidfile(rec.raw)
	p.log.Info("svcctl: process stopped", logKeyPID, rec.PID, logKeyElapsed, time.Since(start).Round(time.Millisecond))
	return nil
}

// terminate sends SIGTERM to the group pgid (or to pid alone when pgid is 0) and to every
// process carrying token in StartTokenEnv (a child that left the group with setsid or a
// double fork), waits up to StopTimeout for them all to be gone, then sends SIGKILL and
// waits again. token "": the group (or pid) alone.
func (p *Process) terminate(ctx context.Context, c *child, pid, pgid int, token string) error {
	target := pid
	if pgid > 0 {
		target = -pgid
	}
	escaped := func() []int {
		if token == "" {
			return nil
		}
		pids, _ := proc.WithEnv(StartTokenEnv + "=" + token)
		return pids
	}
	gone := func() bool {
		if len(escaped()) > 0 {
			return false
		}
		if pgid > 0 {
			m, err := proc.GroupMembers(pgid)
			return err == nil && len(m) == 0
		}
		if c != nil {
			return c.exited()
		}
		st, err := proc.ReadStat(pid)
		return errors.Is(err, proc.ErrNoProcess) || (err == nil && st.Dead())
	}
	signal := func(sig syscall.Signal) error {
		if err := syscall.Kill(target, sig); err != nil && !errors.Is(err, syscall.ESRCH) {
			return fmt.Errorf("svcctl: process: %v to pid %d: %w", sig, target, err)
		}
		for _, e := range escaped() {
			if err := syscall.Kill(e, sig); err != nil && !errors.Is(err, syscall.ESRCH) {
				return fmt.Errorf("svcctl: process: %v to pid %d, which left the service's process group: %w", sig, e, err)
			}
		}
		return nil
	}
	if err := signal(syscall.SIGTERM); err != nil {
		return err
	}
	if waitGone(ctx, gone, p.cfg.StopTimeout) {
		return nil
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("svcctl: process: stopping pid %d: %w", pid, err)
	}
	p.log.Warn("svcctl: process ignored SIGTERM, sending SIGKILL", logKeyPID, pid, "grace", p.cfg.StopTimeout)
	if err := signal(syscall.SIGKILL); err != nil {
		return err
	}
	if waitGone(ctx, gone, time.Minute) {
		return nil
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("svcctl: process: stopping pid %d: %w", pid, err)
	}
	return fmt.Errorf("svcctl: process: pid %d still there a minute after SIGKILL", pid)
}

// waitGone polls gone until it is true (returns true), d passes or ctx is done.
func waitGone(ctx context.Context, gone func() bool, d time.Duration) bool {
	deadline := time.Now().Add(d)
	pause := 5 * time.Millisecond
	for {
		if gone() {
			return true
		}
		left := time.Until(deadline)
		if left <= 0 {
			return false
		}
		t := time.NewTimer(min(pause, left))
		select {
		case <-ctx.Done():
			t.Stop()
			return gone()
		case <-t.C:
		}
		pause = min(pause*2, 100*time.Millisecond)
	}
}

// ServesPort says whether every socket listening on TCP port is held by a process of
// the service's process group (PortServer; Linux only, from /proc: elsewhere, or when
// no socket listens on port in this network namespace, it cannot tell).
func (p *Process) ServesPort(ctx context.Context, port int) error {
	p.mu.Lock()
	rec, ok, err := p.readPidfile()
	p.mu.Unlock()
	if err != nil {
		return err
	}
	if !ok {
		return fmt.Errorf("svcctl: process: no pidfile, no service to hold port %d: %w", port, ErrUnhealthy)
	}
	inodes, err := proc.Listeners(port)
	if err != nil {
		return fmt.Errorf("svcctl: process: sockets on port %d: %w", port, err)
	}
	if len(inodes) == 0 {
		return fmt.Errorf("svcctl: process: no socket listens on port %d here (another network namespace?): %w", port, errors.ErrUnsupported)
	}
	members, err := proc.GroupMembers(rec.PID)
	if err != nil {
		return fmt.Errorf("svcctl: process: the service's processes: %w", err)
	}
	holders, err := proc.SocketHolders(inodes)
	if err != nil {
		return fmt.Errorf("svcctl: process: sockets on port %d: %w", port, err)
	}
	var others []string
	for _, ino := range inodes {
		hs := holders[ino]
		if slices.ContainsFunc(hs, func(pid int) bool { return slices.Contains(members, pid) }) {
			continue
		}
		if len(hs) == 0 {
			others = append(others, "a process restage cannot see")
		}
		for _, pid := range hs {
			comm, _ := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/comm")
			others = append(others, fmt.Sprintf("pid %d (%s)", pid, strings.TrimSpace(string(comm))))
		}
	}
	if len(others) > 0 {
		return fmt.Errorf("svcctl: process: port %d is listened on by %s, not by the service (pid %d): its answer is not the service's: %w",
			port, strings.Join(slices.Compact(others), ", "), rec.PID, ErrUnhealthy)
	}
	return nil
}

// LogTail returns the last lines of the service's log file.
func (p *Process) LogTail(ctx context.Context) (string, error) {
	s, err := tailFile(p.cfg.LogFile, 0)
	if errors.Is(err, os.ErrNotExist) {
		return "", nil
	}
	return s, err
}
