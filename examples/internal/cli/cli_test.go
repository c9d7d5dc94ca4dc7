package cli

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"
)

// mainEnv makes the test binary run Main with the function it names (see TestMain).
const mainEnv = "RESTAGE_CLI_TEST_MAIN"

// programs are the run functions TestMain can hand to Main in a child process.
var programs = map[string]RunFunc{
	"greet": func(ctx context.Context, args []string, stdout, stderr io.Writer) error {
		fs := NewFlagSet("prog", stderr, "-name NAME")
		name := fs.String("name", "", "who to greet")
		if err := fs.Parse(args); err != nil {
			return err
		}
		if *name == "" {
			return fs.Usagef("-name is required")
		}
		fmt.Fprintf(stdout, "hello %s\n", *name)
		return nil
	},
	"wait": func(ctx context.Context, args []string, stdout, stderr io.Writer) error {
		fmt.Fprintln(stdout, "waiting")
		<-ctx.Done()
		return fmt.Errorf("stopped: %w", ctx.Err())
	},
	"status": func(ctx context.Context, args []string, stdout, stderr io.Writer) error {
		return errLocked
	},
}

var errLocked = errors.New("locked by pid 1")

func TestMain(m *testing.M) {
	if name := os.Getenv(mainEnv); name != "" {
		Main("prog", programs[name], func(err error) int {
			if errors.Is(err, errLocked) {
				return 3
			}
			return ExitFailed
		})
	}
	os.Exit(m.Run())
}

// child runs Main in a copy of the test binary with the program name and args.
func child(t *testing.T, name string, args ...string) *exec.Cmd {
	t.Helper()
	cmd := exec.Command(os.Args[0], args...)
	cmd.Env = append(os.Environ(), mainEnv+"="+name)
	return cmd
}

func exitCode(t *testing.T, err error) int {
	t.Helper()
	var ee *exec.ExitError
	switch {
	case err == nil:
		return 0
	case errors.As(err, &ee):
		return ee.ExitCode()
	}
	t.Fatal(err)
	return -1
}

func TestMainConvention(t *testing.T) {
	for _, tc := range []struct {
		name       string
		args       []string
		code       int
		stdout     string
		stderr     string // exact
		stderrHave string // contained
	}{
		{name: "greet", args: []string{"-name", "ann"}, code: 0, stdout: "hello ann\n", stderr: ""},
		{name: "greet", args: []string{"-h"}, code: 0, stderrHave: "usage: prog -name NAME\n\nflags:\n  -name string\n"},
		{name: "greet", args: []string{"-help"}, code: 0, stderrHave: "usage: prog -name NAME\n"},
		{name: "greet", args: nil, code: 2, stderr: "prog: -name is required\nusage: prog -name NAME\n"},
		{name: "greet", args: []string{"-nmae", "x"}, code: 2, stderr: "prog: flag provided but not defined: -nmae\nusage: prog -name NAME\n"},
		{name: "greet", args: []string{"-name", "ann", "bob"}, code: 2, stderr: "prog: unexpected argument \"bob\"\nusage: prog -name NAME\n"},
		{name: "greet", args: []string{"-name"}, code: 2, stderr: "prog: flag needs an argument: -name\nusage: prog -name NAME\n"},
		{name: "status", code: 3, stderr: "prog: locked by pid 1\n"},
	} {
		var stdout, stderr bytes.Buffer
		cmd := child(t, tc.name, tc.args...)
		cmd.Stdout, cmd.Stderr = &stdout, &stderr
		code := exitCode(t, cmd.Run())
		if code != tc.code || stdout.String() != tc.stdout && tc.stdout != "" ||
			tc.stderrHave == "" && stderr.String() != tc.stderr || !strings.Contains(stderr.String(), tc.stderrHave) {
			t.Errorf("%s %q: exit %d, stdout %q, stderr %q; want exit %d, stdout %q, stderr %q",
				tc.name, tc.args, code, stdout.String(), stderr.String(), tc.code, tc.stdout, tc.stderr+tc.stderrHave)
		}
	}
}

func TestMainSignalCancels(t *testing.T) {
	for _, sig := range []syscall.Signal{syscall.SIGINT, syscall.SIGTERM} {
		var stderr bytes.Buffer
		cmd := child(t, "wait")
		stdout, err := cmd.StdoutPipe()
		if err != nil {
			t.Fatal(err)
		}
		cmd.Stderr = &stderr
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		line := make([]byte, len("waiting\n"))
		if _, err := io.ReadFull(stdout, line); err != nil {
			t.Fatal(err)
		}
		if err := cmd.Process.Signal(sig); err != nil {
			t.Fatal(err)
		}
		done := make(chan error, 1)
		go func() { done <- cmd.Wait() }()
		select {
		case err := <-done:
			if code := exitCode(t, err); code != 1 || stderr.String() != "prog: stopped: context canceled\n" {
				t.Errorf("%v: exit %d, stderr %q; want 1 and the run's error", sig, code, stderr.String())
			}
		case <-time.After(30 * time.Second):
			_ = cmd.Process.Kill()
			t.Fatalf("%v did not stop the program", sig)
		}
	}
}

