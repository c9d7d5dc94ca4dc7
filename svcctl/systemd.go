package svcctl

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"time"
)

// SystemdConfig configures a Systemd controller.
//
// systemctl and journalctl run with an explicit environment, never the caller's whole one:
// PATH, HOME, USER, LOGNAME, LANG, LANGUAGE, TZ, TMPDIR and LC_* (childenv's basic set),
// plus DBUS_SESSION_BUS_ADDRESS, DBUS_SYSTEM_BUS_ADDRESS and XDG_RUNTIME_DIR (to reach the
// system's or, with User, the user's service manager), each where the caller has it. The
// unit's own environment is systemd's business (Environment= in the unit).
type SystemdConfig struct {
	// Unit is the unit to control, e.g. "app.service" (required).
	Unit string
	// Systemctl is the systemctl program; "": "systemctl" from PATH.
	Systemctl string
	// Journalctl is the journalctl program; "": "journalctl" from PATH; "-": read no journal.
	Journalctl string
	// User controls the caller's user manager (systemctl --user) instead of the system's.
	User bool
	// JournalLines is how many journal lines go into errors; 0: 20.
	JournalLines int
	// Timeout bounds each systemctl call; 0: 5m (start waits for the unit's start-up).
	Timeout time.Duration
	// Logger receives progress; nil: slog.Default().
	Logger *slog.Logger
}

// systemctlEnv names the variables of the caller's environment that systemctl and
// journalctl get besides childenv's basic ones: what they need to reach the system's or
// the user's service manager.
func systemctlEnv() []string {
	return []string{"DBUS_SESSION_BUS_ADDRESS", "DBUS_SYSTEM_BUS_ADDRESS", "XDG_RUNTIME_DIR"}
}

// Systemd controls a systemd unit with systemctl start, stop and is-active. Errors carry
// the unit's ActiveState, SubState and Result and the last lines of its journal.
type Systemd struct {
	cfg SystemdConfig
	run runner
	log *slog.Logger
}

var _ Controller = (*Systemd)(nil)

// NewSystemd returns a Systemd controller.
func NewSystemd(cfg SystemdConfig) (*Systemd, error) {
	if cfg.Unit == "" {
		return nil, errors.New("svcctl: systemd: Unit is required")
	}
	if strings.HasPrefix(cfg.Unit, "-") {
		return nil, fmt.Errorf("svcctl: systemd: bad unit name %q", cfg.Unit)
	}
	if cfg.Systemctl == "" {
		cfg.Systemctl = "systemctl"
	}
	if cfg.Journalctl == "" {
		cfg.Journalctl = "journalctl"
	}
	if cfg.JournalLines <= 0 {
		cfg.JournalLines = 20
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = 5 * time.Minute
	}
	return &Systemd{
		cfg: cfg,
		run: runner{timeout: cfg.Timeout, pass: systemctlEnv()},
		log: loggerOr(cfg.Logger).With(logKeyService, cfg.Unit),
	}, nil
}

func (s *Systemd) systemctl(args ...string) []string {
	argv := []string{s.cfg.Systemctl}
	if s.cfg.User {
		argv = append(argv, "--user")
	}
	return append(argv, args...)
}

// unitState is what systemctl show says about the unit.
type unitState struct {
	load, active, sub, result string
	pid                       int
}

func (u unitState) String() string {
	return fmt.Sprintf("ActiveState=%s SubState=%s Result=%s", u.active, u.sub, u.result)
}

// show runs systemctl show for the unit's state.
func (s *Systemd) show(ctx context.Context) (unitState, error) {
	out, _, err := s.run.run(ctx, s.systemctl("show", "-p", "LoadState,ActiveState,SubState,Result,MainPID", s.cfg.Unit))
	if err != nil {
		return unitState{}, err
	}
	var u unitState
	for _, line := range strings.Split(out, "\n") {
		k, v, ok := strings.Cut(strings.TrimSpace(line), "=")
		if !ok {
			continue
		}
		switch k {
		case "LoadState":
			u.load = v
		case "ActiveState":
			u.active = v
		case "SubState":
			u.sub = v
		case "Result":
			u.result = v
		case "MainPID":
			u.pid, _ = strconv.Atoi(v)
		}
	}
	return u, nil
}

