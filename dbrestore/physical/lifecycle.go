package physical

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/restage/restage/dbrestore"
	"github.com/restage/restage/internal/redact"
)

// StartSide starts a restored slot on the side port, with no TCP listener, no logical
// replication workers and without the preloaded libraries that run jobs or replication
// on their own (pg_cron, pglogical), its socket in its own folder: nothing but restage
// can reach it, and it runs nothing of production's, before Neutralize. It returns once
// recovery has finished (promoted).
func (c *Clusters) StartSide(ctx context.Context, s *Slot) error {
	if live, err := c.Live(); err != nil {
		return err
	} else if live != nil && live.Name == s.Name {
		return fmt.Errorf("%w: %s is live", ErrSlot, s)
	}
	return c.startAs(ctx, s, fresh)
}

// NeutralizeOptions say how a restored cluster is reshaped for staging.
type NeutralizeOptions struct {
	From string   // required: the backup's database
	To   string   // required: its name on staging
	Keep []string // production's other databases to keep; the rest are dropped
	// ClearPasswords removes every role's password: the verifiers are production's (an
	// md5 one is all a login needs wherever production accepts md5), so staging's are
	// set by the post-restore SQL.
	ClearPasswords bool
}

// system databases every cluster keeps.
var system = []string{"postgres", "template0", "template1"}

// Neutralize makes the restored slot, running on the side port, harmless and reshapes
// it: its replication slots are dropped, its subscriptions disabled, detached from their
// slots on production and dropped, opts.From is renamed opts.To, production's other
// databases are dropped unless opts.Keep lists them, and in every database left the user
// mappings are dropped (postgres_fdw and dblink reach no server with production's
// logins), pg_cron's jobs and pglogical's subscriptions disabled. When StartSide held
// pg_cron or pglogical back, the slot is then restarted on the side port with them, and
// pg_cron's database follows opts.From's rename (or is postgres when it was dropped).
// With opts.ClearPasswords every role's password is removed. It returns what it did.
func (c *Clusters) Neutralize(ctx context.Context, s *Slot, opts NeutralizeOptions) (string, error) {
	if opts.From == "" || opts.To == "" {
		return "", errors.New("physical: NeutralizeOptions.From and To are required")
	}
	libs, err := c.preload(ctx, s)
	if err != nil {
		return "", err
	}
	held := slices.DeleteFunc(slices.Clone(libs), func(l string) bool { return !isHeldBack(l) })
	did, err := c.neutralize(ctx, s, opts, slices.ContainsFunc(libs, func(l string) bool { return libName(l) == "pg_cron" }))
	if err != nil {
		return "", err
	}
	if len(held) > 0 {
		if err := c.stop(ctx, s); err != nil {
			return "", err
		}
		if err := c.startAs(ctx, s, side); err != nil {
			return "", err
		}
		did = append(did, "restarted with "+strings.Join(held, ", ")+" (held back until now)")
	}
	return "archive_mode off, no standby; " + strings.Join(did, "; "), nil
}

// neutralize is Neutralize's SQL, on the slot started by StartSide; cron says whether
// pg_cron is preloaded. Its steps run in this order: nothing of production's replication
// before the databases are reshaped, the per-database catalogs of what is left after.
func (c *Clusters) neutralize(ctx context.Context, s *Slot, opts NeutralizeOptions, cron bool) ([]string, error) {
	conn, err := c.Conn(ctx, s, "postgres", false)
	if err != nil {
		return nil, err
	}
	defer conn.Close(context.WithoutCancel(ctx))
	n := &neutralizer{c: c, s: s, conn: conn, opts: opts}
	steps := []func(context.Context) error{n.checkArchiveOff, n.dropSlots, n.dropSubscriptions, n.reshapeDatabases, n.perDatabase}
	if cron {
		steps = append(steps, n.followCron)
	}
	if opts.ClearPasswords {
		steps = append(steps, n.clearPasswords)
	}
	for _, step := range steps {
		if err := step(ctx); err != nil {
			return nil, err
		}
	}
	if len(n.did) == 0 {
		n.did = append(n.did, "nothing to neutralize")
	}
	return n.did, nil
}

