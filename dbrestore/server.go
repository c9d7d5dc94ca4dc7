package dbrestore

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/restage/restage/internal/redact"
	"github.com/restage/restage/progress"
)

// ServerConfig configures a Server.
type ServerConfig struct {
	// AdminDSN connects to the staging server as a user that may create, drop and rename
	// databases and terminate connections (usually the superuser), normally to its
	// "postgres" database. Required. Its password never appears in argv, logs or errors.
	AdminDSN string
	// Protect lists databases never dropped, renamed, replaced or restored into, in
	// addition to template0, template1, postgres and the AdminDSN's own database.
	Protect []string
	// Production lists system_identifiers of servers this Server refuses to change, in
	// addition to the source servers of every backup it has been asked to restore or
	// guard (GuardSource) and the ids given to GuardProduction. A Server that knows no
	// production identity at all refuses every drop, rename, restore, clone and
	// termination (ErrNoProduction): it cannot tell production from staging.
	Production []uint64
	// Role, when set, is the role that owns what a restore makes: restored databases and
	// clones are created OWNER Role, pg_restore runs with --role=Role (with the default
	// --no-owner every restored object belongs to it), and the post-restore SQL files run
	// after SET ROLE Role, so that they can change the restored database but not drop
	// other databases or create roles. The admin user still creates, drops and renames
	// databases. It must be an existing role the admin may SET ROLE to; it should not be a
	// superuser. SET ROLE bounds mistakes, not malice: a file that deliberately switches
	// back (RESET ROLE) acts as the admin until it does; a file that leaves the role
	// changed fails the restore; RestoreDSN is what contains it. With
	// RestoreOptions.KeepOwners, pg_restore's ALTER … OWNER statements run as Role too.
	// "": everything runs as the admin user.
	Role string
	// RestoreDSN, when set, is a login without superuser rights (Role's, or one that may
	// SET ROLE to it) for what runs inside a database being restored: pg_restore, the
	// masking streams, the post-restore SQL, the row counts and ANALYZE. Functions a dump
	// defines run while it loads (a CHECK constraint calls its function for every row
	// COPY inserts), and --role does not contain them, since a function can RESET ROLE:
	// with RestoreDSN they run as this login, not the admin's. Its database is replaced by
	// the target's; the admin DSN still creates, drops and renames databases. A restore
	// whose RestoreDSN's login is a superuser, or a member of one, is refused. A release's
	// migrations connect with it too (MigrationDSN). "": the admin DSN.
	RestoreDSN string
	// Settings are session settings for pg_restore's connections (through PGOPTIONS) that
	// speed a bulk load. nil: DefaultRestoreSettings().
	Settings map[string]string
	// TerminateTimeout bounds the wait for terminated connections to go. 0: 30s.
	TerminateTimeout time.Duration
	// BinDir holds pg_restore. "": PATH, else the newest /usr/lib/postgresql/*/bin.
	BinDir string
	// Logger receives progress and diagnostics. nil: slog.Default().
	Logger *slog.Logger
}

// DefaultRestoreSettings returns the session settings pg_restore gets when
// ServerConfig.Settings is nil: more memory for index builds (per pg_restore job) and no
// waiting for WAL flushes. The server's parallel workers per index build are left on: a
// restore ends with the largest table's indexes built one after another while pg_restore's
// other jobs are idle, and without workers that tail runs on one core (a pgbench database
// at scale 100 restored 1.3x slower than bare pg_restore with them off; with many tables
// of like size, workers on top of the jobs cost 4-5% on 2 cores).
func DefaultRestoreSettings() map[string]string {
	return map[string]string{
		"maintenance_work_mem": "512MB",
		"synchronous_commit":   "off",
	}
}

// Server restores backups into, and manages the databases of, one staging PostgreSQL
// server. It implements Restorer, Admin and Guard; admin SQL goes through pgx with quoted
// identifiers, and restores through pg_restore with argv, never a shell.
type Server struct {
	cfg    ServerConfig
	cs     *connString
	rcs    *connString // the restore login (RestoreDSN), else cs
	secret string
	// rsecret is RestoreDSN's password ("" without one).
	rsecret string
	tools   Config
	log     *slog.Logger

	mu      sync.Mutex
	sources map[uint64]bool // source servers of the backups seen by Restore

	kept kept // the admin connection kept between calls

	// afterTerminate, when set (tests), runs after connections were terminated and
	// before the rename or drop that follows.
	afterTerminate func()
}

