package staging

import (
	"fmt"
	"net/url"
	"slices"
	"strconv"
	"strings"

	"github.com/restage/restage/codesync"
	"github.com/restage/restage/dbrestore"
	"github.com/restage/restage/dbrestore/mask"
	"github.com/restage/restage/dbrestore/physical"
)

// EnvironmentConfig is an environment's TOML config file, as DESIGN.md defines it
// (nightly and experimental read it). Load it with LoadEnvironment; Open wires it.
type EnvironmentConfig struct {
	// Drivers are the service types and notify targets the config may name; nil:
	// DefaultDrivers().
	Drivers *Drivers `toml:"-"`

	Environment string          `toml:"environment"`
	Role        string          `toml:"role"` // staging (default) or experimental; production only for the train
	LockFile    string          `toml:"lock_file"`
	StateDir    string          `toml:"state_dir"`
	CronWait    Duration        `toml:"cron_wait"` // wait for running cron jobs; "": 10m
	Backup      BackupSection   `toml:"backup"`
	Database    DatabaseSection `toml:"database"`
	Code        CodeSection     `toml:"code"`
	Schema      SchemaSection   `toml:"schema"`
	Service     ServiceSection  `toml:"service"`
	Notify      NotifyConfig    `toml:"notify"`
	History     HistorySection  `toml:"history"`
	Metrics     MetricsSection  `toml:"metrics"`
	// Cluster is [cluster]: the staging cluster restage manages (strategy physical).
	Cluster *ClusterSection `toml:"cluster"`
	// Mask is [mask]: masking personal data while restoring. Present (even empty), it
	// also turns on the fail-closed check of personal columns; nil: no masking.
	Mask *mask.Config `toml:"mask"`
	// Preflight is [preflight]: what must hold on production before a promote stops
	// it. Only a production config (role = "production") has it, and needs it.
	Preflight *PreflightSection `toml:"preflight"`

	path string // the file it was loaded from
	dir  string // its folder, for relative paths
}

// BackupSection is [backup].
type BackupSection struct {
	// Type is where backups come from: "dump" (default: pg_dump files in Dir),
	// "pgbackrest" (strategy physical: a pgBackRest stanza) or "basebackup" (strategy
	// physical: pg_basebackups in Dir, each with its manifest).
	Type string `toml:"type"`
	// Stanza is the pgBackRest stanza of production's cluster (type pgbackrest).
	Stanza string `toml:"stanza"`
	// Config is pgBackRest's own config file, passed through as --config; "":
	// pgBackRest's default. restage runs only pgbackrest info and restore.
	Config string `toml:"config"`
	// Delta restores into the idle slot with --delta (only changed files copied); nil: true.
	Delta *bool `toml:"delta"`
	// DeltaChecksums makes a delta restore read every file of the idle slot for its
	// checksum, instead of trusting the size and time of the files restage did not
	// change since it restored them (see physical.ClustersConfig.DeltaChecksums).
	DeltaChecksums bool `toml:"delta_checksums"`
	// SyncOnce runs pgbackrest restore under eatmydata and syncs the slot's filesystem
	// once when it is done (see physical.PgBackRestConfig.SyncOnce).
	SyncOnce bool `toml:"sync_once"`
	// ProcessMax is how many files pgbackrest restore writes at once (its process-max,
	// passed on the command line over its config); 0: the staging host's CPU count.
	ProcessMax int `toml:"process_max"`
	// InfoTimeout bounds each `pgbackrest info`; "": 2m.
	InfoTimeout Duration `toml:"info_timeout"`

	Dir      string   `toml:"dir"`
	Database string   `toml:"database"`
	Wait     Duration `toml:"wait"`
	MaxAge   Duration `toml:"max_age"`
	Poll     Duration `toml:"poll"` // "": 10s
}

