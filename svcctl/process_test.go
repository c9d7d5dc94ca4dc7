package svcctl

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/restage/restage/internal/proc"
	"github.com/restage/restage/internal/testutil"
)

func newTestProcess(t *testing.T, tag string, cfg ProcessConfig) *Process {
	t.Helper()
	if cfg.Pidfile == "" {
		cfg.Pidfile = filepath.Join(t.TempDir(), "app.pid")
	}
	cfg.Env = append(cfg.Env, serviceEnv(tag)...)
	p, err := NewProcess(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = p.Stop(t.Context()) })
	return p
}

func TestProcessMissingProgram(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	for _, argv0 := range []string{"restage-no-such-program", filepath.Join(dir, "bin", "app"), "bin/app"} {
		p, err := NewProcess(ProcessConfig{Command: []string{argv0, "-listen", ":8080"}, Dir: dir, Pidfile: filepath.Join(dir, "app.pid")})
		if err != nil {
			t.Fatalf("NewProcess must not look for the program (it may be deployed later): %v", err)
		}
		err = p.Start(t.Context())
		requireIs(t, err, ErrNotFound)
		testutil.RequireErrorContains(t, err, argv0)
		if _, err := os.Stat(p.Pidfile()); !os.IsNotExist(err) {
			t.Fatalf("pidfile written for a program that does not exist: %v", err)
		}
	}
	// A file that is not executable.
	if err := os.WriteFile(filepath.Join(dir, "notes.txt"), []byte("hi"), 0o644); err != nil {
		t.Fatal(err)
	}
	p, err := NewProcess(ProcessConfig{Command: []string{"./notes.txt"}, Dir: dir, Pidfile: filepath.Join(dir, "app.pid")})
	if err != nil {
		t.Fatal(err)
	}
	testutil.RequireErrorContains(t, p.Start(t.Context()), "./notes.txt", "not an executable")
}

func TestProcessPidfileMissingFolder(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	missing := filepath.Join(dir, "run", "restage", "app.pid")
	_, err := NewProcess(ProcessConfig{Command: []string{"sleep", "60"}, Pidfile: missing})
	testutil.RequireErrorContains(t, err, "pidfile", missing)
	if !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("error does not wrap ErrNotExist: %v", err)
	}

	// The folder disappears after New (e.g. /run is a tmpfs and the host rebooted).
	sub := filepath.Join(dir, "run")
	if err := os.Mkdir(sub, 0o755); err != nil {
		t.Fatal(err)
	}
	p, err := NewProcess(ProcessConfig{Command: []string{"sleep", "60"}, Pidfile: filepath.Join(sub, "app.pid")})
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(sub); err != nil {
		t.Fatal(err)
	}
	testutil.RequireErrorContains(t, p.Start(t.Context()), "pidfile", sub)

	// A log file folder that does not exist.
	_, err = NewProcess(ProcessConfig{Command: []string{"sleep", "60"}, Pidfile: filepath.Join(dir, "app.pid"), LogFile: filepath.Join(dir, "nolog", "app.log")})
	testutil.RequireErrorContains(t, err, "log file", "nolog")
}

