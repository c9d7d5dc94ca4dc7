// Package cli holds the command-line conventions the example binaries share, so that
// each of them behaves the same way:
//
//   - -h or -help prints the usage (the synopsis, then the flags) to stderr; exit 0.
//   - A usage mistake (an unknown flag, a bad flag value, a missing required flag, a
//     stray argument) prints "<prog>: <message>" and then "usage: <prog> ..." to
//     stderr; exit 2.
//   - Any other error prints "<prog>: <error>" to stderr; the program's status
//     function picks the exit status (staging.ExitStatus for the rebuild programs: 2 for
//     a config error, which names the key, 3 for a held lock, 1 otherwise).
//
// A program's main is one line, and its run function parses with a FlagSet:
//
//	func main() { cli.Main("nightly", run, staging.ExitStatus) }
//
//	func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
//		fs := cli.NewFlagSet("nightly", stderr, "-config FILE [-dry-run]")
//		config := fs.Config("the environment's TOML config `file`")
//		if err := fs.Parse(args); err != nil {
//			return err // -h, a usage mistake, or no -config
//		}
//		...
//	}
package cli

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"os/user"
	"strings"
	"syscall"
)

// Exit statuses every program shares; a program's status function adds its own.
const (
	ExitOK     = 0 // done, or -h
	ExitFailed = 1 // an error that is neither a usage error nor given a status
	ExitUsage  = 2 // a usage mistake
)

// ErrHelp is what Parse returns after printing the usage for -h or -help: exit 0.
var ErrHelp = flag.ErrHelp

// RunFunc is a program's run function: it parses args and does the work.
type RunFunc func(ctx context.Context, args []string, stdout, stderr io.Writer) error

// Main runs run with the command-line arguments, stdout, stderr and a context that
// SIGINT or SIGTERM cancels, reports its error on stderr (see Exit) and exits with the
// status. status maps errors that are neither usage errors nor an *ExitError to an
// exit status; nil: ExitFailed.
func Main(prog string, run RunFunc, status func(error) int) {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	err := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(Exit(os.Stderr, prog, err, status))
}

// Exit reports err on stderr in the shared shape and returns the exit status:
//
//	nil, ErrHelp     0, nothing printed (Parse printed the help)
//	*UsageError      2, "<prog>: <message>" then its usage lines
//	*ExitError       its Code, "<prog>: <Err>" when Err is set
//	anything else    status(err) (nil status: 1), "<prog>: <err>"
func Exit(stderr io.Writer, prog string, err error, status func(error) int) int {
	var (
		ue *UsageError
		ee *ExitError
	)
	switch {
	case err == nil, errors.Is(err, ErrHelp):
		return ExitOK
	case errors.As(err, &ue):
		fmt.Fprintf(stderr, "%s: %v\n%s", prog, ue.Err, ue.Usage)
		return ExitUsage
	case errors.As(err, &ee):
		if ee.Err != nil {
			fmt.Fprintf(stderr, "%s: %v\n", prog, ee.Err)
		}
		return ee.Code
	}
	fmt.Fprintf(stderr, "%s: %v\n", prog, err)
	if status == nil {
		return ExitFailed
	}
	return status(err)
}

// UsageError is a command-line mistake: exit 2, with the usage lines after the message.
type UsageError struct {
	Err   error  // what is wrong, e.g. "-config FILE is required"
	Usage string // "usage: prog ...\n", one line per synopsis
}

func (e *UsageError) Error() string { return e.Err.Error() }
func (e *UsageError) Unwrap() error { return e.Err }

// ExitError makes the program exit with Code, printing Err when it is set (e.g. the
// status of a child program that has said what it had to say itself).
type ExitError struct {
	Code int
	Err  error
}

func (e *ExitError) Error() string {
	if e.Err == nil {
		return fmt.Sprintf("exit status %d", e.Code)
	}
	return e.Err.Error()
}

func (e *ExitError) Unwrap() error { return e.Err }

// Logger returns the log a program writes: text lines on stderr, at debug level when
// debug is set (-v), else at info level.
func Logger(stderr io.Writer, debug bool) *slog.Logger {
	level := slog.LevelInfo
	if debug {
		level = slog.LevelDebug
	}
	return slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: level}))
}

// Requester names who runs the program, for a report's "requested by": $USER, else the
// current user's name, else "unknown".
func Requester() string {
	if u := os.Getenv("USER"); u != "" {
		return u
	}
	if u, err := user.Current(); err == nil {
		return u.Username
	}
	return "unknown"
}

// FlagSet is a flag.FlagSet that prints nothing on a mistake (the program's Exit does,
// once), prints the usage to stderr for -h, and takes no positional arguments.
type FlagSet struct {
	*flag.FlagSet
	prog     string
	synopsis []string
	stderr   io.Writer
	config   *string // the -config flag when Config registered it: required
}

// NewFlagSet returns the flag set of the program prog. Each synopsis line is one form
// of its command line after the program's name, e.g. "-config FILE [-dry-run]".
func NewFlagSet(prog string, stderr io.Writer, synopsis ...string) *FlagSet {
	fs := &FlagSet{FlagSet: flag.NewFlagSet(prog, flag.ContinueOnError), prog: prog, synopsis: synopsis, stderr: stderr}
	fs.SetOutput(io.Discard)
	fs.FlagSet.Usage = func() {}
	return fs
}

// Parse parses args. For -h or -help it prints the help to stderr and returns ErrHelp;
// an unknown flag, a bad value, a positional argument or a missing -config (see
// Config) is a *UsageError.
func (fs *FlagSet) Parse(args []string) error {
	err := fs.FlagSet.Parse(args)
	switch {
	case errors.Is(err, flag.ErrHelp):
		fs.PrintHelp()
		return ErrHelp
	case err != nil:
		return fs.usageError(err)
	case fs.NArg() > 0:
		return fs.Usagef("unexpected argument %q", fs.Arg(0))
	case fs.config != nil && *fs.config == "":
		return fs.Usagef("-config FILE is required")
	}
	return nil
}

// Config registers the -config flag, the program's TOML config file, and makes Parse
// require it: without it, Parse returns the usage error "-config FILE is required".
// usage is the flag's help text.
func (fs *FlagSet) Config(usage string) *string {
	fs.config = fs.String("config", "", usage)
	return fs.config
}

// Usagef returns a *UsageError with the message and this program's usage lines.
func (fs *FlagSet) Usagef(format string, args ...any) error {
	return fs.usageError(fmt.Errorf(format, args...))
}

func (fs *FlagSet) usageError(err error) error {
	return &UsageError{Err: err, Usage: fs.UsageLines()}
}

// UsageLines returns the usage lines: "usage: prog FORM" for the first form, aligned
// "       prog FORM" for the others.
func (fs *FlagSet) UsageLines() string {
	var b strings.Builder
	prefix := "usage:"
	for _, s := range fs.synopsis {
		fmt.Fprintf(&b, "%s %s %s\n", prefix, fs.prog, s)
		prefix = strings.Repeat(" ", len(prefix))
	}
	if len(fs.synopsis) == 0 {
		fmt.Fprintf(&b, "usage: %s\n", fs.prog)
	}
	return b.String()
}

// PrintHelp writes the usage lines and the flags with their defaults to stderr.
func (fs *FlagSet) PrintHelp() {
	var defaults strings.Builder
	fs.SetOutput(&defaults)
	fs.PrintDefaults()
	fs.SetOutput(io.Discard)
	fmt.Fprint(fs.stderr, fs.UsageLines())
	if defaults.Len() > 0 {
		fmt.Fprintf(fs.stderr, "\nflags:\n%s", defaults.String())
	}
}
