// Command cronrunner runs a staging environment's cron jobs from one entry, so that no
// job runs during a rebuild. System cron starts it every minute:
//
//   - * * * * /usr/local/bin/cronrunner -config /etc/restage/staging-cron.toml -once
//
// Without -once it runs as a daemon, starting due jobs at the start of every minute
// until SIGTERM or SIGINT; then it starts nothing more and waits for the running jobs,
// each up to its timeout.
//
//	cronrunner -config FILE -disable JOB   # or -enable JOB; JOB may be DEFAULT
//
// rewrites the local control file atomically, and
//
//	cronrunner -config FILE -list
//
// prints each job's schedule, control-file state, next run, owed run and running
// instances.
//
// Exit status: 0 done (or -h, which prints the usage); 1 a job failed (it was also
// reported) or the runner failed; 2 usage or config error (a config error names the
// key).
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/restage/restage/examples/internal/cli"
	"github.com/restage/restage/staging"
	"github.com/restage/restage/staging/cron"
)

const prog = "cronrunner"

func main() { cli.Main(prog, run, exitStatus) }

// exitStatus maps run's errors other than usage errors to the exit status: 2 for a
// config error, 1 otherwise.
func exitStatus(err error) int {
	if errors.Is(err, staging.ErrConfig) {
		return cli.ExitUsage
	}
	return cli.ExitFailed
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := cli.NewFlagSet(prog, stderr,
		"-config FILE [-once] [-v | -log-level LEVEL]",
		"-config FILE -list",
		"-config FILE -enable JOB | -disable JOB")
	configPath := fs.Config("the job table (TOML; required)")
	once := fs.Bool("once", false, "run the jobs due since the last run, then exit (for system cron, every minute)")
	list := fs.Bool("list", false, "print each job's schedule, next run, control-file state and running instances, then exit")
	disable := fs.String("disable", "", "disable `JOB` (or DEFAULT) in the local control file, then exit")
	enable := fs.String("enable", "", "enable `JOB` (or DEFAULT) in the local control file, then exit")
	level := fs.String("log-level", "", "debug, info, warn or error (default: warn with -once, so that cron mails only problems; info otherwise)")
	verbose := fs.Bool("v", false, "debug logging (-log-level debug)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	lvl := slog.LevelInfo
	if *once {
		lvl = slog.LevelWarn
	}
	modes := 0
	for _, set := range []bool{*once, *list, *disable != "", *enable != ""} {
		if set {
			modes++
		}
	}
	switch {
	case modes > 1:
		return fs.Usagef("-once, -list, -enable and -disable exclude each other")
	case *verbose && *level != "":
		return fs.Usagef("-v and -log-level exclude each other")
	case *level != "" && lvl.UnmarshalText([]byte(*level)) != nil:
		return fs.Usagef("-log-level %q: want debug, info, warn or error", *level)
	case *verbose:
		lvl = slog.LevelDebug
	}
	cfg, err := cron.Load(*configPath)
	if err != nil {
		return err
	}
	if job := *disable + *enable; job != "" {
		return setEnabled(ctx, fs, cfg, job, *enable != "", stdout)
	}
	r, err := newRunner(cfg, slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: lvl})))
	if err != nil {
		return err
	}
	switch {
	case *list:
		return printStatus(ctx, r, stdout)
	case *once:
		return runOnce(ctx, r)
	}
	return r.Run(ctx)
}

// newRunner wires the config's notifier (with its spool in state_dir) and logger.
func newRunner(cfg cron.Config, logger *slog.Logger) (*cron.Runner, error) {
	notifier, err := staging.NewNotifier(cfg.Notify, staging.ResolvePath(cfg.Dir, cfg.StateDir), logger)
	if err != nil {
		return nil, fmt.Errorf("%w: notify: %w", staging.ErrConfig, err)
	}
	if notifier != nil {
		cfg.Notifier = notifier
	}
	cfg.Logger = logger
	return cron.New(cfg)
}

// runOnce is -once: the jobs due now, and an error naming those that failed.
func runOnce(ctx context.Context, r *cron.Runner) error {
	sum, err := r.RunOnce(ctx, time.Now())
	if err != nil {
		return err
	}
	if failed := sum.Failed(); len(failed) > 0 {
		names := make([]string, len(failed))
		for i, f := range failed {
			names[i] = f.Job + " (" + string(f.Outcome) + ")"
		}
		return fmt.Errorf("%d job(s) failed: %s", len(failed), strings.Join(names, ", "))
	}
	return nil
}

// printStatus prints the -list table.
func printStatus(ctx context.Context, r *cron.Runner, out io.Writer) error {
	sts, _ := r.Status(ctx, time.Now()) // a control file that cannot be read is logged
	tw := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "JOB\tSCHEDULE\tENABLED\tNEXT\tOWED\tRUNNING")
	for _, s := range sts {
		enabled, owed, running := "yes", "-", "-"
		if !s.Enabled {
			enabled = "no"
		}
		if !s.Owed.IsZero() {
			owed = s.Owed.Format("2006-01-02 15:04")
		}
		if len(s.Running) > 0 {
			names := make([]string, len(s.Running))
			for i, o := range s.Running {
				names[i] = fmt.Sprintf("pid %d since %s", o.PID, o.Start.Local().Format("15:04:05"))
			}
			running = strings.Join(names, ", ")
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", s.Job.Name, s.Job.Schedule, enabled, s.Next.Format("2006-01-02 15:04"), owed, running)
	}
	return tw.Flush()
}

// setEnabled edits the local control file for -disable and -enable.
func setEnabled(ctx context.Context, fs *cli.FlagSet, cfg cron.Config, job string, on bool, out io.Writer) error {
	control := staging.ResolvePath(cfg.Dir, cfg.Control)
	switch {
	case control == "":
		return fmt.Errorf("%w: no control file in the config (key control)", staging.ErrConfig)
	case strings.Contains(control, "://"):
		return fs.Usagef("control %s is a URL: change the file where it is served", control)
	}
	known := job == "DEFAULT" || slices.ContainsFunc(cfg.Jobs, func(j cron.Job) bool { return j.Name == job })
	if !known {
		return fs.Usagef("no job %q in the config", job)
	}
	r, err := cron.New(cfg)
	if err != nil {
		return err
	}
	if err := r.SetEnabled(ctx, job, on); err != nil {
		return err
	}
	state := "disabled"
	if on {
		state = "enabled"
	}
	fmt.Fprintf(out, "%s %s in %s\n", state, job, control)
	return nil
}
