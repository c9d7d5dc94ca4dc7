package staging

import (
	"fmt"
	"io"
	"log/slog"
	"os/user"
	"path/filepath"
	"slices"
	"strings"

	"github.com/restage/restage/codesync"
	"github.com/restage/restage/dbrestore"
	"github.com/restage/restage/dbrestore/physical"
	"github.com/restage/restage/internal/redact"
	"github.com/restage/restage/internal/safefile"
	"github.com/restage/restage/notify"
	"github.com/restage/restage/schema"
	"github.com/restage/restage/svcctl"
)

// OpenOptions adjust what Open wires.
type OpenOptions struct {
	// Source replaces the config's [code] source (experimental's -source / -git flags); an
	// experimental config without [code] source or git needs it.
	Source codesync.Source
	// Progress receives restore progress (e.g. a terminal progress bar).
	Progress func(dbrestore.Progress)
	// Observer follows every run's steps and progress (Options.Observer).
	Observer Observer
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
	if err := c.databases(&cfg, log); err != nil {
		return nil, err
	}
	if cfg.Source, err = c.source(opts.Source); err != nil {
		return nil, err
	}
	if cfg.Releases, err = codesync.New(c.releasesConfig(log)); err != nil {
		return nil, c.errorf("code: %w", err)
	}
	if cfg.Schema, err = schema.New(schema.Config{Logger: log}); err != nil {
		return nil, c.errorf("schema: %w", err)
	}
	if err := c.privateStateDir(); err != nil {
		return nil, err
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
		PostRestore: c.Database.PostRestore, Progress: opts.Progress,
		KeepOldRows: c.Database.PostRestoreRewrite != nil && !*c.Database.PostRestoreRewrite}
	if cfg.Restore.Mask, err = c.maskRules(); err != nil {
		_ = closeParts(cfg.Service, cfg.Notifier)
		return nil, err
	}
	cfg.Clones = c.Database.Clones
	cfg.Migrations = c.Schema.Migrations
	cfg.LockFile = c.LockFile
	cfg.CronWait = c.CronWait.Duration
	cfg.StateDir = c.StateDir
	cfg.HistoryKeep = c.History.Keep
	cfg.MetricsFile = c.Metrics.Textfile
	cfg.Observer = opts.Observer
	cfg.Topic = c.Notify.Topic
	cfg.SchemaRole = c.Schema.Role
	cfg.Role = c.Role
	cfg.Timeouts = Timeouts{Restore: c.Database.RestoreTimeout.Duration, Schema: c.Schema.Timeout.Duration,
		Notify: c.Notify.Timeout.Duration}
	cfg.Logger = log
	r, err := New(cfg)
	if err != nil {
		_ = closeParts(cfg.Service, cfg.Notifier)
	}
	return r, err
}

// databases sets cfg's database parts: strategy physical's (cfg.Physical), or the
// backup catalog and the staging server (cfg.Backups, cfg.Databases, cfg.DSN).
func (c *EnvironmentConfig) databases(cfg *Config, log *slog.Logger) error {
	var err error
	if c.Database.Strategy == string(Physical) {
		cfg.Physical, err = c.physical(log)
		return err
	}
	if c.Backup.Dir != "" {
		if cfg.Backups, err = dbrestore.NewCatalog(c.Backup.Dir, dbrestore.Config{BinDir: c.Database.BinDir, Logger: log}); err != nil {
			return c.errorf("backup.dir: %w", err)
		}
	}
	srv, err := dbrestore.NewServer(dbrestore.ServerConfig{
		AdminDSN: c.Database.AdminDSN, Protect: c.Database.Protect, Production: cfg.Production,
		Role: c.Schema.Role, RestoreDSN: c.Database.RestoreDSN, BinDir: c.Database.BinDir, Logger: log})
	if err != nil {
		return c.errorf("database: %w", redact.Error(err))
	}
	cfg.Databases, cfg.DSN = srv, srv.DSN
	if c.Database.RestoreDSN != "" {
		cfg.MigrationDSN = srv.MigrationDSN // a branch's migrations: not as the admin's superuser
	}
	return nil
}

// source is the code's source: the caller's (OpenOptions.Source), else code.git or
// code.source.
func (c *EnvironmentConfig) source(given codesync.Source) (codesync.Source, error) {
	switch {
	case given != nil:
		return given, nil
	case c.Code.Git != "":
		return &codesync.GitSource{Repo: c.Code.Git, Ref: c.Code.Ref, Timeout: c.Code.GitTimeout.Duration}, nil
	case c.Code.Source == "":
		return nil, c.errorf("missing required key code.source (or code.git): an experimental config without one deploys only the code its caller names (experimental -source DIR or -git REPO -ref REF)")
	}
	src, err := codesync.NewDirSource(c.Code.Source)
	if err != nil {
		return nil, c.errorf("code.source: %w", err)
	}
	return src, nil
}