// DatabaseSection is [database].
type DatabaseSection struct {
	AdminDSN string `toml:"admin_dsn"`
	// RestoreDSN is a login without superuser rights that pg_restore, the post-restore
	// SQL, the counts and ANALYZE use inside the database being restored, so that the
	// dump's own functions run as it (dbrestore.ServerConfig.RestoreDSN). "": admin_dsn.
	RestoreDSN  string   `toml:"restore_dsn"`
	Name        string   `toml:"name"`
	Strategy    string   `toml:"strategy"`
	Jobs        int      `toml:"jobs"`
	Protect     []string `toml:"protect"`
	PostRestore []string `toml:"post_restore"`
	// PostRestoreRewrite rewrites the tables the post-restore SQL updated or deleted rows
	// of, so that their old row versions (the values it replaced) do not stay on
	// staging's disk; nil: true (dbrestore.RestoreOptions.KeepOldRows when false).
	PostRestoreRewrite *bool    `toml:"post_restore_rewrite"`
	Clones             []string `toml:"clones"`
	KeepOwners         bool     `toml:"keep_owners"`
	BinDir             string   `toml:"bin_dir"` // PostgreSQL client programs; "": PATH, then /usr/lib/postgresql/*/bin
	// ProductionIDs are production servers' system_identifiers (decimal strings), refused
	// by every drop, rename, restore and clone, besides the sources named by the backups'
	// manifests. A run that knows none refuses to change anything.
	ProductionIDs []string `toml:"production_ids"`
	// RestoreTimeout bounds the restore (pg_restore, post-restore SQL, ANALYZE); "": 4h.
	RestoreTimeout Duration `toml:"restore_timeout"`
}

// ClusterSection is [cluster]: the staging cluster restage manages with strategy
// physical (two data directories under Dir, one live on Port).
type ClusterSection struct {
	Dir      string            `toml:"dir"`       // required: holds the A/B slots restage creates
	Port     int               `toml:"port"`      // required: the live port the service connects to
	SidePort int               `toml:"side_port"` // a restored cluster's port while prepared (socket only); 0: port+1
	BinDir   string            `toml:"bin_dir"`   // PostgreSQL server binaries; "": the newest /usr/lib/postgresql/*/bin
	Settings map[string]string `toml:"settings"`  // postgresql.conf overrides for staging
	// Keep lists production's databases, besides [backup] database, kept on staging
	// (the others are dropped); the live cluster may hold them.
	Keep []string `toml:"keep"`
	// Carry lists databases of the live staging cluster that are not production's (an
	// experimental environment's), copied into the new cluster at every rebuild (pg_dump
	// and pg_restore, before the cutover; what is written to them afterwards is lost).
	Carry []string `toml:"carry"`
	// User owns and runs the clusters; "": postgres when restage runs as root.
	User string `toml:"user"`
	// Timeout bounds each start (with its recovery) and stop of a cluster; "": 10m.
	Timeout Duration `toml:"timeout"`
	// Seed copies the first rebuild's restore into the other slot before its first start,
	// so that the second rebuild is a delta too ([backup] delta, pgBackRest). nil: true,
	// unless the environment masks: with [mask], or post_restore with post_restore_rewrite
	// not false (the copy holds production's unmasked files until the next rebuild
	// restores over it and masks it).
	Seed *bool `toml:"seed"`
	// Passwords is what becomes of the roles' passwords, production's verifiers:
	// "keep" (the default) or "clear" (removed before the post-restore SQL, which sets
	// staging's).
	Passwords string `toml:"passwords"`
}

// CodeSection is [code].
type CodeSection struct {
	Source   string            `toml:"source"` // a folder
	Git      string            `toml:"git"`    // or a git repository ...
	Ref      string            `toml:"ref"`    // ... at this ref
	Releases string            `toml:"releases"`
	Current  string            `toml:"current"`
	Keep     int               `toml:"keep"`
	Exclude  []string          `toml:"exclude"`
	Overlay  map[string]string `toml:"overlay"`
	// HardLinks links files unchanged since the previous release; nil: true. False
	// copies every file (for programs that write into their own code tree).
	HardLinks *bool `toml:"hard_links"`
	// Compare is how unchanged files are found: "auto" (default), "stat" or "content".
	Compare string `toml:"compare"`
	// Workers is how many files are copied at once; 0: 4.
	Workers int `toml:"workers"`
	// Sync flushes a release to disk before it is put in place.
	Sync bool `toml:"sync"`
	// AllowExternalSymlinks lets symlinks that point outside the tree through.
	AllowExternalSymlinks bool `toml:"allow_external_symlinks"`
	// GitTimeout bounds each git command (clone, fetch, archive); "": 10m.
	GitTimeout Duration `toml:"git_timeout"`
}

