package schema

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/golang-migrate/migrate/v4"
	"github.com/golang-migrate/migrate/v4/database"
	pgxmigrate "github.com/golang-migrate/migrate/v4/database/pgx/v5"
	"github.com/golang-migrate/migrate/v4/source/file"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/stdlib"

	"github.com/restage/restage/internal/redact"
)

// Log keys used by MigrateUpgrader.
const (
	LogKeyVersion  = "version"
	LogKeyName     = "name"
	LogKeyFile     = "file"
	LogKeyDuration = "duration"
	LogKeyFrom     = "from"
	LogKeyTo       = "to"
	LogKeyPending  = "pending"
)

// DefaultApplicationName is the application_name of MigrateUpgrader's connections unless
// the DSN sets one.
const DefaultApplicationName = "restage-schema"

// Config configures a MigrateUpgrader. The zero value is ready to use.
type Config struct {
	// Logger receives one record per applied migration, with its duration.
	// Nil: slog.Default().
	Logger *slog.Logger
	// LockTimeout bounds the wait for golang-migrate's advisory lock on the database
	// (another migration run holds it). Zero: 1 minute.
	LockTimeout time.Duration
	// MigrationsTable is golang-migrate's version table. Empty: "schema_migrations"
	// in the connection's current schema.
	MigrationsTable string
	// MigrationTimeout bounds each migration; one that runs longer is cancelled by
	// PostgreSQL, fails, and leaves the database dirty at its version. Zero: no bound.
	MigrationTimeout time.Duration
	// OnApplied, if set, is called after each migration is applied, before the next one
	// starts (progress reporting; it runs on Upgrade's goroutine).
	OnApplied func(Applied)
}

// MigrateUpgrader is an Upgrader that runs golang-migrate (pgx/v5 driver, file source).
// Every call opens its own connection and closes it before returning, so the database can
// be renamed or dropped right after. It holds no state between calls and is safe for
// concurrent use; golang-migrate's advisory lock serialises runs on one database.
//
// An Applied migration's Duration is the wall time of its Steps(1): the migration plus
// golang-migrate's lock and version bookkeeping (a few milliseconds).
type MigrateUpgrader struct {
	log         *slog.Logger
	lockTimeout time.Duration
	table       string
	onApplied   func(Applied)

	migrationTimeout time.Duration
}

var _ Upgrader = (*MigrateUpgrader)(nil)

// New returns a MigrateUpgrader configured by cfg.
func New(cfg Config) (*MigrateUpgrader, error) {
	if cfg.LockTimeout < 0 {
		return nil, fmt.Errorf("schema: negative LockTimeout %v", cfg.LockTimeout)
	}
	if cfg.MigrationTimeout < 0 {
		return nil, fmt.Errorf("schema: negative MigrationTimeout %v", cfg.MigrationTimeout)
	}
	if strings.ContainsAny(cfg.MigrationsTable, "\".\x00") {
		return nil, fmt.Errorf("schema: MigrationsTable %q: want a plain table name", cfg.MigrationsTable)
	}
	u := &MigrateUpgrader{
		log:         cfg.Logger,
		lockTimeout: cfg.LockTimeout,
		table:       cfg.MigrationsTable,
		onApplied:   cfg.OnApplied,

		migrationTimeout: cfg.MigrationTimeout,
	}
	if u.log == nil {
		u.log = slog.Default()
	}
	if u.lockTimeout == 0 {
		u.lockTimeout = time.Minute
	}
	if u.table == "" {
		u.table = pgxmigrate.DefaultMigrationsTable
	}
	return u, nil
}

// Status reports the database's version, dirty flag, the folder's latest version and the
// pending migrations. It reads the version table directly and changes nothing (it does not
// even create the version table). The folder is validated first.
func (u *MigrateUpgrader) Status(ctx context.Context, t Target) (*Status, error) {
	_, st, err := u.statusOf(ctx, t)
	return st, err
}

// call is what every call of MigrateUpgrader starts from: the target's validated folder
// and connection configuration, and the secrets its errors must not show.
type call struct {
	folder *Folder
	cfg    *pgx.ConnConfig
	sec    secrets
}

