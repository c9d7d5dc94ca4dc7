package cron

import (
	"context"
	"path/filepath"
	"time"

	"github.com/restage/restage/staging"
)

// JobStatus is what Status says about one job.
type JobStatus struct {
	Job Job // the job's entry in the config
	// Next is the next minute the job is due after now; Owed, when not zero, is a
	// minute it is still owed (skipped during a rebuild, or missed): the next run runs it.
	Next time.Time
	Owed time.Time
	// Enabled is the control file's verdict (true without a control file; with one
	// that cannot be read or parsed, its last good copy's, or as control_fail says
	// when there was never one).
	Enabled bool
	// Running lists the live runs of the job holding the environment's lock.
	Running []staging.Owner
}

// Status reports, without running or locking anything, each job's next due minute,
// what it is owed, whether the control file enables it and whether it runs now. The
// error is the control file's, when it cannot be read (the statuses are still given,
// from its last good copy if there is one; Status does not update that copy).
func (r *Runner) Status(ctx context.Context, now time.Time) ([]JobStatus, error) {
	minute := now.Truncate(time.Minute)
	st, err := readState(filepath.Join(r.cfg.StateDir, StateFile))
	if err != nil {
		st = &state{}
	}
	var ctl *Control
	sum := &Summary{}
	if r.control != "" {
		ctl = r.readControl(ctx, sum, false)
	}
	holders := staging.SharedHolders(r.cfg.LockFile)
	out := make([]JobStatus, 0, len(r.jobs))
	for _, j := range r.jobs {
		s := JobStatus{Job: j.Job, Enabled: ctl.Enabled(j.Name) && r.cfg.enabled(), Next: j.sched.Next(minute.In(now.Location()))}
		last, ok := st.Jobs[j.Name]
		if !ok {
			last = st.LastRun
		}
		if !last.IsZero() && !last.After(minute) {
			if n := j.sched.Next(last.In(now.Location())); !n.IsZero() && !n.After(minute) {
				s.Owed = n
			}
		}
		for _, h := range holders {
			if h.Job == j.Name {
				s.Running = append(s.Running, h)
			}
		}
		out = append(out, s)
	}
	return out, sum.ControlErr
}
