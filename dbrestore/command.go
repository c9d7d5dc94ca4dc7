package dbrestore

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/restage/restage/internal/childenv"
	"github.com/restage/restage/internal/redact"
)

// Config configures the PostgreSQL client programs and logging shared by Dump, DirCatalog
// and Server.
type Config struct {
	// BinDir holds pg_dump and pg_restore. "": the ones on PATH (Debian's pg_wrapper
	// resolved to the newest version), else the newest /usr/lib/postgresql/*/bin.
	BinDir string
	// Logger receives progress and diagnostics. nil: slog.Default().
	Logger *slog.Logger
}

func (c Config) logger() *slog.Logger {
	if c.Logger != nil {
		return c.Logger
	}
	return slog.Default()
}

// Log keys.
const (
	logKeyDatabase = "database"
	logKeyBackup   = "backup"
	logKeyDSN      = "dsn"
	logKeyDuration = "duration"
	logKeyObjects  = "objects"
	logKeyFile     = "file"
	logKeyTarget   = "target"
	logKeyError    = "error"
)

// errNoTool reports that a PostgreSQL client program was not found.
var errNoTool = errors.New("PostgreSQL client program not found")

// tool returns the path of the PostgreSQL client program name.
func (c Config) tool(name string) (string, error) {
	if c.BinDir != "" {
		p := filepath.Join(c.BinDir, name)
		if _, err := os.Stat(p); err != nil {
			return "", fmt.Errorf("%w: %s", errNoTool, p)
		}
		return p, nil
	}
	newest := func() string {
		dirs, _ := filepath.Glob("/usr/lib/postgresql/*/bin")
		sort.Slice(dirs, func(i, j int) bool { return pgMajor(dirs[i]) > pgMajor(dirs[j]) })
		for _, d := range dirs {
			p := filepath.Join(d, name)
			if _, err := os.Stat(p); err == nil {
				return p
			}
		}
		return ""
	}
	if p, err := exec.LookPath(name); err == nil {
		// Debian's pg_wrapper (a Perl script) picks the newest version for a remote
		// server anyway; calling that directly saves ~100 ms a call.
		if real, err := filepath.EvalSymlinks(p); err == nil && filepath.Base(real) == "pg_wrapper" {
			if n := newest(); n != "" {
				return n, nil
			}
		}
		return p, nil
	}
	if n := newest(); n != "" {
		return n, nil
	}
	return "", fmt.Errorf("%w: %s is not on PATH or under /usr/lib/postgresql/*/bin", errNoTool, name)
}

func pgMajor(binDir string) float64 {
	v, _ := strconv.ParseFloat(filepath.Base(filepath.Dir(binDir)), 64)
	return v
}

// childEnv returns the environment of a PostgreSQL client program: childenv's basics
// (PATH, HOME, the locale), libpq's settings that hold no secret (childenv.LibPQ), the
// variables that say which server it reaches, as they do for pgx's admin connections
// (childenv.LibPQTarget), and set (what dbrestore sets itself: PGPASSWORD for the DSN's
// password, PGOPTIONS); never this process's whole environment, which may hold secrets
// (safety rule 10).
func childEnv(set ...string) []string {
	return childenv.Env(slices.Concat(childenv.LibPQ, childenv.LibPQTarget), set...)
}

// passwordEnv returns the PGPASSWORD entry for a child that connects with cs: its
// password, else the PGPASSWORD of this process, which pgx uses for the same connection
// (e.g. the backup command's documented way to pass it); none when there is neither.
func passwordEnv(cs *connString) []string {
	if pw := connPassword(cs); pw != "" {
		return []string{"PGPASSWORD=" + pw}
	}
	return nil
}

// connPassword returns the password a connection with cs uses: the DSN's, else
// $PGPASSWORD (as libpq and pgx do).
func connPassword(cs *connString) string {
	if pw := cs.password(); pw != "" {
		return pw
	}
	return os.Getenv("PGPASSWORD")
}

// proc is one run of an external program.
type proc struct {
	path string
	args []string
	// env is what dbrestore sets for the child (PGPASSWORD, PGOPTIONS); the rest of its
	// environment is childEnv's, never this process's.
	env     []string
	secrets []string // removed from CommandError and logs
	// stdout, when set, receives standard output line by line.
	stdout func(line string)
	// stdoutTo, when set, receives standard output as it is (data of any line length).
	stdoutTo io.Writer
	// stderr, when set, receives standard error line by line; it returns true for
	// routine lines (progress), which are kept out of CommandError.Stderr.
	stderr func(line string) bool
	// tail, when set, receives every line of standard error (bounded by the caller).
	tail *lineTail
	// started, when set, is called with the child's pid (its process group) once it runs.
	started func(pid int)
}