// neutralizer holds one Neutralize: the connection to the slot's postgres database and
// what its steps did.
type neutralizer struct {
	c    *Clusters
	s    *Slot
	conn *pgx.Conn
	opts NeutralizeOptions
	left []string // the databases that take connections, once reshaped
	did  []string
}

func (n *neutralizer) checkArchiveOff(ctx context.Context) error {
	var archive string
	if err := n.conn.QueryRow(ctx, "SELECT current_setting('archive_mode')").Scan(&archive); err != nil {
		return fmt.Errorf("physical: %w", err)
	}
	if archive != "off" {
		return fmt.Errorf("physical: archive_mode is %s on the restored cluster, want off", archive)
	}
	return nil
}

// dropSlots drops the replication slots first: no walsender may serve them.
func (n *neutralizer) dropSlots(ctx context.Context) error {
	rows, _ := n.conn.Query(ctx, "SELECT slot_name FROM pg_replication_slots ORDER BY 1")
	slots, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return fmt.Errorf("physical: replication slots: %w", err)
	}
	for _, name := range slots {
		if _, err := n.conn.Exec(ctx, "SELECT pg_drop_replication_slot($1)", name); err != nil {
			return fmt.Errorf("physical: drop replication slot %s: %w", name, err)
		}
	}
	if len(slots) > 0 {
		n.did = append(n.did, fmt.Sprintf("dropped replication slots %s", strings.Join(slots, ", ")))
	}
	return nil
}

// dropSubscriptions drops the subscriptions: no worker runs them
// (max_logical_replication_workers = 0); each is disabled and detached from its slot on
// production before it is dropped, so that dropping it does not reach production.
func (n *neutralizer) dropSubscriptions(ctx context.Context) error {
	type sub struct{ db, name string }
	rows, _ := n.conn.Query(ctx, "SELECT d.datname, s.subname FROM pg_subscription s JOIN pg_database d ON d.oid = s.subdbid ORDER BY 1, 2")
	subs, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (sub, error) {
		var x sub
		return x, r.Scan(&x.db, &x.name)
	})
	if err != nil {
		return fmt.Errorf("physical: subscriptions: %w", err)
	}
	for _, x := range subs {
		if err := n.c.dropSubscription(ctx, n.s, x.db, x.name); err != nil {
			return err
		}
		n.did = append(n.did, fmt.Sprintf("dropped subscription %s in %s", x.name, x.db))
	}
	return nil
}

// reshapeDatabases drops production's databases that are neither opts.From, a system
// one nor kept, and renames opts.From to opts.To.
func (n *neutralizer) reshapeDatabases(ctx context.Context) error {
	opts := n.opts
	rows, _ := n.conn.Query(ctx, "SELECT datname FROM pg_database ORDER BY 1")
	dbs, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return fmt.Errorf("physical: databases: %w", err)
	}
	if !slices.Contains(dbs, opts.From) {
		return fmt.Errorf("%w: the backup holds no database %s (it holds %s)", ErrNoBackup, opts.From, strings.Join(dbs, ", "))
	}
	var dropped []string
	for _, db := range dbs {
		if db == opts.From || slices.Contains(system, db) || slices.Contains(opts.Keep, db) {
			continue
		}
		if _, err := n.conn.Exec(ctx, "DROP DATABASE "+pgx.Identifier{db}.Sanitize()+" WITH (FORCE)"); err != nil {
			return fmt.Errorf("physical: drop %s: %w", db, err)
		}
		dropped = append(dropped, db)
	}
	if opts.From != opts.To {
		if slices.Contains(opts.Keep, opts.To) && slices.Contains(dbs, opts.To) {
			return fmt.Errorf("physical: the backup holds a database %s besides %s, and cluster.keep keeps it", opts.To, opts.From)
		}
		if _, err := n.conn.Exec(ctx, "ALTER DATABASE "+pgx.Identifier{opts.From}.Sanitize()+" RENAME TO "+pgx.Identifier{opts.To}.Sanitize()); err != nil {
			return fmt.Errorf("physical: rename %s to %s: %w", opts.From, opts.To, err)
		}
		n.did = append(n.did, fmt.Sprintf("renamed %s to %s", opts.From, opts.To))
	}
	if len(dropped) > 0 {
		n.did = append(n.did, "dropped production's databases "+strings.Join(dropped, ", "))
	}
	return nil
}