var (
	_ Restorer = (*Server)(nil)
	_ Admin    = (*Server)(nil)
	_ Guard    = (*Server)(nil)
)

// NewServer returns a Server for the staging server cfg.AdminDSN connects to. It does not
// connect yet.
func NewServer(cfg ServerConfig) (*Server, error) {
	if cfg.AdminDSN == "" {
		return nil, errors.New("dbrestore: ServerConfig.AdminDSN is required")
	}
	cs, err := parseConnString(cfg.AdminDSN)
	if err != nil {
		return nil, fmt.Errorf("dbrestore: ServerConfig.AdminDSN: %w", err)
	}
	if cfg.Settings == nil {
		cfg.Settings = DefaultRestoreSettings()
	}
	for k, v := range cfg.Settings {
		if k == "" || strings.ContainsAny(k, " \t\n=") || strings.ContainsAny(v, "\n\r") {
			return nil, fmt.Errorf("dbrestore: ServerConfig.Settings: bad setting %q", k)
		}
	}
	if cfg.TerminateTimeout <= 0 {
		cfg.TerminateTimeout = 30 * time.Second
	}
	if len(cfg.Role) > MaxNameLen || strings.ContainsRune(cfg.Role, 0) {
		return nil, fmt.Errorf("dbrestore: ServerConfig.Role %q: not a role name", cfg.Role)
	}
	if slices.Contains(cfg.Production, 0) {
		return nil, errors.New("dbrestore: ServerConfig.Production: 0 is not a system_identifier")
	}
	rcs := cs
	if cfg.RestoreDSN != "" {
		if rcs, err = parseConnString(cfg.RestoreDSN); err != nil {
			return nil, fmt.Errorf("dbrestore: ServerConfig.RestoreDSN: %w", err)
		}
	}
	s := &Server{
		cfg:     cfg,
		cs:      cs,
		rcs:     rcs,
		secret:  connPassword(cs),
		tools:   Config{BinDir: cfg.BinDir, Logger: cfg.Logger},
		sources: map[uint64]bool{},
	}
	if cfg.RestoreDSN != "" {
		s.rsecret = connPassword(rcs)
	}
	s.log = s.tools.logger()
	return s, nil
}

// DSN returns the admin DSN pointed at database (with its password, for pgx and
// migrations; never log it).
func (s *Server) DSN(database string) string { return s.cs.withDatabase(database).String() }

// MigrationDSN returns the DSN a release's migrations connect to database with: with
// ServerConfig.RestoreDSN, the restore login's, once checked as a restore checks it (it
// reaches the admin DSN's server, which is not production's, and is no superuser nor a
// member of one); without, DSN(database). Migrations are a branch's code: as the admin
// DSN's superuser a hostile one could leave the role (SET ROLE NONE) and act as that
// superuser, on other databases and the database host.
func (s *Server) MigrationDSN(ctx context.Context, database string) (string, error) {
	if s.cfg.RestoreDSN == "" {
		return s.DSN(database), nil
	}
	if err := s.checkRestoreLogin(ctx, database); err != nil {
		return "", redact.Error(fmt.Errorf("dbrestore: migrations of %s: %w", database, err), s.secrets()...)
	}
	return s.rcs.withDatabase(database).String(), nil
}

// RestoreLogin returns ServerConfig.RestoreDSN with its password replaced by "xxxxx",
// or "" when restores run as the admin DSN's login.
func (s *Server) RestoreLogin() string {
	if s.cfg.RestoreDSN == "" {
		return ""
	}
	return s.rcs.Redacted()
}

// RedactedDSN returns DSN(database) with the password replaced by "xxxxx".
func (s *Server) RedactedDSN(database string) string { return s.cs.withDatabase(database).Redacted() }

func (s *Server) connect(ctx context.Context, database string) (*pgx.Conn, error) {
	return s.connectAs(ctx, s.cs, database)
}

// connectRestore connects to database, a database being restored, as the restore login.
func (s *Server) connectRestore(ctx context.Context, database string) (*pgx.Conn, error) {
	return s.connectAs(ctx, s.rcs, database)
}

// checkRestoreLogin refuses a restore connection to database that reaches another
// server than the admin connection (sameServer), and a RestoreDSN whose login is a
// superuser, or a member of one (SET ROLE would reach it): it would not contain what the
// dump runs. The login is the session user, whatever role its options set.
func (s *Server) checkRestoreLogin(ctx context.Context, database string) error {
	c, err := s.connectRestore(ctx, database)
	if err != nil {
		return fmt.Errorf("dbrestore: restore login: %w", err)
	}
	defer c.Close(context.WithoutCancel(ctx))
	if err := s.sameServer(ctx, c); err != nil {
		return err
	}
	if s.cfg.RestoreDSN == "" {
		return nil
	}
	return refuseSuperLogin(ctx, c)
}