// prepare validates t's folder, then its DSN and role; nothing touches the database.
func prepare(t Target) (*call, error) {
	folder, err := ReadFolder(t.Dir)
	if err != nil {
		return nil, err
	}
	cfg, sec, err := targetConfig(t)
	if err != nil {
		return nil, err
	}
	return &call{folder: folder, cfg: cfg, sec: sec}, nil
}

// statusOf prepares the call and reads the database's status against the folder.
func (u *MigrateUpgrader) statusOf(ctx context.Context, t Target) (*call, *Status, error) {
	c, err := prepare(t)
	if err != nil {
		return nil, nil, err
	}
	if err := ctx.Err(); err != nil {
		return nil, nil, err
	}
	st, err := u.status(ctx, c.cfg, c.folder)
	if err != nil {
		return nil, nil, c.sec.wrap(err)
	}
	return c, st, nil
}

// checkedStatus is statusOf, refusing a database Upgrade would refuse before running
// anything (dirty, or ahead of the folder).
func (u *MigrateUpgrader) checkedStatus(ctx context.Context, t Target) (*call, *Status, error) {
	c, st, err := u.statusOf(ctx, t)
	if err != nil {
		return nil, nil, err
	}
	if err := check(st, c.folder, c.cfg.Database, u.table); err != nil {
		return nil, nil, err
	}
	return c, st, nil
}

// withSession runs fn on a golang-migrate session over c's database and closes it before
// it returns (a close error is returned when fn succeeded).
func (u *MigrateUpgrader) withSession(ctx context.Context, c *call, fn func(s *session) error) (err error) {
	s, err := u.open(ctx, c.cfg, c.folder)
	if err != nil {
		return c.sec.wrap(err)
	}
	defer func() {
		if cerr := s.close(ctx); cerr != nil && err == nil {
			err = c.sec.wrap(cerr)
		}
	}()
	return fn(s)
}

func (u *MigrateUpgrader) status(ctx context.Context, cfg *pgx.ConnConfig, folder *Folder) (*Status, error) {
	conn, err := pgx.ConnectConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("schema: connect to %s%s: %w", cfg.Database, asRole(cfg), err)
	}
	defer conn.Close(context.WithoutCancel(ctx))

	st := &Status{Latest: folder.Latest()}
	var exists bool
	q := `SELECT to_regclass(quote_ident(current_schema()) || '.' || quote_ident($1)) IS NOT NULL`
	if err := conn.QueryRow(ctx, q, u.table).Scan(&exists); err != nil {
		return nil, fmt.Errorf("schema: look for table %s in %s: %w", u.table, cfg.Database, err)
	}
	if exists {
		var v int64
		var dirty bool
		q := `SELECT version, dirty FROM ` + pgx.Identifier{u.table}.Sanitize() + ` LIMIT 1`
		err := conn.QueryRow(ctx, q).Scan(&v, &dirty)
		switch {
		case errors.Is(err, pgx.ErrNoRows):
		case err != nil:
			return nil, fmt.Errorf("schema: read version of %s: %w", cfg.Database, err)
		case v >= 0:
			st.Version, st.Dirty, st.HasVersion = uint(v), dirty, true
		default: // -1: golang-migrate's "no version", possibly dirty
			st.Dirty = dirty
		}
	}
	st.Pending = folder.pending(st.Version, st.HasVersion)
	return st, nil
}

// StatusAt is the status of a database whose version table says version (hasVersion
// false: no version) and dirty, against folder, as Status would report it for that
// database; and the error Upgrade would give for it before running anything (dirty, or
// ahead of the code), naming the database as db. For a version read elsewhere, e.g. from
// a backup's copy of the version table.
func (f *Folder) StatusAt(version uint, hasVersion, dirty bool, db string) (*Status, error) {
	st := &Status{Version: version, HasVersion: hasVersion, Dirty: dirty, Latest: f.Latest(),
		Pending: f.pending(version, hasVersion)}
	return st, check(st, f, db, pgxmigrate.DefaultMigrationsTable)
}

// Table returns the name of the version table the upgrader reads and writes.
func (u *MigrateUpgrader) Table() string { return u.table }