// codesyncCompare maps [code] compare to codesync's.
var codesyncCompare = map[string]codesync.Compare{
	"": codesync.CompareAuto, "auto": codesync.CompareAuto,
	"stat": codesync.CompareStat, "content": codesync.CompareContent,
}

// SchemaSection is [schema].
type SchemaSection struct {
	Migrations string `toml:"migrations"` // inside the release
	// Role is the role the post-restore SQL and the migrations run as (SET ROLE), and
	// that owns the restored database; "": the admin DSN's user (usually a superuser).
	Role string `toml:"role"`
	// Timeout bounds the schema step (all migrations of a run); "": 30m.
	Timeout Duration `toml:"timeout"`
}

// HistorySection is [history]: state_dir/history.jsonl, one line per run.
type HistorySection struct {
	// Keep is how many runs the history keeps, the newest; 0: 400 (DefaultHistoryKeep).
	Keep int `toml:"keep"`
}

// MetricsSection is [metrics]: the Prometheus metrics written after every run.
type MetricsSection struct {
	// Textfile is the file the metrics are written to, in node exporter's textfile
	// format (point it into the collector's folder, one file per environment); it must
	// be named *.prom. "": "<state_dir>/metrics.prom".
	Textfile string `toml:"textfile"`
}

// Problem names what is wrong with the section, naming its key; "": nothing.
func (m MetricsSection) Problem() string {
	if t := m.Textfile; t != "" && (!strings.HasSuffix(t, ".prom") || strings.HasSuffix(t, "/.prom")) {
		return fmt.Sprintf("metrics.textfile %q: want a file named *.prom (node exporter's textfile collector reads no other)", t)
	}
	return ""
}

// ServiceSection is [service]: the type, the health gate, and the type's own keys.
type ServiceSection struct {
	Type          string   `toml:"type"` // a key of Drivers.Services: process, command, systemd (docker: staging/dockerservice)
	HealthURL     string   `toml:"health_url"`
	HealthTimeout Duration `toml:"health_timeout"`
	// Keys are the type's own keys: read from a file, the raw table, which the type's
	// driver decodes strictly; built in Go, the driver's keys value (e.g.
	// &SystemdKeys{Unit: "app.service"}).
	Keys any `toml:"-"`
}

// UnmarshalTOML splits [service] into the Rebuilder's keys and the driver's.
func (s *ServiceSection) UnmarshalTOML(v any) error {
	m, ok := v.(map[string]any)
	if !ok {
		return fmt.Errorf("service: want a table")
	}
	rest := map[string]any{}
	for k, val := range m {
		var err error
		switch k {
		case "type":
			err = tomlString(val, &s.Type)
		case "health_url":
			err = tomlString(val, &s.HealthURL)
		case "health_timeout":
			var text string
			if err = tomlString(val, &text); err == nil {
				err = s.HealthTimeout.UnmarshalText([]byte(text))
			}
		default:
			rest[k] = val
		}
		if err != nil {
			return fmt.Errorf("service.%s: %w", k, err)
		}
	}
	s.Keys = rest
	return nil
}

func tomlString(v any, into *string) error {
	s, ok := v.(string)
	if !ok {
		return fmt.Errorf("want a string, not %T", v)
	}
	*into = s
	return nil
}

// LoadEnvironment reads and checks an environment's config: unknown keys, bad values
// and missing required keys are errors (wrapping ErrConfig) naming each key. Relative
// paths are made absolute against the file's folder.
func LoadEnvironment(path string) (*EnvironmentConfig, error) {
	return LoadEnvironmentWith(path, nil)
}

