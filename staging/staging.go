package staging

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"time"

	"github.com/restage/restage/codesync"
	"github.com/restage/restage/dbrestore"
	"github.com/restage/restage/notify"
	"github.com/restage/restage/schema"
	"github.com/restage/restage/svcctl"
)

// Strategy is how the database is replaced.
type Strategy string

// Strategies.
const (
	// Swap restores beside the live database and swaps names at the cutover: staging
	// serves until then, and the downtime does not grow with the database's size.
	Swap Strategy = "swap"
	// InPlace follows the original procedure (stop, drop, restore, code, schema, start)
	// for hosts without room for two copies; the downtime is the whole restore.
	InPlace Strategy = "inplace"
)

// Databases is what the Rebuilder needs of the staging database server
// (dbrestore.Server implements it). The production guard is part of it: every
// implementation must refuse to change a server whose system_identifier is production's.
type Databases interface {
	dbrestore.Restorer
	dbrestore.Admin
	dbrestore.Guard
}

// The staging server of this module provides the guard the Rebuilder requires.
var _ Databases = (*dbrestore.Server)(nil)

// Config wires a Rebuilder. The parts are interfaces; Options zero values are documented
// defaults.
type Config struct {
	Environment string // required: names the lock, the report and the topic

	Backups   dbrestore.Catalog // required for rebuilds: finds and verifies production backups
	Databases Databases         // required: the staging database server
	Source    codesync.Source   // required: the code to put in place
	Releases  codesync.Syncer   // required: releases and the `current` symlink
	Schema    schema.Upgrader   // required: brings the new database to the code's patch level
	Service   svcctl.Controller // required: the staging service
	Health    svcctl.Checker    // optional: the health gate after every start
	Notifier  notify.Notifier   // optional: receives the report
	// Physical wires strategy Physical (then Databases and Backups are not used);
	// required with it.
	Physical *PhysicalConfig

	// DSN returns the connection string of a database on the staging server (the schema
	// step runs against "<Database>_next"). Required.
	DSN func(database string) string
	// MigrationDSN, when set, returns the connection string the release's migrations
	// connect to database with, having checked the login (dbrestore.Server.MigrationDSN:
	// the restore login's, which is no superuser); an error fails the step. nil: DSN.
	// A physical rebuild's migrations run on its side cluster, as PhysicalConfig says.
	MigrationDSN func(ctx context.Context, database string) (string, error)

	Options
}

// Options are a Rebuilder's settings.
type Options struct {
	Database string   // required: the live staging database
	Strategy Strategy // "": Swap
	// Backup says which backup to take: its Database is required for rebuilds (a deploy
	// takes none); MaxAge and Wait as in the [backup] config section.
	Backup dbrestore.WaitOptions
	// Restore options: Jobs, KeepOwners, PostRestore, KeepOldRows, Progress (Target and
	// Replace are set by the Rebuilder); with Physical, PostRestore and KeepOldRows apply
	// on the side cluster.
	Restore dbrestore.RestoreOptions
	// Clones are databases made as template copies of the fresh restore, before the
	// schema step, named "<clone>_next", for other environments to pick up.
	Clones []string
	// Migrations is the migrations folder inside a release; "": "migrations".
	Migrations string
	// LockFile is the environment's lock; required.
	LockFile string
	// CronWait bounds how long a rebuild waits for running cron jobs (holding the lock
	// shared) before giving up; 0: 10 minutes.
	CronWait time.Duration
	// StateDir holds history.jsonl (one JSON report per run); "": no history.
	StateDir string
	// HistoryKeep is how many runs the history keeps, the newest ([history] keep);
	// 0: DefaultHistoryKeep.
	HistoryKeep int
	// MetricsFile receives the Prometheus metrics of the runs after every rebuild and
	// deploy, in node exporter's textfile format ([metrics] textfile); "":
	// "<StateDir>/metrics.prom", or no metrics without a StateDir. See RunMetrics.
	MetricsFile string
	// Observer follows every run's steps and progress as they happen; nil: none.
	Observer Observer
	// Topic tags the report; "": "<Environment>-rebuild".
	Topic string
	// Logger receives one line per step; nil: slog.Default(). The run's log is also
	// captured for the report's attachment, with the lines of the parts that log to the
	// same logger through CaptureLogger (Open wires them so).
	Logger *slog.Logger
	// Production lists production servers' system_identifiers, refused by every drop,
	// rename, restore and clone besides the sources the backup catalog's manifests name.
	// A run that knows none refuses to change anything (fail closed).
	Production []uint64
	// SchemaRole is the role the migrations run as (schema.Target.Role); "": the DSN's
	// user. Give the staging server's dbrestore.ServerConfig the same Role.
	SchemaRole string
	// Timeouts bound the steps that wait on other programs.
	Timeouts Timeouts
	// Now is the clock; nil: time.Now.
	Now func() time.Time
	// Role is the environment's role (RoleStaging, RoleExperimental, RoleProduction);
	// "": staging. A production Rebuilder only promotes (Promote): Run, Deploy and Plan
	// refuse it, and Promote refuses any other (safety rule 8). Deploy refuses an
	// explicit RoleStaging too (a config that names no role may be experimental's).
	Role string
	// Preflight gates a promote before anything stops; required with RoleProduction.
	Preflight *Preflight
}