// check returns the error Upgrade gives for st before running anything: dirty, or ahead of
// (or unknown to) the folder. table is the version table, for the advice.
func check(st *Status, folder *Folder, db, table string) error {
	if st.Dirty {
		return dirtyError(st.Version, st.HasVersion, folder, db, table)
	}
	if !st.HasVersion {
		return nil
	}
	if st.Version > st.Latest {
		return fmt.Errorf("%w: database %s is at %d, code knows %d (%s): deploy code with its migrations, or restore the database",
			ErrAhead, db, st.Version, st.Latest, folder.Dir)
	}
	if !folder.Has(st.Version) {
		return fmt.Errorf("%w: database %s is at %d, a version the code's migrations folder %s does not have (it knows %s)",
			ErrAhead, db, st.Version, folder.Dir, versionList(folder))
	}
	return nil
}

func versionList(folder *Folder) string {
	var parts []string
	for i, m := range folder.Migrations {
		if len(folder.Migrations) > 8 && i == 3 {
			parts = append(parts, "…")
		}
		if len(folder.Migrations) > 8 && i >= 3 && i < len(folder.Migrations)-3 {
			continue
		}
		parts = append(parts, fmt.Sprint(m.Version))
	}
	return strings.Join(parts, ", ")
}

// dirtyError explains a dirty database and the exact statement (or Force call) that
// clears it, table being the version table.
func dirtyError(version uint, hasVersion bool, folder *Folder, db, table string) error {
	prev := previous(folder, version)
	if !hasVersion {
		return &sentinelError{ErrDirty, fmt.Sprintf("schema: database %s is dirty with no version: "+
			"fix the database by hand, then %s", db, forceAdvice(table, -1))}
	}
	file := fmt.Sprintf("migration %d", version)
	if m, ok := folder.find(version); ok {
		file = m.Path
	}
	return &sentinelError{ErrDirty, fmt.Sprintf("schema: database %s is dirty at version %d (%s did not complete): "+
		"fix the database by hand, then %s if you completed that migration, or %s if you undid it",
		db, version, file, forceAdvice(table, int(version)), forceAdvice(table, prev))}
}

// forceAdvice says how an operator sets the version table to version (-1: none) once the
// database is fixed: the SQL statement, and the Force call for a Go program.
func forceAdvice(table string, version int) string {
	if version < 0 {
		return fmt.Sprintf("run TRUNCATE %s (Force(ctx, target, -1) from Go)", table)
	}
	return fmt.Sprintf("run UPDATE %s SET version = %d, dirty = false (Force(ctx, target, %d) from Go)", table, version, version)
}

// previous returns the folder's version before version, or -1 (golang-migrate's "none").
func previous(folder *Folder, version uint) int {
	prev := -1
	for _, m := range folder.Migrations {
		if m.Version < version {
			prev = int(m.Version)
		}
	}
	return prev
}

// sentinelError is an error with its own text that matches a sentinel with errors.Is.
type sentinelError struct {
	sentinel error
	text     string
}

// Error returns the error's own text.
func (e *sentinelError) Error() string { return e.text }

// Unwrap returns the sentinel the error matches.
func (e *sentinelError) Unwrap() error { return e.sentinel }

// Plan returns the migrations Upgrade would run, in order, without running them; it fails
// as Upgrade would for a bad folder or a dirty or ahead database.
func (u *MigrateUpgrader) Plan(ctx context.Context, t Target) ([]Migration, error) {
	_, st, err := u.checkedStatus(ctx, t)
	if err != nil {
		return nil, err
	}
	return st.Pending, nil
}

// Upgrade validates the folder, refuses a dirty database or one ahead of the folder, then
// applies the pending migrations one at a time (golang-migrate Steps(1)), timing each, and
// checks that the database ends at the folder's latest version (ErrMismatch otherwise).
//
// ctx bounds the whole upgrade, the running migration included: when ctx ends between
// migrations, Upgrade returns ctx's error naming the next migration, with the migrations
// applied so far in the Result, and leaves the database clean at the last one; when it
// ends while a migration runs, PostgreSQL is asked to cancel that migration's statement
// at once, and Upgrade returns a *MigrationError naming the file that also matches ctx's
// error (errors.Is(err, context.DeadlineExceeded)); the database is then left dirty at
// that migration's version (a migration without BEGIN/COMMIT of its own is rolled back as
// a whole). A failing migration returns a *MigrationError naming the file and
// PostgreSQL's message and position.
func (u *MigrateUpgrader) Upgrade(ctx context.Context, t Target) (*Result, error) {
	c, st, err := u.checkedStatus(ctx, t)
	if err != nil {
		return nil, err
	}
	res := &Result{From: st.Version, To: st.Version}
	if len(st.Pending) == 0 {
		u.log.InfoContext(ctx, "schema: up to date", LogKeyVersion, st.Version)
		return res, nil
	}
	u.log.InfoContext(ctx, "schema: upgrading", LogKeyFrom, st.Version, LogKeyTo, c.folder.Latest(), LogKeyPending, len(st.Pending))
	err = u.withSession(ctx, c, func(s *session) error { return u.apply(ctx, s, c, st, res) })
	return res, err
}

