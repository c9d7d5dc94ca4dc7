package cron

import (
	"path/filepath"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/restage/restage/staging"
)

// MetricsFile is the default name of the runner's metrics file in state_dir ([metrics]
// textfile). It is not the rebuild's metrics.prom: the two may share a state folder.
const MetricsFile = "cron.prom"

// jobRecord is what the state keeps of a job for the metrics: its last run, and how
// often it was skipped, for each reason.
type jobRecord struct {
	Exit    int               `json:"exit"`              // the last run's exit code; -1: killed, timed out or not started
	End     time.Time         `json:"end,omitzero"`      // when it ended
	Seconds float64           `json:"seconds"`           // how long it ran
	LastOK  time.Time         `json:"last_ok,omitzero"`  // when its last successful run ended
	Skipped map[Outcome]int64 `json:"skipped,omitempty"` // skips by reason, since the state began
}

// skipReasons are the outcomes counted as skips, with their metric label.
var skipReasons = map[Outcome]string{
	SkippedDisabled: "disabled",
	SkippedLocked:   "locked",
	SkippedRunning:  "running",
}

// record notes res in the state: a skip is counted, a run that ended (or failed to
// start) becomes the job's last run. Results of other outcomes change nothing.
func (st *state) record(res *JobResult) {
	if st.Results == nil {
		st.Results = map[string]*jobRecord{}
	}
	rec := st.Results[res.Job]
	if rec == nil {
		rec = &jobRecord{Exit: -1}
		st.Results[res.Job] = rec
	}
	if _, skip := skipReasons[res.Outcome]; skip {
		if rec.Skipped == nil {
			rec.Skipped = map[Outcome]int64{}
		}
		rec.Skipped[res.Outcome]++
		return
	}
	switch res.Outcome {
	case OK, Failed, TimedOut:
	default:
		return // not started: still owed, nothing ran
	}
	end := res.End
	if end.IsZero() {
		end = time.Now()
	}
	rec.Exit, rec.End, rec.Seconds = res.ExitCode, end, 0
	if !res.Start.IsZero() {
		rec.Seconds = res.End.Sub(res.Start).Seconds()
	}
	if res.Outcome == OK {
		rec.LastOK = end
	}
}

// metrics returns a registry holding the runner's Prometheus metrics as st records
// them, all labelled environment (and job where it applies):
//
//   - restage_cron_last_run_timestamp_seconds: the last minute a run dealt with (a
//     runner that stopped running shows here).
//   - restage_cron_job_last_exit{job}: the exit code of the job's last run; -1 when it
//     was killed, timed out or could not start.
//   - restage_cron_job_last_run_timestamp_seconds{job}, restage_cron_job_last_duration_seconds{job}:
//     when the last run ended and how long it took.
//   - restage_cron_job_last_success_timestamp_seconds{job}: when its last successful
//     run ended; 0 when none is recorded.
//   - restage_cron_job_skipped_total{job,reason}: the skips since the state began;
//     reason is disabled (control file), locked (a rebuild held the lock) or running
//     (still running from an earlier run).
func (r *Runner) metrics(st *state) *prometheus.Registry {
	env := prometheus.Labels{"environment": r.cfg.Environment}
	gauge := func(name, help string, labels ...string) *prometheus.GaugeVec {
		return prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: name, Help: help, ConstLabels: env}, labels)
	}
	lastRun := gauge("restage_cron_last_run_timestamp_seconds", "The last minute the cron runner dealt with, in seconds since the epoch.")
	exit := gauge("restage_cron_job_last_exit", "The exit code of the job's last run; -1 when it was killed, timed out or could not start.", "job")
	ended := gauge("restage_cron_job_last_run_timestamp_seconds", "When the job's last run ended, in seconds since the epoch.", "job")
	dur := gauge("restage_cron_job_last_duration_seconds", "How long the job's last run took, in seconds.", "job")
	ok := gauge("restage_cron_job_last_success_timestamp_seconds", "When the job's last successful run ended, in seconds since the epoch; 0 when none is recorded.", "job")
	skipped := prometheus.NewCounterVec(prometheus.CounterOpts{Name: "restage_cron_job_skipped_total",
		Help: "How often the job was skipped, by reason: disabled (control file), locked (a rebuild held the lock), running (still running from an earlier run).", ConstLabels: env},
		[]string{"job", "reason"})
	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(lastRun, exit, ended, dur, ok, skipped)
	if !st.LastRun.IsZero() {
		lastRun.WithLabelValues().Set(unix(st.LastRun))
	}
	for _, j := range r.jobs {
		ok.WithLabelValues(j.Name).Set(0)
		for _, reason := range skipReasons {
			skipped.WithLabelValues(j.Name, reason).Add(0)
		}
		rec := st.Results[j.Name]
		if rec == nil {
			continue
		}
		if !rec.End.IsZero() {
			exit.WithLabelValues(j.Name).Set(float64(rec.Exit))
			ended.WithLabelValues(j.Name).Set(unix(rec.End))
			dur.WithLabelValues(j.Name).Set(rec.Seconds)
		}
		if !rec.LastOK.IsZero() {
			ok.WithLabelValues(j.Name).Set(unix(rec.LastOK))
		}
		for o, n := range rec.Skipped {
			if reason, known := skipReasons[o]; known {
				skipped.WithLabelValues(j.Name, reason).Add(float64(n))
			}
		}
	}
	return reg
}

func unix(t time.Time) float64 { return float64(t.UnixNano()) / 1e9 }

// writeMetrics writes the metrics file from st. It is called with the state lock
// held, so that runners never write the file at once; a failure is logged only.
func (r *Runner) writeMetrics(st *state) {
	if err := staging.WriteTextfile(r.metricsFile(), r.metrics(st)); err != nil {
		r.log.Warn("cron metrics not written", logKeyErr, err)
	}
}

// metricsFile is where the metrics go: [metrics] textfile, or state_dir's cron.prom.
func (r *Runner) metricsFile() string {
	if r.cfg.Metrics.Textfile != "" {
		return r.cfg.Metrics.Textfile
	}
	return filepath.Join(r.cfg.StateDir, MetricsFile)
}