// sameServer refuses c, a restore connection, unless it reached the server the admin
// connection reaches (the one the production guard checked): same system_identifier,
// and not a production one. pg_restore, the masking streams and the post-restore SQL
// connect on their own, with RestoreDSN (which may name another host than AdminDSN) or
// with the admin DSN resolved again; the guard's check of the admin connection says
// nothing about where they land.
func (s *Server) sameServer(ctx context.Context, c *pgx.Conn) error {
	id, err := systemIdentifier(ctx, c)
	if err != nil {
		return fmt.Errorf("dbrestore: restore login: %w", err)
	}
	adminID, err := s.SystemIdentifier(ctx)
	if err != nil {
		return err
	}
	if err := s.checkProduction(id); err != nil {
		return fmt.Errorf("dbrestore: the restore login reaches %s: %w", c.Config().Host, err)
	}
	if id != adminID {
		return fmt.Errorf("dbrestore: %w: the restore login reaches the server %s (system_identifier %d), not the admin DSN's (system_identifier %d); check [database] restore_dsn",
			ErrOtherServer, c.Config().Host, id, adminID)
	}
	return nil
}

// refuseSuperLogin refuses c's session user when it is a superuser or a member of one.
func refuseSuperLogin(ctx context.Context, c *pgx.Conn) error {
	var login string
	var supers []string
	err := c.QueryRow(ctx, `SELECT session_user, coalesce(array_agg(rolname ORDER BY rolname)
		FILTER (WHERE rolsuper AND pg_has_role(session_user, oid, 'MEMBER')), '{}') FROM pg_roles`).Scan(&login, &supers)
	if err != nil {
		return fmt.Errorf("dbrestore: restore login: %w", err)
	}
	if len(supers) > 0 {
		return fmt.Errorf("dbrestore: ServerConfig.RestoreDSN (restage config: [database] restore_dsn) logs in as %q, a superuser or a member of one (%s): it would not contain what the dump runs while it loads, nor a release's migrations",
			login, strings.Join(supers, ", "))
	}
	return nil
}

// CheckRestoreLogin refuses, as Restore does, a RestoreDSN whose login is a superuser
// or a member of one, connecting to the admin DSN's database: for a caller that wants
// to know before anything is changed (a rebuild's verify step, a dry run). Without a
// RestoreDSN, or when the login cannot connect there, it returns nil (Restore checks
// again on its target).
func (s *Server) CheckRestoreLogin(ctx context.Context) error {
	if s.cfg.RestoreDSN == "" {
		return nil
	}
	c, err := s.connectRestore(ctx, s.cs.database())
	if err != nil {
		// The login may not reach the admin's database; Restore checks again on its
		// target, which it can reach.
		s.log.Debug("dbrestore: restore login not checked before the restore", "error", redact.Error(err, s.secrets()...))
		return nil
	}
	defer c.Close(context.WithoutCancel(ctx))
	if err := s.sameServer(ctx, c); err != nil {
		return redact.Error(err, s.secrets()...)
	}
	return redact.Error(refuseSuperLogin(ctx, c), s.secrets()...)
}

// secrets are the passwords no message may show: the admin's and the restore login's.
func (s *Server) secrets() []string { return []string{s.secret, s.rsecret} }

func (s *Server) connectAs(ctx context.Context, cs *connString, database string) (*pgx.Conn, error) {
	if database != "" {
		cs = cs.withDatabase(database)
	}
	// The connection outlives cctx: pgx uses it for the connect only.
	cctx, cancel := context.WithTimeout(ctx, connectTimeout)
	defer cancel()
	conn, err := pgx.Connect(cctx, cs.String())
	if err != nil {
		return nil, fmt.Errorf("connect to %s: %w", cs.Redacted(), err)
	}
	return conn, nil
}

// connectTimeout bounds opening a connection to the staging server (a DSN's
// connect_timeout, when shorter, applies too): a server that accepts TCP but never
// answers must not hold a run.
var connectTimeout = 30 * time.Second