func TestProcessExitsAtOnce(t *testing.T) {
	t.Parallel()
	tag := newTag(t)
	p := newTestProcess(t, tag, ProcessConfig{Command: []string{testBinary(t), "exit"}, StartWait: 30 * time.Second})
	start := time.Now()
	err := p.Start(t.Context())
	requireIs(t, err, ErrExited)
	testutil.RequireErrorContains(t, err, "after starting, within its start wait of 30s ([service] start_wait)", "fatal: cannot open config /etc/app/missing.conf", p.LogFile())
	var cerr *CommandError
	if !errors.As(err, &cerr) || cerr.ExitCode != 3 {
		t.Fatalf("want a *CommandError with exit code 3, got %#v", err)
	}
	if time.Since(start) > 25*time.Second {
		t.Fatalf("Start waited out StartWait instead of noticing the exit")
	}
	if _, err := os.Stat(p.Pidfile()); !os.IsNotExist(err) {
		t.Fatalf("pidfile left behind: %v", err)
	}
	requireState(t, p, StateStopped)
	requireNoOrphans(t, tag)

	// The error shows this run's output only, not an earlier run's.
	if err := os.WriteFile(p.LogFile(), []byte("old line from yesterday\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	err = p.Start(t.Context())
	requireIs(t, err, ErrExited)
	if strings.Contains(err.Error(), "yesterday") {
		t.Fatalf("error quotes an earlier run's output: %v", err)
	}
}

func TestProcessIgnoresSIGTERM(t *testing.T) {
	t.Parallel()
	tag := newTag(t)
	p := newTestProcess(t, tag, ProcessConfig{Command: []string{testBinary(t), "ignore-term"}, StopTimeout: 500 * time.Millisecond, StartWait: 200 * time.Millisecond})
	if err := p.Start(t.Context()); err != nil {
		t.Fatal(err)
	}
	pid := requireState(t, p, StateRunning).PID
	waitForLog(t, p, "ignoring SIGTERM from now on")
	if err := p.Stop(t.Context()); err != nil {
		t.Fatal(err)
	}
	requireState(t, p, StateStopped)
	requireNoOrphans(t, tag)
	// Gone, or a zombie its parent (this test process) has not reaped yet: either way
	// the process no longer runs, which is what Stop promises.
	if st, err := proc.ReadStat(pid); !errors.Is(err, proc.ErrNoProcess) && (err != nil || !st.Dead()) {
		t.Fatalf("pid %d still running: %v", pid, err)
	}
	waitForLog(t, p, "got SIGTERM, ignoring it") // so it was SIGKILL that ended it
}

// TestProcessGroup: a child the service started (same process group) that ignores SIGTERM
// is killed with it.
func TestProcessGroup(t *testing.T) {
	t.Parallel()
	tag, addr := newTag(t), testutil.FreeAddr(t)
	p := newTestProcess(t, tag, ProcessConfig{Command: []string{testBinary(t), "tree", addr}, StopTimeout: 500 * time.Millisecond, StartWait: 200 * time.Millisecond})
	if err := p.Start(t.Context()); err != nil {
		t.Fatal(err)
	}
	requireServing(t, "http://"+addr+"/health")
	waitForLog(t, p, "ignoring SIGTERM from now on")
	if n := len(taggedProcesses(tag)); n != 2 {
		t.Fatalf("want the service and its child, found %d processes", n)
	}
	if err := p.Stop(t.Context()); err != nil {
		t.Fatal(err)
	}
	requireNoOrphans(t, tag)
}

// TestProcessChildThatLeftTheGroup: a child the service moved to a session of its own
// (setsid), out of the group Stop signals, is stopped with the service by the start token
// it inherited; SIGKILL ends it, since it ignores SIGTERM.
func TestProcessChildThatLeftTheGroup(t *testing.T) {
	t.Parallel()
	tag, addr := newTag(t), testutil.FreeAddr(t)
	p := newTestProcess(t, tag, ProcessConfig{Command: []string{testBinary(t), "escape", addr}, StopTimeout: 500 * time.Millisecond, StartWait: 200 * time.Millisecond})
	if err := p.Start(t.Context()); err != nil {
		t.Fatal(err)
	}
	requireServing(t, "http://"+addr+"/health")
	waitForLog(t, p, "ignoring SIGTERM from now on")
	service := requireState(t, p, StateRunning).PID
	left := 0
	for _, pid := range taggedProcesses(tag) {
		if st, err := proc.ReadStat(pid); err == nil && st.PGrp != service {
			left++
		}
	}
	if left != 1 {
		t.Fatalf("want one child outside the service's process group, found %d", left)
	}
	if err := p.Stop(t.Context()); err != nil {
		t.Fatal(err)
	}
	requireNoOrphans(t, tag)
}

// TestProcessDaemonizing: a program that starts a child in a session of its own and exits
// fails its start, and the child goes too.
func TestProcessDaemonizing(t *testing.T) {
	t.Parallel()
	tag := newTag(t)
	p := newTestProcess(t, tag, ProcessConfig{Command: []string{testBinary(t), "daemonize"}, StartWait: 30 * time.Second})
	err := p.Start(t.Context())
	requireIs(t, err, ErrExited)
	testutil.RequireErrorContains(t, err, "make it run in the foreground")
	requireNoOrphans(t, tag)
}

// TestProcessOutlivesStarter starts the service from a helper process that then exits, as
// the nightly job does; the service keeps running, and a new controller stops it.
func TestProcessOutlivesStarter(t *testing.T) {
	t.Parallel()
	tag, addr := newTag(t), testutil.FreeAddr(t)
	pidfile := filepath.Join(t.TempDir(), "app.pid")
	sc, _ := json.Marshal(starterConfig{Command: []string{testBinary(t), "http", addr}, Env: serviceEnv(tag), Pidfile: pidfile})
	starter := exec.CommandContext(t.Context(), testBinary(t), string(sc))
	starter.Env = append(os.Environ(), envRole+"=starter", envTag+"="+tag)
	out, err := starter.Output()
	if err != nil {
		t.Fatalf("starter: %v\n%s", err, out)
	}
	starterPID := starter.Process.Pid
	pid, err := strconv.Atoi(strings.TrimSpace(string(out)))
	if err != nil {
		t.Fatalf("starter printed %q", out)
	}

	// The pidfile's first line is the pid alone (pkill -F, start-stop-daemon), then the
	// start time from /proc/<pid>/stat.
	b, err := os.ReadFile(pidfile)
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(string(b), "\n")
	if lines[0] != strconv.Itoa(pid) || len(lines) < 3 {
		t.Fatalf("pidfile %q, want pid %d on the first line, start time on the second", b, pid)
	}
	if pst, err := proc.ReadStat(pid); err != nil || lines[1] != strconv.FormatUint(pst.StartTime, 10) {
		t.Fatalf("pidfile %q: start time does not match /proc (%+v, %v)", b, pst, err)
	}

	p, err := NewProcess(ProcessConfig{Command: []string{testBinary(t), "http", addr}, Pidfile: pidfile})
	if err != nil {
		t.Fatal(err)
	}
	st := requireState(t, p, StateRunning)
	if st.PID != pid {
		t.Fatalf("Status pid %d, starter started %d", st.PID, pid)
	}
	requireServing(t, "http://"+addr+"/health")
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		t.Fatal(err)
	}
	if f := strings.Fields(string(stat[strings.LastIndexByte(string(stat), ')')+1:])); f[1] == strconv.Itoa(starterPID) {
		t.Fatalf("service still a child of the starter: %s", stat)
	}
	if f := strings.Fields(string(stat[strings.LastIndexByte(string(stat), ')')+1:])); f[3] != strconv.Itoa(pid) {
		t.Fatalf("service is not a session leader: %s", stat)
	}
	if err := p.Start(t.Context()); err != nil { // already running: left alone
		t.Fatal(err)
	}
	if got := requireState(t, p, StateRunning).PID; got != pid {
		t.Fatalf("Start replaced the running service: pid %d, was %d", got, pid)
	}
	if err := p.Stop(t.Context()); err != nil {
		t.Fatal(err)
	}
	requireState(t, p, StateStopped)
	requireNotServing(t, "http://"+addr+"/health")
	requireNoOrphans(t, tag)
}

// TestProcessStalePidfile: a pidfile whose process is gone, or whose pid now belongs to
// another process, means stopped; Stop removes it and signals nobody.
func TestProcessStalePidfile(t *testing.T) {
	t.Parallel()
	tag := newTag(t)
	dir := t.TempDir()
	pidfile := filepath.Join(dir, "app.pid")
	p, err := NewProcess(ProcessConfig{Command: []string{"sleep", "60"}, Pidfile: pidfile})
	if err != nil {
		t.Fatal(err)
	}

	// An unrelated process (its own session, like a service) whose pid the pidfile names,
	// with another start time: the pid was reused.
	other := exec.Command("sleep", "300")
	other.Env = append(os.Environ(), envTag+"="+tag)
	other.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := other.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { other.Process.Kill(); other.Wait() })
	ost, err := proc.ReadStat(other.Process.Pid)
	if err != nil {
		t.Fatal(err)
	}
	for name, content := range map[string]string{
		"reused":       fmt.Sprintf("%d\n%d\n%s\n", other.Process.Pid, ost.StartTime+1, proc.BootID()),
		"other boot":   fmt.Sprintf("%d\n%d\n%s\n", other.Process.Pid, ost.StartTime, "00000000-0000-0000-0000-000000000000"),
		"gone":         fmt.Sprintf("%d\n%d\n%s\n", deadPID(t), 12345, proc.BootID()),
		"garbage":      "not a pid\n",
		"empty":        "",
		"zero pid":     "0\n",
		"negative pid": "-1\n",
	} {
		if err := os.WriteFile(pidfile, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
		st := requireState(t, p, StateStopped)
		if !strings.Contains(st.Detail, "stale") {
			t.Fatalf("%s: Status.Detail = %q, want it to say stale", name, st.Detail)
		}
		if _, err := os.Stat(pidfile); err != nil {
			t.Fatalf("%s: Status removed the pidfile: %v", name, err)
		}
		if err := p.Stop(t.Context()); err != nil {
			t.Fatalf("%s: Stop: %v", name, err)
		}
		if _, err := os.Stat(pidfile); !os.IsNotExist(err) {
			t.Fatalf("%s: stale pidfile not removed by Stop: %v", name, err)
		}
		if st, err := proc.ReadStat(other.Process.Pid); err != nil || st.Dead() {
			t.Fatalf("%s: Stop signalled the process that reused the pid", name)
		}
	}

	// A pidfile of another tool (pid only) naming a living process counts as running.
	if err := os.WriteFile(pidfile, fmt.Appendf(nil, "%d\n", other.Process.Pid), 0o644); err != nil {
		t.Fatal(err)
	}
	if st := requireState(t, p, StateRunning); st.PID != other.Process.Pid {
		t.Fatalf("pid %d, want %d", st.PID, other.Process.Pid)
	}
	if err := p.Stop(t.Context()); err != nil {
		t.Fatal(err)
	}
	requireNoOrphans(t, tag)
}

// deadPID returns a pid with no process.
func deadPID(t *testing.T) int {
	t.Helper()
	cmd := exec.Command("true")
	if err := cmd.Run(); err != nil {
		t.Fatal(err)
	}
	return cmd.Process.Pid
}

// TestProcessStartCanceled: a start interrupted by the caller's context leaves nothing.
func TestProcessStartCanceled(t *testing.T) {
	t.Parallel()
	tag, addr := newTag(t), testutil.FreeAddr(t)
	p := newTestProcess(t, tag, ProcessConfig{Command: []string{testBinary(t), "http", addr}, StartWait: time.Minute})
	ctx, cancel := context.WithTimeout(t.Context(), 500*time.Millisecond)
	defer cancel()
	err := p.Start(ctx)
	testutil.RequireErrorContains(t, err, "interrupted")
	requireState(t, p, StateStopped)
	requireNoOrphans(t, tag)
}

func TestProcessStartHealthy(t *testing.T) {
	t.Parallel()
	t.Run("dies while waiting", func(t *testing.T) {
		t.Parallel()
		tag := newTag(t)
		p := newTestProcess(t, tag, ProcessConfig{Command: []string{testBinary(t), "die-later", "1500ms"}, StartWait: 200 * time.Millisecond})
		err := StartHealthy(t.Context(), p, HTTPCheck{URL: "http://" + testutil.FreeAddr(t) + "/health", Timeout: 2 * time.Minute})
		requireIs(t, err, ErrExited)
		testutil.RequireErrorContains(t, err, "while waiting", "exit status 1", "panic: lost connection to the database")
		requireNoOrphans(t, tag)
	})
	t.Run("never healthy", func(t *testing.T) {
		t.Parallel()
		tag, addr := newTag(t), testutil.FreeAddr(t)
		p := newTestProcess(t, tag, ProcessConfig{Command: []string{testBinary(t), "http", addr}, StartWait: 200 * time.Millisecond})
		if err := p.Start(t.Context()); err != nil {
			t.Fatal(err)
		}
		requireServing(t, "http://"+addr+"/health") // so the last answer is surely the 503
		err := StartHealthy(t.Context(), p, HTTPCheck{URL: "http://" + addr + "/fail", Timeout: 2 * time.Second})
		requireIs(t, err, ErrUnhealthy)
		testutil.RequireErrorContains(t, err, "/fail", "503", "database is still starting up")
		requireState(t, p, StateRunning) // left for the caller to stop or roll back
		if err := p.Stop(t.Context()); err != nil {
			t.Fatal(err)
		}
		waitForLog(t, p, "got SIGTERM, exiting") // a graceful stop, not SIGKILL
		requireNoOrphans(t, tag)
	})
	t.Run("health URL that never answers", func(t *testing.T) {
		t.Parallel()
		tag, addr := newTag(t), testutil.FreeAddr(t)
		p := newTestProcess(t, tag, ProcessConfig{Command: []string{testBinary(t), "http", addr}, StartWait: 200 * time.Millisecond})
		url := "http://" + testutil.FreeAddr(t) + "/health"
		err := StartHealthy(t.Context(), p, HTTPCheck{URL: url, Timeout: 2 * time.Second})
		requireIs(t, err, ErrUnhealthy)
		testutil.RequireErrorContains(t, err, url, "connection refused")
		if err := p.Stop(t.Context()); err != nil {
			t.Fatal(err)
		}
		requireNoOrphans(t, tag)
	})
}

func waitForLog(t *testing.T, p *Process, want string) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		b, _ := os.ReadFile(p.LogFile())
		if strings.Contains(string(b), want) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("log never said %q:\n%s", want, b)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