func TestExit(t *testing.T) {
	fs := NewFlagSet("prog", io.Discard, "-a A", "-b B [-c]")
	failed := func(error) int { return 7 }
	for _, tc := range []struct {
		err    error
		code   int
		stderr string
	}{
		{nil, 0, ""},
		{ErrHelp, 0, ""},
		{fmt.Errorf("wrapped: %w", ErrHelp), 0, ""},
		{fs.Usagef("-a or -b is required"), 2, "prog: -a or -b is required\nusage: prog -a A\n       prog -b B [-c]\n"},
		{fmt.Errorf("context: %w", fs.Usagef("bad")), 2, "prog: bad\nusage: prog -a A\n       prog -b B [-c]\n"},
		{&ExitError{Code: 4}, 4, ""},
		{&ExitError{Code: 2, Err: errors.New("no demo")}, 2, "prog: no demo\n"},
		{errors.New("boom"), 7, "prog: boom\n"},
	} {
		var stderr bytes.Buffer
		if code := Exit(&stderr, "prog", tc.err, failed); code != tc.code || stderr.String() != tc.stderr {
			t.Errorf("Exit(%v) = %d, %q; want %d, %q", tc.err, code, stderr.String(), tc.code, tc.stderr)
		}
	}
	var stderr bytes.Buffer
	if code := Exit(&stderr, "prog", errors.New("boom"), nil); code != ExitFailed {
		t.Errorf("nil status: exit %d, want %d", code, ExitFailed)
	}
}

func TestParse(t *testing.T) {
	var stderr bytes.Buffer
	fs := NewFlagSet("prog", &stderr, "-n N")
	n := fs.Int("n", 1, "how many `times`")
	if err := fs.Parse([]string{"-n", "3"}); err != nil || *n != 3 || stderr.Len() != 0 {
		t.Fatalf("Parse: %v, n %d, stderr %q", err, *n, stderr.String())
	}
	var ue *UsageError
	if err := fs.Parse([]string{"-n", "x"}); !errors.As(err, &ue) || !strings.Contains(err.Error(), `invalid value "x" for flag -n`) {
		t.Errorf("bad value: %v", err)
	}
	if stderr.Len() != 0 {
		t.Errorf("a mistake printed by the flag set itself: %q", stderr.String())
	}
	if err := fs.Parse([]string{"-h"}); err != ErrHelp {
		t.Fatalf("-h: %v", err)
	}
	if want := "usage: prog -n N\n\nflags:\n  -n times\n    \thow many times (default 1)\n"; stderr.String() != want {
		t.Errorf("help:\n%q\nwant\n%q", stderr.String(), want)
	}
}

// TestConfig: a flag set with Config requires -config, after the other usage checks.
func TestConfig(t *testing.T) {
	fs := NewFlagSet("prog", io.Discard, "-config FILE")
	config := fs.Config("the `file`")
	if err := fs.Parse([]string{"-config", "a.toml"}); err != nil || *config != "a.toml" {
		t.Fatalf("Parse: %v, config %q", err, *config)
	}
	for _, tc := range []struct {
		args []string
		want string
	}{
		{nil, "-config FILE is required"},
		{[]string{"-config", ""}, "-config FILE is required"},
		{[]string{"stray"}, `unexpected argument "stray"`},
	} {
		fs := NewFlagSet("prog", io.Discard, "-config FILE")
		fs.Config("the `file`")
		var ue *UsageError
		if err := fs.Parse(tc.args); !errors.As(err, &ue) || err.Error() != tc.want {
			t.Errorf("%q: %v, want the usage error %q", tc.args, err, tc.want)
		}
	}
}

func TestRequester(t *testing.T) {
	t.Setenv("USER", "alice")
	if got := Requester(); got != "alice" {
		t.Errorf("$USER alice: %q", got)
	}
	t.Setenv("USER", "")
	if got := Requester(); got == "" {
		t.Error("no $USER: empty name, want the current user's or \"unknown\"")
	}
}

// TestLogger: info lines always, debug lines only with debug set.
func TestLogger(t *testing.T) {
	for _, debug := range []bool{false, true} {
		var b strings.Builder
		log := Logger(&b, debug)
		log.Debug("details")
		log.Info("step")
		if got := strings.Contains(b.String(), "msg=details"); got != debug {
			t.Errorf("debug %v: debug line logged %v:\n%s", debug, got, b.String())
		}
		if !strings.Contains(b.String(), "level=INFO msg=step") {
			t.Errorf("debug %v: no info line:\n%s", debug, b.String())
		}
	}
}