// withConn runs fn on an admin connection and removes passwords from its error.
func (s *Server) withConn(ctx context.Context, fn func(*pgx.Conn) error) error {
	conn, err := s.admin(ctx)
	if err != nil {
		return redact.Error(fmt.Errorf("dbrestore: %w", err), s.secret)
	}
	defer s.release(ctx, conn)
	return redact.Error(fn(conn), s.secret)
}

// keepIdle is how long an admin connection is kept for the next call. A new connection
// costs a server process and its start (about 25 ms on a local server), and a rebuild
// makes a few dozen admin calls in a row.
const keepIdle = 5 * time.Second

// kept holds at most one idle admin connection.
type kept struct {
	mu    sync.Mutex
	conn  *pgx.Conn
	timer *time.Timer
}

// admin returns a connection to the admin database: the one an earlier call gave back
// when it still answers, else a new one. Give it back with release.
func (s *Server) admin(ctx context.Context) (*pgx.Conn, error) {
	s.kept.mu.Lock()
	c := s.kept.conn
	s.kept.conn = nil
	if s.kept.timer != nil {
		s.kept.timer.Stop()
	}
	s.kept.mu.Unlock()
	if c != nil {
		if err := c.Ping(ctx); err == nil {
			return c, nil
		}
		closeConn(c)
	}
	return s.connect(ctx, "")
}

// release keeps c for the next call when it is idle and no other is kept, and closes
// it otherwise; a kept connection is closed after keepIdle without use, or by Close.
func (s *Server) release(ctx context.Context, c *pgx.Conn) {
	if !c.IsClosed() && !c.PgConn().IsBusy() && c.PgConn().TxStatus() == 'I' && ctx.Err() == nil {
		s.kept.mu.Lock()
		if s.kept.conn == nil {
			s.kept.conn = c
			s.kept.timer = time.AfterFunc(keepIdle, func() { s.drain(c) })
			s.kept.mu.Unlock()
			return
		}
		s.kept.mu.Unlock()
	}
	closeConn(c)
}

// drain closes the kept connection when it is c (any when c is nil).
func (s *Server) drain(c *pgx.Conn) {
	s.kept.mu.Lock()
	k := s.kept.conn
	if k == nil || (c != nil && k != c) {
		s.kept.mu.Unlock()
		return
	}
	s.kept.conn = nil
	if s.kept.timer != nil {
		s.kept.timer.Stop()
	}
	s.kept.mu.Unlock()
	closeConn(k)
}

// Close closes the admin connection the Server keeps between calls, if any. The Server
// stays usable: the next call connects again.
func (s *Server) Close() error {
	s.drain(nil)
	return nil
}

func closeConn(c *pgx.Conn) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	c.Close(ctx)
}

// SystemIdentifier returns the server's pg_control_system().system_identifier.
func (s *Server) SystemIdentifier(ctx context.Context) (uint64, error) {
	var id uint64
	err := s.withConn(ctx, func(c *pgx.Conn) error {
		var err error
		id, err = systemIdentifier(ctx, c)
		return err
	})
	return id, err
}

func systemIdentifier(ctx context.Context, c *pgx.Conn) (uint64, error) {
	var id int64
	if err := c.QueryRow(ctx, "SELECT system_identifier FROM pg_control_system()").Scan(&id); err != nil {
		return 0, fmt.Errorf("dbrestore: read system_identifier: %w", err)
	}
	return uint64(id), nil
}

// List returns the names of the server's databases, templates excluded, sorted.
func (s *Server) List(ctx context.Context) ([]string, error) {
	var names []string
	err := s.withConn(ctx, func(c *pgx.Conn) error {
		rows, err := c.Query(ctx, "SELECT datname FROM pg_database WHERE NOT datistemplate ORDER BY datname")
		if err != nil {
			return fmt.Errorf("dbrestore: list databases: %w", err)
		}
		names, err = pgx.CollectRows(rows, pgx.RowTo[string])
		return err
	})
	return names, err
}

// Exists reports whether a database called name exists.
func (s *Server) Exists(ctx context.Context, name string) (bool, error) {
	var ok bool
	err := s.withConn(ctx, func(c *pgx.Conn) error {
		var err error
		ok, err = exists(ctx, c, name)
		return err
	})
	return ok, err
}

func exists(ctx context.Context, c *pgx.Conn, name string) (bool, error) {
	var ok bool
	err := c.QueryRow(ctx, "SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1)", name).Scan(&ok)
	if err != nil {
		return false, fmt.Errorf("dbrestore: look up database %q: %w", name, err)
	}
	return ok, nil
}

