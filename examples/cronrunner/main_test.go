package main

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/restage/restage/staging"
)

// helperEnv switches the test binary into a job (see helperMain).
const helperEnv = "RESTAGE_CRONRUNNER_TEST_HELPER"

var binary string // the built cronrunner

func TestMain(m *testing.M) {
	if os.Getenv(helperEnv) == "1" {
		os.Exit(helperMain(os.Args[1:]))
	}
	dir, err := os.MkdirTemp("", "cronrunner-test")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	binary = filepath.Join(dir, "cronrunner")
	if out, err := exec.Command("go", "build", "-o", binary, ".").CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "go build: %v\n%s", err, out)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// helperMain runs its arguments as a little script: "append FILE TEXT", "pid FILE",
// "waitfile FILE", "ignoreterm", "sleep DURATION", "echo TEXT", "exit N".
func helperMain(args []string) int {
	for i := 0; i < len(args); i++ {
		next := func() string { i++; return args[i] }
		switch args[i] {
		case "append":
			file, text := next(), next()
			f, err := os.OpenFile(file, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o644)
			if err != nil {
				return 101
			}
			fmt.Fprintln(f, text)
			f.Close()
		case "pid":
			_ = os.WriteFile(next(), []byte(strconv.Itoa(os.Getpid())), 0o644)
		case "waitfile":
			file := next()
			for deadline := time.Now().Add(10 * time.Minute); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
				if _, err := os.Stat(file); err == nil {
					break
				}
			}
		case "ignoreterm":
			signal.Ignore(syscall.SIGTERM)
		case "sleep":
			d, _ := time.ParseDuration(next())
			time.Sleep(d)
		case "echo":
			fmt.Println(next())
		case "exit":
			n, _ := strconv.Atoi(next())
			return n
		default:
			return 103
		}
	}
	return 0
}

type world struct {
	dir    string
	config string
}

