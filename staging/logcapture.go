package staging

import (
	"bytes"
	"context"
	"log/slog"
	"strings"
	"sync"
)

// capture is a slog.Handler that forwards records to the caller's handler and also
// keeps them as text: the whole run (the report's attachment) and the current step
// (the tail shown for a failed step).
type capture struct {
	next  slog.Handler
	text  slog.Handler
	state *captureState
}

type captureState struct {
	mu   sync.Mutex
	all  bytes.Buffer
	step bytes.Buffer
}

func (s *captureState) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.all.Write(p)
	s.step.Write(p)
	return len(p), nil
}

func newCapture(next slog.Handler) *capture {
	st := &captureState{}
	return &capture{next: next, text: slog.NewTextHandler(st, &slog.HandlerOptions{Level: slog.LevelDebug}), state: st}
}

func (c *capture) Enabled(ctx context.Context, l slog.Level) bool { return true }

func (c *capture) Handle(ctx context.Context, r slog.Record) error {
	_ = c.text.Handle(ctx, r)
	if c.next.Enabled(ctx, r.Level) {
		return c.next.Handle(ctx, r)
	}
	return nil
}

func (c *capture) WithAttrs(as []slog.Attr) slog.Handler {
	return &capture{next: c.next.WithAttrs(as), text: c.text.WithAttrs(as), state: c.state}
}

func (c *capture) WithGroup(name string) slog.Handler {
	return &capture{next: c.next.WithGroup(name), text: c.text.WithGroup(name), state: c.state}
}

// CaptureLogger returns a logger that writes to base and also into the report of the
// Rebuilder whose Config.Logger it is: give it to the parts too, so that their messages
// (pg_restore's, each migration's) appear in the report's log and in a failed step's tail.
func CaptureLogger(base *slog.Logger) *slog.Logger {
	if base == nil {
		base = slog.Default()
	}
	if _, ok := base.Handler().(*capture); ok {
		return base
	}
	return slog.New(newCapture(base.Handler()))
}

// reset forgets everything captured, at the start of a run.
func (c *capture) reset() {
	c.state.mu.Lock()
	c.state.all.Reset()
	c.state.step.Reset()
	c.state.mu.Unlock()
}

// startStep forgets the previous step's lines.
func (c *capture) startStep() {
	c.state.mu.Lock()
	c.state.step.Reset()
	c.state.mu.Unlock()
}

// stepTail returns the last lines logged since startStep.
func (c *capture) stepTail(lines int) string {
	c.state.mu.Lock()
	defer c.state.mu.Unlock()
	return tail(c.state.step.String(), lines)
}

// all returns the whole captured log.
func (c *capture) all() string {
	c.state.mu.Lock()
	defer c.state.mu.Unlock()
	return c.state.all.String()
}

// tail returns the last n lines of s.
func tail(s string, n int) string {
	s = strings.TrimRight(s, "\n")
	if s == "" {
		return ""
	}
	lines := strings.Split(s, "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