func ident(name string) string { return pgx.Identifier{name}.Sanitize() }

// protected says why name may not be changed, or "".
func (s *Server) protected(name string) string {
	switch name {
	case "template0", "template1", "postgres":
		return "a system database"
	}
	if slices.Contains(s.cfg.Protect, name) {
		return "listed in protect"
	}
	if db := s.cs.database(); db != "" && db == name {
		return "the admin connection's database"
	}
	return ""
}

// MaxNameLen is the longest database name PostgreSQL keeps, in bytes (NAMEDATALEN-1). It
// silently truncates longer identifiers, so "<63-byte name>_next" would be the live
// database itself: every guarded operation refuses longer names (ErrNameTooLong).
const MaxNameLen = 63

// guard refuses to let op change names on this server when a name is longer than
// MaxNameLen or protected, when the server is a production server, or when no production
// identity is known at all (fail closed). It runs before anything is changed.
func (s *Server) guard(ctx context.Context, c *pgx.Conn, op string, names ...string) error {
	for _, n := range names {
		if n == "" {
			return fmt.Errorf("dbrestore: %s: empty database name", op)
		}
		if len(n) > MaxNameLen {
			return fmt.Errorf("dbrestore: %s %q: %w (%d bytes; PostgreSQL would cut it to its first %d, another name)",
				op, n, ErrNameTooLong, len(n), MaxNameLen)
		}
		if why := s.protected(n); why != "" {
			return fmt.Errorf("dbrestore: %s %q: %w (%s)", op, n, ErrProtected, why)
		}
	}
	id, err := systemIdentifier(ctx, c)
	if err != nil {
		return err
	}
	if err := s.checkProduction(id); err != nil {
		return fmt.Errorf("dbrestore: %s %s: %w", op, quoteNames(names), err)
	}
	return nil
}

// checkProduction refuses a server whose system_identifier is id when id is a known
// production identity (ErrProduction), or when none is known (ErrNoProduction).
func (s *Server) checkProduction(id uint64) error {
	s.mu.Lock()
	seen, known := s.sources[id], len(s.sources) > 0
	s.mu.Unlock()
	switch {
	case slices.Contains(s.cfg.Production, id):
		return fmt.Errorf("%w (system_identifier %d is listed as production)", ErrProduction, id)
	case seen:
		return fmt.Errorf("%w (system_identifier %d is the source of a backup, or given as production)", ErrProduction, id)
	case !known && len(s.cfg.Production) == 0:
		return fmt.Errorf("%w: set ServerConfig.Production (restage config: [database] production_ids) or restore a backup first",
			ErrNoProduction)
	}
	return nil
}

func quoteNames(names []string) string {
	q := make([]string, len(names))
	for i, n := range names {
		q[i] = fmt.Sprintf("%q", n)
	}
	return strings.Join(q, ", ")
}

func serverVersionNum(ctx context.Context, c *pgx.Conn) (int, error) {
	var v int
	err := c.QueryRow(ctx, "SELECT current_setting('server_version_num')::int").Scan(&v)
	return v, err
}

// cleanupCtx returns a context for undoing things that outlives a cancelled ctx.
func cleanupCtx(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.WithoutCancel(ctx), 2*time.Minute)
}

// closeOut turns off new connections to name and terminates the existing ones, waiting
// until they are gone. It returns whether connections were allowed before, so that the
// caller can restore that with allowConnections (always, also after a failure).
func (s *Server) closeOut(ctx context.Context, c *pgx.Conn, name string) (wasAllowed bool, n int, err error) {
	if err := c.QueryRow(ctx, "SELECT datallowconn FROM pg_database WHERE datname = $1", name).Scan(&wasAllowed); err != nil {
		if errors.Is(err, pgx.ErrNoRows) {
			return false, 0, fmt.Errorf("dbrestore: database %q: %w", name, ErrNotFound)
		}
		return false, 0, fmt.Errorf("dbrestore: database %q: %w", name, err)
	}
	if wasAllowed {
		if _, err := c.Exec(ctx, "ALTER DATABASE "+ident(name)+" ALLOW_CONNECTIONS false"); err != nil {
			return false, 0, fmt.Errorf("dbrestore: disallow connections to %q: %w", name, err)
		}
	}
	deadline := time.Now().Add(s.cfg.TerminateTimeout)
	// A terminated session is gone within milliseconds, and a cutover waits for it with
	// the service down: look again after 10ms, doubling to 100ms.
	pause := 10 * time.Millisecond
	for {
		var left, killed int
		err := c.QueryRow(ctx, `SELECT count(*), count(*) FILTER (WHERE pg_terminate_backend(pid))
			FROM pg_stat_activity WHERE datname = $1 AND pid <> pg_backend_pid()`, name).Scan(&left, &killed)
		if err != nil {
			return wasAllowed, n, fmt.Errorf("dbrestore: terminate connections to %q: %w", name, err)
		}
		n += killed
		if left == 0 {
			break
		}
		if time.Now().After(deadline) {
			return wasAllowed, n, fmt.Errorf("dbrestore: %d connection(s) to %q still there after %s", left, name, s.cfg.TerminateTimeout)
		}
		select {
		case <-ctx.Done():
			return wasAllowed, n, fmt.Errorf("dbrestore: terminate connections to %q: %w", name, context.Cause(ctx))
		case <-time.After(pause):
		}
		pause = min(2*pause, 100*time.Millisecond)
	}
	if n > 0 {
		s.log.Info("dbrestore: terminated connections", logKeyDatabase, name, "count", n)
	}
	return wasAllowed, n, nil
}