// apply runs st's pending migrations one at a time on s, recording each in res, then
// checks that the database is at the folder's latest version.
func (u *MigrateUpgrader) apply(ctx context.Context, s *session, c *call, st *Status, res *Result) error {
	for i, mig := range st.Pending {
		if err := ctx.Err(); err != nil {
			return fmt.Errorf("schema: stopped before %s (%d of %d pending migrations applied; database %s is clean at version %s): %w",
				mig.Path, i, len(st.Pending), c.cfg.Database, versionText(res.To, i > 0 || st.HasVersion), err)
		}
		start := time.Now()
		err := s.step(ctx)
		d := time.Since(start)
		if err != nil {
			return c.sec.wrap(s.stepError(ctx, mig, c.folder, err))
		}
		v, dirty, verr := s.m.Version()
		if verr != nil || dirty || v != mig.Version {
			return c.sec.wrap(s.stepError(ctx, mig, c.folder, fmt.Errorf("after the migration the version is %d (dirty %v, err %v), want %d", v, dirty, verr, mig.Version)))
		}
		a := Applied{Migration: mig, Duration: d}
		res.Applied = append(res.Applied, a)
		res.To = mig.Version
		u.log.InfoContext(ctx, "schema: applied migration", LogKeyVersion, mig.Version, LogKeyName, mig.Name, LogKeyDuration, d)
		if u.onApplied != nil {
			u.onApplied(a)
		}
	}
	v, dirty, err := s.m.Version()
	if err != nil {
		return c.sec.wrap(fmt.Errorf("schema: read version of %s after upgrade: %w", c.cfg.Database, err))
	}
	if dirty || v != c.folder.Latest() {
		return fmt.Errorf("%w: database %s is at %d (dirty %v), code's latest is %d", ErrMismatch, c.cfg.Database, v, dirty, c.folder.Latest())
	}
	return nil
}

func versionText(v uint, has bool) string {
	if !has {
		return "none"
	}
	return fmt.Sprint(v)
}

// Force sets the database's version to version and clears the dirty flag, without running
// anything: the explicit, separate step after fixing a dirty database by hand. version must
// be one of the folder's versions, or -1 for "no migration applied".
func (u *MigrateUpgrader) Force(ctx context.Context, t Target, version int) error {
	c, err := prepare(t)
	if err != nil {
		return err
	}
	if version < -1 || (version >= 0 && !c.folder.Has(uint(version))) {
		return fmt.Errorf("%w: cannot force version %d: not a migration in %s (it knows %s; -1 means none)",
			ErrMigrations, version, c.folder.Dir, versionList(c.folder))
	}
	return u.withSession(ctx, c, func(s *session) error {
		if err := s.m.Force(version); err != nil {
			return c.sec.wrap(fmt.Errorf("schema: force %s to version %d: %w", c.cfg.Database, version, err))
		}
		u.log.WarnContext(ctx, "schema: forced version", LogKeyVersion, version)
		return nil
	})
}

// MigrationError is a migration that failed: PostgreSQL rejected it, or it was interrupted.
type MigrationError struct {
	Migration Migration
	// Line and Column locate PostgreSQL's error position in the file (1-based; 0: unknown).
	Line, Column int
	// Dirty reports that the database is left marked dirty at Migration.Version.
	Dirty bool
	// Stopped is the error of Upgrade's context (context.Canceled or
	// context.DeadlineExceeded) when its end stopped the migration; nil otherwise.
	Stopped error
	// Advice says what to do next.
	Advice string
	// Err is the cause: a *pgconn.PgError when PostgreSQL rejected the migration.
	Err error
}

