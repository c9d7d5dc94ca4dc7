package progressview

import (
	"bytes"
	"log/slog"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/restage/restage/staging"
)

func TestLogLineEveryInterval(t *testing.T) {
	var out bytes.Buffer
	log := slog.New(slog.NewTextHandler(&out, &slog.HandlerOptions{ReplaceAttr: func(_ []string, a slog.Attr) slog.Attr {
		if a.Key == slog.TimeKey {
			return slog.Attr{}
		}
		return a
	}}))
	f, err := os.Create(t.TempDir() + "/log") // a file: not a terminal
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	obs := newView(f, log, 10*time.Second)
	v := obs
	if v.bars != nil {
		t.Fatal("a file taken for a terminal")
	}
	clock := time.Date(2026, 12, 2, 3, 0, 0, 0, time.UTC)
	v.now = func() time.Time { return clock }
	run := staging.RunInfo{ID: "r1"}
	const total = 100 << 20
	// Objects first, then bytes: the bytes win, and objects are no longer shown.
	obs.StepProgress(run, staging.Progress{Step: "restore", Done: 1, Total: 40, Unit: staging.UnitObjects})
	for i := 1; i <= 10; i++ {
		clock = clock.Add(3 * time.Second)
		el := time.Duration(i) * 3 * time.Second
		done := int64(i) * 10 << 20
		obs.StepProgress(run, staging.Progress{Step: "restore", Done: done, Total: total, Unit: staging.UnitBytes,
			Elapsed: el, Rate: float64(done) / el.Seconds(), ETA: time.Duration(float64(total-done) / (float64(done) / el.Seconds()) * float64(time.Second))})
		obs.StepProgress(run, staging.Progress{Step: "restore", Done: int64(i + 1), Total: 40, Unit: staging.UnitObjects})
	}
	obs.StepDone(run, staging.Step{Name: "restore", Status: "ok"})
	lines := strings.Split(strings.TrimSpace(out.String()), "\n")
	// 30 s of progress every 3 s, a line at most every 10 s: at 12 s and 24 s, in bytes.
	if len(lines) != 2 {
		t.Fatalf("%d lines, want 2:\n%s", len(lines), out.String())
	}
	want := `level=INFO msg=progress step=restore done="40.0 MiB" total="100.0 MiB" percent=40 rate="3.3 MiB/s" eta=18s`
	if lines[0] != want {
		t.Errorf("first line\n got %s\nwant %s", lines[1], want)
	}
	if strings.Contains(out.String(), "objects") {
		t.Errorf("objects shown after bytes:\n%s", out.String())
	}
}
