package notify

import (
	"context"
	"fmt"
	"io"
	"strings"
)

// WriterConfig configures a Writer notifier.
type WriterConfig struct {
	Out        io.Writer // where reports go (a log file, os.Stdout); required
	IncludeLog bool      // also write the full log after the body; false: only its name and size
}

// Writer writes reports as plain text (Render) to an io.Writer, for logs and terminals.
// Each report is written with one Write call; Notify is safe for concurrent use, and
// returns by its ctx deadline even when Out blocks (a pipe nobody reads): the blocked
// Write then finishes in the background, and later reports wait for it, each within its
// own ctx.
type Writer struct {
	turn chan struct{} // holds a token while a Write runs
	cfg  WriterConfig
}

var _ Notifier = (*Writer)(nil)

// NewWriter returns a Writer notifier. Errors wrap ErrInvalidConfig.
func NewWriter(cfg WriterConfig) (*Writer, error) {
	if cfg.Out == nil {
		return nil, fmt.Errorf("%w: Out: missing writer", ErrInvalidConfig)
	}
	return &Writer{cfg: cfg, turn: make(chan struct{}, 1)}, nil
}

// String names the notifier.
func (w *Writer) String() string { return fmt.Sprintf("writer %T", w.cfg.Out) }

// Notify writes m, followed by a separator line.
func (w *Writer) Notify(ctx context.Context, m *Message) error {
	if err := checkMessage(m); err != nil {
		return err
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("notify: writer: %w", err)
	}
	var b strings.Builder
	b.WriteString(Render(m))
	if w.cfg.IncludeLog && len(m.Log) > 0 {
		fmt.Fprintf(&b, "\n--- %s ---\n", LogName(m))
		b.Write(m.Log)
		if m.Log[len(m.Log)-1] != '\n' {
			b.WriteString("\n")
		}
	}
	b.WriteString(strings.Repeat("-", 72) + "\n")
	select {
	case w.turn <- struct{}{}:
	case <-ctx.Done():
		return fmt.Errorf("notify: writer: waiting for an earlier report's write: %w", ctx.Err())
	}
	done := make(chan error, 1)
	go func() {
		defer func() { <-w.turn }()
		_, err := io.WriteString(w.cfg.Out, b.String())
		done <- err
	}()
	select {
	case err := <-done:
		if err != nil {
			return fmt.Errorf("notify: writer: %w", err)
		}
		return nil
	case <-ctx.Done():
		return fmt.Errorf("notify: writer: %T blocks; report left to finish in the background: %w", w.cfg.Out, ctx.Err())
	}
}
