package promtest

import (
	"os"
	"path/filepath"
	"testing"
)

func TestReadAndSeries(t *testing.T) {
	path := filepath.Join(t.TempDir(), "m.prom")
	text := `# HELP runs_total Runs.
# TYPE runs_total counter
runs_total{job="b",env="s"} 3
# HELP up Up.
# TYPE up gauge
up 1
`
	if err := os.WriteFile(path, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	mfs := Read(t, path)
	if got := Series(mfs["runs_total"]); len(got) != 1 || got["env=s,job=b"] != 3 {
		t.Errorf("counter: %v", got)
	}
	if got := Series(mfs["up"]); len(got) != 1 || got[""] != 1 {
		t.Errorf("gauge: %v", got)
	}
	if got := Series(mfs["missing"]); len(got) != 0 {
		t.Errorf("missing: %v", got)
	}
}