// allowConnections sets name's datallowconn back to allowed, on an admin connection of
// its own (not the caller's, which may be broken) and a context that survives the
// caller's cancellation. Failures are logged and returned.
func (s *Server) allowConnections(ctx context.Context, name string, allowed bool) error {
	if !allowed {
		return nil
	}
	cctx, cancel := cleanupCtx(ctx)
	defer cancel()
	conn, err := s.admin(cctx)
	if err == nil {
		defer s.release(cctx, conn)
		_, err = conn.Exec(cctx, "ALTER DATABASE "+ident(name)+" ALLOW_CONNECTIONS true")
	}
	if err != nil {
		err = redact.Error(fmt.Errorf("dbrestore: allow connections to %q again: %w", name, err), s.secret)
		s.log.Error("dbrestore: could not allow connections again", logKeyDatabase, name, logKeyError, err.Error())
	}
	return err
}

// Terminate terminates every other connection to name, with new connections refused
// meanwhile and allowed again afterwards (also after a failure). It returns how many it
// terminated. It refuses production servers and protected names.
func (s *Server) Terminate(ctx context.Context, name string) (int, error) {
	var n int
	err := s.withConn(ctx, func(c *pgx.Conn) error {
		if err := s.guard(ctx, c, "terminate connections to", name); err != nil {
			return err
		}
		allowed, killed, err := s.closeOut(ctx, c, name)
		n = killed
		return errors.Join(err, s.allowConnections(ctx, name, allowed))
	})
	return n, err
}

// Checkpoint runs CHECKPOINT (it needs a superuser or, from PostgreSQL 15, the role
// pg_checkpoint). DROP DATABASE forces a checkpoint, which writes out whatever the
// server has not yet written, a just-restored database included; a rebuild runs one
// while the service starts, so that the drop of the night-before copy after it finds
// little left to write. It refuses production servers.
func (s *Server) Checkpoint(ctx context.Context) error {
	return s.withConn(ctx, func(c *pgx.Conn) error {
		if err := s.guard(ctx, c, "checkpoint"); err != nil {
			return err
		}
		if _, err := c.Exec(ctx, "CHECKPOINT"); err != nil {
			return fmt.Errorf("dbrestore: checkpoint: %w", err)
		}
		return nil
	})
}

// Drop drops name after terminating its connections; a missing database is not an error.
func (s *Server) Drop(ctx context.Context, name string) error {
	return s.withConn(ctx, func(c *pgx.Conn) error {
		if err := s.guard(ctx, c, "drop", name); err != nil {
			return err
		}
		return s.drop(ctx, c, name)
	})
}

// drop drops name (guarded by the caller).
func (s *Server) drop(ctx context.Context, c *pgx.Conn, name string) error {
	ok, err := exists(ctx, c, name)
	if err != nil || !ok {
		return err
	}
	allowed, _, err := s.closeOut(ctx, c, name)
	if err == nil && s.afterTerminate != nil {
		s.afterTerminate()
	}
	if err == nil {
		err = ctx.Err()
	}
	if err == nil {
		stmt := "DROP DATABASE " + ident(name)
		if v, verr := serverVersionNum(ctx, c); verr == nil && v >= 130000 {
			stmt += " WITH (FORCE)"
		}
		if _, err = c.Exec(ctx, stmt); err == nil {
			s.log.Info("dbrestore: dropped database", logKeyDatabase, name)
			return nil
		}
		err = fmt.Errorf("dbrestore: drop %q: %w", name, err)
	}
	return errors.Join(err, s.allowConnections(ctx, name, allowed))
}

