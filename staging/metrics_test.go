package staging

import (
	"context"
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"

	"github.com/restage/restage/internal/promtest"
)

// readMetrics parses a metrics file as node exporter's textfile collector does, and
// checks that each metric is a restage_ gauge with help.
func readMetrics(t *testing.T, path string) map[string]*dto.MetricFamily {
	t.Helper()
	mfs := promtest.Read(t, path)
	for name, mf := range mfs {
		if !strings.HasPrefix(name, "restage_") || mf.GetType() != dto.MetricType_GAUGE || mf.GetHelp() == "" {
			t.Errorf("%s: type %v, help %q", name, mf.GetType(), mf.GetHelp())
		}
	}
	return mfs
}

// series returns the values of the metric name by their labels ("k=v,k=v", sorted).
func series(mfs map[string]*dto.MetricFamily, name string) map[string]float64 {
	return promtest.Series(mfs[name])
}

func epoch(t time.Time) float64 { return float64(t.UnixNano()) / 1e9 }

func TestRunMetricsFromAHistory(t *testing.T) {
	t0 := time.Date(2025, 3, 1, 2, 0, 0, 0, time.UTC)
	ok := sampleReport("ok", t0)
	failed := &Report{ID: "failed", Environment: "staging", Kind: "rebuild", Outcome: OutcomeFailed,
		Started: t0.Add(24 * time.Hour), Total: 90 * time.Second, FailedStep: "restore",
		Steps:  []*Step{{Name: "backup", Duration: time.Second, Status: "ok"}, {Name: "restore", Duration: 80 * time.Second, Status: "failed"}},
		Schema: &SchemaInfo{From: 5, To: 5}}
	rolled := &Report{ID: "rolled", Environment: "staging", Kind: "rebuild", Outcome: OutcomeRolledBack,
		Started: t0.Add(-24 * time.Hour), Total: time.Minute, Downtime: 20 * time.Second,
		Steps: []*Step{{Name: "restart", Duration: 2 * time.Second}, {Name: "restart", Duration: 3 * time.Second}}}
	deploy := &Report{ID: "deploy", Environment: "staging", Kind: "deploy", Outcome: OutcomeBroken,
		Started: t0.Add(time.Hour), Total: 10 * time.Second, Downtime: 10 * time.Second,
		Steps: []*Step{{Name: "release", Duration: 4 * time.Second}}}
	// Never in a history; skipped if given.
	dry := &Report{ID: "dry", Environment: "staging", Kind: "rebuild", Outcome: OutcomePlanned, Started: t0.Add(48 * time.Hour)}
	locked := &Report{ID: "locked", Environment: "staging", Kind: "rebuild", Outcome: OutcomeLocked, Started: t0.Add(48 * time.Hour)}

	reg, err := RunMetrics([]*Report{rolled, ok, deploy, failed, dry, locked})
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "restage.prom")
	if err := WriteTextfile(path, reg); err != nil {
		t.Fatal(err)
	}
	mfs := readMetrics(t, path)
	rb, dp := "environment=staging,kind=rebuild", "environment=staging,kind=deploy"
	for _, c := range []struct {
		name string
		want map[string]float64
	}{
		// The failed run keeps the last success; the deploy never succeeded: 0.
		{"restage_run_last_success_timestamp_seconds", map[string]float64{rb: epoch(t0.Add(ok.Total)), dp: 0}},
		{"restage_run_last_timestamp_seconds", map[string]float64{
			rb + ",outcome=ok": epoch(t0.Add(ok.Total)), rb + ",outcome=failed": epoch(failed.Started.Add(90 * time.Second)),
			rb + ",outcome=rolled back": epoch(rolled.Started.Add(time.Minute)), dp + ",outcome=broken": epoch(deploy.Started.Add(10 * time.Second))}},
		// The newest run, whatever its outcome.
		{"restage_run_success", map[string]float64{rb: 0, dp: 0}},
		{"restage_run_duration_seconds", map[string]float64{rb: 90, dp: 10}},
		{"restage_downtime_seconds", map[string]float64{rb: 0, dp: 10}},
		{"restage_step_duration_seconds", map[string]float64{rb + ",step=backup": 1, rb + ",step=restore": 80, dp + ",step=release": 4}},
		// What staging serves: the newest successful run's.
		{"restage_backup_age_seconds", map[string]float64{rb: ok.Backup.Age.Seconds()}},
		{"restage_backup_size_bytes", map[string]float64{rb: 123 << 20}},
		{"restage_schema_version", map[string]float64{rb: 5}},
	} {
		got := series(mfs, c.name)
		if len(got) != len(c.want) {
			t.Errorf("%s: %v, want %v", c.name, got, c.want)
			continue
		}
		for k, v := range c.want {
			if g, ok := got[k]; !ok || g != v {
				t.Errorf("%s{%s} = %v (present %v), want %v", c.name, k, g, ok, v)
			}
		}
	}
	// A step that ran twice counts its total.
	reg, err = RunMetrics([]*Report{rolled})
	if err != nil {
		t.Fatal(err)
	}
	if err := WriteTextfile(path, reg); err != nil {
		t.Fatal(err)
	}
	if got := series(readMetrics(t, path), "restage_step_duration_seconds")[rb+",step=restart"]; got != 5 {
		t.Errorf("restart twice: %v, want 5", got)
	}
	st, err := os.Stat(path)
	if err != nil || st.Mode().Perm() != 0o644 {
		t.Errorf("metrics file mode %v, %v; want 0644 (node exporter reads it as its own user)", st.Mode(), err)
	}
	if _, err := os.Stat(path + ".new"); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("temporary left behind: %v", err)
	}
}

