// Package cmderr is the error of an external program that failed, shared by the
// packages that run programs (pg_dump and pg_restore, git, the service's commands,
// systemctl): one type, one message shape. Each package exports it under its own name
// (type CommandError = cmderr.Error) so that callers use errors.As with that name.
package cmderr

import (
	"bytes"
	"fmt"
	"strings"
)

// Error is a failed external program.
type Error struct {
	Args     []string // argv, with secrets removed
	ExitCode int      // -1: not started, or killed by a signal
	Stderr   string   // tail of its standard error (or of its output)
}

// Error describes the failure: "ARGV exited with status N: STDERR".
func (e *Error) Error() string {
	msg := strings.TrimSpace(e.Stderr)
	if msg == "" {
		return fmt.Sprintf("%s exited with status %d", strings.Join(e.Args, " "), e.ExitCode)
	}
	return fmt.Sprintf("%s exited with status %d: %s", strings.Join(e.Args, " "), e.ExitCode, msg)
}

// Tail is what an error quotes of a program's output b: at most its last maxLines lines
// and maxBytes bytes, cut at a line start where it can be, trimmed.
func Tail(b []byte, maxBytes, maxLines int) string {
	b = bytes.TrimRight(b, " \t\r\n")
	if len(b) > maxBytes {
		b = b[len(b)-maxBytes:]
		if i := bytes.IndexByte(b, '\n'); i >= 0 && i < len(b)-1 {
			b = b[i+1:]
		}
	}
	lines := bytes.Split(b, []byte("\n"))
	if len(lines) > maxLines {
		lines = lines[len(lines)-maxLines:]
	}
	return strings.TrimSpace(string(bytes.Join(lines, []byte("\n"))))
}
