package cron_test

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
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

	"github.com/restage/restage/notify"
	"github.com/restage/restage/staging/cron"
)

// helperEnv switches the test binary into a job: it then runs the words of its
// arguments as a little script (see helperMain) instead of the tests.
const helperEnv = "RESTAGE_CRON_TEST_HELPER"

func TestMain(m *testing.M) {
	if os.Getenv(helperEnv) == "1" {
		os.Exit(helperMain(os.Args[1:]))
	}
	os.Exit(m.Run())
}

// helperMain interprets args in order:
//
//	append FILE TEXT   append TEXT and a newline to FILE
//	echo TEXT          print TEXT on standard output; stderr TEXT on standard error
//	lines N            print "line 1" … "line N"
//	env FILE VAR       write $VAR to FILE
//	environ FILE       write the whole environment to FILE, one KEY=value a line
//	cwd FILE           write the working folder to FILE
//	pid FILE           write the process ID to FILE
//	waitfile FILE      wait until FILE exists
//	ignoreterm         ignore SIGTERM
//	spawn FILE N ARGS  start a copy of this helper with the next N args, write its PID to FILE
//	sleep DURATION     sleep
//	exit N             exit with status N
func helperMain(args []string) int {
	for len(args) > 0 {
		w := args[0]
		args = args[1:]
		arg := func() string {
			if len(args) == 0 {
				fmt.Fprintf(os.Stderr, "helper: %s: missing argument\n", w)
				os.Exit(100)
			}
			a := args[0]
			args = args[1:]
			return a
		}
		switch w {
		case "append":
			file, text := arg(), arg()
			f, err := os.OpenFile(file, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o644)
			if err != nil {
				fmt.Fprintln(os.Stderr, err)
				return 101
			}
			fmt.Fprintln(f, text)
			f.Close()
		case "echo":
			fmt.Println(arg())
		case "stderr":
			fmt.Fprintln(os.Stderr, arg())
		case "lines":
			n, _ := strconv.Atoi(arg())
			for i := 1; i <= n; i++ {
				fmt.Printf("line %d\n", i)
			}
		case "env":
			file, name := arg(), arg()
			_ = os.WriteFile(file, []byte(os.Getenv(name)), 0o644)
		case "environ":
			_ = os.WriteFile(arg(), []byte(strings.Join(os.Environ(), "\n")+"\n"), 0o644)
		case "cwd":
			wd, _ := os.Getwd()
			_ = os.WriteFile(arg(), []byte(wd), 0o644)
		case "pid":
			_ = os.WriteFile(arg(), []byte(strconv.Itoa(os.Getpid())), 0o644)
		case "waitfile":
			file := arg()
			for deadline := time.Now().Add(10 * time.Minute); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
				if _, err := os.Stat(file); err == nil {
					break
				}
			}
		case "ignoreterm":
			signal.Ignore(syscall.SIGTERM)
		case "spawn":
			file := arg()
			n, _ := strconv.Atoi(arg())
			exe, _ := os.Executable()
			c := exec.Command(exe, args[:n]...)
			args = args[n:]
			c.Stdout, c.Stderr = os.Stdout, os.Stderr // keeps the job's output pipe open
			if err := c.Start(); err != nil {
				fmt.Fprintln(os.Stderr, err)
				return 102
			}
			_ = os.WriteFile(file, []byte(strconv.Itoa(c.Process.Pid)), 0o644)
		case "sleep":
			d, _ := time.ParseDuration(arg())
			time.Sleep(d)
		case "exit":
			n, _ := strconv.Atoi(arg())
			return n
		default:
			fmt.Fprintf(os.Stderr, "helper: unknown word %q\n", w)
			return 103
		}
	}
	return 0
}

// helperJob returns a job running the test binary as a helper with args.
func helperJob(t testing.TB, name, schedule string, args ...string) cron.Job {
	t.Helper()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	return cron.Job{Name: name, Schedule: schedule, Command: append([]string{exe}, args...), Env: map[string]string{helperEnv: "1"}}
}

// syncBuffer is a bytes.Buffer safe for concurrent writes (the runner logs from goroutines).
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

// notifierFunc is a fake notify.Notifier.
type notifierFunc func(ctx context.Context, m *notify.Message) error

func (f notifierFunc) Notify(ctx context.Context, m *notify.Message) error { return f(ctx, m) }

// env is one test's environment: a folder with the lock file, the state folder and
// a log, and a notifier that keeps what it gets.
type env struct {
	dir   string
	lock  string
	state string
	log   *syncBuffer
	mu    sync.Mutex
	msgs  []*notify.Message
}

func newEnv(t testing.TB) *env {
	t.Helper()
	dir := t.TempDir()
	return &env{dir: dir, lock: filepath.Join(dir, "run", "staging.lock"), state: filepath.Join(dir, "state"), log: &syncBuffer{}}
}

func (e *env) config(jobs ...cron.Job) cron.Config {
	return cron.Config{
		Environment: "staging",
		LockFile:    e.lock,
		StateDir:    e.state,
		Jobs:        jobs,
		Dir:         e.dir,
		Logger:      slog.New(slog.NewTextHandler(e.log, nil)),
		Notifier: notifierFunc(func(ctx context.Context, m *notify.Message) error {
			e.mu.Lock()
			defer e.mu.Unlock()
			e.msgs = append(e.msgs, m)
			return nil
		}),
	}
}

func (e *env) messages() []*notify.Message {
	e.mu.Lock()
	defer e.mu.Unlock()
	return append([]*notify.Message(nil), e.msgs...)
}

func (e *env) path(name string) string { return filepath.Join(e.dir, name) }

func newRunner(t testing.TB, cfg cron.Config) *cron.Runner {
	t.Helper()
	r, err := cron.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func runOnce(t testing.TB, r *cron.Runner, now time.Time) *cron.Summary {
	t.Helper()
	sum, err := r.RunOnce(t.Context(), now)
	if err != nil {
		t.Fatalf("RunOnce(%s): %v", now.Format("15:04:05"), err)
	}
	return sum
}

// outcomes returns "job=outcome" for every due job, in order.
func outcomes(sum *cron.Summary) string {
	var s []string
	for _, j := range sum.Jobs {
		s = append(s, j.Job+"="+string(j.Outcome))
	}
	return strings.Join(s, " ")
}

// lineCount returns the number of lines in file (0 when missing).
func lineCount(t testing.TB, file string) int {
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

// waitFor polls cond until it is true, failing the test after a generous bound.
func waitFor(t testing.TB, what string, cond func() bool) {
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

func touch(t testing.TB, file string) {
	t.Helper()
	if err := os.WriteFile(file, nil, 0o644); err != nil {
		t.Fatal(err)
	}
}

// alive reports whether the process with the PID in file runs (zombies count as dead).
func alive(t testing.TB, pidFile string) bool {
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
	if i := strings.LastIndexByte(s, ')'); i >= 0 && len(s) > i+2 {
		return s[i+2] != 'Z' && s[i+2] != 'X'
	}
	return true
}

var base = time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC)

func at(min int, sec ...int) time.Time {
	t := base.Add(time.Duration(min) * time.Minute)
	if len(sec) > 0 {
		t = t.Add(time.Duration(sec[0]) * time.Second)
	}
	return t
}
