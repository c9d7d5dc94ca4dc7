package svcctl

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// A fake systemd for a machine without one: the test binary, symlinked as systemctl and
// journalctl into DIR/bin, runs units described by DIR/units/<unit>.json with a real
// Process controller (pidfile and log in DIR/units), and appends every argv to DIR/calls.
// Only what the Systemd controller uses is implemented, with systemctl's exit codes and
// messages. The fake systemctl writes the environment it was given to DIR/systemctl.env.

// fakeUnit describes a unit of the fake systemd.
type fakeUnit struct {
	Command   []string
	Env       []string
	StartWait time.Duration // 0: 300ms
}

// fakeSystemd is the fake's folder. Its methods are exported for the external tests.
type fakeSystemd struct {
	dir string
}

// newFakeSystemd makes the fake: systemctl and journalctl in f.Bin().
func newFakeSystemd(t testing.TB) *fakeSystemd {
	t.Helper()
	f := &fakeSystemd{dir: t.TempDir()}
	for _, d := range []string{"bin", "units"} {
		if err := os.Mkdir(filepath.Join(f.dir, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	for _, name := range []string{"systemctl", "journalctl"} {
		if err := os.Symlink(testBinary(t), filepath.Join(f.dir, "bin", name)); err != nil {
			t.Fatal(err)
		}
	}
	return f
}

// Bin is the folder of the fake's systemctl and journalctl.
func (f *fakeSystemd) Bin() string { return filepath.Join(f.dir, "bin") }

// AddUnit adds (or replaces) the unit name.
func (f *fakeSystemd) AddUnit(t testing.TB, name string, u fakeUnit) {
	t.Helper()
	b, _ := json.Marshal(u)
	if err := os.WriteFile(filepath.Join(f.dir, "units", name+".json"), b, 0o644); err != nil {
		t.Fatal(err)
	}
}

// Calls returns the argvs the fake was run with, one per line.
func (f *fakeSystemd) Calls(t testing.TB) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(f.dir, "calls"))
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		t.Fatal(err)
	}
	return string(b)
}

// fakeDir finds the fake's folder from the program's own path (DIR/bin/systemctl).
func fakeDir() (string, error) {
	self := os.Args[0]
	if !strings.Contains(self, "/") {
		p, err := lookPathFromEnv(self)
		if err != nil {
			return "", err
		}
		self = p
	}
	return filepath.Dir(filepath.Dir(self)), nil
}

func lookPathFromEnv(name string) (string, error) {
	for _, d := range filepath.SplitList(os.Getenv("PATH")) {
		p := filepath.Join(d, name)
		if fi, err := os.Lstat(p); err == nil && !fi.IsDir() {
			return p, nil
		}
	}
	return "", fmt.Errorf("%s not in PATH", name)
}

func recordCall(dir string, args []string) {
	f, err := os.OpenFile(filepath.Join(dir, "calls"), os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o644)
	if err != nil {
		return
	}
	defer f.Close()
	fmt.Fprintln(f, strings.Join(args, " "))
}

// fakeUnitProcess loads a unit; ok is false when the fake has no such unit.
func fakeUnitProcess(dir, unit string) (p *Process, ok bool, err error) {
	b, err := os.ReadFile(filepath.Join(dir, "units", unit+".json"))
	if errors.Is(err, os.ErrNotExist) {
		return nil, false, nil
	}
	if err != nil {
		return nil, false, err
	}
	var u fakeUnit
	if err := json.Unmarshal(b, &u); err != nil {
		return nil, false, err
	}
	if u.StartWait == 0 {
		u.StartWait = 300 * time.Millisecond
	}
	p, err = NewProcess(ProcessConfig{
		Command: u.Command, Env: u.Env, Pidfile: filepath.Join(dir, "units", unit+".pid"),
		StartWait: u.StartWait, StopTimeout: 5 * time.Second,
	})
	return p, err == nil, err
}

// runFake runs the fake program name (systemctl or journalctl) with args, once the
// call is recorded, and returns its exit status.
func runFake(name string, args []string) int {
	dir, err := fakeDir()
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	recordCall(dir, append([]string{name}, args...))
	if name == "journalctl" {
		return fakeJournalctl(dir, args)
	}
	return fakeSystemctl(dir, args)
}

func fakeSystemctl(dir string, args []string) int {
	_ = os.WriteFile(filepath.Join(dir, "systemctl.env"), []byte(strings.Join(os.Environ(), "\n")+"\n"), 0o600)
	if len(args) > 0 && args[0] == "--user" {
		args = args[1:]
	}
	if len(args) < 2 {
		fmt.Fprintln(os.Stderr, "fake systemctl: too few arguments")
		return 1
	}
	verb, unit := args[0], args[len(args)-1]
	p, known, err := fakeUnitProcess(dir, unit)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	ctx := context.Background()
	failedMark := filepath.Join(dir, "units", unit+".failed")
	switch verb {
	case "start":
		if !known {
			fmt.Fprintf(os.Stderr, "Failed to start %s: Unit %s not found.\n", unit, unit)
			return 5
		}
		os.Remove(failedMark)
		if err := p.Start(ctx); err != nil {
			_ = os.WriteFile(failedMark, []byte("exit-code"), 0o644)
			fmt.Fprintf(os.Stderr, "Job for %s failed because the control process exited with error code.\n", unit)
			fmt.Fprintf(os.Stderr, "See \"systemctl status %s\" and \"journalctl -xeu %s\" for details.\n", unit, unit)
			return 1
		}
		return 0
	case "stop":
		if !known {
			fmt.Fprintf(os.Stderr, "Failed to stop %s: Unit %s not loaded.\n", unit, unit)
			return 5
		}
		os.Remove(failedMark)
		if err := p.Stop(ctx); err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		return 0
	case "is-active", "show":
		load, active, sub, result, pid := "not-found", "inactive", "dead", "success", 0
		if known {
			load = "loaded"
			st, err := p.Status(ctx)
			if err != nil {
				fmt.Fprintln(os.Stderr, err)
				return 1
			}
			switch _, ferr := os.Stat(failedMark); {
			case st.State == StateRunning:
				active, sub, pid = "active", "running", st.PID
			case ferr == nil:
				active, sub, result = "failed", "failed", "exit-code"
			}
		}
		if verb == "show" {
			fmt.Printf("LoadState=%s\nActiveState=%s\nSubState=%s\nResult=%s\nMainPID=%d\n", load, active, sub, result, pid)
			return 0
		}
		fmt.Println(active)
		if active == "active" {
			return 0
		}
		return 3
	}
	fmt.Fprintf(os.Stderr, "fake systemctl: unknown verb %q\n", verb)
	return 1
}

// fakeJournalctl: journalctl -u UNIT -n N --no-pager prints the last N lines of the unit's
// log file, the way the journal would.
func fakeJournalctl(dir string, args []string) int {
	unit, n := "", 10
	for i := 0; i+1 < len(args); i++ {
		switch args[i] {
		case "-u":
			unit = args[i+1]
		case "-n":
			fmt.Sscan(args[i+1], &n)
		}
	}
	b, err := os.ReadFile(filepath.Join(dir, "units", unit+".pid.log"))
	if err != nil {
		fmt.Println("-- No entries --")
		return 0
	}
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	for _, l := range lines {
		fmt.Printf("Nov 25 20:00:00 staging %s[1234]: %s\n", strings.TrimSuffix(unit, ".service"), l)
	}
	return 0
}