// Rename renames from to to, after terminating from's connections. to must not exist.
func (s *Server) Rename(ctx context.Context, from, to string) error {
	return s.withConn(ctx, func(c *pgx.Conn) error {
		if err := s.guard(ctx, c, "rename", from, to); err != nil {
			return err
		}
		if from == to {
			return fmt.Errorf("dbrestore: rename %q to itself", from)
		}
		if ok, err := exists(ctx, c, to); err != nil {
			return err
		} else if ok {
			return fmt.Errorf("dbrestore: rename %q to %q: %w", from, to, ErrExists)
		}
		allowed, _, err := s.closeOut(ctx, c, from)
		if err != nil {
			return errors.Join(err, s.allowConnections(ctx, from, allowed))
		}
		if s.afterTerminate != nil {
			s.afterTerminate()
		}
		if _, err := c.Exec(ctx, "ALTER DATABASE "+ident(from)+" RENAME TO "+ident(to)); err != nil {
			return errors.Join(fmt.Errorf("dbrestore: rename %q to %q: %w", from, to, err),
				s.allowConnections(ctx, from, allowed))
		}
		s.log.Info("dbrestore: renamed database", logKeyDatabase, from, "to", to)
		return s.allowConnections(ctx, to, allowed)
	})
}

// Swap renames live to prev (when live exists) and next to live, in one transaction, after
// terminating the connections to both. next must exist and prev must not.
func (s *Server) Swap(ctx context.Context, live, next, prev string) error {
	return s.withConn(ctx, func(c *pgx.Conn) (err error) {
		if err := s.guard(ctx, c, "swap", live, next, prev); err != nil {
			return err
		}
		if live == next || live == prev || next == prev {
			return fmt.Errorf("dbrestore: swap needs three different names, got %q, %q, %q", live, next, prev)
		}
		if ok, err := exists(ctx, c, next); err != nil {
			return err
		} else if !ok {
			return fmt.Errorf("dbrestore: swap: %q: %w", next, ErrNotFound)
		}
		if ok, err := exists(ctx, c, prev); err != nil {
			return err
		} else if ok {
			return fmt.Errorf("dbrestore: swap: %q: %w (drop it first)", prev, ErrExists)
		}
		liveExists, err := exists(ctx, c, live)
		if err != nil {
			return err
		}

		// Names as they will be once the swap is done, and what their datallowconn was.
		type closed struct {
			before, after string
			allowed       bool
		}
		var done []closed
		swapped := false
		defer func() {
			for _, d := range done {
				name := d.before
				if swapped {
					name = d.after
				}
				if aerr := s.allowConnections(ctx, name, d.allowed); aerr != nil {
					err = errors.Join(err, aerr)
				}
			}
		}()
		if liveExists {
			allowed, _, err := s.closeOut(ctx, c, live)
			done = append(done, closed{live, prev, allowed})
			if err != nil {
				return err
			}
		}
		allowed, _, err := s.closeOut(ctx, c, next)
		done = append(done, closed{next, live, allowed})
		if err != nil {
			return err
		}
		if s.afterTerminate != nil {
			s.afterTerminate()
		}
		err = pgx.BeginFunc(ctx, c, func(tx pgx.Tx) error {
			if liveExists {
				if _, err := tx.Exec(ctx, "ALTER DATABASE "+ident(live)+" RENAME TO "+ident(prev)); err != nil {
					return fmt.Errorf("rename %q to %q: %w", live, prev, err)
				}
			}
			if _, err := tx.Exec(ctx, "ALTER DATABASE "+ident(next)+" RENAME TO "+ident(live)); err != nil {
				return fmt.Errorf("rename %q to %q: %w", next, live, err)
			}
			return nil
		})
		if err != nil {
			return fmt.Errorf("dbrestore: swap (nothing renamed): %w", err)
		}
		swapped = true
		s.log.Info("dbrestore: swapped databases", "live", live, "next", next, "prev", prev, "had_live", liveExists)
		return nil
	})
}

