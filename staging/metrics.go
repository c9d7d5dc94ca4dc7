package staging

import (
	"bytes"
	"encoding/json"
	"fmt"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/common/expfmt"

	"github.com/restage/restage/internal/atomicfile"
)

// MetricsFile is the default name of the metrics file in the state folder ([metrics]
// textfile). Node exporter's textfile collector reads only files named *.prom.
const MetricsFile = "metrics.prom"

// Metric label names.
const (
	labelEnvironment = "environment"
	labelKind        = "kind"
	labelOutcome     = "outcome"
	labelStep        = "step"
)

// runGauges are the gauges RunMetrics sets, one field per metric.
type runGauges struct {
	lastSuccess, lastRun, success, duration, downtime, step *prometheus.GaugeVec
	backupAge, backupSize, schemaVersion                    *prometheus.GaugeVec
}

func newRunGauges() *runGauges {
	g := func(name, help string, labels ...string) *prometheus.GaugeVec {
		return prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: name, Help: help},
			append([]string{labelEnvironment, labelKind}, labels...))
	}
	return &runGauges{
		lastSuccess: g("restage_run_last_success_timestamp_seconds",
			"When the newest successful run of this kind finished, in seconds since the epoch; 0 when the history holds none."),
		lastRun: g("restage_run_last_timestamp_seconds",
			"When the newest run of this kind with this outcome finished, in seconds since the epoch.", labelOutcome),
		success: g("restage_run_success",
			"1 when the newest run of this kind succeeded, 0 when it failed, rolled back or broke staging."),
		duration: g("restage_run_duration_seconds",
			"How long the newest run of this kind took, in seconds."),
		downtime: g("restage_downtime_seconds",
			"How long the newest run of this kind had the service down (stopped until healthy again), in seconds."),
		step: g("restage_step_duration_seconds",
			"How long each step of the newest run of this kind took, in seconds.", labelStep),
		backupAge: g("restage_backup_age_seconds",
			"How old the backup the newest successful run restored was when the run took it, in seconds."),
		backupSize: g("restage_backup_size_bytes",
			"The size of the backup the newest successful run restored, in bytes."),
		schemaVersion: g("restage_schema_version",
			"The schema version (patch level) the newest successful run of this kind left the database at."),
	}
}

func (g *runGauges) all() []prometheus.Collector {
	return []prometheus.Collector{g.lastSuccess, g.lastRun, g.success, g.duration, g.downtime, g.step,
		g.backupAge, g.backupSize, g.schemaVersion}
}

// RunMetrics returns a registry holding the Prometheus metrics of the runs in reports
// (a history, oldest first, as History returns it), all gauges labelled environment
// and kind ("rebuild", "deploy" or "promote"):
//
//   - restage_run_last_success_timestamp_seconds: when the newest successful run
//     finished; 0 when the history holds none (so "too long ago" alerts fire).
//   - restage_run_last_timestamp_seconds{outcome}: when the newest run with each
//     outcome (ok, failed, rolled back, broken) finished.
//   - restage_run_success, restage_run_duration_seconds, restage_downtime_seconds and
//     restage_step_duration_seconds{step}: the newest run, whatever its outcome (the
//     steps it ran; a step run twice counts its total).
//   - restage_backup_age_seconds, restage_backup_size_bytes, restage_schema_version:
//     the newest successful run, i.e. what staging serves (a failed or rolled-back
//     run leaves it as it was).
//
// Dry runs and runs locked out by another are not in a history; RunMetrics skips them
// if given.
func RunMetrics(reports []*Report) (*prometheus.Registry, error) {
	g := newRunGauges()
	reg := prometheus.NewRegistry()
	for _, c := range g.all() {
		if err := reg.Register(c); err != nil {
			return nil, err
		}
	}
	type key struct{ env, kind string }
	newest := map[key]*Report{}
	newestOK := map[key]*Report{}
	for _, rep := range reports {
		if rep == nil || rep.Outcome == OutcomePlanned || rep.Outcome == OutcomeLocked {
			continue
		}
		k := key{rep.Environment, rep.Kind}
		newest[k] = rep
		if rep.Outcome == OutcomeOK {
			newestOK[k] = rep
		}
		// Later reports overwrite earlier ones: the newest of each outcome remains.
		g.lastRun.WithLabelValues(k.env, k.kind, string(rep.Outcome)).Set(finished(rep))
	}
	for k, rep := range newest {
		lv := []string{k.env, k.kind}
		g.success.WithLabelValues(lv...).Set(boolGauge(rep.Outcome == OutcomeOK))
		g.duration.WithLabelValues(lv...).Set(rep.Total.Seconds())
		g.downtime.WithLabelValues(lv...).Set(rep.Downtime.Seconds())
		steps := map[string]time.Duration{}
		for _, s := range rep.Steps {
			if s != nil {
				steps[s.Name] += s.Duration
			}
		}
		for name, d := range steps {
			g.step.WithLabelValues(k.env, k.kind, name).Set(d.Seconds())
		}
		ok := newestOK[k]
		if ok == nil {
			g.lastSuccess.WithLabelValues(lv...).Set(0)
			continue
		}
		g.lastSuccess.WithLabelValues(lv...).Set(finished(ok))
		if b := ok.Backup; b != nil {
			g.backupAge.WithLabelValues(lv...).Set(b.Age.Seconds())
			g.backupSize.WithLabelValues(lv...).Set(float64(b.Size))
		}
		if s := ok.Schema; s != nil {
			g.schemaVersion.WithLabelValues(lv...).Set(float64(s.To))
		}
	}
	return reg, nil
}