// Timeouts bound a run's waits (safety rule 12); each zero value is the default given.
// On expiry the step fails and staging is left as it was (or put back).
type Timeouts struct {
	Restore time.Duration // the restore step (pg_restore, post-restore SQL, ANALYZE) and the clones: 4h
	Schema  time.Duration // the schema step, all migrations of a run: 30m
	Notify  time.Duration // delivering the run's report, spooled ones first: 2m
	// Cutover bounds each critical phase on its own: stop, renames and start with the
	// health gate; then, separately, a rollback and its restart: 10m.
	Cutover time.Duration
}

// Default timeouts.
const (
	DefaultRestoreTimeout = 4 * time.Hour
	DefaultSchemaTimeout  = 30 * time.Minute
	DefaultNotifyTimeout  = 2 * time.Minute
	DefaultCutoverTimeout = 10 * time.Minute
)

// Rebuilder rebuilds one staging environment. Create it with New.
type Rebuilder struct {
	cfg Config
	log *slog.Logger
	cap *capture // the run's log, for the report
}

// Errors callers test with errors.Is, besides ErrLocked and ErrBusy.
var (
	ErrRolledBack = errors.New("rebuild failed after the cutover and was rolled back")
	ErrRollback   = errors.New("rollback failed")
)

// Close releases what the parts hold open (e.g. the Docker engine client of a docker
// service, the staging server's kept admin connection): every part of Config that is an
// io.Closer (Backups, Databases, Source, Releases, Schema, Service, Health, Notifier, and
// Physical's Source) is closed once, errors joined. Call it when done with the Rebuilder.
func (r *Rebuilder) Close() error {
	parts := []any{r.cfg.Backups, r.cfg.Databases, r.cfg.Source, r.cfg.Releases, r.cfg.Schema,
		r.cfg.Service, r.cfg.Health, r.cfg.Notifier}
	if r.cfg.Physical != nil {
		parts = append(parts, r.cfg.Physical.Source)
	}
	return closeParts(parts...)
}

// closeParts closes those of parts that are io.Closers, each once (a part given in two
// roles, such as a controller that is also the health check, is closed once).
func closeParts(parts ...any) error {
	var errs []error
	var closed []io.Closer
	for _, p := range parts {
		c, ok := p.(io.Closer)
		if !ok || slices.ContainsFunc(closed, func(d io.Closer) bool { return same(c, d) }) {
			continue
		}
		closed = append(closed, c)
		errs = append(errs, c.Close())
	}
	return errors.Join(errs...)
}

// same reports whether a and b are the same value (false for values Go cannot compare).
func same(a, b any) bool {
	return reflect.ValueOf(a).Comparable() && a == b
}

// New validates cfg and returns a Rebuilder. Every problem is reported at once, each
// naming its field, in an error wrapping ErrConfig: a missing part, a name PostgreSQL
// would truncate. A rebuild (Run, Plan) also needs Backup.Database, which backups to
// take; a deploy does without (its catalog only names production's identities).
func New(cfg Config) (*Rebuilder, error) {
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	cfg.defaults()
	log := CaptureLogger(cfg.Logger)
	return &Rebuilder{cfg: cfg, log: log, cap: log.Handler().(*capture)}, nil
}