// ticking returns a clock that starts at t0 and moves on by step at every reading.
func ticking(t0 time.Time, step time.Duration) func() time.Time {
	var mu sync.Mutex
	now := t0
	return func() time.Time {
		mu.Lock()
		defer mu.Unlock()
		now = now.Add(step)
		return now
	}
}

func TestRebuildWritesMetrics(t *testing.T) {
	w := newWorld()
	textfile := filepath.Join(t.TempDir(), "node", "restage-staging.prom")
	if err := os.Mkdir(filepath.Dir(textfile), 0o755); err != nil {
		t.Fatal(err)
	}
	r := w.rebuilder(t, func(c *Config) {
		c.Now = ticking(time.Date(2025, 3, 1, 2, 0, 0, 0, time.UTC), time.Second)
		c.MetricsFile = textfile
	})
	rep, err := r.Run(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	rb := "environment=staging,kind=rebuild"
	mfs := readMetrics(t, textfile)
	success := epoch(rep.Started.Add(rep.Total))
	for name, want := range map[string]float64{
		"restage_run_last_success_timestamp_seconds": success,
		"restage_run_success":                        1,
		"restage_run_duration_seconds":               rep.Total.Seconds(),
		"restage_downtime_seconds":                   rep.Downtime.Seconds(),
		"restage_backup_size_bytes":                  1 << 20,
		"restage_backup_age_seconds":                 rep.Backup.Age.Seconds(),
		"restage_schema_version":                     2,
	} {
		// The history stores seconds as JSON numbers: equal to a microsecond.
		if got, ok := series(mfs, name)[rb]; !ok || math.Abs(got-want) > 1e-6 {
			t.Errorf("%s = %v (present %v), want %v", name, got, ok, want)
		}
	}
	if rep.Downtime <= 0 || rep.Total <= rep.Downtime {
		t.Fatalf("the clock did not move: %+v", rep)
	}
	steps := series(mfs, "restage_step_duration_seconds")
	if len(steps) != len(rep.Steps) || steps[rb+",step=restore"] != rep.Steps[stepIndex(rep, "restore")].Duration.Seconds() {
		t.Errorf("steps %v, report %d steps", steps, len(rep.Steps))
	}

	// A failed night: its own outcome and duration, the last success kept.
	w.failRestore = fail
	failed, err := r.Run(context.Background())
	if err == nil {
		t.Fatal("the failing restore did not fail the run")
	}
	mfs = readMetrics(t, textfile)
	if got := series(mfs, "restage_run_last_success_timestamp_seconds")[rb]; got != success {
		t.Errorf("last success after a failed run: %v, want %v", got, success)
	}
	last := series(mfs, "restage_run_last_timestamp_seconds")
	if last[rb+",outcome=failed"] != epoch(failed.Started.Add(failed.Total)) || last[rb+",outcome=ok"] != success {
		t.Errorf("last runs by outcome: %v", last)
	}
	if got := series(mfs, "restage_run_success")[rb]; got != 0 {
		t.Errorf("restage_run_success = %v after a failed run", got)
	}
	if got := series(mfs, "restage_schema_version")[rb]; got != 2 {
		t.Errorf("schema version after a failed run: %v, want the served 2", got)
	}
	if _, ran := series(mfs, "restage_step_duration_seconds")[rb+",step=cutover"]; ran {
		t.Error("a step the failed run never reached still has a duration")
	}

	// A dry run and a run locked out by another leave the file as it is.
	before, err := os.ReadFile(textfile)
	if err != nil {
		t.Fatal(err)
	}
	w.failRestore = nil
	if _, err := r.Plan(context.Background()); err != nil {
		t.Fatal(err)
	}
	l, err := AcquireExclusive(context.Background(), r.cfg.LockFile, LockOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := r.Run(context.Background()); !errors.Is(err, ErrLocked) {
		t.Fatalf("run under a held lock: %v", err)
	}
	l.Release()
	if after, err := os.ReadFile(textfile); err != nil || string(after) != string(before) {
		t.Errorf("a dry or locked-out run changed the metrics:\n%s", after)
	}
}

func stepIndex(rep *Report, name string) int {
	for i, s := range rep.Steps {
		if s.Name == name {
			return i
		}
	}
	return -1
}

// Without [metrics] textfile, the metrics go to <state_dir>/metrics.prom; without the
// history (a state folder that cannot hold it) the run still counts.
func TestMetricsDefaultFileAndNoHistory(t *testing.T) {
	w := newWorld()
	r := w.rebuilder(t)
	if want := filepath.Join(r.cfg.StateDir, MetricsFile); r.cfg.MetricsFile != want {
		t.Fatalf("MetricsFile %q, want %q", r.cfg.MetricsFile, want)
	}
	// A folder where the history file should be: the history cannot be written.
	if err := os.Mkdir(filepath.Join(r.cfg.StateDir, HistoryFile), 0o700); err != nil {
		t.Fatal(err)
	}
	rep, err := r.Run(context.Background())
	if !errors.Is(err, ErrUnrecorded) || rep.Outcome != OutcomeOK {
		t.Fatalf("a rebuild whose history cannot be written: %v, outcome %s; want ErrUnrecorded", err, rep.Outcome)
	}
	got := series(readMetrics(t, r.cfg.MetricsFile), "restage_run_last_success_timestamp_seconds")
	if got["environment=staging,kind=rebuild"] != epoch(rep.Started.Add(rep.Total)) {
		t.Errorf("last success %v", got)
	}
}

// The run reads only what the metrics need of a long history; the metrics are those of
// the whole history.
func TestMetricsOfALeanReadAreThoseOfTheHistory(t *testing.T) {
	dir := t.TempDir()
	t0 := time.Date(2025, 3, 1, 2, 0, 0, 0, time.UTC)
	writeHistory(t, dir, v1Line+"\ngarbage\n")
	for i := range 30 {
		rep := sampleReport(fmt.Sprintf("r%d", i), t0.Add(time.Duration(i)*24*time.Hour))
		rep.Total += time.Duration(i) * time.Second
		rep.Steps[1].Duration += time.Duration(i) * time.Minute
		rep.Schema.To = uint(5 + i)
		switch {
		case i%7 == 3:
			rep.Outcome = OutcomeRolledBack
		case i%11 == 5:
			rep.Kind, rep.Outcome = "deploy", OutcomeBroken
		case i == 29:
			rep.Outcome = OutcomeFailed
		case i == 20:
			rep.Kind = "deploy"
		}
		if err := appendHistory(dir, rep, 0); err != nil {
			t.Fatal(err)
		}
	}
	text := func(reports []*Report, err error) string {
		t.Helper()
		if !errors.Is(err, ErrHistoryCorrupt) {
			t.Fatalf("the garbage line: %v", err)
		}
		reg, err := RunMetrics(reports)
		if err != nil {
			t.Fatal(err)
		}
		p := filepath.Join(t.TempDir(), "m.prom")
		if err := WriteTextfile(p, reg); err != nil {
			t.Fatal(err)
		}
		b, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		return string(b)
	}
	whole, lean := text(History(dir)), text(metricsHistory(dir))
	if whole != lean {
		t.Errorf("lean read:\n%s\nwhole history:\n%s", lean, whole)
	}
	for _, want := range []string{`restage_schema_version{environment="staging",kind="rebuild"} 33`, `kind="deploy",outcome="broken"`,
		`restage_step_duration_seconds{environment="staging",kind="rebuild",step="restore"} 5040.123456789`} {
		if !strings.Contains(whole, want) {
			t.Errorf("%s not in\n%s", want, whole)
		}
	}
}