// LoadEnvironmentWith is LoadEnvironment with the program's drivers (nil:
// DefaultDrivers()), e.g. with docker added.
func LoadEnvironmentWith(path string, drivers *Drivers) (*EnvironmentConfig, error) {
	return load(path, drivers, (*EnvironmentConfig).Validate)
}

// load decodes the config at path strictly, with drivers, checks it with validate and
// makes its relative paths absolute.
func load(path string, drivers *Drivers, validate func(*EnvironmentConfig) error) (*EnvironmentConfig, error) {
	c := EnvironmentConfig{Drivers: drivers}
	dir, err := DecodeFile(path, &c)
	if err != nil {
		return nil, err
	}
	c.path, c.dir = path, dir
	if err := validate(&c); err != nil {
		return nil, err
	}
	c.resolve()
	return &c, nil
}

// errorf returns a config error (wrapping ErrConfig, and what format's %w verbs wrap)
// prefixed with the config file's path.
func (c *EnvironmentConfig) errorf(format string, args ...any) error {
	return fmt.Errorf("%w: %s"+format, append([]any{ErrConfig, c.where("")}, args...)...)
}

// where prefixes msg with the config file's path, when there is one.
func (c *EnvironmentConfig) where(msg string) string {
	if c.path == "" {
		return msg
	}
	return c.path + ": " + msg
}

// Validate checks the config as LoadEnvironment and Open do (for configs built in Go as
// well as read from a file): every problem is reported at once, each naming its TOML
// key, in an error wrapping ErrConfig.
func (c *EnvironmentConfig) Validate() error { return c.validate(false) }

// validate checks the config for nightly and experimental, or (production) for the
// train's promote.
func (c *EnvironmentConfig) validate(production bool) error {
	var p problems
	phys := c.Database.Strategy == string(Physical)
	if !phys {
		p.require("database.admin_dsn", c.Database.AdminDSN)
	}
	p.require("environment", c.Environment, "lock_file", c.LockFile, "state_dir", c.StateDir,
		"database.name", c.Database.Name,
		"code.releases", c.Code.Releases, "code.current", c.Code.Current,
		"service.type", c.Service.Type)
	switch c.Role {
	case "", RoleStaging, RoleExperimental:
		if production {
			p.add("role %q: train promote deploys only to a config with role = %q", c.roleName(), RoleProduction)
		}
		if c.Preflight != nil {
			p.add("preflight: only a production config (role = %q) has [preflight]", RoleProduction)
		}
	case RoleProduction:
		if !production {
			p.add("role %q: a production config only releases code through the train's promote; nightly and experimental refuse it", c.Role)
		}
		c.validateProduction(&p)
	default:
		p.add("role %q: want %q or %q", c.Role, RoleStaging, RoleExperimental)
	}
	c.Database.validate(&p)
	if c.Role != RoleProduction {
		c.Database.refuseSeveralHosts(&p)
	}
	c.validatePhysical(&p)
	if len(c.Database.ProductionIDs) == 0 && c.Backup.Dir == "" && c.Backup.Type != "pgbackrest" && c.Backup.Type != "basebackup" && c.Role != RoleProduction {
		p.add("missing required key database.production_ids (or backup.dir, whose manifests name production): restage refuses to change a server before it knows production's identity")
	}
	c.Code.validate(&p, c.Role == RoleExperimental)
	if c.Schema.Role != "" && !validRole(c.Schema.Role) {
		p.add("schema.role %q: want a role name", c.Schema.Role)
	}
	c.Service.validate(&p)
	if c.History.Keep < 0 {
		p.add("history.keep %d: want a positive number (0: %d)", c.History.Keep, DefaultHistoryKeep)
	}
	if problem := c.Metrics.Problem(); problem != "" {
		p.add("%s", problem)
	}
	if c.Service.Type != "" {
		_, bad := c.drivers().serviceKeys(&c.Service)
		p = append(p, bad...)
	}
	_, bad := c.drivers().notifierKeys(&c.Notify)
	p = append(p, bad...)
	if c.Mask != nil {
		if err := c.Mask.Validate(); err != nil {
			p.add("%v", err)
		}
	}
	return p.err(c)
}