const (
	errTailLines = 30
	maxLineBytes = 4096
)

// run runs p, killing its whole process group when ctx ends. A non-zero exit is a
// *CommandError; a cancelled run wraps ctx.Err() as well.
func (p *proc) run(ctx context.Context) error {
	cmd := exec.CommandContext(ctx, p.path, p.args...)
	cmd.Env = childEnv(p.env...)
	cmd.SysProcAttr = sysProcAttr()
	cmd.Cancel = func() error {
		// pg_restore -j and pg_dump -j fork workers: end them all.
		return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
	}
	cmd.WaitDelay = 10 * time.Second
	errTail := newLineTail(errTailLines)
	var rows redact.RowFilter // production's rows quoted in a message reach no report
	cmd.Stderr = &lineWriter{fn: func(line string) {
		line, ok := rows.Line(line)
		if !ok {
			return
		}
		if p.tail != nil {
			p.tail.add(line)
		}
		if p.stderr != nil && p.stderr(line) {
			return
		}
		errTail.add(line)
	}}
	var stdout *lineWriter
	if p.stdoutTo != nil {
		cmd.Stdout = p.stdoutTo
	} else if p.stdout != nil {
		stdout = &lineWriter{fn: p.stdout}
		cmd.Stdout = stdout
	}
	err := cmd.Start()
	if err == nil {
		if p.started != nil {
			p.started(cmd.Process.Pid)
		}
		err = cmd.Wait()
	}
	cmd.Stderr.(*lineWriter).flush()
	if stdout != nil {
		stdout.flush()
	}
	if err == nil {
		return nil
	}
	ce := &CommandError{Args: p.argv(), ExitCode: -1, Stderr: redact.String(errTail.String(), p.secrets...)}
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		ce.ExitCode = ee.ExitCode()
	} else if ce.Stderr == "" {
		ce.Stderr = redact.String(err.Error(), p.secrets...)
	}
	if ctx.Err() != nil {
		return fmt.Errorf("%w (%w)", ce, context.Cause(ctx))
	}
	return ce
}

// argv returns the program and its arguments with passwords removed.
func (p *proc) argv() []string {
	out := make([]string, 0, len(p.args)+1)
	out = append(out, filepath.Base(p.path))
	for _, a := range p.args {
		out = append(out, redact.String(a, p.secrets...))
	}
	return out
}

// lineWriter splits what is written to it into lines.
type lineWriter struct {
	fn  func(string)
	buf []byte
}

// Write passes every complete line of b to fn, keeping a partial last line for later.
func (w *lineWriter) Write(b []byte) (int, error) {
	n := len(b)
	for len(b) > 0 {
		i := bytes.IndexByte(b, '\n')
		if i < 0 {
			w.buf = append(w.buf, b...)
			if len(w.buf) > maxLineBytes {
				w.emit()
			}
			break
		}
		w.buf = append(w.buf, b[:i]...)
		w.emit()
		b = b[i+1:]
	}
	return n, nil
}

func (w *lineWriter) emit() {
	line := strings.TrimRight(string(w.buf), "\r")
	if len(line) > maxLineBytes {
		line = line[:maxLineBytes] + "…"
	}
	w.buf = w.buf[:0]
	w.fn(line)
}

func (w *lineWriter) flush() {
	if len(w.buf) > 0 {
		w.emit()
	}
}

// lineTail keeps the last n lines.
type lineTail struct {
	n     int
	lines []string
	next  int
	full  bool
}

func newLineTail(n int) *lineTail { return &lineTail{n: n, lines: make([]string, n)} }

func (t *lineTail) add(line string) {
	t.lines[t.next] = line
	t.next = (t.next + 1) % t.n
	if t.next == 0 {
		t.full = true
	}
}

// String returns the kept lines, oldest first.
func (t *lineTail) String() string {
	var out []string
	if t.full {
		out = append(out, t.lines[t.next:]...)
	}
	out = append(out, t.lines[:t.next]...)
	return strings.Join(out, "\n")
}

// toolVersion returns the first line of `tool --version`.
func toolVersion(ctx context.Context, path string) (string, error) {
	var first string
	p := &proc{path: path, args: []string{"--version"}, stdout: func(l string) {
		if first == "" {
			first = strings.TrimSpace(l)
		}
	}}
	if err := p.run(ctx); err != nil {
		return "", err
	}
	return first, nil
}