// LogTail returns the last JournalLines lines of the unit's journal.
func (s *Systemd) LogTail(ctx context.Context) (string, error) {
	if s.cfg.Journalctl == "-" {
		return "", nil
	}
	argv := []string{s.cfg.Journalctl}
	if s.cfg.User {
		argv = append(argv, "--user")
	}
	argv = append(argv, "-u", s.cfg.Unit, "-n", strconv.Itoa(s.cfg.JournalLines), "--no-pager")
	out, _, err := s.run.run(ctx, argv)
	if err != nil {
		return "", err
	}
	out = strings.TrimSpace(out)
	if out == "-- No entries --" {
		return "", nil
	}
	return out, nil
}

// explain wraps err with the unit's state and journal, where available.
func (s *Systemd) explain(ctx context.Context, what string, err error) error {
	var extra []string
	notFound := false
	if u, serr := s.show(ctx); serr == nil {
		extra = append(extra, u.String())
		notFound = u.load == "not-found"
	}
	var cerr *CommandError
	if errors.As(err, &cerr) && strings.Contains(cerr.Stderr, "not found") {
		notFound = true
	}
	msg := fmt.Sprintf("svcctl: systemd %s %s", what, s.cfg.Unit)
	if len(extra) > 0 {
		msg += " (" + strings.Join(extra, " ") + ")"
	}
	journal := ""
	if j, jerr := s.LogTail(ctx); jerr == nil && j != "" {
		journal = "; journal:\n" + j
	}
	if notFound && !errors.Is(err, ErrNotFound) {
		return fmt.Errorf("%s: %w: %w%s", msg, ErrNotFound, err, journal)
	}
	return fmt.Errorf("%s: %w%s", msg, err, journal)
}

// Status runs systemctl is-active: active, reloading and refreshing are running, failed is
// failed, anything else stopped. Detail holds the unit's state from systemctl show; a unit
// systemd does not know is an error wrapping ErrNotFound.
func (s *Systemd) Status(ctx context.Context) (Status, error) {
	out, code, err := s.run.run(ctx, s.systemctl("is-active", s.cfg.Unit))
	var cerr *CommandError
	if err != nil && (!errors.As(err, &cerr) || code < 0) {
		return Status{}, fmt.Errorf("svcctl: systemd status %s: %w", s.cfg.Unit, err)
	}
	active := strings.TrimSpace(out)
	if i := strings.LastIndexByte(active, '\n'); i >= 0 {
		active = active[i+1:]
	}
	var st Status
	switch active {
	case "active", "reloading", "refreshing":
		st.State = StateRunning
	case "failed":
		st.State = StateFailed
	case "inactive", "activating", "deactivating", "maintenance":
		st.State = StateStopped
	default:
		if code == 0 {
			st.State = StateRunning
		} else {
			st.State = StateStopped
		}
	}
	if u, serr := s.show(ctx); serr == nil {
		if u.load == "not-found" {
			return Status{}, fmt.Errorf("svcctl: systemd unit %s: %w (LoadState=not-found)", s.cfg.Unit, ErrNotFound)
		}
		st.PID = u.pid
		st.Detail = u.String()
	} else {
		st.Detail = "is-active: " + active
	}
	return st, nil
}

// Start runs systemctl start (which returns once the unit's start-up is done) and checks
// that the unit is then active.
func (s *Systemd) Start(ctx context.Context) error {
	if _, _, err := s.run.run(ctx, s.systemctl("start", s.cfg.Unit)); err != nil {
		return s.explain(ctx, "start", err)
	}
	st, err := s.Status(ctx)
	if err != nil {
		return err
	}
	if st.State != StateRunning {
		return s.explain(ctx, "start", fmt.Errorf("started, then %s: %w", st.State, ErrExited))
	}
	s.log.Info("svcctl: unit started", logKeyPID, st.PID)
	return nil
}

// Stop runs systemctl stop (which returns once the unit has stopped).
func (s *Systemd) Stop(ctx context.Context) error {
	if _, _, err := s.run.run(ctx, s.systemctl("stop", s.cfg.Unit)); err != nil {
		return s.explain(ctx, "stop", err)
	}
	s.log.Info("svcctl: unit stopped")
	return nil
}
