package staging

import (
	"context"
	"log/slog"
	"strings"
	"testing"
)

// One logger in: whether the Rebuilder or the parts were given CaptureLogger of it, the
// parts' lines reach the report, and each run's report holds its own run only.
func TestPartsLinesReachTheReport(t *testing.T) {
	for name, wrap := range map[string]func(l *slog.Logger) (rebuilder, parts *slog.Logger){
		"parts captured, rebuilder plain": func(l *slog.Logger) (*slog.Logger, *slog.Logger) { return l, CaptureLogger(l) },
		"both captured":                   func(l *slog.Logger) (*slog.Logger, *slog.Logger) { return CaptureLogger(l), CaptureLogger(l) },
	} {
		t.Run(name, func(t *testing.T) {
			var out strings.Builder
			base := slog.New(slog.NewTextHandler(&out, nil))
			rl, pl := wrap(base)
			w := newWorld()
			w.log = pl
			r := w.rebuilder(t, func(c *Config) { c.Logger = rl })
			for i := range 2 {
				rep, err := r.Run(context.Background())
				if err != nil {
					t.Fatal(err)
				}
				if n := strings.Count(rep.Log, "restored into the fake"); n != 1 {
					t.Fatalf("run %d: the part's line is in the report %d times:\n%s", i, n, rep.Log)
				}
			}
			if !strings.Contains(out.String(), "restored into the fake") {
				t.Fatal("the part's line did not reach the base logger")
			}
		})
	}
}