func (cfg *Config) validate() error {
	var p []string
	for _, part := range []struct {
		name    string
		missing bool
	}{{"Environment", cfg.Environment == ""}, {"Databases", cfg.Databases == nil && cfg.Strategy != Physical}, {"Source", cfg.Source == nil},
		{"Releases", cfg.Releases == nil}, {"Schema", cfg.Schema == nil}, {"Service", cfg.Service == nil},
		{"DSN", cfg.DSN == nil && cfg.Strategy != Physical}, {"Database", cfg.Database == ""}, {"LockFile", cfg.LockFile == ""}} {
		if part.missing {
			p = append(p, part.name+" is required")
		}
	}
	if cfg.HistoryKeep < 0 {
		p = append(p, fmt.Sprintf("HistoryKeep %d: want a positive number (0: %d)", cfg.HistoryKeep, DefaultHistoryKeep))
	}
	switch cfg.Strategy {
	case "", Swap, InPlace:
	case Physical:
		switch pc := cfg.Physical; {
		case pc == nil || pc.Source == nil || pc.Clusters == nil:
			p = append(p, "Physical (with its Source and Clusters) is required with strategy physical")
		case pc.Database == "":
			p = append(p, "Physical.Database is required (the backup's database)")
		}
	default:
		p = append(p, fmt.Sprintf("Strategy %q: want %q, %q or %q", cfg.Strategy, Swap, InPlace, Physical))
	}
	p = append(p, cfg.checkRole()...)
	if cfg.Database != "" {
		if err := checkName(cfg.Database); err != nil {
			p = append(p, "Database: "+err.Error())
		}
	}
	for _, c := range cfg.Clones {
		if err := checkName(c); err != nil {
			p = append(p, "Clones: "+err.Error())
		}
	}
	if len(p) > 0 {
		return fmt.Errorf("%w: %s", ErrConfig, strings.Join(p, "; "))
	}
	return nil
}

// defaults fills in the documented defaults of zero values: the one place they live.
func (cfg *Config) defaults() {
	if cfg.Strategy == "" {
		cfg.Strategy = Swap
	}
	if cfg.Migrations == "" {
		cfg.Migrations = "migrations"
	}
	if cfg.CronWait == 0 {
		cfg.CronWait = 10 * time.Minute
	}
	if cfg.Topic == "" {
		cfg.Topic = cfg.Environment + "-rebuild"
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.HistoryKeep == 0 {
		cfg.HistoryKeep = DefaultHistoryKeep
	}
	if cfg.MetricsFile == "" && cfg.StateDir != "" {
		cfg.MetricsFile = filepath.Join(cfg.StateDir, MetricsFile)
	}
	t := &cfg.Timeouts
	for _, d := range []struct {
		v   *time.Duration
		def time.Duration
	}{{&t.Restore, DefaultRestoreTimeout}, {&t.Schema, DefaultSchemaTimeout},
		{&t.Notify, DefaultNotifyTimeout}, {&t.Cutover, DefaultCutoverTimeout}} {
		if *d.v <= 0 {
			*d.v = d.def
		}
	}
}

// Roles of an environment (the config's top-level role key).
const (
	RoleStaging      = "staging"      // rebuilt from production every night (the default)
	RoleExperimental = "experimental" // branches deployed on demand
	RoleProduction   = "production"   // only the release train's promote; never rebuilt
)

// maxNameLen is PostgreSQL's identifier limit (NAMEDATALEN-1): longer names are
// truncated, so "<name>_next" could silently become "<name>".
const maxNameLen = 63

// nameSuffixes are what restage appends to the database's name for the databases it
// keeps beside the live one.
var nameSuffixes = []string{"_next", "_prev", "_old", "_failed", "_deploy"}

// checkName refuses a database name that PostgreSQL would truncate once restage adds
// its longest suffix.
func checkName(name string) error {
	longest := ""
	for _, s := range nameSuffixes {
		if len(s) > len(longest) {
			longest = s
		}
	}
	if max := maxNameLen - len(longest); len(name) > max {
		return fmt.Errorf("%q is %d bytes: with the suffix %q restage adds it would pass PostgreSQL's %d-byte limit and be truncated (possibly onto another database's name); use at most %d bytes",
			name, len(name), longest, maxNameLen, max)
	}
	return nil
}

// validRole reports whether name can be a PostgreSQL role name.
func validRole(name string) bool {
	return name != "" && len(name) <= maxNameLen && !strings.ContainsRune(name, 0)
}

func (r *Rebuilder) next() string { return r.cfg.Database + "_next" }
func (r *Rebuilder) prev() string { return r.cfg.Database + "_prev" }

// old names the previous run's <db>_prev while a cutover is under way; it is dropped
// once the service is healthy, or renamed back by a rollback.
func (r *Rebuilder) old() string { return r.cfg.Database + "_old" }

// failed names the database a rollback takes out of service, dropped at once.
func (r *Rebuilder) failed() string { return r.cfg.Database + "_failed" }

// working names the database a deploy upgrades before its cutover: the claimed waiting
// clone, or a copy of the live database. A nightly rebuild may meanwhile leave a new
// "<db>_next" without touching it.
func (r *Rebuilder) working() string { return r.cfg.Database + "_deploy" }