// refuseSeveralHosts refuses an admin_dsn or restore_dsn that may reach several servers
// (host=a,b, or PGHOST so): the production guard checks the server one connection
// reached, and pg_restore or a later connection would take the next host whenever the
// first did not answer. A DSN pgx cannot read is left to the connection's error.
func (d *DatabaseSection) refuseSeveralHosts(p *problems) {
	for _, k := range []struct{ key, dsn string }{{"database.admin_dsn", d.AdminDSN}, {"database.restore_dsn", d.RestoreDSN}} {
		if k.dsn == "" {
			continue
		}
		if hosts, err := dbrestore.Hosts(k.dsn); err == nil && len(hosts) > 1 {
			p.add("%s may reach several servers (%s): name one, the staging server (restage checks the server one connection reaches; pg_restore or the next connection would take the next host whenever the first did not answer)",
				k.key, strings.Join(hosts, ", "))
		}
	}
}

func (d *DatabaseSection) validate(p *problems) {
	switch d.Strategy {
	case "", string(Swap), string(InPlace), string(Physical):
	default:
		p.add("database.strategy %q: want %q, %q or %q", d.Strategy, Swap, InPlace, Physical)
	}
	if d.Jobs < 0 {
		p.add("database.jobs %d: want a positive number", d.Jobs)
	}
	if _, err := url.Parse(d.AdminDSN); err != nil && strings.Contains(d.AdminDSN, "://") {
		p.add("database.admin_dsn is not a valid URL")
	}
	if _, err := url.Parse(d.RestoreDSN); err != nil && strings.Contains(d.RestoreDSN, "://") {
		p.add("database.restore_dsn is not a valid URL")
	}
	if d.RestoreDSN != "" && d.Strategy == string(Physical) {
		p.add("database.restore_dsn: strategy physical restores no dump (the physical cluster's SQL runs as its bootstrap superuser)")
	}
	if d.Name != "" {
		if err := checkName(d.Name); err != nil {
			p.add("database.name: %v", err)
		}
	}
	for _, clone := range d.Clones {
		if err := checkName(clone); err != nil {
			p.add("database.clones: %v", err)
		}
		if clone == d.Name {
			p.add("database.clones: %q is database.name itself", clone)
		}
	}
	d.refuseProtected(p)
	if _, err := d.productionIDs(); err != nil {
		p.add("database.production_ids: %v", err)
	}
}

// refuseProtected refuses a database.name that restage would have to drop or rename
// although it never does: a system database or one listed in protect. Found here,
// before anything runs, rather than at the cutover, after the restore and with the
// service stopped. (A clone may be protected: the nightly only makes "<clone>_next",
// and staging protects the experimental database it leaves that copy for.)
func (d *DatabaseSection) refuseProtected(p *problems) {
	switch n := d.Name; {
	case n == "postgres" || n == "template0" || n == "template1":
		p.add("database.name: %q is a system database, which restage never drops or renames", n)
	case slices.Contains(d.Protect, n):
		p.add("database.name: %q is listed in database.protect, which restage never drops or renames", n)
	}
}

// productionIDs parses [database] production_ids.
func (d *DatabaseSection) productionIDs() ([]uint64, error) {
	ids := make([]uint64, 0, len(d.ProductionIDs))
	for _, s := range d.ProductionIDs {
		id, err := strconv.ParseUint(strings.TrimSpace(s), 10, 64)
		if err != nil || id == 0 {
			return nil, fmt.Errorf("%q is not a system_identifier (SELECT system_identifier FROM pg_control_system() on production)", s)
		}
		ids = append(ids, id)
	}
	return ids, nil
}

