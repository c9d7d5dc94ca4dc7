// Package progressview shows a run's progress for the example binaries, as the
// staging.Observer they give staging.Open: on a terminal, a bar for each long step
// (bytes with the rate and the time left, or objects where a step counts no bytes);
// otherwise, e.g. under cron or systemd, a log line every interval, so that a file or a
// mail gets no control characters and a stuck step still shows.
//
//	rb, err := staging.Open(cfg, staging.OpenOptions{Logger: log, Observer: progressview.New(os.Stderr, log, 0)})
package progressview

import (
	"io"
	"log/slog"
	"os"
	"strconv"
	"sync"
	"time"

	"github.com/schollz/progressbar/v3"
	"golang.org/x/term"

	"github.com/restage/restage/staging"
)

// DefaultInterval is the time between two log lines of a step, off a terminal.
const DefaultInterval = 10 * time.Second

// New returns an observer drawing bars on w when w is a terminal, and otherwise
// logging each long step's progress to log every interval (0: DefaultInterval).
func New(w io.Writer, log *slog.Logger, interval time.Duration) staging.Observer {
	return newView(w, log, interval)
}

func newView(w io.Writer, log *slog.Logger, interval time.Duration) *view {
	if interval <= 0 {
		interval = DefaultInterval
	}
	v := &view{log: log, interval: interval, steps: map[string]*stepView{}, now: time.Now}
	if f, ok := w.(*os.File); ok && term.IsTerminal(int(f.Fd())) {
		v.bars = w
	}
	return v
}

// view is New's observer. Several runs may report at once (their own steps).
type view struct {
	mu       sync.Mutex
	bars     io.Writer // the terminal; nil: log lines
	log      *slog.Logger
	interval time.Duration
	steps    map[string]*stepView // by run ID and step
	now      func() time.Time
}

// stepView is what is shown of one step under way.
type stepView struct {
	unit   staging.Unit // what it shows: bytes once the step reported any
	bar    *progressbar.ProgressBar
	logged time.Time // when its last line was logged (or the step began)
}

// StepStarted shows nothing: the log has the step's line.
func (v *view) StepStarted(staging.RunInfo, string) {}

// StepProgress moves the step's bar, or logs a line when the interval has passed.
func (v *view) StepProgress(run staging.RunInfo, p staging.Progress) {
	v.mu.Lock()
	defer v.mu.Unlock()
	key := run.ID + "\x00" + p.Step
	s := v.steps[key]
	if s == nil {
		s = &stepView{unit: p.Unit, logged: v.now().Add(-p.Elapsed)}
		v.steps[key] = s
	}
	switch {
	case p.Unit == s.unit:
	case p.Unit == staging.UnitBytes: // bytes win over objects
		if s.bar != nil {
			_ = s.bar.Clear()
			s.bar = nil
		}
		s.unit = p.Unit
	default:
		return
	}
	if v.bars != nil {
		v.draw(s, p)
		return
	}
	if now := v.now(); now.Sub(s.logged) >= v.interval {
		s.logged = now
		v.log.Info("progress", progressAttrs(p)...)
	}
}

// draw moves the step's bar, making it at the first event.
func (v *view) draw(s *stepView, p staging.Progress) {
	if s.bar == nil {
		total := p.Total
		if total <= 0 {
			total = -1 // a spinner
		}
		opts := []progressbar.Option{progressbar.OptionSetWriter(v.bars), progressbar.OptionSetDescription(p.Step),
			progressbar.OptionSetPredictTime(true), progressbar.OptionClearOnFinish(), progressbar.OptionThrottle(100 * time.Millisecond)}
		if p.Unit == staging.UnitBytes {
			opts = append(opts, progressbar.OptionShowBytes(true))
		} else {
			opts = append(opts, progressbar.OptionShowCount())
		}
		s.bar = progressbar.NewOptions64(total, opts...)
	}
	_ = s.bar.Set64(p.Done)
}

// StepDone clears the step's bar.
func (v *view) StepDone(run staging.RunInfo, st staging.Step) {
	v.mu.Lock()
	defer v.mu.Unlock()
	key := run.ID + "\x00" + st.Name
	if s := v.steps[key]; s != nil && s.bar != nil {
		_ = s.bar.Clear()
	}
	delete(v.steps, key)
}

// progressAttrs are a progress log line's fields: step, done and total (bytes
// humanised), percent, rate and time left when known.
func progressAttrs(p staging.Progress) []any {
	attrs := []any{"step", p.Step}
	if p.Unit == staging.UnitBytes {
		attrs = append(attrs, "done", humanBytes(p.Done))
		if p.Total > 0 {
			attrs = append(attrs, "total", humanBytes(p.Total))
		}
	} else {
		attrs = append(attrs, "done", p.Done, "total", p.Total, "unit", string(p.Unit))
	}
	if p.Total > 0 {
		attrs = append(attrs, "percent", p.Done*100/p.Total)
	}
	if p.Rate > 0 && p.Unit == staging.UnitBytes {
		attrs = append(attrs, "rate", humanBytes(int64(p.Rate))+"/s")
	}
	if p.ETA > 0 {
		attrs = append(attrs, "eta", p.ETA.Round(time.Second))
	}
	if p.Item != "" {
		attrs = append(attrs, "item", p.Item)
	}
	return attrs
}

// humanBytes writes n in binary units with one decimal ("512 B", "3.2 MiB").
func humanBytes(n int64) string {
	const unit = 1024
	if n < unit {
		return strconv.FormatInt(n, 10) + " B"
	}
	div, exp := int64(unit), 0
	for m := n / unit; m >= unit; m /= unit {
		div *= unit
		exp++
	}
	return strconv.FormatFloat(float64(n)/float64(div), 'f', 1, 64) + " " + "KMGTPE"[exp:exp+1] + "iB"
}
