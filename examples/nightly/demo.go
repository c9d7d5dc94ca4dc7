package main

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/restage/restage/examples/internal/cli"
)

const (
	demoName    = "demo"                       // the demo program's executable
	modulePath  = "github.com/restage/restage" // this module, whose checkout holds the demo's source
	demoPackage = "./examples/demo"            // the demo's package in the checkout
	// demoStopWait bounds how long the demo may take to tear its servers down after an
	// interrupt before it is killed.
	demoStopWait = time.Minute
)

// demoLauncher runs the demo program for nightly -demo. The demo links the test harness
// (throwaway servers, containers), which nightly must not, so it is a program of its own.
type demoLauncher struct {
	Self string // nightly's own executable; a demo beside it comes first
	Dir  string // the working directory; in a restage checkout the demo can be built
}

// Run runs the demo program with args, its output on stdout and stderr: the "demo"
// executable beside nightly, else the one on PATH, else, when Dir is inside this
// module's checkout and go is on PATH, the one built from ./examples/demo. A demo that
// exits non-zero gives a *cli.ExitError with its status; no demo at all gives one with
// ExitUsage that says how to get it.
func (l demoLauncher) Run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if path := l.installed(); path != "" {
		fmt.Fprintf(stderr, "nightly: running the demo program %s\n", path)
		return runDemo(ctx, path, args, stdout, stderr)
	}
	root := checkout(l.Dir)
	goTool, goErr := exec.LookPath("go")
	if root == "" || goErr != nil {
		return &cli.ExitError{Code: cli.ExitUsage, Err: l.missing(root)}
	}
	tmp, err := os.MkdirTemp("", "restage-demo-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)
	bin := filepath.Join(tmp, demoName)
	// go run would do the same, but turns every failure of the demo into exit status 1.
	fmt.Fprintf(stderr, "nightly: building the demo program (go build %s in %s)\n", demoPackage, root)
	build := exec.CommandContext(ctx, goTool, "build", "-o", bin, demoPackage)
	build.Dir = root
	build.Stdout, build.Stderr = stderr, stderr
	if err := build.Run(); err != nil {
		return fmt.Errorf("building the demo program in %s: %w", root, err)
	}
	return runDemo(ctx, bin, args, stdout, stderr)
}

// installed returns the demo executable beside Self, else the one on PATH, else "".
func (l demoLauncher) installed() string {
	if l.Self != "" {
		if path, err := exec.LookPath(filepath.Join(filepath.Dir(l.Self), demoName)); err == nil {
			return path
		}
	}
	if path, err := exec.LookPath(demoName); err == nil {
		return path
	}
	return ""
}

// missing says why there is no demo to run, and how to get one.
func (l demoLauncher) missing(root string) error {
	var why string
	if root == "" {
		why = fmt.Sprintf("%s is not inside a checkout of %s", l.Dir, modulePath)
	} else {
		why = fmt.Sprintf("go is not on PATH to build it from %s", filepath.Join(root, demoPackage))
	}
	return fmt.Errorf("-demo runs the demo program, and there is none: no %q beside %s nor on PATH, and %s.\n"+
		"Install it beside nightly (go install %s/examples/demo@latest, or go build -o DIR/demo %s in a checkout),\n"+
		"or run nightly -demo (or go run %s) inside a checkout with go on PATH",
		demoName, l.Self, why, modulePath, demoPackage, demoPackage)
}

// runDemo runs the demo program at path. Cancelling ctx interrupts it, so that it tears
// its servers down; it is killed only if it has not stopped within demoStopWait.
func runDemo(ctx context.Context, path string, args []string, stdout, stderr io.Writer) error {
	cmd := exec.CommandContext(ctx, path, args...)
	cmd.Stdout, cmd.Stderr = stdout, stderr
	cmd.Cancel = func() error { return cmd.Process.Signal(os.Interrupt) }
	cmd.WaitDelay = demoStopWait
	err := cmd.Run()
	var ee *exec.ExitError
	if errors.As(err, &ee) && ee.Exited() {
		return &cli.ExitError{Code: ee.ExitCode()} // the demo has said why itself
	}
	if err != nil {
		return fmt.Errorf("the demo program %s: %w", path, err)
	}
	return nil
}

// checkout returns the root of the checkout of this module that dir is inside (the
// nearest folder up with a go.mod, if that go.mod is this module's and the folder holds
// the demo's source), or "".
func checkout(dir string) string {
	if dir == "" {
		return ""
	}
	for d := dir; ; d = filepath.Dir(d) {
		if data, err := os.ReadFile(filepath.Join(d, "go.mod")); err == nil {
			if moduleOf(data) != modulePath {
				return "" // another module, maybe nested in a checkout
			}
			if fi, err := os.Stat(filepath.Join(d, demoPackage)); err != nil || !fi.IsDir() {
				return ""
			}
			return d
		}
		if filepath.Dir(d) == d {
			return ""
		}
	}
}

// moduleOf returns the module path a go.mod declares, or "".
func moduleOf(gomod []byte) string {
	sc := bufio.NewScanner(bytes.NewReader(gomod))
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if i := strings.Index(line, "//"); i >= 0 {
			line = strings.TrimSpace(line[:i])
		}
		rest, ok := strings.CutPrefix(line, "module")
		if !ok || rest == "" || rest[0] != ' ' && rest[0] != '\t' && rest[0] != '"' {
			continue
		}
		rest = strings.TrimSpace(rest)
		if path, err := strconv.Unquote(rest); err == nil {
			return path
		}
		return rest
	}
	return ""
}