// Error names the file, the position and PostgreSQL's message, and says what to do.
func (e *MigrationError) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "schema: migration %s failed", e.Migration.Path)
	if e.Stopped != nil {
		fmt.Fprintf(&b, ": stopped because its context ended (%v)", e.Stopped)
	}
	if e.Line > 0 {
		fmt.Fprintf(&b, " at line %d, column %d", e.Line, e.Column)
	}
	fmt.Fprintf(&b, ": %s", errText(e.Err))
	if e.Advice != "" {
		fmt.Fprintf(&b, "; %s", e.Advice)
	}
	return b.String()
}

// Unwrap returns ErrMigrationFailed, ErrDirty when the database is left dirty, the
// context's error when it stopped the migration, and the cause.
func (e *MigrationError) Unwrap() []error {
	errs := []error{ErrMigrationFailed}
	if e.Dirty {
		errs = append(errs, ErrDirty)
	}
	if e.Stopped != nil {
		errs = append(errs, e.Stopped)
	}
	return append(errs, e.Err)
}

func errText(err error) string {
	var pe *pgconn.PgError
	if !errors.As(err, &pe) {
		return err.Error()
	}
	s := pe.Severity + ": " + redact.Field(pe.Message) + " (SQLSTATE " + pe.Code + ")"
	if pe.Detail != "" {
		s += "; DETAIL: " + redact.Field(pe.Detail)
	}
	if pe.Hint != "" {
		s += "; HINT: " + pe.Hint
	}
	if pe.Where != "" {
		s += "; CONTEXT: " + redact.Field(pe.Where)
	}
	return s
}

// session is one golang-migrate instance over one connection.
type session struct {
	m      *migrate.Migrate
	db     *sql.DB
	dbName string
	cfg    *pgx.ConnConfig
	table  string
	role   string // Target.Role; "": none

	migrationTimeout time.Duration
	lockTimeout      time.Duration

	mu    sync.Mutex
	conns []*pgconn.PgConn
}

// open connects to the database and builds golang-migrate over the folder.
func (u *MigrateUpgrader) open(ctx context.Context, cfg *pgx.ConnConfig, folder *Folder) (*session, error) {
	s := &session{lockTimeout: u.lockTimeout, dbName: cfg.Database, cfg: cfg, table: u.table, role: cfg.RuntimeParams[roleParam],
		migrationTimeout: u.migrationTimeout}
	s.db = stdlib.OpenDB(*cfg, stdlib.OptionAfterConnect(func(_ context.Context, c *pgx.Conn) error {
		s.mu.Lock()
		s.conns = append(s.conns, c.PgConn())
		s.mu.Unlock()
		return nil
	}))
	s.db.SetMaxIdleConns(1)

	// Connect with ctx first, so that a bad DSN or a dead server fails fast and cancellably.
	if err := s.db.PingContext(ctx); err != nil {
		s.hardClose(ctx)
		return nil, fmt.Errorf("schema: connect to %s%s: %w", cfg.Database, asRole(cfg), err)
	}
	var drv database.Driver
	err := s.guard(ctx, func() error {
		var err error
		drv, err = pgxmigrate.WithInstance(s.db, &pgxmigrate.Config{MigrationsTable: u.table, StatementTimeout: u.migrationTimeout})
		return err
	})
	if err != nil {
		s.hardClose(ctx)
		return nil, fmt.Errorf("schema: prepare golang-migrate on %s: %w", cfg.Database, unwrapDB(err))
	}
	srcURL := (&url.URL{Scheme: "file", Path: folder.Dir}).String()
	src, err := (&file.File{}).Open(srcURL)
	if err != nil {
		drv.Close()
		s.hardClose(ctx)
		return nil, fmt.Errorf("%w: open %s: %w", ErrMigrations, folder.Dir, err)
	}
	m, err := migrate.NewWithInstance("file", src, "pgx5", &guardedDriver{Driver: drv, s: s, ctx: ctx})
	if err != nil {
		src.Close()
		drv.Close()
		s.hardClose(ctx)
		return nil, fmt.Errorf("schema: golang-migrate: %w", err)
	}
	// Our guard bounds the lock wait (and cancels the waiting query); golang-migrate's own
	// timeout would abandon a goroutine blocked on the connection, so keep it out of the way.
	m.LockTimeout = u.lockTimeout + time.Hour
	m.Log = migrateLogger{u.log}
	s.m = m
	return s, nil
}

