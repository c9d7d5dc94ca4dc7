package notify

import (
	"context"
	"fmt"
	"io"
	"strings"
	"sync"
)

// WriterConfig configures a Writer notifier.
type WriterConfig struct {
	Out        io.Writer // where reports go (a log file, os.Stdout); required
	IncludeLog bool      // also write the full log after the body; false: only its name and size
}

// Writer writes reports as plain text (Render) to an io.Writer, for logs and terminals.
// Each report is written with one Write call; Notify is safe for concurrent use.
type Writer struct {
	mu  sync.Mutex
	cfg WriterConfig
}

var _ Notifier = (*Writer)(nil)

// NewWriter returns a Writer notifier. Errors wrap ErrInvalidConfig.
func NewWriter(cfg WriterConfig) (*Writer, error) {
	if cfg.Out == nil {
		return nil, fmt.Errorf("%w: Out: missing writer", ErrInvalidConfig)
	}
	return &Writer{cfg: cfg}, nil
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
	w.mu.Lock()
	defer w.mu.Unlock()
	if _, err := io.WriteString(w.cfg.Out, b.String()); err != nil {
		return fmt.Errorf("notify: writer: %w", err)
	}
	return nil
}
