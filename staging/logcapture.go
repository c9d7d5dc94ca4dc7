package staging

import (
	"bytes"
	"context"
	"log/slog"
	"reflect"
	"strings"
	"sync"
)

// capture is a slog.Handler that forwards records to the caller's handler and also
// writes them as text into the logs of the runs under way (a runLog each: the whole run,
// the report's attachment, and the current step, the tail shown for a failed step).
type capture struct {
	next  slog.Handler
	text  slog.Handler
	state *captureState
}

// captureState is shared by a capture and the handlers derived from it (With, WithGroup).
type captureState struct {
	mu   sync.Mutex
	runs map[*runLog]bool
}

// Write adds formatted records to every run under way.
func (s *captureState) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for r := range s.runs {
		r.whole.Write(p)
		r.step.Write(p)
	}
	return len(p), nil
}

// runLog is one run's captured log.
type runLog struct {
	state       *captureState
	whole, step bytes.Buffer
}

func newCapture(next slog.Handler) *capture {
	st := &captureState{runs: map[*runLog]bool{}}
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

// captures maps a logger's handler to its capture, so that a Rebuilder given a plain
// logger and parts given CaptureLogger of the same logger (or the other way round)
// share one capture: the parts' lines always reach the report. It holds one entry per
// handler a program logs to (usually one); handlers that cannot be map keys get a capture
// of their own.
var captures sync.Map // slog.Handler -> *capture

// CaptureLogger returns a logger that writes to base and also into the reports of the
// Rebuilders that log to base: the Rebuilder captures its own lines (Options.Logger),
// and the parts' lines reach its report when they log to base through CaptureLogger(base)
// (Open does this for the parts it wires). nil: slog.Default().
func CaptureLogger(base *slog.Logger) *slog.Logger {
	if base == nil {
		base = slog.Default()
	}
	h := base.Handler()
	if _, ok := h.(*capture); ok {
		return base
	}
	if !reflect.TypeOf(h).Comparable() {
		return slog.New(newCapture(h))
	}
	c, _ := captures.LoadOrStore(h, newCapture(h))
	return slog.New(c.(*capture))
}

// start begins capturing a run's log.
func (c *capture) start() *runLog {
	r := &runLog{state: c.state}
	c.state.mu.Lock()
	c.state.runs[r] = true
	c.state.mu.Unlock()
	return r
}

// stop ends capturing (the log stays readable).
func (r *runLog) stop() {
	r.state.mu.Lock()
	delete(r.state.runs, r)
	r.state.mu.Unlock()
}

// startStep forgets the previous step's lines.
func (r *runLog) startStep() {
	r.state.mu.Lock()
	r.step.Reset()
	r.state.mu.Unlock()
}

// stepTail returns the last lines logged since startStep.
func (r *runLog) stepTail(lines int) string {
	r.state.mu.Lock()
	defer r.state.mu.Unlock()
	return tail(r.step.String(), lines)
}

// all returns the whole captured log.
func (r *runLog) all() string {
	r.state.mu.Lock()
	defer r.state.mu.Unlock()
	return r.whole.String()
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