// step applies one migration (golang-migrate Steps(1), which runs it without a context).
// When ctx ends while it runs, PostgreSQL is asked to cancel whatever the session's
// connections are running, so the migration stops within moments; step returns once that
// is done, so that no cancel request can reach a later query.
func (s *session) step(ctx context.Context) error {
	fired := make(chan struct{})
	stop := context.AfterFunc(ctx, func() {
		defer close(fired)
		s.cancelQueries(ctx)
	})
	err := s.m.Steps(1)
	if !stop() {
		<-fired
	}
	return err
}

// cancelQueries sends PostgreSQL a cancel request for each of the session's connections
// (each bounded by 10 seconds).
func (s *session) cancelQueries(ctx context.Context) {
	s.mu.Lock()
	conns := append([]*pgconn.PgConn(nil), s.conns...)
	s.mu.Unlock()
	for _, c := range conns {
		cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
		_ = c.CancelRequest(cctx)
		cancel()
	}
}

// close closes golang-migrate's source and database, then any connection left open.
func (s *session) close(ctx context.Context) error {
	var errs []error
	if s.m != nil {
		srcErr, dbErr := s.m.Close()
		errs = append(errs, srcErr, dbErr)
	}
	s.hardClose(ctx)
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("schema: close: %w", err)
	}
	return nil
}

// hardClose closes every connection the session opened that is still open.
func (s *session) hardClose(ctx context.Context) {
	s.db.Close()
	s.mu.Lock()
	conns := s.conns
	s.mu.Unlock()
	for _, c := range conns {
		if !c.IsClosed() {
			cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
			c.Close(cctx)
			cancel()
		}
	}
}

// guard runs fn (which waits for golang-migrate's advisory lock); if ctx ends or the lock
// timeout passes first, it asks PostgreSQL to cancel the session's running query so that fn
// returns, and reports ErrLockTimeout or ctx's error.
func (s *session) guard(ctx context.Context, fn func() error) error {
	done := make(chan struct{})
	var fired error
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		timer := time.NewTimer(s.lockTimeout)
		defer timer.Stop()
		select {
		case <-done:
			return
		case <-timer.C:
			fired = &lockWaitError{fmt.Errorf("%w after %v (another migration run holds golang-migrate's advisory lock on the database)", ErrLockTimeout, s.lockTimeout)}
		case <-ctx.Done():
			fired = &lockWaitError{fmt.Errorf("waiting for the migration lock: %w", ctx.Err())}
		}
		s.cancelQueries(ctx)
	}()
	err := fn()
	close(done)
	wg.Wait()
	if fired != nil {
		return fired
	}
	return err
}

// lockWaitError is a lock wait that guard gave up.
type lockWaitError struct{ err error }

// Error describes why the wait was given up.
func (e *lockWaitError) Error() string { return e.err.Error() }

// Unwrap returns ErrLockTimeout's or the context's error.
func (e *lockWaitError) Unwrap() error { return e.err }

// guardedDriver bounds golang-migrate's lock wait with session.guard.
type guardedDriver struct {
	database.Driver
	s   *session
	ctx context.Context
}

// Lock takes golang-migrate's advisory lock within the session's lock timeout and ctx.
func (d *guardedDriver) Lock() error {
	var locked bool
	err := d.s.guard(d.ctx, func() error {
		err := d.Driver.Lock()
		locked = err == nil
		return err
	})
	if err != nil && locked {
		// The lock came just as the guard gave up: release it (a late cancel can only hit
		// this unlock; the session lock then goes with the connection).
		d.Driver.Unlock()
	}
	return err
}

