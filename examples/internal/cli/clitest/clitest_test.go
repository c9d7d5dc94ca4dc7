package clitest

import (
	"context"
	"fmt"
	"io"
	"strings"
	"testing"

	"github.com/restage/restage/examples/internal/cli"
)

// recorder is a testing.TB that records Errorf instead of failing.
type recorder struct {
	testing.TB
	errors []string
}

func (r *recorder) Helper() {}
func (r *recorder) Errorf(format string, args ...any) {
	r.errors = append(r.errors, fmt.Sprintf(format, args...))
}

func echo(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := cli.NewFlagSet("echo", stderr, "[-loud]")
	loud := fs.Bool("loud", false, "shout")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *loud {
		fmt.Fprintln(stdout, "HELLO")
	}
	return nil
}

func TestCheck(t *testing.T) {
	const usage = "usage: echo [-loud]\n"
	good := []Case{
		{Args: nil, Code: 0, Stderr: ""},
		{Args: []string{"-h"}, Code: 0, StderrStart: usage},
		{Args: []string{"x"}, Code: 2, Stderr: "echo: unexpected argument \"x\"\n" + usage},
	}
	r := &recorder{TB: t}
	Check(r, "echo", echo, nil, good)
	if len(r.errors) != 0 {
		t.Fatalf("matching cases reported: %q", r.errors)
	}
	bad := []Case{
		{Args: []string{"-loud"}, Code: 0, Stderr: ""},                                      // wrote to stdout
		{Args: []string{"x"}, Code: 1, Stderr: "echo: unexpected argument \"x\"\n" + usage}, // other status
		{Args: []string{"x"}, Code: 2, Stderr: "echo: unexpected argument \"x\"\n"},         // not all of stderr
		{Args: []string{"-h"}, Code: 0, StderrStart: "usage: echo -quiet"},                  // other start
	}
	Check(r, "echo", echo, nil, bad)
	if len(r.errors) != len(bad) {
		t.Fatalf("%d of %d differing cases reported: %q", len(r.errors), len(bad), r.errors)
	}
	if !strings.Contains(r.errors[0], `stdout "HELLO\n"`) {
		t.Errorf("report lacks the output: %s", r.errors[0])
	}
}