// physical builds strategy physical's parts: the pgBackRest source and the clusters.
func (c *EnvironmentConfig) physical(log *slog.Logger) (*PhysicalConfig, error) {
	cl := c.Cluster
	// The parts below look the owner up too, but their errors do not name the key.
	if cl.User != "" {
		u, err := user.Lookup(cl.User)
		if err != nil {
			return nil, c.errorf("cluster.user %q: %w", cl.User, err)
		}
		if u.Uid == "0" {
			return nil, c.errorf("cluster.user %q: PostgreSQL refuses to run as root: name another user", cl.User)
		}
	}
	var src physical.Source
	if c.Backup.Type == "basebackup" {
		src = &physical.BaseBackupDir{Dir: c.Backup.Dir, User: cl.User}
	} else {
		var err error
		if src, err = physical.NewPgBackRest(physical.PgBackRestConfig{Stanza: c.Backup.Stanza, Config: c.Backup.Config,
			User: cl.User, InfoTimeout: c.Backup.InfoTimeout.Duration, SyncOnce: c.Backup.SyncOnce, ProcessMax: c.Backup.ProcessMax, Logger: log}); err != nil {
			return nil, c.errorf("backup: %w", err)
		}
	}
	clusters, err := physical.NewClusters(physical.ClustersConfig{Environment: c.Environment, Dir: cl.Dir,
		Port: cl.Port, SidePort: cl.SidePort, BinDir: cl.BinDir, Settings: cl.Settings, User: cl.User,
		Timeout: cl.Timeout.Duration, DeltaChecksums: c.Backup.DeltaChecksums, Logins: nonEmpty(c.Schema.Role), Logger: log})
	if err != nil {
		return nil, c.errorf("cluster: %w", err)
	}
	return &PhysicalConfig{Source: src, Clusters: clusters, Database: c.Backup.Database, Keep: cl.Keep, Carry: cl.Carry,
		// A base backup is always restored as a full copy: pgBackRest alone has --delta.
		Delta: c.Backup.Type != "basebackup" && (c.Backup.Delta == nil || *c.Backup.Delta),
		Seed:  c.seed(), ClearPasswords: cl.Passwords == "clear"}, nil
}

// seed is [cluster] seed: nil is true unless the environment masks: with [mask], or
// with post-restore SQL whose changes are rewritten (post_restore_rewrite not false).
func (c *EnvironmentConfig) seed() bool {
	if s := c.Cluster.Seed; s != nil {
		return *s
	}
	masks := len(c.Database.PostRestore) > 0 && (c.Database.PostRestoreRewrite == nil || *c.Database.PostRestoreRewrite)
	return c.Mask == nil && !masks
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

// env is what the drivers get.
func (c *EnvironmentConfig) env(log *slog.Logger) DriverEnv {
	return DriverEnv{Logger: log, Dir: c.dir, StateDir: c.StateDir, HealthGate: c.Service.HealthURL != ""}
}

// service builds [service] through its type's driver, and the health gate.
func (c *EnvironmentConfig) service(log *slog.Logger) (svcctl.Controller, svcctl.Checker, error) {
	s := c.Service
	keys, bad := c.drivers().serviceKeys(&s)
	if len(bad) > 0 {
		return nil, nil, c.errorf("%s", strings.Join(bad, "; "))
	}
	ctl, err := keys.Open(c.env(log))
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
	n, err := c.drivers().Notifier(c.Notify, c.env(log))
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

// NewNotifier builds the notifiers of a [notify] section (email, webhook, stdout) with
// the default drivers; see Drivers.Notifier.
func NewNotifier(c NotifyConfig, stateDir string, log *slog.Logger) (notify.Notifier, error) {
	return DefaultDrivers().Notifier(c, DriverEnv{Logger: log, StateDir: stateDir})
}

// Notifier builds the targets of a [notify] section through their drivers, each wrapped
// in its own spool under env.StateDir/spool, so that a report one of them cannot take
// is kept and delivered first next time, and never sent twice to the others. It
// returns nil when the section configures no target.
func (d *Drivers) Notifier(c NotifyConfig, env DriverEnv) (notify.Notifier, error) {
	keys, bad := d.notifierKeys(&c)
	if len(bad) > 0 {
		return nil, fmt.Errorf("%w: %s", ErrConfig, strings.Join(bad, "; "))
	}
	named := map[string]notify.Notifier{}
	for name, k := range keys {
		n, err := k.Open(env)
		if err != nil {
			_ = closeParts(values(named)...)
			return nil, err
		}
		named[name] = n
	}
	if len(named) == 0 {
		return nil, nil
	}
	if env.StateDir == "" {
		return nil, fmt.Errorf("%w: state_dir is required to spool reports", ErrConfig)
	}
	return notify.SpoolEach(filepath.Join(env.StateDir, "spool"), named, env.Logger)
}

// privateStateDir makes state_dir (0700) or refuses it, as a config error, when another
// user owns it or may write to it: a run reads back what it finds there and acts on
// it (the cutover record, the spool), so a folder others control would let them
// choose what a repair swaps and drops, or what is mailed in the environment's name.
func (c *EnvironmentConfig) privateStateDir() error {
	if c.StateDir == "" {
		return nil
	}
	if err := safefile.MkdirPrivate(c.StateDir); err != nil {
		return c.errorf("state_dir: %w", err)
	}
	return nil
}

func values(m map[string]notify.Notifier) []any {
	out := make([]any, 0, len(m))
	for _, v := range m {
		out = append(out, v)
	}
	return out
}

// nonEmpty is the list of the values that are not "".
func nonEmpty(values ...string) []string {
	return slices.DeleteFunc(values, func(v string) bool { return v == "" })
}