// SetVersion sets the session's role again (SET ROLE) before golang-migrate writes the
// version table. golang-migrate writes it (dirty) right before each migration and (clean)
// right after it, on the connection the migration runs on: so each migration starts as
// the role, whatever the one before it did with SET ROLE, and the bookkeeping runs as the
// role too.
func (d *guardedDriver) SetVersion(version int, dirty bool) error {
	if d.s.role != "" {
		if err := d.Driver.Run(strings.NewReader("SET ROLE " + pgx.Identifier{d.s.role}.Sanitize())); err != nil {
			return fmt.Errorf("SET ROLE %s: %w", d.s.role, unwrapDB(err))
		}
	}
	return d.Driver.SetVersion(version, dirty)
}

// version reads the database version on the session's connection or, when that is broken
// (the server ended it), on a fresh one. It returns migrate.ErrNilVersion for no version.
func (s *session) version(ctx context.Context) (uint, bool, error) {
	v, dirty, err := s.m.Version()
	if err == nil || errors.Is(err, migrate.ErrNilVersion) {
		return v, dirty, err
	}
	cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
	defer cancel()
	conn, cerr := pgx.ConnectConfig(cctx, s.cfg)
	if cerr != nil {
		return 0, false, errors.Join(unwrapDB(err), cerr)
	}
	defer conn.Close(cctx)
	var iv int64
	q := `SELECT version, dirty FROM ` + pgx.Identifier{s.table}.Sanitize() + ` LIMIT 1`
	switch qerr := conn.QueryRow(cctx, q).Scan(&iv, &dirty); {
	case errors.Is(qerr, pgx.ErrNoRows):
		return 0, false, migrate.ErrNilVersion
	case qerr != nil:
		return 0, false, errors.Join(unwrapDB(err), qerr)
	case iv < 0:
		return 0, dirty, migrate.ErrNilVersion
	}
	return uint(iv), dirty, nil
}

// stepError builds the error for a migration that failed.
func (s *session) stepError(ctx context.Context, mig Migration, folder *Folder, err error) error {
	var lw *lockWaitError
	if errors.As(err, &lw) {
		prev := previous(folder, mig.Version)
		at := "with no version"
		if prev >= 0 {
			at = fmt.Sprintf("at version %d", prev)
		}
		return fmt.Errorf("schema: %s not started (database %s is clean %s): %w", mig.Path, s.dbName, at, err)
	}
	var dirtyErr migrate.ErrDirty
	if errors.As(err, &dirtyErr) {
		return dirtyError(uint(dirtyErr.Version), dirtyErr.Version >= 0, folder, s.dbName, s.table)
	}
	me := &MigrationError{Migration: mig, Err: unwrapDB(err)}
	switch cerr := ctx.Err(); {
	case cerr != nil:
		me.Stopped = cerr // step had PostgreSQL cancel it
	case s.migrationTimeout > 0 && errors.Is(me.Err, context.DeadlineExceeded):
		me.Err = fmt.Errorf("cancelled after MigrationTimeout %v: %w", s.migrationTimeout, me.Err)
	}
	var pe *pgconn.PgError
	if errors.As(me.Err, &pe) && pe.Position > 0 {
		if body, rerr := os.ReadFile(mig.Path); rerr == nil {
			me.Line, me.Column = position(string(body), int(pe.Position))
		}
	}
	v, dirty, verr := s.version(ctx)
	prev := previous(folder, mig.Version)
	switch {
	case verr != nil && !errors.Is(verr, migrate.ErrNilVersion):
		me.Dirty = true
		me.Advice = fmt.Sprintf("the database may be left dirty at version %d (its version could not be read: %v): "+
			"check it, fix it by hand, then %s if the migration's changes are absent, or %s if you completed them",
			mig.Version, unwrapDB(verr), forceAdvice(s.table, prev), forceAdvice(s.table, int(mig.Version)))
	case dirty:
		me.Dirty = true
		me.Advice = fmt.Sprintf("the database is dirty at version %d: fix the migration, check what it left behind "+
			"(a migration without BEGIN/COMMIT of its own is rolled back as a whole), "+
			"then %s if its changes are absent, or %s if you completed them",
			v, forceAdvice(s.table, prev), forceAdvice(s.table, int(mig.Version)))
	}
	return me
}

// unwrapDB exposes the cause inside golang-migrate's database.Error, which has no Unwrap.
func unwrapDB(err error) error {
	var de database.Error
	if errors.As(err, &de) && de.OrigErr != nil {
		return de.OrigErr
	}
	var dp *database.Error
	if errors.As(err, &dp) && dp != nil && dp.OrigErr != nil {
		return dp.OrigErr
	}
	return err
}

