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
// Exit status: 0 done (or -h); 1 a job failed (it was also reported) or the runner failed;
// 2 usage or config error.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"slices"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/restage/restage/staging"
	"github.com/restage/restage/staging/cron"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	err := run(ctx, os.Args[1:])
	stop()
	if err != nil && !errors.Is(err, flag.ErrHelp) {
		fmt.Fprintln(os.Stderr, "cronrunner:", err)
	}
	os.Exit(exitCode(err))
}

// errUsage marks command-line errors.
var errUsage = errors.New("usage")

// exitCode maps run's error to the exit status.
func exitCode(err error) int {
	switch {
	case err == nil, errors.Is(err, flag.ErrHelp):
		return 0
	case errors.Is(err, errUsage), errors.Is(err, staging.ErrConfig):
		return 2
	default:
		return 1
	}
}

func run(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("cronrunner", flag.ContinueOnError)
	fs.SetOutput(os.Stderr)
	configPath := fs.String("config", "", "the job table (TOML; required)")
	once := fs.Bool("once", false, "run the jobs due since the last run, then exit (for system cron, every minute)")
	disable := fs.String("disable", "", "disable `JOB` (or DEFAULT) in the local control file, then exit")
	enable := fs.String("enable", "", "enable `JOB` (or DEFAULT) in the local control file, then exit")
	list := fs.Bool("list", false, "print each job's schedule, next run, control-file state and running instances, then exit")
	level := fs.String("log-level", "", "debug, info, warn or error (default: warn with -once, so that cron mails only problems; info otherwise)")
	if err := fs.Parse(args); err != nil {
		return fmt.Errorf("%w: %w", errUsage, err)
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("%w: unexpected arguments %q", errUsage, fs.Args())
	}
	if *configPath == "" {
		return fmt.Errorf("%w: -config FILE is required", errUsage)
	}
	if *disable != "" && *enable != "" {
		return fmt.Errorf("%w: -disable and -enable exclude each other", errUsage)
	}
	cfg, err := cron.Load(*configPath)
	if err != nil {
		return err
	}
	if job, on := *disable+*enable, *enable != ""; job != "" {
		return setEnabled(ctx, cfg, job, on, os.Stdout)
	}

	lvl := slog.LevelInfo
	if *once {
		lvl = slog.LevelWarn
	}
	if *level != "" {
		if err := lvl.UnmarshalText([]byte(*level)); err != nil {
			return fmt.Errorf("%w: -log-level: %w", errUsage, err)
		}
	}
	logger := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: lvl}))
	notifier, err := staging.NewNotifier(cfg.Notify, staging.ResolvePath(cfg.Dir, cfg.StateDir), logger)
	if err != nil {
		return fmt.Errorf("%w: notify: %w", staging.ErrConfig, err)
	}
	if notifier != nil {
		cfg.Notifier = notifier
	}
	cfg.Logger = logger
	r, err := cron.New(cfg)
	if err != nil {
		return err
	}
	if *list {
		return printStatus(ctx, r, os.Stdout)
	}
	if !*once {
		return r.Run(ctx)
	}
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
func setEnabled(ctx context.Context, cfg cron.Config, job string, on bool, out io.Writer) error {
	control := staging.ResolvePath(cfg.Dir, cfg.Control)
	switch {
	case control == "":
		return fmt.Errorf("%w: no control file in the config (key control)", staging.ErrConfig)
	case strings.Contains(control, "://"):
		return fmt.Errorf("%w: control %s is a URL: change the file where it is served", errUsage, control)
	}
	known := job == "DEFAULT" || slices.ContainsFunc(cfg.Jobs, func(j cron.Job) bool { return j.Name == job })
	if !known {
		return fmt.Errorf("%w: no job %q in the config", errUsage, job)
	}
	if err := cron.SetEnabled(ctx, control, job, on); err != nil {
		return err
	}
	state := "disabled"
	if on {
		state = "enabled"
	}
	fmt.Fprintf(out, "%s %s in %s\n", state, job, control)
	return nil
}
