// Package cron runs an environment's cron jobs from one entry that system cron starts
// every minute (or as a daemon), so that no job runs during a rebuild.
//
// Every job holds the environment's lock (staging.AcquireShared) while it runs; a
// rebuild takes it exclusively (staging.AcquireExclusive), so a job due during a rebuild
// is skipped, logged as a warning naming the rebuild's owner, and run by the first run
// after the rebuild, and a rebuild waits for running jobs up to a bound. A job still
// running from an earlier run is not started again. A central control file in the
// Launchpad format (an INI with [DEFAULT] and one section per job, "enabled:
// True|False"), local or fetched over HTTP, turns jobs off without editing the config;
// when it cannot be read or parsed, the last copy of it that parsed (ControlCopyFile in
// state_dir) is used, and control_fail applies only when there was never one. A failing
// or timed-out job is reported through a notify.Notifier with the tail of its output.
//
// Usage:
//
//	cfg, err := cron.Load("/etc/restage/staging-cron.toml")
//	if err != nil { return err } // errors.Is(err, staging.ErrConfig)
//	cfg.Notifier = notifier     // optional: failures are reported here
//	r, err := cron.New(cfg)
//	if err != nil { return err }
//	sum, err := r.RunOnce(ctx, time.Now()) // or r.Run(ctx) as a daemon
//
// Catch-up rule: the runner keeps, per job, the last minute it has dealt with
// (state.json in state_dir). A run looks at the minutes since then: a job due at least
// once in them runs once, however many minutes were missed. A job skipped because a
// rebuild holds the lock is still owed and runs at the next run that can take the lock;
// a job disabled by the control file or still running from an earlier run is not owed.
// The first run ever (no state) only runs the jobs due in the current minute. The state
// is written before the jobs start, so a job runs at most once per due minute even if
// the runner is killed while it runs.
//
// A job runs without a shell in its own process group. Its environment is not the
// runner's, which may hold secrets (the SMTP password): it gets PATH, HOME, USER,
// LOGNAME, LANG, LANGUAGE, TZ, TMPDIR and LC_* from the runner's, its configured env,
// and RESTAGE_ENVIRONMENT, RESTAGE_CRON_JOB, RESTAGE_LOCK_FD=3 and
// RESTAGE_JOB_LOCK_FD=4. It inherits the environment lock's descriptor as fd 3 and its
// per-job lock's as fd 4, so both locks live as long as the job: a runner killed
// mid-job lets neither a rebuild nor a second copy of the job start. Its output
// (standard output and error) goes to state_dir/jobs/<name>.log, bounded (its first
// 64 MiB, then its end after a line saying how much was left out), and its tail into
// the report. Past its timeout the group gets SIGTERM, then SIGKILL; processes a job leaves
// behind are killed when it ends, so nothing of it runs without the lock. On Linux the
// runner's process is the child subreaper of its jobs (prctl PR_SET_CHILD_SUBREAPER), so
// that a process which left the job's process group and session (setsid) is reparented
// to it and killed too, with its descendants, when its environment names the job. A
// program that embeds the Runner thus also inherits the orphans of its other children,
// and the runner reaps only its jobs'.
//
// Files: what the runner writes in state_dir (state, logs, locks, the control copy)
// is 0600 and the folders it makes 0700; it opens them without following a symbolic
// link (a link planted there is refused with an error, its target untouched), and
// refuses a FIFO or anything else that is not a regular file there without waiting on
// it. A state_dir that another user owns (root excepted), or that its group or others
// may write to, is refused: they could plant the files the runner reads back.
package cron