// validate checks [code]; with sourceOptional (an experimental environment, whose deploys
// may name the code: experimental -source / -git) it may name no source of its own.
func (cs *CodeSection) validate(p *problems, sourceOptional bool) {
	switch {
	case cs.Source == "" && cs.Git == "" && !sourceOptional:
		p.add("missing required key code.source (or code.git)")
	case cs.Source != "" && cs.Git != "":
		p.add("code.source and code.git are exclusive")
	case cs.Git != "" && cs.Ref == "":
		p.add("missing required key code.ref (with code.git)")
	}
	if cs.Keep < 0 {
		p.add("code.keep %d: want a positive number", cs.Keep)
	}
	if _, ok := codesyncCompare[cs.Compare]; !ok {
		p.add("code.compare %q: want \"auto\", \"stat\" or \"content\"", cs.Compare)
	}
	if cs.Workers < 0 {
		p.add("code.workers %d: want a positive number", cs.Workers)
	}
}

func (s *ServiceSection) validate(p *problems) {
	if s.HealthURL != "" {
		if u, err := url.Parse(s.HealthURL); err != nil || (u.Scheme != "http" && u.Scheme != "https") {
			p.add("service.health_url %q: want an http(s) URL", s.HealthURL)
		}
	}
}

func (c *EnvironmentConfig) drivers() *Drivers {
	if c.Drivers == nil {
		return DefaultDrivers()
	}
	return c.Drivers
}

// problems collects a config's problems, each naming its key.
type problems []string

func (p *problems) add(format string, args ...any) { *p = append(*p, fmt.Sprintf(format, args...)) }

// require adds "missing required key K" for each pair (key, value) whose value is empty.
func (p *problems) require(pairs ...any) {
	for i := 0; i+1 < len(pairs); i += 2 {
		empty := false
		switch v := pairs[i+1].(type) {
		case string:
			empty = v == ""
		case []string:
			empty = len(v) == 0
		}
		if empty {
			p.add("missing required key %s", pairs[i])
		}
	}
}

func (p problems) err(c *EnvironmentConfig) error {
	if len(p) == 0 {
		return nil
	}
	return c.errorf("%s", strings.Join(p, "; "))
}