// position converts PostgreSQL's 1-based character position in query to line and column.
func position(query string, pos int) (line, col int) {
	runes := []rune(query)
	if pos < 1 || pos > len(runes)+1 {
		return 0, 0
	}
	line, col = 1, 1
	for _, r := range runes[:pos-1] {
		if r == '\n' {
			line++
			col = 1
		} else {
			col++
		}
	}
	return line, col
}

// migrateLogger sends golang-migrate's log lines to slog at debug level.
type migrateLogger struct{ log *slog.Logger }

// Printf logs one golang-migrate line at debug level.
func (l migrateLogger) Printf(format string, v ...any) {
	l.log.Debug("golang-migrate: " + strings.TrimSpace(fmt.Sprintf(format, v...)))
}

// Verbose tells golang-migrate not to log verbosely.
func (l migrateLogger) Verbose() bool { return false }

// secrets are the forms of a DSN's password that redact.Error must hide, besides what it
// recognises by itself (URL user info, password= values).
type secrets []string

// wrap returns err with every secret hidden (redact.Error): unchanged when its text holds
// none, else an error with the text cleaned that still matches err with errors.Is and
// errors.As.
func (s secrets) wrap(err error) error { return redact.Error(err, s...) }

// targetConfig is the connection configuration of t: its DSN, with its Role set at
// start-up. Its errors never hold the password.
func targetConfig(t Target) (*pgx.ConnConfig, secrets, error) {
	cfg, sec, err := parseDSN(t.DSN)
	if err != nil {
		return nil, sec, err
	}
	if t.Role != "" {
		if strings.ContainsRune(t.Role, 0) {
			return nil, sec, fmt.Errorf("schema: Role %q: NUL in a role name", t.Role)
		}
		// A startup parameter is a raw value, not SQL: no quoting needed, none possible to
		// get wrong. It is applied after the DSN's options, so it wins over a -c role there.
		cfg.RuntimeParams[roleParam] = t.Role
	}
	if t.LockWait < 0 {
		return nil, sec, fmt.Errorf("schema: negative LockWait %v", t.LockWait)
	}
	if t.LockWait > 0 {
		// At least 1 ms: PostgreSQL reads 0 as no bound.
		cfg.RuntimeParams["lock_timeout"] = strconv.FormatInt(max(t.LockWait.Milliseconds(), 1), 10)
	}
	return cfg, sec, nil
}

// roleParam is the startup parameter (the GUC) that sets the role of a connection.
const roleParam = "role"

// asRole is " as role R" for a configuration with a Role, else "".
func asRole(cfg *pgx.ConnConfig) string {
	if r := cfg.RuntimeParams[roleParam]; r != "" {
		return " as role " + r
	}
	return ""
}

// parseDSN parses a postgres:// URL or keyword/value DSN. Its errors never hold the password.
func parseDSN(dsn string) (*pgx.ConnConfig, secrets, error) {
	var sc secrets
	if u, err := url.Parse(dsn); err == nil && u.User != nil {
		if p, ok := u.User.Password(); ok {
			sc = append(sc, p)
		}
	}
	if strings.TrimSpace(dsn) == "" {
		return nil, sc, errors.New("schema: empty DSN")
	}
	cfg, err := pgx.ParseConfig(dsn)
	if err != nil {
		// pgconn's ParseConfigError keeps the raw DSN and its own redaction of it falls short
		// (password='a\'b c' leaves "c'"): hide the password before pgconn's text is made,
		// and keep only that text (not wrapped).
		var pce *pgconn.ParseConfigError
		if errors.As(err, &pce) {
			pce.ConnString = redact.String(pce.ConnString, sc...)
		}
		return nil, sc, fmt.Errorf("schema: bad DSN: %s", redact.String(err.Error(), sc...))
	}
	if cfg.Password != "" {
		sc = append(sc, cfg.Password)
	}
	if _, ok := cfg.RuntimeParams["application_name"]; !ok {
		cfg.RuntimeParams["application_name"] = DefaultApplicationName
	}
	return cfg, sc, nil
}
