//go:build !linux

package cron

import "time"

// becomeSubreaper does nothing outside Linux: a job's process that leaves its process
// group and session (setsid) is reparented to init, out of the runner's reach.
func becomeSubreaper() error { return nil }

// killStrays finds nothing outside Linux (see becomeSubreaper); the job's process group
// is still killed.
func (r *Runner) killStrays(name string, pgid int, bound time.Duration) int { return 0 }