// validatePhysical checks [cluster] and the [backup] keys of strategy physical.
func (c *EnvironmentConfig) validatePhysical(p *problems) {
	phys := c.Database.Strategy == string(Physical)
	switch c.Backup.Type {
	case "", "dump":
		if phys {
			p.add("backup.type %q: strategy physical restores a physical backup: want \"pgbackrest\" or \"basebackup\"", c.Backup.Type)
		}
	case "pgbackrest":
		if !phys {
			p.add("backup.type \"pgbackrest\" needs database.strategy = \"physical\"")
		}
		p.require("backup.stanza", c.Backup.Stanza)
		if c.Backup.ProcessMax < 0 {
			p.add("backup.process_max %d: want 1 or more (0: the CPU count)", c.Backup.ProcessMax)
		}
	case "basebackup":
		if !phys {
			p.add("backup.type \"basebackup\" needs database.strategy = \"physical\"")
		}
		p.require("backup.dir", c.Backup.Dir)
		if c.Backup.Stanza != "" || c.Backup.Config != "" || c.Backup.Delta != nil || c.Backup.DeltaChecksums || c.Backup.SyncOnce || c.Backup.ProcessMax != 0 {
			p.add("backup.stanza, backup.config, backup.delta, backup.delta_checksums, backup.sync_once and backup.process_max are pgBackRest's: not with backup.type \"basebackup\"")
		}
	default:
		p.add("backup.type %q: want \"dump\", \"pgbackrest\" or \"basebackup\"", c.Backup.Type)
	}
	if !phys {
		if c.Backup.Stanza != "" || c.Backup.Config != "" || c.Backup.Delta != nil || c.Backup.DeltaChecksums || c.Backup.SyncOnce || c.Backup.ProcessMax != 0 || c.Backup.InfoTimeout.Duration != 0 {
			p.add("backup.stanza, backup.config, backup.delta, backup.delta_checksums, backup.sync_once, backup.process_max and backup.info_timeout need database.strategy = \"physical\"")
		}
		if c.Cluster != nil {
			p.add("cluster: the [cluster] section needs database.strategy = \"physical\"")
		}
		return
	}
	if cl := c.Cluster; cl != nil && cl.Passwords != "" && cl.Passwords != "keep" && cl.Passwords != "clear" {
		p.add("cluster.passwords %q: want \"keep\" or \"clear\"", cl.Passwords)
	}
	if cl := c.Cluster; cl != nil && cl.Seed != nil && *cl.Seed && (c.Backup.Type != "pgbackrest" || (c.Backup.Delta != nil && !*c.Backup.Delta)) {
		p.add("cluster.seed: seeding the other slot is for the next delta: it needs backup.type \"pgbackrest\" with backup.delta")
	}
	if c.Role == RoleExperimental {
		p.add("database.strategy \"physical\": an experimental environment deploys onto a logical copy; physical rebuilds are for role staging")
	}
	if c.Cluster == nil {
		p.add("missing required key cluster.dir (strategy physical needs a [cluster] section)")
		return
	}
	cl := c.Cluster
	p.require("cluster.dir", cl.Dir)
	if cl.Port <= 0 || cl.Port > 65535 {
		p.add("cluster.port %d: want the live TCP port of the staging cluster (required)", cl.Port)
	}
	if cl.SidePort < 0 || cl.SidePort > 65535 || (cl.SidePort != 0 && cl.SidePort == cl.Port) {
		p.add("cluster.side_port %d: want a TCP port other than cluster.port", cl.SidePort)
	}
	if strings.ContainsAny(cl.Dir, "'\"\\\n") {
		p.add("cluster.dir %q: no quotes or backslashes, please", cl.Dir)
	}
	*p = append(*p, physical.CheckSettings("cluster.settings", cl.Settings)...)
	for _, k := range cl.Keep {
		if k == c.Database.Name || k == c.Backup.Database {
			p.add("cluster.keep: %q is the environment's own database", k)
		}
	}
	for _, k := range cl.Carry {
		switch {
		case k == c.Database.Name || k == c.Backup.Database || k == "postgres" || k == "template0" || k == "template1" || k == "":
			p.add("cluster.carry: %q cannot be carried over", k)
		case slices.Contains(cl.Keep, k):
			p.add("cluster.carry: %q is in cluster.keep too (keep takes production's copy, carry the live cluster's)", k)
		}
	}
}

// RequireBackups checks the [backup] keys a rebuild needs (a deploy does without).
func (c *EnvironmentConfig) RequireBackups() error {
	var p problems
	if c.Backup.Type == "pgbackrest" {
		p.require("backup.stanza", c.Backup.Stanza, "backup.database", c.Backup.Database)
		return p.err(c)
	}
	p.require("backup.dir", c.Backup.Dir, "backup.database", c.Backup.Database)
	return p.err(c)
}

func (c *EnvironmentConfig) resolve() {
	r := func(p *string) { *p = ResolvePath(c.dir, *p) }
	r(&c.LockFile)
	r(&c.StateDir)
	r(&c.Backup.Dir)
	r(&c.Code.Source)
	r(&c.Code.Releases)
	r(&c.Code.Current)
	r(&c.Database.BinDir)
	r(&c.Metrics.Textfile)
	r(&c.Backup.Config)
	if c.Cluster != nil {
		r(&c.Cluster.Dir)
		r(&c.Cluster.BinDir)
	}
	if c.Preflight != nil {
		r(&c.Preflight.StagingStateDir)
	}
	if c.Code.Git != "" && !strings.Contains(c.Code.Git, ":") {
		r(&c.Code.Git) // a local repository path
	}
	for i := range c.Database.PostRestore {
		r(&c.Database.PostRestore[i])
	}
	for k, v := range c.Code.Overlay {
		c.Code.Overlay[k] = ResolvePath(c.dir, v)
	}
}