// Clone creates name as a copy of template (CREATE DATABASE … TEMPLATE … STRATEGY
// FILE_COPY, OWNER ServerConfig.Role when set), replacing an existing name. template's connections are terminated for the
// copy and allowed again afterwards.
func (s *Server) Clone(ctx context.Context, template, name string) error {
	return s.withConn(ctx, func(c *pgx.Conn) error {
		if err := s.guard(ctx, c, "clone into", name); err != nil {
			return err
		}
		if template == "" || template == name {
			return fmt.Errorf("dbrestore: clone %q from %q: need a different template", name, template)
		}
		if len(template) > MaxNameLen {
			return fmt.Errorf("dbrestore: clone template %q: %w", template, ErrNameTooLong)
		}
		if ok, err := exists(ctx, c, template); err != nil {
			return err
		} else if !ok {
			return fmt.Errorf("dbrestore: clone template %q: %w", template, ErrNotFound)
		}
		if err := s.drop(ctx, c, name); err != nil {
			return err
		}
		v, err := serverVersionNum(ctx, c)
		if err != nil {
			return fmt.Errorf("dbrestore: server version: %w", err)
		}
		// Progress: the template's size, reported once the copy is done (the server
		// tells nothing while it copies).
		var pc *progress.Counter
		if progress.From(ctx) != nil {
			var size int64
			if err := c.QueryRow(ctx, "SELECT pg_database_size($1)", template).Scan(&size); err == nil {
				pc = progress.NewCounter(ctx, size)
			}
		}
		start := time.Now()
		allowed, _, err := s.closeOut(ctx, c, template)
		if err == nil {
			stmt := "CREATE DATABASE " + ident(name) + " TEMPLATE " + ident(template) + s.ownerClause()
			if v >= 150000 {
				stmt += " STRATEGY FILE_COPY"
			}
			if _, err = c.Exec(ctx, stmt); err != nil {
				err = fmt.Errorf("dbrestore: clone %q from %q: %w", name, template, err)
			}
		}
		err = errors.Join(err, s.allowConnections(ctx, template, allowed))
		if err == nil {
			pc.Set(pc.Total())
			s.log.Info("dbrestore: cloned database", logKeyDatabase, name, "template", template,
				logKeyDuration, time.Since(start).Round(time.Millisecond))
		}
		return err
	})
}

// ownerClause returns " OWNER <Role>" for CREATE DATABASE, or "" without a Role.
func (s *Server) ownerClause() string {
	if s.cfg.Role == "" {
		return ""
	}
	return " OWNER " + ident(s.cfg.Role)
}

// noteSource remembers a backup's source server as production.
func (s *Server) noteSource(id uint64) {
	if id == 0 {
		return
	}
	s.mu.Lock()
	s.sources[id] = true
	s.mu.Unlock()
}

// Sources returns the system_identifiers this Server treats as production: the configured
// ones and the sources of backups it has seen.
func (s *Server) Sources() []uint64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := slices.Clone(s.cfg.Production)
	for id := range s.sources {
		if !slices.Contains(out, id) {
			out = append(out, id)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i] < out[j] })
	return out
}

// GuardProduction notes ids (zeros are ignored) as production servers' identities for
// every later operation, then refuses with ErrProduction when this server's
// system_identifier is one of the production identities it knows, and with
// ErrNoProduction when it knows none. A flow that never sees a backup (a deploy) calls it
// with the identities it learned (config, the backup folder's manifests) before anything
// is dropped or renamed.
func (s *Server) GuardProduction(ctx context.Context, ids ...uint64) error {
	for _, id := range ids {
		s.noteSource(id)
	}
	id, err := s.SystemIdentifier(ctx)
	if err != nil {
		return err
	}
	if err := s.checkProduction(id); err != nil {
		return fmt.Errorf("dbrestore: this server: %w; check the admin DSN", err)
	}
	return nil
}

// GuardSource refuses a backup whose manifest names no source server (ErrCorrupt), then
// is GuardProduction with that source: it records it as production for every later
// operation and refuses, with ErrProduction, when this server is that source. A rebuild
// calls it right after verifying the backup, before anything is dropped or renamed.
func (s *Server) GuardSource(ctx context.Context, b *Backup) error {
	if b == nil {
		return errors.New("dbrestore: GuardSource needs a backup")
	}
	if b.Manifest.SystemIdentifier == 0 {
		return fmt.Errorf("dbrestore: %w: manifest of %s has no system_identifier", ErrCorrupt, b.Name())
	}
	if err := s.GuardProduction(ctx, b.Manifest.SystemIdentifier); err != nil {
		return fmt.Errorf("backup %s: %w", b.Name(), err)
	}
	return nil
}