// perDatabase drops, in every database left that takes connections, the user mappings
// (the logins postgres_fdw and dblink use to reach other servers, production's among
// them), and disables pg_cron's jobs and pglogical's subscriptions.
func (n *neutralizer) perDatabase(ctx context.Context) error {
	rows, _ := n.conn.Query(ctx, "SELECT datname FROM pg_database WHERE datallowconn ORDER BY 1")
	left, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return fmt.Errorf("physical: databases: %w", err)
	}
	n.left = left
	for _, db := range left {
		mappings, err := n.c.dropUserMappings(ctx, n.s, db)
		if err != nil {
			return err
		}
		if len(mappings) > 0 {
			n.did = append(n.did, fmt.Sprintf("dropped user mappings %s in %s", strings.Join(mappings, ", "), db))
		}
		d, err := n.c.disableJobs(ctx, n.s, db)
		if err != nil {
			return err
		}
		n.did = append(n.did, d...)
	}
	return nil
}

// followCron points pg_cron's launcher, which reads the jobs of one database
// (production's name for it, default postgres), at opts.To after the rename, or at
// postgres once its database is gone, rather than let it fail to connect every second.
func (n *neutralizer) followCron(ctx context.Context) error {
	var name *string
	if err := n.conn.QueryRow(ctx, "SELECT current_setting('cron.database_name', true)").Scan(&name); err != nil {
		return fmt.Errorf("physical: cron.database_name: %w", err)
	}
	to := ""
	switch {
	case name == nil || *name == "":
	case *name == n.opts.From && n.opts.From != n.opts.To:
		to = n.opts.To
	case !slices.Contains(n.left, *name):
		to = "postgres"
	}
	if to == "" {
		return nil
	}
	var q string
	err := n.conn.QueryRow(ctx, "SELECT format('ALTER SYSTEM SET cron.database_name = %L', $1::text)", to).Scan(&q)
	if err == nil {
		_, err = n.conn.Exec(ctx, q)
	}
	if err != nil {
		return fmt.Errorf("physical: cron.database_name: %w", err)
	}
	n.did = append(n.did, "pg_cron's database is now "+to)
	return nil
}

func (n *neutralizer) clearPasswords(ctx context.Context) error {
	cleared, err := clearPasswords(ctx, n.conn)
	if err != nil {
		return err
	}
	if len(cleared) > 0 {
		n.did = append(n.did, "removed the passwords of roles "+strings.Join(cleared, ", "))
	}
	return nil
}

