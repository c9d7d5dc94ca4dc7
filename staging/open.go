package staging

import (
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"time"

	"github.com/restage/restage/codesync"
	"github.com/restage/restage/dbrestore"
	"github.com/restage/restage/internal/redact"
	"github.com/restage/restage/notify"
	"github.com/restage/restage/schema"
	"github.com/restage/restage/svcctl"
)

// OpenOptions adjust what Open wires.
type OpenOptions struct {
	// Source replaces the config's [code] source (experimental's -source / -git flags).
	Source codesync.Source
	// Progress receives restore progress (e.g. a terminal progress bar).
	Progress func(dbrestore.Progress)
	// Report, when set, also receives every report as text (e.g. os.Stdout).
	Report io.Writer
	// Logger is the run's logger; nil: slog.Default().
	Logger *slog.Logger
}

// Open wires a Rebuilder from an environment's config: the backup catalog (when [backup]
// is set), the staging server, the code source and releases, the schema upgrader, the
// service with its health gate, and the notifiers, each spooled in state_dir. This is the
// one place the parts are put together. Close the Rebuilder when done.
func Open(c *EnvironmentConfig, opts OpenOptions) (*Rebuilder, error) {
	if err := c.Validate(); err != nil {
		return nil, err
	}
	log := CaptureLogger(opts.Logger) // the parts' messages go into the report too
	cfg := Config{Environment: c.Environment}
	var err error
	if cfg.Production, err = c.Database.productionIDs(); err != nil {
		return nil, c.errorf("database.production_ids: %w", err)
	}
	if c.Backup.Dir != "" {
		if cfg.Backups, err = dbrestore.NewCatalog(c.Backup.Dir, dbrestore.Config{BinDir: c.Database.BinDir, Logger: log}); err != nil {
			return nil, c.errorf("backup.dir: %w", err)
		}
	}
	srv, err := dbrestore.NewServer(dbrestore.ServerConfig{
		AdminDSN: c.Database.AdminDSN, Protect: c.Database.Protect, Production: cfg.Production,
		Role: c.Schema.Role, BinDir: c.Database.BinDir, Logger: log})
	if err != nil {
		return nil, c.errorf("database: %w", redact.Error(err))
	}
	cfg.Databases, cfg.DSN = srv, srv.DSN

	switch {
	case opts.Source != nil:
		cfg.Source = opts.Source
	case c.Code.Git != "":
		cfg.Source = &codesync.GitSource{Repo: c.Code.Git, Ref: c.Code.Ref, Timeout: c.Code.GitTimeout.Duration}
	default:
		if cfg.Source, err = codesync.NewDirSource(c.Code.Source); err != nil {
			return nil, c.errorf("code.source: %w", err)
		}
	}
	if cfg.Releases, err = codesync.New(c.releasesConfig(log)); err != nil {
		return nil, c.errorf("code: %w", err)
	}
	if cfg.Schema, err = schema.New(schema.Config{Logger: log}); err != nil {
		return nil, c.errorf("schema: %w", err)
	}
	if cfg.Service, cfg.Health, err = c.service(log); err != nil {
		return nil, err
	}
	if cfg.Notifier, err = c.notifier(opts.Report, log); err != nil {
		_ = closeParts(cfg.Service)
		return nil, err
	}

	cfg.Database = c.Database.Name
	cfg.Strategy = Strategy(c.Database.Strategy)
	cfg.Backup = dbrestore.WaitOptions{Database: c.Backup.Database, MaxAge: c.Backup.MaxAge.Duration,
		Wait: c.Backup.Wait.Duration, Poll: c.Backup.Poll.Duration}
	cfg.Restore = dbrestore.RestoreOptions{Jobs: c.Database.Jobs, KeepOwners: c.Database.KeepOwners,
		PostRestore: c.Database.PostRestore, Progress: opts.Progress}
	cfg.Clones = c.Database.Clones
	cfg.Migrations = c.Schema.Migrations
	cfg.LockFile = c.LockFile
	cfg.CronWait = c.CronWait.Duration
	cfg.StateDir = c.StateDir
	cfg.Topic = c.Notify.Topic
	cfg.SchemaRole = c.Schema.Role
	cfg.Timeouts = Timeouts{Restore: c.Database.RestoreTimeout.Duration, Schema: c.Schema.Timeout.Duration,
		Notify: c.Notify.Timeout.Duration}
	cfg.Logger = log
	r, err := New(cfg)
	if err != nil {
		_ = closeParts(cfg.Service, cfg.Notifier)
	}
	return r, err
}

