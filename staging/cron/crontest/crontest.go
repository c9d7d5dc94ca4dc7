package crontest

import (
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/restage/restage/internal/proc"
	"github.com/restage/restage/staging/cron"
)

// HelperEnv set to "1" in a test binary's environment makes RunHelper run its
// arguments as a script instead of the tests.
const HelperEnv = "RESTAGE_CRON_TEST_HELPER"

// RunHelper runs the script in the program's arguments and exits with its status when
// HelperEnv is "1" (the test binary was started as a job); otherwise it returns.
func RunHelper() {
	if os.Getenv(HelperEnv) == "1" {
		os.Exit(HelperMain(os.Args[1:]))
	}
}

// HelperMain interprets args in order and returns the exit status:
//
//	append FILE TEXT   append TEXT and a newline to FILE
//	echo TEXT          print TEXT on standard output; stderr TEXT on standard error
//	lines N            print "line 1" … "line N"
//	env FILE VAR       write $VAR to FILE
//	environ FILE       write the whole environment to FILE, one KEY=value a line
//	cwd FILE           write the working folder to FILE
//	pid FILE           write the process ID to FILE
//	waitfile FILE      wait until FILE exists (at most 10 minutes)
//	ignoreterm         ignore SIGTERM
//	spawn FILE N ARGS  start a copy of this program with the next N args, write its PID to FILE
//	sleep DURATION     sleep
//	exit N             exit with status N
func HelperMain(args []string) int {
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
			for deadline := time.Now().Add(10 * time.Minute); time.Now().Before(deadline) && !Exists(file); {
				time.Sleep(10 * time.Millisecond)
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

// Command returns the argv that runs this test binary as a helper with the script
// args (its environment must have HelperEnv=1).
func Command(tb testing.TB, args ...string) []string {
	tb.Helper()
	exe, err := os.Executable()
	if err != nil {
		tb.Fatal(err)
	}
	return append([]string{exe}, args...)
}

// Job returns a job that runs this test binary as a helper with the script args.
func Job(tb testing.TB, name, schedule string, args ...string) cron.Job {
	tb.Helper()
	return cron.Job{Name: name, Schedule: schedule, Command: Command(tb, args...), Env: map[string]string{HelperEnv: "1"}}
}

// WaitFor polls cond until it is true, failing the test after a generous bound.
func WaitFor(tb testing.TB, what string, cond func() bool) {
	tb.Helper()
	for deadline := time.Now().Add(2 * time.Minute); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
		if cond() {
			return
		}
	}
	tb.Fatalf("timed out waiting for %s", what)
}

// LineCount returns the number of lines in file (0 when it is missing).
func LineCount(tb testing.TB, file string) int {
	tb.Helper()
	data, err := os.ReadFile(file)
	if os.IsNotExist(err) {
		return 0
	}
	if err != nil {
		tb.Fatal(err)
	}
	return strings.Count(string(data), "\n")
}

// Exists reports whether file exists.
func Exists(file string) bool {
	_, err := os.Stat(file)
	return err == nil
}

// Touch creates file, empty.
func Touch(tb testing.TB, file string) {
	tb.Helper()
	if err := os.WriteFile(file, nil, 0o644); err != nil {
		tb.Fatal(err)
	}
}

// Alive reports whether the process whose pid is in pidFile (as "pid" writes it) runs;
// one that has exited, not reaped yet, does not.
func Alive(tb testing.TB, pidFile string) bool {
	tb.Helper()
	data, err := os.ReadFile(pidFile)
	if err != nil {
		tb.Fatal(err)
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(data)))
	if err != nil {
		tb.Fatalf("%s: %v", pidFile, err)
	}
	v, _, _ := proc.Check(proc.ID{PID: pid})
	return v == proc.Alive
}