// finished is when rep's run ended, in seconds since the epoch.
func finished(rep *Report) float64 {
	return float64(rep.Started.Add(rep.Total).UnixNano()) / float64(time.Second)
}

func boolGauge(b bool) float64 {
	if b {
		return 1
	}
	return 0
}

// WriteTextfile writes what g gathers to path in the Prometheus text format that node
// exporter's textfile collector reads, atomically (a scrape sees the old file or the new
// one, never half of it; the temporary is path+".new", which the collector ignores),
// never through a symlink planted at the temporary's path. The file is mode 0644: the
// collector runs as its own user, and the file holds numbers, names of environments
// and steps, no secrets. Callers that write the same path must serialise their writes.
func WriteTextfile(path string, g prometheus.Gatherer) error {
	mfs, err := g.Gather()
	if err != nil {
		return fmt.Errorf("metrics: %w", err)
	}
	var b bytes.Buffer
	for _, mf := range mfs {
		if _, err := expfmt.MetricFamilyToText(&b, mf); err != nil {
			return fmt.Errorf("metrics: %w", err)
		}
	}
	if err := atomicfile.WriteFile(path, b.Bytes(), 0o644); err != nil {
		return fmt.Errorf("metrics: %w", err)
	}
	return nil
}

// writeMetrics writes the metrics file from the history, this run included. It runs
// in finish, under the environment's lock, so that runs never write it at once; a
// failure is logged and does not fail the run.
func (ru *run) writeMetrics() {
	path := ru.r.cfg.MetricsFile
	if path == "" {
		return
	}
	reports := []*Report{ru.rep}
	if dir := ru.r.cfg.StateDir; dir != "" {
		hist, err := metricsHistory(dir)
		if err != nil {
			ru.log.Warn("metrics: history not read whole", keyErr, err)
		}
		if n := len(hist); n == 0 || hist[n-1].ID != ru.rep.ID {
			hist = append(hist, ru.rep) // this run's line could not be written: it still counts
		}
		reports = hist
	}
	reg, err := RunMetrics(reports)
	if err == nil {
		err = WriteTextfile(path, reg)
	}
	if err != nil {
		ru.log.Error("metrics not written", keyErr, err)
	}
}

// runHead is what the metrics need of every run in the history, in either format.
type runHead struct {
	V            *int          `json:"v"`
	ID           string        `json:"id"`
	Environment  string        `json:"environment"`
	Kind         string        `json:"kind"`
	Outcome      Outcome       `json:"outcome"`
	Started      time.Time     `json:"started"`
	Total        time.Duration `json:"total"`         // before format versions
	TotalSeconds seconds       `json:"total_seconds"` // version 2
}

// metricsHistory reads the history as RunMetrics needs it, sparing the run's memory on
// a long history: of every run its kind, outcome and times, and in full only the runs
// RunMetrics reads whole (the newest and the newest successful of each environment and
// kind). Errors as History's.
func metricsHistory(stateDir string) ([]*Report, error) {
	raw := map[*Report][]byte{}
	reps, err := readHistory(stateDir, func(line []byte) (*Report, error) {
		var h runHead
		if err := json.Unmarshal(line, &h); err != nil {
			return nil, err
		}
		rep := &Report{ID: h.ID, Environment: h.Environment, Kind: h.Kind, Outcome: h.Outcome, Started: h.Started, Total: h.Total}
		if h.V != nil {
			if *h.V != historyVersion {
				return nil, unknownVersion(*h.V)
			}
			rep.Total = time.Duration(h.TotalSeconds)
		}
		raw[rep] = line
		return rep, nil
	})
	type key struct{ env, kind string }
	newest, newestOK := map[key]bool{}, map[key]bool{}
	for i := len(reps) - 1; i >= 0; i-- {
		rep := reps[i]
		if rep.Outcome == OutcomePlanned || rep.Outcome == OutcomeLocked {
			continue
		}
		k := key{rep.Environment, rep.Kind}
		whole := !newest[k] || (rep.Outcome == OutcomeOK && !newestOK[k])
		newest[k] = true
		newestOK[k] = newestOK[k] || rep.Outcome == OutcomeOK
		if whole {
			full := new(Report)
			if json.Unmarshal(raw[rep], full) == nil {
				reps[i] = full
			}
		}
	}
	return reps, err
}
