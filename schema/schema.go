package schema

import (
	"context"
	"errors"
	"time"
)

// Target is a database and the migrations folder of the code that will run against it.
type Target struct {
	DSN string // postgres:// URL of the database
	Dir string // folder of golang-migrate files: <version>_<name>.up.sql / .down.sql
	// Role is the role the migrations run as; "" keeps the DSN's user. Every connection
	// sets it at start-up (the startup parameter role, as options=-c role=... would, so
	// RESET ROLE and DISCARD ALL come back to it), and it is set again (SET ROLE, quoted)
	// before each migration and each write of the version table: every statement of every
	// migration, and golang-migrate's bookkeeping, run with the role's privileges, and what
	// they create belongs to the role. Status, Plan, Upgrade and Force all use it. The
	// DSN's user must be allowed to SET ROLE to it (a superuser, or a member of the role);
	// give the role the ownership of the database (ALTER DATABASE ... OWNER TO) and of the
	// objects the migrations change.
	//
	// SET ROLE guards against mistakes (a migration that drops or alters what is not its
	// database's), not against a hostile one: while the DSN's user is a superuser, a
	// migration can switch back (SET ROLE NONE) within its own file. Where migrations are
	// not trusted, give a DSN that logs in as the unprivileged role itself.
	Role string
	// LockWait bounds each wait of the migrations' statements for a lock (PostgreSQL's
	// lock_timeout, set for every connection): a migration that waits longer fails
	// (ErrMigrationFailed, its transaction rolled back, the version left dirty) instead of
	// holding every later query on that table in the queue behind it. It applies to
	// golang-migrate's advisory lock too. 0: the server's lock_timeout (none by default).
	LockWait time.Duration
}

// Migration is one migration file pair.
type Migration struct {
	Version uint   `json:"version"`
	Name    string `json:"name"`
	Path    string `json:"path"` // the .up file
}

// Status is a database's patch level against a migrations folder.
type Status struct {
	Version    uint        `json:"version"` // applied version; 0: none
	Dirty      bool        `json:"dirty"`   // a migration failed half-way
	Latest     uint        `json:"latest"`  // newest version in the folder
	Pending    []Migration `json:"pending"` // would run, in order
	HasVersion bool        `json:"has_version"`
}

// Applied is a migration that ran, with its duration.
type Applied struct {
	Migration
	Duration time.Duration `json:"duration"`
}

// Result describes an upgrade.
type Result struct {
	From    uint      `json:"from"`
	To      uint      `json:"to"`
	Applied []Applied `json:"applied"`
}

// Upgrader brings a database to the patch level of a migrations folder.
type Upgrader interface {
	// Status reports the database's version, dirty flag and pending migrations; it
	// changes nothing (a dry run's plan is its Pending list).
	Status(ctx context.Context, t Target) (*Status, error)
	// Upgrade applies the pending migrations one at a time, timing each, then checks that
	// the database version equals the folder's latest. A dirty database, or one ahead of
	// the folder, is an error before anything runs.
	Upgrade(ctx context.Context, t Target) (*Result, error)
}

// Errors callers test with errors.Is.
var (
	ErrDirty      = errors.New("database is dirty")
	ErrAhead      = errors.New("database is ahead of the code")
	ErrMismatch   = errors.New("database patch level does not match the code")
	ErrMigrations = errors.New("bad migrations folder")
	// ErrMigrationFailed marks a migration that PostgreSQL rejected or that was interrupted;
	// the error is a *MigrationError.
	ErrMigrationFailed = errors.New("migration failed")
	// ErrLockTimeout reports that golang-migrate's advisory lock on the database was held
	// by someone else for longer than Config.LockTimeout.
	ErrLockTimeout = errors.New("timed out waiting for the migration lock")
)