// disableJobs disables, in database db, pg_cron's jobs (cron.job.active) and pglogical's
// subscriptions (pglogical.subscription.sub_enabled, the catalog alone: its functions
// would reach the provider), and says what it did. Triggers do not fire (the one on
// cron.job is pg_cron's library, held back).
func (c *Clusters) disableJobs(ctx context.Context, s *Slot, db string) ([]string, error) {
	conn, err := c.Conn(ctx, s, db, false)
	if err != nil {
		return nil, err
	}
	defer conn.Close(context.WithoutCancel(ctx))
	var did []string
	err = pgx.BeginFunc(ctx, conn, func(tx pgx.Tx) error {
		var cron, pgl bool
		if err := tx.QueryRow(ctx, "SELECT EXISTS (SELECT FROM pg_extension WHERE extname = 'pg_cron'), EXISTS (SELECT FROM pg_extension WHERE extname = 'pglogical')").Scan(&cron, &pgl); err != nil {
			return err
		}
		if !cron && !pgl {
			return nil
		}
		if _, err := tx.Exec(ctx, "SET LOCAL session_replication_role = replica"); err != nil {
			return err
		}
		if cron {
			tag, err := tx.Exec(ctx, "UPDATE cron.job SET active = false WHERE active")
			if err != nil {
				return fmt.Errorf("pg_cron's jobs: %w", err)
			}
			if n := tag.RowsAffected(); n > 0 {
				did = append(did, fmt.Sprintf("disabled %d pg_cron jobs in %s", n, db))
			}
		}
		if pgl {
			rows, _ := tx.Query(ctx, "UPDATE pglogical.subscription SET sub_enabled = false WHERE sub_enabled RETURNING sub_name::text")
			subs, err := pgx.CollectRows(rows, pgx.RowTo[string])
			if err != nil {
				return fmt.Errorf("pglogical's subscriptions: %w", err)
			}
			if len(subs) > 0 {
				slices.Sort(subs)
				did = append(did, fmt.Sprintf("disabled pglogical subscriptions %s in %s", strings.Join(subs, ", "), db))
			}
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("physical: disable the jobs in %s: %w", db, err)
	}
	return did, nil
}

// dropUserMappings drops every user mapping of database db (dbrestore.DropUserMappings)
// and returns them as "user@server".
func (c *Clusters) dropUserMappings(ctx context.Context, s *Slot, db string) ([]string, error) {
	conn, err := c.Conn(ctx, s, db, false)
	if err != nil {
		return nil, err
	}
	defer conn.Close(context.WithoutCancel(ctx))
	dropped, err := dbrestore.DropUserMappings(ctx, conn, "")
	if err != nil {
		return nil, fmt.Errorf("physical: drop the user mappings in %s: %w", db, err)
	}
	return dropped, nil
}

func (c *Clusters) dropSubscription(ctx context.Context, s *Slot, db, name string) error {
	conn, err := c.Conn(ctx, s, db, false)
	if err != nil {
		return err
	}
	defer conn.Close(context.WithoutCancel(ctx))
	id := pgx.Identifier{name}.Sanitize()
	for _, q := range []string{"ALTER SUBSCRIPTION " + id + " DISABLE", "ALTER SUBSCRIPTION " + id + " SET (slot_name = NONE)", "DROP SUBSCRIPTION " + id} {
		if _, err := conn.Exec(ctx, q); err != nil {
			return fmt.Errorf("physical: subscription %s in %s: %s: %w", name, db, q, err)
		}
	}
	return nil
}

// Exec runs sql in database on the slot running on the side port.
func (c *Clusters) Exec(ctx context.Context, s *Slot, database, sql string) error {
	conn, err := c.Conn(ctx, s, database, false)
	if err != nil {
		return err
	}
	defer conn.Close(context.WithoutCancel(ctx))
	_, err = conn.Exec(ctx, sql)
	return err
}

// FilesResult is what ExecFiles did.
type FilesResult struct {
	// Written are the tables the files updated or deleted rows of ("schema.table",
	// unquoted, sorted; dbrestore.Writes): their old row versions hold the values the
	// files replaced until the tables are rewritten.
	Written []string
	// Notices says, for each file that raised any, how many server notices it raised
	// ("sanitize.sql: 2 server notices (NOTICE 2), their text withheld"): their text
	// may quote production's rows (dbrestore.Notices), so none is kept.
	Notices []string
}

// ExecFiles runs each SQL file in database on the slot running on the side port, each
// in a transaction, as role when it is not "".
func (c *Clusters) ExecFiles(ctx context.Context, s *Slot, database, role string, files []string) (*FilesResult, error) {
	var notices dbrestore.Notices
	conn, err := c.conn(ctx, s, database, false, notices.OnNotice)
	if err != nil {
		return nil, err
	}
	defer conn.Close(context.WithoutCancel(ctx))
	res := &FilesResult{}
	for _, f := range files {
		sql, err := os.ReadFile(f)
		if err != nil {
			return nil, fmt.Errorf("physical: %w", err)
		}
		notices.Take() // counted before the file: not its own
		err = pgx.BeginFunc(ctx, conn, func(tx pgx.Tx) error {
			if role != "" {
				if _, err := tx.Exec(ctx, "SET LOCAL ROLE "+pgx.Identifier{role}.Sanitize()); err != nil {
					return err
				}
			}
			writes, err := dbrestore.WatchWrites(ctx, tx)
			if err != nil {
				return err
			}
			if _, err := tx.Exec(ctx, string(sql)); err != nil {
				return err
			}
			tables, err := writes.Tables(ctx)
			res.Written = append(res.Written, tables...)
			return err
		})
		if n := notices.Take(); n != "" {
			res.Notices = append(res.Notices, filepath.Base(f)+": "+n)
		}
		if err != nil {
			if len(res.Notices) > 0 {
				return nil, fmt.Errorf("physical: %s: %w (%s)", f, withholdRows(err), strings.Join(res.Notices, "; "))
			}
			return nil, fmt.Errorf("physical: %s: %w", f, withholdRows(err))
		}
	}
	res.Written = slices.Compact(slices.Sorted(slices.Values(res.Written)))
	return res, nil
}

// rowsError is PostgreSQL's error with the row values its message, detail and context
// quote withheld (redact.Field): they are production's, and the message goes into the
// report. Unwrap returns the driver's error.
type rowsError struct {
	msg string
	err error
}

func (e *rowsError) Error() string { return e.msg }
func (e *rowsError) Unwrap() error { return e.err }

// withholdRows returns err with the values of a *pgconn.PgError withheld.
func withholdRows(err error) error {
	var pe *pgconn.PgError
	if !errors.As(err, &pe) {
		return err
	}
	msg := pe.Severity + ": " + redact.Field(pe.Message) + " (SQLSTATE " + pe.Code + ")"
	if pe.Detail != "" {
		msg += "; DETAIL: " + redact.Field(pe.Detail)
	}
	if pe.Where != "" {
		msg += "; CONTEXT: " + redact.Field(pe.Where)
	}
	return &rowsError{msg: msg, err: err}
}

// Clone creates name as a template copy of template on the slot running on the side
// port, replacing an existing name.
func (c *Clusters) Clone(ctx context.Context, s *Slot, template, name string) error {
	conn, err := c.Conn(ctx, s, "postgres", false)
	if err != nil {
		return err
	}
	defer conn.Close(context.WithoutCancel(ctx))
	if slices.Contains(system, name) || name == template {
		return fmt.Errorf("physical: refusing to replace %s with a clone", name)
	}
	if _, err := conn.Exec(ctx, "DROP DATABASE IF EXISTS "+pgx.Identifier{name}.Sanitize()+" WITH (FORCE)"); err != nil {
		return fmt.Errorf("physical: %w", err)
	}
	if _, err := conn.Exec(ctx, "CREATE DATABASE "+pgx.Identifier{name}.Sanitize()+" TEMPLATE "+pgx.Identifier{template}.Sanitize()+" STRATEGY FILE_COPY"); err != nil {
		return fmt.Errorf("physical: clone %s as %s: %w", template, name, err)
	}
	return nil
}

// Checkpoint runs CHECKPOINT on the slot running on the side port, so that stopping it
// at the cutover is quick.
func (c *Clusters) Checkpoint(ctx context.Context, s *Slot) error {
	return c.Exec(ctx, s, "postgres", "CHECKPOINT")
}

// clearPasswords removes the password of every role that has one, in one transaction,
// and returns their names.
func clearPasswords(ctx context.Context, conn *pgx.Conn) ([]string, error) {
	var roles []string
	err := pgx.BeginFunc(ctx, conn, func(tx pgx.Tx) error {
		rows, _ := tx.Query(ctx, "SELECT rolname FROM pg_catalog.pg_authid WHERE rolpassword IS NOT NULL ORDER BY 1")
		var err error
		if roles, err = pgx.CollectRows(rows, pgx.RowTo[string]); err != nil {
			return err
		}
		for _, r := range roles {
			if _, err := tx.Exec(ctx, "ALTER ROLE "+pgx.Identifier{r}.Sanitize()+" PASSWORD NULL"); err != nil {
				return fmt.Errorf("role %s: %w", r, err)
			}
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("physical: remove the roles' passwords: %w", err)
	}
	return roles, nil
}

// MD5Roles returns the roles of the slot running on the side port whose password is an
// md5 verifier: with a physical copy, production's, and md5 authentication takes the
// verifier itself, so whoever reads it on staging can log in to production as that role
// wherever production accepts md5 (NeutralizeOptions.ClearPasswords removes them).
func (c *Clusters) MD5Roles(ctx context.Context, s *Slot) ([]string, error) {
	conn, err := c.Conn(ctx, s, "postgres", false)
	if err != nil {
		return nil, err
	}
	defer conn.Close(context.WithoutCancel(ctx))
	rows, _ := conn.Query(ctx, "SELECT rolname FROM pg_catalog.pg_authid WHERE rolpassword LIKE 'md5%' ORDER BY 1")
	roles, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return nil, fmt.Errorf("physical: md5 verifiers: %w", err)
	}
	return roles, nil
}

// DropWAL removes the WAL the slot running on the side port has written so far: it
// switches to a new segment and checkpoints, and the side cluster (wal_recycle off,
// wal_keep_size 0) then removes every earlier segment. Those hold the rows as the
// restore left them (production's) in the full-page images and old keys of the changes
// made since, a masking's among them.
func (c *Clusters) DropWAL(ctx context.Context, s *Slot) error {
	if err := c.Exec(ctx, s, "postgres", "SELECT pg_catalog.pg_switch_wal()"); err != nil {
		return err
	}
	return c.Exec(ctx, s, "postgres", "CHECKPOINT")
}

// Foreign returns the databases of the live cluster that are neither system databases
// nor in managed, sorted; none when no slot is live.
func (c *Clusters) Foreign(ctx context.Context, managed []string) ([]string, error) {
	s, err := c.Live()
	if err != nil || s == nil {
		return nil, err
	}
	conn, err := c.Conn(ctx, s, "postgres", true)
	if err != nil {
		return nil, err
	}
	defer conn.Close(context.WithoutCancel(ctx))
	rows, _ := conn.Query(ctx, "SELECT datname FROM pg_database ORDER BY 1")
	dbs, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return nil, fmt.Errorf("physical: %w", err)
	}
	var out []string
	for _, db := range dbs {
		if !slices.Contains(system, db) && !slices.Contains(managed, db) {
			out = append(out, db)
		}
	}
	return out, nil
}

// Discard stops a slot prepared on the side port that will not go live; its data stay
// for the next run's delta restore.
func (c *Clusters) Discard(ctx context.Context, s *Slot) error {
	if err := c.notLive(s); err != nil {
		return err
	}
	return c.stop(ctx, s)
}

// Empty stops a slot that will not go live and removes its data, so that it holds no
// copy of production's: the next restore into it is a full copy. Its marker stays, in
// state restoring, so that Repair finishes a removal cut short. The live slot is refused
// (ErrSlot).
func (c *Clusters) Empty(ctx context.Context, s *Slot) error {
	if err := c.notLive(s); err != nil {
		return err
	}
	if err := c.stop(ctx, s); err != nil {
		return err
	}
	m, err := c.readMarker(s)
	if err != nil {
		return err
	}
	if err := c.writeMarker(s, stateRestoring, m.Backup, m.Started); err != nil {
		return fmt.Errorf("physical: %w", err)
	}
	return emptySlot(s)
}

// notLive refuses the live slot (ErrSlot).
func (c *Clusters) notLive(s *Slot) error {
	live, err := c.Live()
	if err != nil {
		return err
	}
	if live != nil && live.Name == s.Name {
		return fmt.Errorf("%w: %s is live", ErrSlot, s)
	}
	return nil
}

// Switch is the cutover: the live slot (if any) is stopped, next is stopped on the side
// port and started on the live port. It returns the slot that was live (nil on the
// first cutover). On error, call SwitchBack to bring the old slot back.
func (c *Clusters) Switch(ctx context.Context, next *Slot) (old *Slot, err error) {
	old, err = c.Live()
	if err != nil {
		return nil, err
	}
	if old != nil && old.Name == next.Name {
		return nil, fmt.Errorf("%w: %s is live already", ErrSlot, next)
	}
	if old != nil {
		if err := c.stop(ctx, old); err != nil {
			return old, err
		}
	}
	if err := c.stop(ctx, next); err != nil {
		return old, err
	}
	if err := c.setLive(next); err != nil {
		return old, fmt.Errorf("physical: %w", err)
	}
	return old, c.start(ctx, next)
}

// SwitchBack undoes Switch: next is stopped and old (nil: none) is live again.
func (c *Clusters) SwitchBack(ctx context.Context, next, old *Slot) error {
	if err := c.stop(ctx, next); err != nil {
		return err
	}
	if err := c.setLive(old); err != nil {
		return fmt.Errorf("physical: %w", err)
	}
	if old == nil {
		return nil
	}
	if up, err := c.Running(ctx, old); err == nil && up {
		return nil // Switch failed to stop it: it still serves on the live port
	}
	return c.start(ctx, old)
}

// Carry copies database from the live slot into s, running on the side port, with
// pg_dump -Fc and pg_restore (--no-owner --no-acl), replacing a database of that name
// there: a database of the live cluster that is not production's (an experimental
// environment's) survives the rebuild. What is written to it on the live cluster after
// the dump is lost at the cutover. A database the live cluster lacks is no error; it
// returns whether it carried one.
func (c *Clusters) Carry(ctx context.Context, s *Slot, database string) (bool, error) {
	live, err := c.Live()
	if err != nil || live == nil {
		return false, err
	}
	if live.Name == s.Name {
		return false, fmt.Errorf("%w: %s is live", ErrSlot, s)
	}
	if slices.Contains(system, database) {
		return false, fmt.Errorf("physical: %s is a system database", database)
	}
	lconn, err := c.Conn(ctx, live, "postgres", true)
	if err != nil {
		return false, err
	}
	var there bool
	err = lconn.QueryRow(ctx, "SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1)", database).Scan(&there)
	lconn.Close(context.WithoutCancel(ctx))
	if err != nil || !there {
		return false, err
	}
	conn, err := c.Conn(ctx, s, "postgres", false)
	if err != nil {
		return false, err
	}
	id := pgx.Identifier{database}.Sanitize()
	_, err = conn.Exec(ctx, "DROP DATABASE IF EXISTS "+id+" WITH (FORCE)")
	if err == nil {
		_, err = conn.Exec(ctx, "CREATE DATABASE "+id+" TEMPLATE template0")
	}
	conn.Close(context.WithoutCancel(ctx))
	if err != nil {
		return false, fmt.Errorf("physical: carry %s: %w", database, err)
	}
	bin := filepath.Dir(c.pgCtl)
	file := filepath.Join(s.Dir, "carry.dump")
	defer os.Remove(file)
	if _, err := c.owner.run(ctx, []string{filepath.Join(bin, "pg_dump"), "-Fc", "-f", file, "-d", c.LiveDSN(live, database)}); err != nil {
		return false, fmt.Errorf("physical: carry %s: %w", database, err)
	}
	if _, err := c.owner.run(ctx, []string{filepath.Join(bin, "pg_restore"), "--no-owner", "--no-acl", "--exit-on-error",
		"-d", c.SideDSN(s, database), file}); err != nil {
		return false, fmt.Errorf("physical: carry %s: %w", database, err)
	}
	return true, nil
}
