package staging

import (
	"context"
	"fmt"

	"github.com/restage/restage/dbrestore"
)

// PreflightSection is [preflight] of a production config (DESIGN.md): the limits a
// promote checks on production before anything stops.
type PreflightSection struct {
	MaxTransactionAge Duration `toml:"max_transaction_age"` // "": 60s
	MaxReplicationLag Duration `toml:"max_replication_lag"` // "": 60s
	// SystemUsers are the users whose connections are expected: the service's own
	// database user, monitoring, the admin DSN's user. Any other user's connection
	// refuses the promote. Absent: ["postgres"].
	SystemUsers      []string `toml:"system_users"`
	MaxMigrationTime Duration `toml:"max_migration_time"` // "": 15s
	// MaxLockWait bounds each wait of a migration for a lock on production (its
	// lock_timeout); "": 5s.
	MaxLockWait Duration `toml:"max_lock_wait"`
	// StagingStateDir is staging's state_dir: its history's migration timings gate the
	// promote. Required.
	StagingStateDir string `toml:"staging_state_dir"`
}

// roleName is the config's role, "staging" when unset.
func (c *EnvironmentConfig) roleName() string {
	if c.Role == "" {
		return RoleStaging
	}
	return c.Role
}

// validateProduction adds what a production config must and must not have: it releases
// code and runs migrations in place, so every key about restoring, copying or masking
// a database is refused.
func (c *EnvironmentConfig) validateProduction(p *problems) {
	if c.Preflight == nil {
		p.add("missing required section [preflight] (a production config's limits)")
	} else {
		p.require("preflight.staging_state_dir", c.Preflight.StagingStateDir)
		for _, u := range c.Preflight.SystemUsers {
			if !validRole(u) {
				p.add("preflight.system_users: %q is not a user name", u)
			}
		}
	}
	refuse := func(key string, set bool) {
		if set {
			p.add("%s: a production config restores, copies and masks nothing (role = %q)", key, RoleProduction)
		}
	}
	refuse("backup", c.Backup != (BackupSection{}))
	refuse("database.strategy", c.Database.Strategy != "")
	refuse("database.clones", len(c.Database.Clones) > 0)
	refuse("database.post_restore", len(c.Database.PostRestore) > 0)
	refuse("database.post_restore_rewrite", c.Database.PostRestoreRewrite != nil)
	refuse("database.jobs", c.Database.Jobs != 0)
	refuse("database.restore_dsn", c.Database.RestoreDSN != "")
	refuse("database.restore_timeout", c.Database.RestoreTimeout.Duration != 0)
	refuse("mask", c.Mask != nil)
	refuse("cluster", c.Cluster != nil)
}

// ValidateProduction checks a production config as LoadProduction does: role =
// "production", [preflight], and none of the keys of a restore.
func (c *EnvironmentConfig) ValidateProduction() error { return c.validate(true) }

// LoadProduction reads and checks a production config (role = "production", for the
// train's promote) strictly, as LoadEnvironment does the others; a config of another
// role is refused (ErrConfig, naming the role).
func LoadProduction(path string, drivers *Drivers) (*EnvironmentConfig, error) {
	return load(path, drivers, (*EnvironmentConfig).ValidateProduction)
}

// OpenProduction wires a production Rebuilder from a production config: its only flow
// is Promote (Run, Deploy and Plan refuse it). Its databases refuse every restore,
// drop, rename, swap and clone, whatever asks (rule 8); the preflight reads the
// production server's sessions and standbys and staging's history.
func OpenProduction(c *EnvironmentConfig, opts OpenOptions) (*Rebuilder, error) {
	if err := c.ValidateProduction(); err != nil {
		return nil, err
	}
	// Open wires the parts; it checks the config as a staging one, so give it a copy
	// that passes, then put the production guard in front of the server.
	cc := *c
	cc.Role, cc.Preflight = RoleStaging, nil
	if len(cc.Database.ProductionIDs) == 0 && cc.Backup.Dir == "" {
		cc.Database.ProductionIDs = []string{"1"} // never used: nothing is changed on this server
	}
	r, err := Open(&cc, opts)
	if err != nil {
		return nil, err
	}
	srv, ok := r.cfg.Databases.(*dbrestore.Server)
	if !ok {
		r.Close()
		return nil, fmt.Errorf("production databases: %T is not a dbrestore.Server", r.cfg.Databases)
	}
	pf := c.Preflight
	r.cfg.Databases = productionDatabases{srv}
	r.cfg.Role = RoleProduction
	r.cfg.Production = nil
	r.cfg.Preflight = &Preflight{Activity: srv, MaxTransactionAge: pf.MaxTransactionAge.Duration,
		MaxReplicationLag: pf.MaxReplicationLag.Duration, SystemUsers: pf.SystemUsers,
		MaxMigrationTime: pf.MaxMigrationTime.Duration, MaxLockWait: pf.MaxLockWait.Duration,
		StagingStateDir: pf.StagingStateDir}
	if c.Notify.Topic == "" {
		r.cfg.Topic = c.Environment + "-promote"
	}
	return r, nil
}

// productionDatabases is a production server as a promote sees it: it says which
// databases exist and refuses every change to a whole database (rule 8). Only the
// migrations, through the schema upgrader, change production.
type productionDatabases struct{ srv *dbrestore.Server }

var _ Databases = productionDatabases{}

func refusedOnProduction(op, name string) error {
	return fmt.Errorf("%w: %s %q: a production environment only gets code and migrations in place", dbrestore.ErrProduction, op, name)
}

// Exists reports whether name exists on production.
func (p productionDatabases) Exists(ctx context.Context, name string) (bool, error) {
	return p.srv.Exists(ctx, name)
}

// Restore is refused.
func (p productionDatabases) Restore(_ context.Context, _ *dbrestore.Backup, opts dbrestore.RestoreOptions) (*dbrestore.RestoreResult, error) {
	return nil, refusedOnProduction("restore into", opts.Target)
}

// Drop is refused.
func (p productionDatabases) Drop(_ context.Context, name string) error {
	return refusedOnProduction("drop", name)
}

// Rename is refused.
func (p productionDatabases) Rename(_ context.Context, from, _ string) error {
	return refusedOnProduction("rename", from)
}

// Swap is refused.
func (p productionDatabases) Swap(_ context.Context, live, _, _ string) error {
	return refusedOnProduction("swap", live)
}

// Clone is refused.
func (p productionDatabases) Clone(_ context.Context, template, _ string) error {
	return refusedOnProduction("clone", template)
}

// AllowConnections does nothing: a promote never refuses connections, so a killed one
// leaves none to allow again.
func (p productionDatabases) AllowConnections(context.Context, string) error { return nil }

// GuardProduction refuses: this is production (a repair, which asks first, then only
// puts the release back).
func (p productionDatabases) GuardProduction(context.Context, ...uint64) error {
	return fmt.Errorf("%w: this is the production server", dbrestore.ErrProduction)
}

// GuardSource refuses.
func (p productionDatabases) GuardSource(context.Context, *dbrestore.Backup) error {
	return fmt.Errorf("%w: this is the production server", dbrestore.ErrProduction)
}
