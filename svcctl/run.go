package svcctl

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"strings"
	"time"

	"github.com/restage/restage/internal/childenv"
	"github.com/restage/restage/internal/cloexec"
	"github.com/restage/restage/internal/cmderr"
	"github.com/restage/restage/internal/safefile"
)

// Log keys.
const (
	logKeyService = "service"
	logKeyPID     = "pid"
	logKeyArgs    = "args"
	logKeyState   = "state"
	logKeyDetail  = "detail"
	logKeyElapsed = "elapsed"
	logKeyURL     = "url"
	logKeyError   = "error"
)

// tailBytes bounds the output kept in errors.
const tailBytes = 2048

// tailLines bounds the lines of output kept in errors.
const tailLines = 20

func loggerOr(l *slog.Logger) *slog.Logger {
	if l == nil {
		return slog.Default()
	}
	return l
}

// tail returns at most the last tailLines lines and tailBytes bytes of b, trimmed.
func tail(b []byte) string { return cmderr.Tail(b, tailBytes, tailLines) }

// tailFile returns the tail of the file at path from offset on (never through a symbolic
// link at path).
func tailFile(path string, offset int64) (string, error) {
	f, err := safefile.OpenPrivate(path, os.O_RDONLY)
	if err != nil {
		return "", err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return "", err
	}
	start := max(offset, fi.Size()-tailBytes)
	if start < 0 || start > fi.Size() {
		start = 0
	}
	b, err := io.ReadAll(io.NewSectionReader(f, start, fi.Size()-start))
	if err != nil {
		return "", err
	}
	if start > offset && start > 0 {
		// Drop the partial first line.
		if i := bytes.IndexByte(b, '\n'); i >= 0 {
			b = b[i+1:]
		}
	}
	return tail(b), nil
}

// runner runs short external programs (start/stop/status commands, systemctl).
type runner struct {
	dir     string
	pass    []string // names of the caller's variables the program gets besides childenv's basic ones
	env     []string // added last ("KEY=value")
	timeout time.Duration
}

// run runs argv, with the environment childenv.Env(r.pass, r.env...) (never the caller's
// whole environment), and returns its combined output. A program that cannot be started, times
// out or exits non-zero yields a *CommandError (also for a timeout, with ExitCode -1).
// The output goes to an unlinked temporary file rather than a pipe, so that a daemon the
// program leaves behind cannot hold up Wait or die of SIGPIPE later.
func (r runner) run(ctx context.Context, argv []string) (string, int, error) {
	if len(argv) == 0 {
		return "", -1, errors.New("svcctl: empty command")
	}
	if r.timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, r.timeout)
		defer cancel()
	}
	out, err := os.CreateTemp("", "svcctl-out-*")
	if err != nil {
		return "", -1, fmt.Errorf("svcctl: output file for %s: %w", argv[0], err)
	}
	os.Remove(out.Name())
	defer out.Close()

	cmd := exec.CommandContext(ctx, argv[0], argv[1:]...)
	cmd.Dir = r.dir
	cmd.Env = childenv.Env(r.pass, r.env...)
	cmd.Stdout = out
	cmd.Stderr = out
	cmd.WaitDelay = 5 * time.Second
	// A start command may leave a daemon running: no descriptor restage inherited goes with it.
	if err := cloexec.Inherited(); err != nil {
		return "", -1, fmt.Errorf("svcctl: %s: %w", argv[0], err)
	}
	runErr := cmd.Run()

	var text string
	if _, err := out.Seek(0, io.SeekStart); err == nil {
		b, _ := io.ReadAll(io.LimitReader(out, 1<<20))
		text = string(b)
	}
	if runErr == nil {
		return text, 0, nil
	}
	code := -1
	var exitErr *exec.ExitError
	if errors.As(runErr, &exitErr) && exitErr.ExitCode() >= 0 {
		code = exitErr.ExitCode()
	}
	msg := tail([]byte(text))
	if ctxErr := ctx.Err(); ctxErr != nil {
		code = -1
		msg = strings.TrimSpace(fmt.Sprintf("%v (%v) %s", ctxErr, runErr, msg))
		return text, code, fmt.Errorf("%w: %w", &CommandError{Args: argv, ExitCode: code, Stderr: msg}, ctxErr)
	}
	if code < 0 {
		// Not started (missing program) or killed by a signal.
		msg = strings.TrimSpace(runErr.Error() + " " + msg)
		if errors.Is(runErr, exec.ErrNotFound) || errors.Is(runErr, os.ErrNotExist) {
			return text, code, fmt.Errorf("%w: %w", &CommandError{Args: argv, ExitCode: code, Stderr: msg}, ErrNotFound)
		}
	}
	return text, code, &CommandError{Args: argv, ExitCode: code, Stderr: msg}
}
