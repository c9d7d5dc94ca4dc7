// Package clitest runs an example binary's run function in-process as cli.Main does,
// for the binaries' tests:
//
//	clitest.Check(t, "nightly", run, staging.ExitStatus, []clitest.Case{
//		{Args: []string{"-h"}, Code: 0, StderrStart: "usage: nightly "},
//		{Args: nil, Code: 2, Stderr: "nightly: -config FILE or -demo is required\nusage: nightly ...\n"},
//	})
package clitest

import (
	"bytes"
	"context"
	"strings"
	"testing"

	"github.com/restage/restage/examples/internal/cli"
)

// Result is what a run left: its exit status and its output.
type Result struct {
	Code           int
	Stdout, Stderr string
}

// Run runs run with args as cli.Main does (then cli.Exit with prog and status), its
// output captured.
func Run(ctx context.Context, prog string, run cli.RunFunc, status func(error) int, args ...string) Result {
	var stdout, stderr bytes.Buffer
	err := run(ctx, args, &stdout, &stderr)
	code := cli.Exit(&stderr, prog, err, status)
	return Result{Code: code, Stdout: stdout.String(), Stderr: stderr.String()}
}

// Case is a command line and what it must leave: nothing on stdout, exit Code, and on
// stderr exactly Stderr, or, when StderrStart is set, text starting with it.
type Case struct {
	Args        []string
	Code        int
	Stderr      string
	StderrStart string
}

// Check runs each case with a background context and reports the ones that differ.
func Check(t testing.TB, prog string, run cli.RunFunc, status func(error) int, cases []Case) {
	t.Helper()
	for _, c := range cases {
		r := Run(context.Background(), prog, run, status, c.Args...)
		ok := r.Code == c.Code && r.Stdout == ""
		want := c.Stderr
		if c.StderrStart != "" {
			ok = ok && strings.HasPrefix(r.Stderr, c.StderrStart)
			want = c.StderrStart + "..."
		} else {
			ok = ok && r.Stderr == c.Stderr
		}
		if !ok {
			t.Errorf("%s %q: exit %d, stdout %q, stderr %q; want exit %d, no stdout, stderr %q",
				prog, c.Args, r.Code, r.Stdout, r.Stderr, c.Code, want)
		}
	}
}