// releasesConfig is [code] as codesync's Config.
func (c *EnvironmentConfig) releasesConfig(log *slog.Logger) codesync.Config {
	return codesync.Config{
		Releases: c.Code.Releases, Current: c.Code.Current, Keep: c.Code.Keep,
		Exclude: c.Code.Exclude, Overlay: c.Code.Overlay, Logger: log,
		NoHardLinks: c.Code.HardLinks != nil && !*c.Code.HardLinks, Compare: codesyncCompare[c.Code.Compare],
		Workers: c.Code.Workers, Sync: c.Code.Sync, AllowExternalSymlinks: c.Code.AllowExternalSymlinks,
	}
}

func (c *EnvironmentConfig) service(log *slog.Logger) (svcctl.Controller, svcctl.Checker, error) {
	s := c.Service
	var ctl svcctl.Controller
	var err error
	switch s.Type {
	case "process":
		if err := os.MkdirAll(filepath.Dir(s.Pidfile), 0o755); err != nil {
			return nil, nil, c.errorf("service.pidfile: %w", err)
		}
		startWait := s.StartWait.Duration
		if startWait == 0 && s.HealthURL != "" {
			startWait = 200 * time.Millisecond // the health gate watches the process from then on
		}
		ctl, err = svcctl.NewProcess(svcctl.ProcessConfig{Command: s.Command, Dir: s.Dir, Env: s.Env,
			Pidfile: s.Pidfile, LogFile: s.LogFile, StopTimeout: s.StopTimeout.Duration, StartWait: startWait, Logger: log})
	case "command":
		ctl, err = svcctl.NewCommand(svcctl.CommandConfig{Start: s.Start, Stop: s.Stop, Status: s.Status,
			Dir: s.Dir, Env: s.Env, Logger: log})
	case "systemd":
		ctl, err = svcctl.NewSystemd(svcctl.SystemdConfig{Unit: s.Unit, Logger: log})
	case "docker":
		ctl, err = svcctl.NewDocker(svcctl.DockerConfig{Container: s.Container, StopTimeout: s.StopTimeout.Duration, Logger: log})
	}
	if err != nil {
		return nil, nil, c.errorf("service: %w", err)
	}
	if s.HealthURL == "" {
		return ctl, nil, nil
	}
	return ctl, svcctl.HTTPCheck{URL: s.HealthURL, Timeout: s.HealthTimeout.Duration, Logger: log}, nil
}

// notifier builds the [notify] targets, each with its own spool under state_dir/spool.
func (c *EnvironmentConfig) notifier(report io.Writer, log *slog.Logger) (notify.Notifier, error) {
	n, err := NewNotifier(c.Notify, c.StateDir, log)
	if err != nil {
		return nil, c.errorf("notify: %w", err)
	}
	if report == nil {
		return n, nil
	}
	w, err := notify.NewWriter(notify.WriterConfig{Out: report})
	if err != nil {
		return nil, err
	}
	if n == nil {
		return w, nil
	}
	return notify.NewFanOut(notify.Target{Name: "spooled", Notifier: n}, notify.Target{Name: "writer", Notifier: w})
}

// NewNotifier builds the notifiers of a [notify] section (email, webhook, stdout), each
// wrapped in its own spool under stateDir/spool, so that a report one of them cannot
// take is kept and delivered first next time, and never sent twice to the others.
// It returns nil when the section configures no target.
func NewNotifier(c NotifyConfig, stateDir string, log *slog.Logger) (notify.Notifier, error) {
	named := map[string]notify.Notifier{}
	if e := c.Email; e != nil {
		var password string
		if e.PasswordEnv != "" {
			password = os.Getenv(e.PasswordEnv)
			if password == "" {
				return nil, fmt.Errorf("email.password_env: $%s is empty", e.PasswordEnv)
			}
		}
		m, err := notify.NewSMTP(notify.SMTPConfig{Addr: e.SMTP, From: e.From, To: e.To, Username: e.Username,
			Password: password, TLS: notify.TLSMode(e.TLS), Timeout: e.Timeout.Duration, Logger: log})
		if err != nil {
			return nil, fmt.Errorf("email: %w", err)
		}
		named["email"] = m
	}
	if h := c.Webhook; h != nil {
		wh, err := notify.NewWebhook(notify.WebhookConfig{URL: h.URL, Timeout: h.Timeout.Duration, Logger: log})
		if err != nil {
			return nil, fmt.Errorf("webhook: %w", err)
		}
		named["webhook"] = wh
	}
	if c.Stdout {
		w, err := notify.NewWriter(notify.WriterConfig{Out: os.Stdout})
		if err != nil {
			return nil, err
		}
		named["stdout"] = w
	}
	if len(named) == 0 {
		return nil, nil
	}
	if stateDir == "" {
		return nil, fmt.Errorf("state_dir is required to spool reports")
	}
	return notify.SpoolEach(filepath.Join(stateDir, "spool"), named, log)
}
