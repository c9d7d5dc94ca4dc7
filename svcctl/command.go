package svcctl

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"
)

// CommandConfig configures a Command controller: three argvs, run without a shell.
type CommandConfig struct {
	// Start starts the service (required); exit 0 is success.
	Start []string
	// Stop stops the service (required); exit 0 is success.
	Stop []string
	// Status reports on the service (required), as LSB init scripts do: exit 0 running,
	// 3 stopped, anything else failed.
	Status []string
	// Dir is the commands' working folder; "": the caller's.
	Dir string
	// Env is the commands' own environment ("KEY=value"; later entries win). Each command
	// gets exactly childenv.Env(nil, Env...): PATH, HOME, USER, LOGNAME, LANG, LANGUAGE,
	// TZ, TMPDIR and LC_* from the caller (where set), then Env. Nothing else of the
	// caller's environment reaches them (no SMTP password, no PGPASSWORD, no token), also
	// when Env is empty.
	Env []string
	// Timeout bounds each command; 0: 2m.
	Timeout time.Duration
	// Logger receives progress; nil: slog.Default().
	Logger *slog.Logger
}

// Command controls the service through start, stop and status commands (an init script,
// a service manager's CLI, a wrapper script). Failures are *CommandError with the tail of
// the command's output.
type Command struct {
	cfg CommandConfig
	run runner
	log *slog.Logger
}

var _ Controller = (*Command)(nil)

// LSB status exit codes.
const (
	lsbRunning = 0
	lsbStopped = 3
)

// NewCommand returns a Command controller.
func NewCommand(cfg CommandConfig) (*Command, error) {
	for _, c := range []struct {
		name string
		argv []string
	}{{"Start", cfg.Start}, {"Stop", cfg.Stop}, {"Status", cfg.Status}} {
		if len(c.argv) == 0 || c.argv[0] == "" {
			return nil, fmt.Errorf("svcctl: command: %s is required", c.name)
		}
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = 2 * time.Minute
	}
	return &Command{
		cfg: cfg,
		run: runner{dir: cfg.Dir, env: cfg.Env, timeout: cfg.Timeout},
		log: loggerOr(cfg.Logger).With(logKeyService, cfg.Start[0]),
	}, nil
}

// Status runs the status command: exit 0 is running, 3 stopped, any other failed (with its
// output as Detail). A command that cannot run or times out is an error.
func (c *Command) Status(ctx context.Context) (Status, error) {
	out, code, err := c.run.run(ctx, c.cfg.Status)
	var cerr *CommandError
	if err != nil && (!errors.As(err, &cerr) || code < 0) {
		return Status{}, fmt.Errorf("svcctl: status: %w", err)
	}
	switch code {
	case lsbRunning:
		return Status{State: StateRunning, Detail: tail([]byte(out))}, nil
	case lsbStopped:
		return Status{State: StateStopped, Detail: tail([]byte(out))}, nil
	default:
		return Status{State: StateFailed, Detail: fmt.Sprintf("status exit %d: %s", code, tail([]byte(out)))}, nil
	}
}

// Start runs the start command unless the status command says the service is running,
// then checks that it runs.
func (c *Command) Start(ctx context.Context) error {
	st, err := c.runUnless(ctx, "start", c.cfg.Start, StateRunning)
	if err != nil || st == nil {
		return err
	}
	if st.State != StateRunning {
		return fmt.Errorf("svcctl: start succeeded but status says %s (%s): %w", st.State, st.Detail, ErrExited)
	}
	c.log.Info("svcctl: service started")
	return nil
}

// Stop runs the stop command unless the status command says the service is stopped, then
// checks that it no longer runs.
func (c *Command) Stop(ctx context.Context) error {
	st, err := c.runUnless(ctx, "stop", c.cfg.Stop, StateStopped)
	if err != nil || st == nil {
		return err
	}
	if st.State == StateRunning {
		return fmt.Errorf("svcctl: stop succeeded but status says still running (%s)", st.Detail)
	}
	c.log.Info("svcctl: service stopped")
	return nil
}

// runUnless runs cmd, the command named verb, unless the status command says the service
// is in state done already, and returns the status the command left; nil when it did not
// run.
func (c *Command) runUnless(ctx context.Context, verb string, cmd []string, done State) (*Status, error) {
	st, err := c.Status(ctx)
	if err != nil {
		return nil, err
	}
	if st.State == done {
		if done == StateRunning {
			c.log.Info("svcctl: service already running")
		} else {
			c.log.Info("svcctl: service not running")
		}
		return nil, nil
	}
	if _, _, err := c.run.run(ctx, cmd); err != nil {
		return nil, fmt.Errorf("svcctl: %s: %w", verb, err)
	}
	st, err = c.Status(ctx)
	if err != nil {
		return nil, err
	}
	return &st, nil
}
