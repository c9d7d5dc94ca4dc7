package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"github.com/restage/restage/examples/internal/cli/clitest"
	"github.com/restage/restage/internal/syncbuf"
	"github.com/restage/restage/staging"
	"github.com/restage/restage/staging/cron/crontest"
)

var binary string // the built cronrunner

func TestMain(m *testing.M) {
	crontest.RunHelper() // a job of the configs below
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

type world struct {
	dir    string
	config string
}

// newWorld writes a config whose jobs run this test binary as a helper (crontest's
// script); each job is "name|schedule|timeout|word arg …" with {dir} standing for the
// folder.
func newWorld(t *testing.T, extra string, jobs ...string) *world {
	t.Helper()
	w := &world{dir: t.TempDir()}
	w.config = filepath.Join(w.dir, "staging-cron.toml")
	var b strings.Builder
	fmt.Fprintf(&b, "environment = \"staging\"\nlock_file = \"run/staging.lock\"\nstate_dir = \"state\"\n%s\n", extra)
	for _, j := range jobs {
		f := strings.SplitN(j, "|", 4)
		var argv []string
		for _, a := range crontest.Command(t, strings.Fields(strings.ReplaceAll(f[3], "{dir}", w.dir))...) {
			argv = append(argv, strconv.Quote(a))
		}
		fmt.Fprintf(&b, "\n[[job]]\nname = %q\nschedule = %q\ncommand = [%s]\nenv = { %s = \"1\" }\n",
			f[0], f[1], strings.Join(argv, ", "), crontest.HelperEnv)
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

func TestOnceRunsDueJobs(t *testing.T) {
	w := newWorld(t, "",
		"a|* * * * *||append {dir}/a run",
		"b|* * * * *||append {dir}/b run")
	code, _, stderr := cronrunner(t, "-config", w.config, "-once")
	if code != 0 || stderr != "" {
		t.Fatalf("exit %d, stderr:\n%s", code, stderr)
	}
	if crontest.LineCount(t, w.path("a")) != 1 || crontest.LineCount(t, w.path("b")) != 1 {
		t.Fatal("jobs did not run once each")
	}
	if !crontest.Exists(w.path("state/state.json")) || !crontest.Exists(w.path("run/staging.lock")) {
		t.Fatal("state or lock not beside the config")
	}
}

// -v logs what -once keeps quiet by default (its level is warn, so that cron mails only
// problems), as the other programs' -v does.
func TestOnceVerbose(t *testing.T) {
	w := newWorld(t, "", "a|* * * * *||append {dir}/a run")
	code, _, stderr := cronrunner(t, "-config", w.config, "-once", "-v")
	if code != 0 || !strings.Contains(stderr, "level=INFO") || !strings.Contains(stderr, "job=a") {
		t.Fatalf("exit %d, want the job's info lines; stderr:\n%s", code, stderr)
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
	if crontest.LineCount(t, w.path("fine")) != 1 {
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
	if crontest.LineCount(t, w.path("a")) != 0 {
		t.Fatal("job ran during the rebuild")
	}
}

const usage = "usage: cronrunner -config FILE [-once] [-v | -log-level LEVEL]\n" +
	"       cronrunner -config FILE -list\n" +
	"       cronrunner -config FILE -enable JOB | -disable JOB\n"

// -h prints the usage and exits 0; a usage mistake prints "cronrunner: <message>" and
// the usage lines and exits 2; so does a config error, naming the key.
func TestUsage(t *testing.T) {
	w := newWorld(t, "", "a|* * * * *||echo x")
	remote := newWorld(t, "control = \"https://cron.example.org/cron.ini\"\n", "a|* * * * *||echo x")
	bad := w.path("bad.toml")
	if err := os.WriteFile(bad, []byte("environment = \"s\"\nlock_file = \"l\"\nstate_dir = \"s\"\n[[job]]\nname = \"a\"\nschedule = \"* * *\"\ncommand = [\"x\"]\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	cfg := w.config
	clitest.Check(t, "cronrunner", run, exitStatus, []clitest.Case{
		{Args: []string{"-h"}, Code: 0, StderrStart: usage + "\nflags:\n  -config string\n"},
		{Args: []string{"-help"}, Code: 0, StderrStart: usage},
		{Args: nil, Code: 2, Stderr: "cronrunner: -config FILE is required\n" + usage},
		{Args: []string{"-once"}, Code: 2, Stderr: "cronrunner: -config FILE is required\n" + usage},
		{Args: []string{"-config"}, Code: 2, Stderr: "cronrunner: flag needs an argument: -config\n" + usage},
		{Args: []string{"-config", cfg, "-nope"}, Code: 2, Stderr: "cronrunner: flag provided but not defined: -nope\n" + usage},
		{Args: []string{"-config", cfg, "extra"}, Code: 2, Stderr: "cronrunner: unexpected argument \"extra\"\n" + usage},
		{Args: []string{"-config", cfg, "-once", "-list"}, Code: 2, Stderr: "cronrunner: -once, -list, -enable and -disable exclude each other\n" + usage},
		{Args: []string{"-config", cfg, "-enable", "a", "-disable", "a"}, Code: 2, Stderr: "cronrunner: -once, -list, -enable and -disable exclude each other\n" + usage},
		{Args: []string{"-config", cfg, "-once", "-log-level", "loud"}, Code: 2, Stderr: "cronrunner: -log-level \"loud\": want debug, info, warn or error\n" + usage},
		{Args: []string{"-config", cfg, "-once", "-v", "-log-level", "info"}, Code: 2, Stderr: "cronrunner: -v and -log-level exclude each other\n" + usage},
		{Args: []string{"-config", remote.config, "-disable", "a"}, Code: 2,
			Stderr: "cronrunner: control https://cron.example.org/cron.ini is a URL: change the file where it is served\n" + usage},
		// Config errors name the key.
		{Args: []string{"-config", bad, "-once"}, Code: 2, Stderr: "cronrunner: " + bad + ": config: job \"a\": schedule \"* * *\": expected exactly 5 fields, found 3: [* * *]\n"},
		{Args: []string{"-config", cfg, "-disable", "a"}, Code: 2, Stderr: "cronrunner: config: no control file in the config (key control)\n"},
		{Args: []string{"-config", w.path("missing.toml")}, Code: 2, Stderr: "cronrunner: config: open " + w.path("missing.toml") + ": no such file or directory\n"},
	})
	withControl := newWorld(t, "control = \"cron.ini\"\n", "a|* * * * *||echo x")
	clitest.Check(t, "cronrunner", run, exitStatus, []clitest.Case{
		{Args: []string{"-config", withControl.config, "-disable", "nosuch"}, Code: 2, Stderr: "cronrunner: no job \"nosuch\" in the config\n" + usage},
	})
}

// The installed program exits as run says: 0 for -h, 2 for a usage or config error, 1
// when a job failed (TestOnceReportsFailedJob).
func TestExitStatus(t *testing.T) {
	w := newWorld(t, "", "a|* * * * *||echo x")
	for _, tc := range []struct {
		args []string
		code int
		want string
	}{
		{[]string{"-h"}, 0, usage},
		{[]string{"-config", w.config, "-list", "-once"}, 2, "cronrunner: -once, -list, -enable and -disable exclude each other\n" + usage},
		{[]string{"-config", w.config, "-disable", "a"}, 2, "cronrunner: config: no control file in the config (key control)\n"},
	} {
		code, stdout, stderr := cronrunner(t, tc.args...)
		if code != tc.code || stdout != "" || !strings.HasPrefix(stderr, tc.want) {
			t.Errorf("cronrunner %q: exit %d, stdout %q, stderr:\n%s\nwant exit %d, stderr starting:\n%s", tc.args, code, stdout, stderr, tc.code, tc.want)
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
	if crontest.LineCount(t, w.path("a")) != 1 || crontest.LineCount(t, w.path("b")) != 0 {
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

// signalDaemon starts cronrunner without -once, waits until its job has started (it
// appends to {dir}/started) and sends the daemon sig. done yields the daemon's exit.
func signalDaemon(t *testing.T, w *world, sig os.Signal) (stderr *syncbuf.Buffer, done chan error) {
	t.Helper()
	cmd := exec.Command(binary, "-config", w.config)
	stderr = &syncbuf.Buffer{}
	cmd.Stderr = stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done = make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	t.Cleanup(func() {
		if cmd.ProcessState == nil {
			cmd.Process.Kill()
			<-done
		}
	})
	crontest.WaitFor(t, "the job to start", func() bool { return crontest.Exists(w.path("started")) })
	if err := cmd.Process.Signal(sig); err != nil {
		t.Fatal(err)
	}
	return stderr, done
}

func TestSIGTERMStopsDaemonCleanly(t *testing.T) {
	w := newWorld(t, "",
		"long|* * * * *|10m|append {dir}/started x waitfile {dir}/release append {dir}/finished x")
	stderr, done := signalDaemon(t, w, syscall.SIGTERM)
	crontest.WaitFor(t, "the daemon to stop starting jobs", func() bool { return strings.Contains(stderr.String(), "cron daemon stopping") })
	if err := os.WriteFile(w.path("release"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := <-done; err != nil {
		t.Fatalf("daemon: %v\n%s", err, stderr)
	}
	if !crontest.Exists(w.path("finished")) {
		t.Fatal("the daemon exited before its running job finished")
	}
	if h := staging.SharedHolders(w.path("run/staging.lock")); len(h) != 0 {
		t.Fatalf("holders left: %+v", h)
	}
}

func TestSIGTERMKillsJobAfterItsTimeout(t *testing.T) {
	w := newWorld(t, "",
		"stuck|* * * * *|5s|pid {dir}/pid ignoreterm append {dir}/started x sleep 10m")
	stderr, done := signalDaemon(t, w, syscall.SIGTERM)
	if err := <-done; err != nil {
		t.Fatalf("daemon: %v\n%s", err, stderr)
	}
	if crontest.Alive(t, w.path("pid")) {
		t.Fatal("the job still runs after its timeout")
	}
	if !strings.Contains(stderr.String(), "timed out") {
		t.Fatalf("stderr:\n%s", stderr)
	}
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
	_, done := signalDaemon(t, w, os.Kill)
	<-done
	lock := w.path("run/staging.lock")
	if _, err := staging.AcquireExclusive(context.Background(), lock, staging.LockOptions{}); !errors.Is(err, staging.ErrBusy) {
		t.Fatalf("a rebuild could take the lock while the job still runs: %v", err)
	}
	if err := os.WriteFile(w.path("release"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	crontest.WaitFor(t, "the job to end and the lock to be free", func() bool {
		l, err := staging.AcquireExclusive(context.Background(), lock, staging.LockOptions{})
		if err != nil {
			return false
		}
		l.Release()
		return true
	})
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
	crontest.WaitFor(t, "the job to start", func() bool { return crontest.LineCount(t, w.path("started")) == 1 && crontest.Exists(w.path("pid")) })
	if err := first.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	first.Wait()
	if !crontest.Alive(t, w.path("pid")) {
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
	crontest.WaitFor(t, "the second runner to end or start the job again", func() bool {
		select {
		case err = <-done:
			return true
		default:
			return crontest.LineCount(t, w.path("started")) > 1
		}
	})
	if n := crontest.LineCount(t, w.path("started")); n != 1 {
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
	crontest.WaitFor(t, "the first job to end", func() bool { return !crontest.Alive(t, w.path("pid")) })
	if err := os.Remove(state); err != nil {
		t.Fatal(err)
	}
	if code, _, stderr := cronrunner(t, "-config", w.config, "-once"); code != 0 {
		t.Fatalf("third runner: exit %d\n%s", code, stderr)
	}
	if n := crontest.LineCount(t, w.path("started")); n != 2 {
		t.Fatalf("after the first job ended: started %d times, want 2", n)
	}
}
