package cron_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/restage/restage/internal/promtest"
	"github.com/restage/restage/staging"
	"github.com/restage/restage/staging/cron"
	"github.com/restage/restage/staging/cron/crontest"
)

// cronMetrics parses the runner's metrics file as node exporter's textfile collector
// does and returns each series' value by metric name and sorted labels
// ("name{k=v,k=v}").
func cronMetrics(t *testing.T, path string) map[string]float64 {
	t.Helper()
	out := map[string]float64{}
	for name, mf := range promtest.Read(t, path) {
		for labels, v := range promtest.Series(mf) {
			out[name+"{"+labels+"}"] = v
		}
	}
	return out
}

func TestMetricsExitCodesAndSkips(t *testing.T) {
	e := newEnv(t)
	r := newRunner(t, e.config(
		crontest.Job(t, "good", "* * * * *", "append", e.path("good"), "run"),
		crontest.Job(t, "bad", "* * * * *", "exit", "3")))
	path := filepath.Join(e.state, cron.MetricsFile)

	runOnce(t, r, at(0))
	m := cronMetrics(t, path)
	for k, want := range map[string]float64{
		`restage_cron_job_last_exit{environment=staging,job=good}`:                     0,
		`restage_cron_job_last_exit{environment=staging,job=bad}`:                      3,
		`restage_cron_job_last_success_timestamp_seconds{environment=staging,job=bad}`: 0,
		`restage_cron_job_skipped_total{environment=staging,job=good,reason=locked}`:   0,
		`restage_cron_last_run_timestamp_seconds{environment=staging}`:                 float64(at(0).Unix()),
	} {
		if got, ok := m[k]; !ok || got != want {
			t.Errorf("after a run: %s = %v (present %v), want %v", k, got, ok, want)
		}
	}
	if m[`restage_cron_job_last_success_timestamp_seconds{environment=staging,job=good}`] == 0 {
		t.Error("good's last success is not recorded")
	}

	// Two minutes during a rebuild: each job is skipped twice, for the lock.
	rebuild, err := staging.AcquireExclusive(t.Context(), e.lock, staging.LockOptions{})
	if err != nil {
		t.Fatal(err)
	}
	runOnce(t, r, at(1))
	runOnce(t, r, at(2))
	if err := rebuild.Release(); err != nil {
		t.Fatal(err)
	}
	m = cronMetrics(t, path)
	for k, want := range map[string]float64{
		`restage_cron_job_skipped_total{environment=staging,job=good,reason=locked}`:  2,
		`restage_cron_job_skipped_total{environment=staging,job=bad,reason=locked}`:   2,
		`restage_cron_job_skipped_total{environment=staging,job=bad,reason=disabled}`: 0,
		`restage_cron_job_last_exit{environment=staging,job=bad}`:                     3,
	} {
		if got, ok := m[k]; !ok || got != want {
			t.Errorf("after two skips: %s = %v (present %v), want %v", k, got, ok, want)
		}
	}

	// The control file disables bad: a skip of its own reason; good runs again.
	cfg := e.config(
		crontest.Job(t, "good", "* * * * *", "append", e.path("good"), "run"),
		crontest.Job(t, "bad", "* * * * *", "exit", "3"))
	e.writeControl(t, &cfg, "[DEFAULT]\nenabled: True\n[bad]\nenabled: False\n")
	runOnce(t, newRunner(t, cfg), at(3))
	m = cronMetrics(t, path)
	if got := m[`restage_cron_job_skipped_total{environment=staging,job=bad,reason=disabled}`]; got != 1 {
		t.Errorf("disabled skips of bad: %v, want 1", got)
	}
	if got := m[`restage_cron_job_skipped_total{environment=staging,job=good,reason=locked}`]; got != 2 {
		t.Errorf("locked skips of good: %v, want still 2", got)
	}
}

func TestMetricsTextfileKey(t *testing.T) {
	e := newEnv(t)
	cfg := e.config(crontest.Job(t, "good", "* * * * *", "append", e.path("good"), "run"))
	cfg.Metrics.Textfile = "prom/cron-staging.prom" // relative to the config's folder
	if err := os.MkdirAll(e.path("prom"), 0o755); err != nil {
		t.Fatal(err)
	}
	runOnce(t, newRunner(t, cfg), at(0))
	m := cronMetrics(t, e.path("prom/cron-staging.prom"))
	if got, ok := m[`restage_cron_job_last_exit{environment=staging,job=good}`]; !ok || got != 0 {
		t.Errorf("last exit of good: %v (present %v)", got, ok)
	}
	if _, err := os.Stat(filepath.Join(e.state, cron.MetricsFile)); err == nil {
		t.Error("the default metrics file is written too")
	}
	cfg.Metrics.Textfile = "cron.txt"
	if err := cfg.Validate(); err == nil || !strings.Contains(err.Error(), "metrics.textfile") {
		t.Errorf("textfile not named *.prom: %v", err)
	}
}