// newWorld writes a config whose jobs run this test binary as a helper; each job is
// "name|schedule|timeout|arg arg …" with {dir} standing for the folder.
func newWorld(t *testing.T, extra string, jobs ...string) *world {
	t.Helper()
	w := &world{dir: t.TempDir()}
	w.config = filepath.Join(w.dir, "staging-cron.toml")
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	var b strings.Builder
	fmt.Fprintf(&b, "environment = \"staging\"\nlock_file = \"run/staging.lock\"\nstate_dir = \"state\"\n%s\n", extra)
	for _, j := range jobs {
		f := strings.SplitN(j, "|", 4)
		argv := []string{strconv.Quote(exe)}
		for _, a := range strings.Fields(strings.ReplaceAll(f[3], "{dir}", w.dir)) {
			argv = append(argv, strconv.Quote(a))
		}
		fmt.Fprintf(&b, "\n[[job]]\nname = %q\nschedule = %q\ncommand = [%s]\nenv = { %s = \"1\" }\n",
			f[0], f[1], strings.Join(argv, ", "), helperEnv)
		if f[2] != "" {
			fmt.Fprintf(&b, "timeout = %q\n", f[2])
		}
	}
	if err := os.WriteFile(w.config, []byte(b.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	return w
}

func (w *world) path(name string) string { return filepath.Join(w.dir, name) }

// cronrunner runs the binary and returns its exit status and output.
func cronrunner(t *testing.T, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	var o, e bytes.Buffer
	cmd := exec.Command(binary, args...)
	cmd.Stdout, cmd.Stderr = &o, &e
	err := cmd.Run()
	var ee *exec.ExitError
	switch {
	case err == nil:
	case errors.As(err, &ee):
		code = ee.ExitCode()
	default:
		t.Fatal(err)
	}
	return code, o.String(), e.String()
}

func lines(t *testing.T, file string) int {
	t.Helper()
	data, err := os.ReadFile(file)
	if os.IsNotExist(err) {
		return 0
	}
	if err != nil {
		t.Fatal(err)
	}
	return strings.Count(string(data), "\n")
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(2 * time.Minute); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
		if cond() {
			return
		}
	}
	t.Fatalf("timed out waiting for %s", what)
}

func exists(file string) bool {
	_, err := os.Stat(file)
	return err == nil
}

func TestOnceRunsDueJobs(t *testing.T) {
	w := newWorld(t, "",
		"a|* * * * *||append {dir}/a run",
		"b|* * * * *||append {dir}/b run")
	code, _, stderr := cronrunner(t, "-config", w.config, "-once")
	if code != 0 || stderr != "" {
		t.Fatalf("exit %d, stderr:\n%s", code, stderr)
	}
	if lines(t, w.path("a")) != 1 || lines(t, w.path("b")) != 1 {
		t.Fatal("jobs did not run once each")
	}
	if !exists(w.path("state/state.json")) || !exists(w.path("run/staging.lock")) {
		t.Fatal("state or lock not beside the config")
	}
}

func TestOnceReportsFailedJob(t *testing.T) {
	// [notify] stdout: the report is printed, through staging.NewNotifier and its spool.
	w := newWorld(t, "[notify]\nstdout = true\n",
		"broken|* * * * *||echo tail-of-output exit 3",
		"ghost|* * * * *||",
		"fine|* * * * *||append {dir}/fine run")
	// ghost: a program that does not exist.
	data, _ := os.ReadFile(w.config)
	exe, _ := os.Executable()
	data = bytes.Replace(data, []byte(`name = "ghost"`+"\nschedule = \"* * * * *\"\ncommand = ["+strconv.Quote(exe)+"]"),
		[]byte(`name = "ghost"`+"\nschedule = \"* * * * *\"\ncommand = [\"/nonexistent/ghost\"]"), 1)
	if err := os.WriteFile(w.config, data, 0o644); err != nil {
		t.Fatal(err)
	}
	code, stdout, stderr := cronrunner(t, "-config", w.config, "-once")
	if code != 1 || !strings.Contains(stderr, "2 job(s) failed: broken (failed), ghost (failed)") {
		t.Fatalf("exit %d, stderr:\n%s", code, stderr)
	}
	for _, want := range []string{"[staging-cron]", "broken", "tail-of-output", "/nonexistent/ghost"} {
		if !strings.Contains(stdout, want) {
			t.Errorf("report lacks %q:\n%s", want, stdout)
		}
	}
	if lines(t, w.path("fine")) != 1 {
		t.Fatal("the other job did not run")
	}
}

func TestOnceSkipsDuringRebuild(t *testing.T) {
	w := newWorld(t, "", "a|* * * * *||append {dir}/a run")
	l, err := staging.AcquireExclusive(t.Context(), w.path("run/staging.lock"), staging.LockOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Release()
	// -once prints warnings only: the skip is one, and names the rebuild.
	code, _, stderr := cronrunner(t, "-config", w.config, "-once")
	host, _ := os.Hostname()
	if code != 0 || !strings.Contains(stderr, "level=WARN") || !strings.Contains(stderr, "a rebuild holds the lock") ||
		!strings.Contains(stderr, "pid "+strconv.Itoa(os.Getpid())+" on "+host+" since ") {
		t.Fatalf("exit %d, stderr:\n%s", code, stderr)
	}
	if lines(t, w.path("a")) != 0 {
		t.Fatal("job ran during the rebuild")
	}
}

func TestConfigAndUsageErrorsExit2(t *testing.T) {
	w := newWorld(t, "", "a|* * * * *||echo x")
	bad := filepath.Join(w.dir, "bad.toml")
	os.WriteFile(bad, []byte("environment = \"s\"\nlock_file = \"l\"\nstate_dir = \"s\"\n[[job]]\nname = \"a\"\nschedule = \"* * *\"\ncommand = [\"x\"]\n"), 0o644)
	for _, tc := range []struct {
		args []string
		want string
	}{
		{nil, "-config FILE is required"},
		{[]string{"-config", bad, "-once"}, `job "a": schedule "* * *"`},
		{[]string{"-config", w.path("missing.toml")}, "missing.toml"},
		{[]string{"-config", w.config, "-nope"}, "-nope"},
		{[]string{"-config", w.config, "extra"}, "unexpected arguments"},
		{[]string{"-config", w.config, "-disable", "a"}, "no control file"},
		{[]string{"-config", w.config, "-once", "-log-level", "loud"}, "-log-level"},
	} {
		code, _, stderr := cronrunner(t, tc.args...)
		if code != 2 || !strings.Contains(stderr, tc.want) {
			t.Errorf("%v: exit %d, stderr:\n%s", tc.args, code, stderr)
		}
	}
}

func TestDisableEnable(t *testing.T) {
	w := newWorld(t, "control = \"cron.ini\"\n",
		"a|* * * * *||append {dir}/a run",
		"b|* * * * *||append {dir}/b run")
	code, stdout, stderr := cronrunner(t, "-config", w.config, "-disable", "b")
	if code != 0 || !strings.Contains(stdout, "disabled b in "+w.path("cron.ini")) {
		t.Fatalf("exit %d\n%s%s", code, stdout, stderr)
	}
	if data, _ := os.ReadFile(w.path("cron.ini")); string(data) != "[b]\nenabled: False\n" {
		t.Fatalf("control file:\n%s", data)
	}
	if code, _, stderr := cronrunner(t, "-config", w.config, "-once"); code != 0 {
		t.Fatalf("exit %d\n%s", code, stderr)
	}
	if lines(t, w.path("a")) != 1 || lines(t, w.path("b")) != 0 {
		t.Fatal("control file not obeyed")
	}
	if code, _, _ := cronrunner(t, "-config", w.config, "-enable", "b"); code != 0 {
		t.Fatal(code)
	}
	if data, _ := os.ReadFile(w.path("cron.ini")); string(data) != "[b]\nenabled: True\n" {
		t.Fatalf("control file:\n%s", data)
	}
	if code, _, stderr := cronrunner(t, "-config", w.config, "-disable", "nosuch"); code != 2 || !strings.Contains(stderr, `no job "nosuch"`) {
		t.Fatalf("unknown job: exit %d\n%s", code, stderr)
	}
	if code, _, _ := cronrunner(t, "-config", w.config, "-disable", "DEFAULT"); code != 0 {
		t.Fatal(code)
	}
}

// daemon starts cronrunner without -once and returns it with its stderr.
func daemon(t *testing.T, w *world) (*exec.Cmd, *syncBuffer, chan error) {
	t.Helper()
	cmd := exec.Command(binary, "-config", w.config)
	errOut := &syncBuffer{}
	cmd.Stderr = errOut
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	t.Cleanup(func() {
		if cmd.ProcessState == nil {
			cmd.Process.Kill()
			<-done
		}
	})
	return cmd, errOut, done
}

func TestSIGTERMStopsDaemonCleanly(t *testing.T) {
	w := newWorld(t, "",
		"long|* * * * *|10m|append {dir}/started x waitfile {dir}/release append {dir}/finished x")
	cmd, stderr, done := daemon(t, w)
	waitFor(t, "the job to start", func() bool { return exists(w.path("started")) })
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the daemon to stop starting jobs", func() bool { return strings.Contains(stderr.String(), "cron daemon stopping") })
	if err := os.WriteFile(w.path("release"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := <-done; err != nil {
		t.Fatalf("daemon: %v\n%s", err, stderr)
	}
	if !exists(w.path("finished")) {
		t.Fatal("the daemon exited before its running job finished")
	}
	if h := staging.SharedHolders(w.path("run/staging.lock")); len(h) != 0 {
		t.Fatalf("holders left: %+v", h)
	}
}

func TestSIGTERMKillsJobAfterItsTimeout(t *testing.T) {
	w := newWorld(t, "",
		"stuck|* * * * *|5s|pid {dir}/pid ignoreterm append {dir}/started x sleep 10m")
	cmd, stderr, done := daemon(t, w)
	waitFor(t, "the job to start", func() bool { return exists(w.path("started")) })
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if err := <-done; err != nil {
		t.Fatalf("daemon: %v\n%s", err, stderr)
	}
	data, _ := os.ReadFile(w.path("pid"))
	pid, _ := strconv.Atoi(string(data))
	if stat, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat"); err == nil && !strings.Contains(string(stat), ") Z") {
		t.Fatalf("job %d still running: %s", pid, stat)
	}
	if !strings.Contains(stderr.String(), "timed out") {
		t.Fatalf("stderr:\n%s", stderr)
	}
}

func TestExitCode(t *testing.T) {
	for err, want := range map[error]int{
		nil:      0,
		errUsage: 2,
		fmt.Errorf("%w: %w", errUsage, flag.ErrHelp): 0,
		fmt.Errorf("x: %w", staging.ErrConfig):       2,
		errors.New("job failed"):                     1,
	} {
		if got := exitCode(err); got != want {
			t.Errorf("exitCode(%v) = %d, want %d", err, got, want)
		}
	}
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func TestList(t *testing.T) {
	w := newWorld(t, "control = \"cron.ini\"\n",
		"a|*/5 * * * *||echo x",
		"b|0 3 * * *||echo y")
	if code, _, stderr := cronrunner(t, "-config", w.config, "-disable", "b"); code != 0 {
		t.Fatal(stderr)
	}
	code, stdout, stderr := cronrunner(t, "-config", w.config, "-list")
	if code != 0 {
		t.Fatalf("exit %d\n%s", code, stderr)
	}
	rows := strings.Split(strings.TrimSpace(stdout), "\n")
	if len(rows) != 3 || !strings.HasPrefix(rows[0], "JOB") ||
		!strings.Contains(rows[1], "*/5 * * * *") || !strings.Contains(rows[1], "yes") ||
		!strings.Contains(rows[2], "0 3 * * *") || !strings.Contains(rows[2], " no ") {
		t.Fatalf("-list:\n%s", stdout)
	}
}

// A runner killed while its job runs cannot let a rebuild start under the job: the job
// holds the lock's descriptor itself until it ends.
func TestKilledRunnerLeavesJobHoldingLock(t *testing.T) {
	w := newWorld(t, "",
		"long|* * * * *|10m|append {dir}/started x waitfile {dir}/release")
	cmd, _, done := daemon(t, w)
	waitFor(t, "the job to start", func() bool { return exists(w.path("started")) })
	if err := cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	<-done
	lock := w.path("run/staging.lock")
	if _, err := staging.AcquireExclusive(context.Background(), lock, staging.LockOptions{}); !errors.Is(err, staging.ErrBusy) {
		t.Fatalf("a rebuild could take the lock while the job still runs: %v", err)
	}
	if err := os.WriteFile(w.path("release"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the job to end and the lock to be free", func() bool {
		l, err := staging.AcquireExclusive(context.Background(), lock, staging.LockOptions{})
		if err != nil {
			return false
		}
		l.Release()
		return true
	})
}

// alive reports whether the process whose pid is in file runs (a zombie is dead).
func alive(t *testing.T, pidFile string) bool {
	t.Helper()
	data, err := os.ReadFile(pidFile)
	if err != nil {
		t.Fatal(err)
	}
	stat, err := os.ReadFile("/proc/" + strings.TrimSpace(string(data)) + "/stat")
	if err != nil {
		return false
	}
	s := string(stat)
	i := strings.LastIndexByte(s, ')')
	return i < 0 || len(s) < i+3 || (s[i+2] != 'Z' && s[i+2] != 'X')
}

// A -once runner killed with SIGKILL while its job runs cannot let the next runner
// start a second copy of the job: the job holds its per-job lock itself (fd 4) until
// it ends.
func TestKilledOnceRunnerDoesNotLetJobStartTwice(t *testing.T) {
	w := newWorld(t, "",
		"long|* * * * *|10m|pid {dir}/pid append {dir}/started x waitfile {dir}/release")
	first := exec.Command(binary, "-config", w.config, "-once")
	if err := first.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.WriteFile(w.path("release"), nil, 0o644) }) // whatever happens, the jobs end
	waitFor(t, "the job to start", func() bool { return lines(t, w.path("started")) == 1 && exists(w.path("pid")) })
	if err := first.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	first.Wait()
	if !alive(t, w.path("pid")) {
		t.Fatal("the job died with its runner")
	}
	// The job is due again (as at the next minute): forget the state.
	state := w.path("state/state.json")
	if err := os.Remove(state); err != nil {
		t.Fatal(err)
	}
	second := exec.Command(binary, "-config", w.config, "-once")
	done := make(chan error, 1)
	if err := second.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { done <- second.Wait() }()
	var err error
	waitFor(t, "the second runner to end or start the job again", func() bool {
		select {
		case err = <-done:
			return true
		default:
			return lines(t, w.path("started")) > 1
		}
	})
	if n := lines(t, w.path("started")); n != 1 {
		os.WriteFile(w.path("release"), nil, 0o644)
		<-done
		t.Fatalf("the job was started again (%d times) while its first run still runs", n)
	}
	if err != nil {
		t.Fatalf("second runner: %v", err)
	}
	// Once the first job is gone, the next runner starts it.
	if err := os.WriteFile(w.path("release"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the first job to end", func() bool { return !alive(t, w.path("pid")) })
	if err := os.Remove(state); err != nil {
		t.Fatal(err)
	}
	if code, _, stderr := cronrunner(t, "-config", w.config, "-once"); code != 0 {
		t.Fatalf("third runner: exit %d\n%s", code, stderr)
	}
	if n := lines(t, w.path("started")); n != 2 {
		t.Fatalf("after the first job ended: started %d times, want 2", n)
	}
}
