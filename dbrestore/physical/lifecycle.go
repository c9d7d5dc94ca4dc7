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

// StartSide starts a restored slot on the side port, with no TCP listener and no
// logical replication workers, its socket in its own folder: nothing but restage can
// reach it before Neutralize. It returns once recovery has finished (promoted).
func (c *Clusters) StartSide(ctx context.Context, s *Slot) error {
	if live, err := c.Live(); err != nil {
		return err
	} else if live != nil && live.Name == s.Name {
		return fmt.Errorf("%w: %s is live", ErrSlot, s)
	}
	return c.startAs(ctx, s, side)
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
// databases are dropped unless opts.Keep lists them, and the user mappings of every
// database left are dropped (postgres_fdw and dblink reach no server with production's
// logins), and with opts.ClearPasswords every role's password is removed. It returns
// what it did.
func (c *Clusters) Neutralize(ctx context.Context, s *Slot, opts NeutralizeOptions) (string, error) {
	if opts.From == "" || opts.To == "" {
		return "", errors.New("physical: NeutralizeOptions.From and To are required")
	}
	conn, err := c.Conn(ctx, s, "postgres", false)
	if err != nil {
		return "", err
	}
	defer conn.Close(context.WithoutCancel(ctx))
	var did []string
	var archive string
	if err := conn.QueryRow(ctx, "SELECT current_setting('archive_mode')").Scan(&archive); err != nil {
		return "", fmt.Errorf("physical: %w", err)
	}
	if archive != "off" {
		return "", fmt.Errorf("physical: archive_mode is %s on the restored cluster, want off", archive)
	}
	// Replication slots first: no walsender may serve them.
	var slots []string
	rows, _ := conn.Query(ctx, "SELECT slot_name FROM pg_replication_slots ORDER BY 1")
	slots, err = pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return "", fmt.Errorf("physical: replication slots: %w", err)
	}
	for _, name := range slots {
		if _, err := conn.Exec(ctx, "SELECT pg_drop_replication_slot($1)", name); err != nil {
			return "", fmt.Errorf("physical: drop replication slot %s: %w", name, err)
		}
	}
	if len(slots) > 0 {
		did = append(did, fmt.Sprintf("dropped replication slots %s", strings.Join(slots, ", ")))
	}
	// Subscriptions: no worker runs them (max_logical_replication_workers = 0); each is
	// disabled and detached from its slot on production before it is dropped, so that
	// dropping it does not reach production.
	type sub struct{ db, name string }
	rows, _ = conn.Query(ctx, "SELECT d.datname, s.subname FROM pg_subscription s JOIN pg_database d ON d.oid = s.subdbid ORDER BY 1, 2")
	subs, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (sub, error) {
		var x sub
		return x, r.Scan(&x.db, &x.name)
	})
	if err != nil {
		return "", fmt.Errorf("physical: subscriptions: %w", err)
	}
	for _, x := range subs {
		if err := c.dropSubscription(ctx, s, x.db, x.name); err != nil {
			return "", err
		}
		did = append(did, fmt.Sprintf("dropped subscription %s in %s", x.name, x.db))
	}
	rows, _ = conn.Query(ctx, "SELECT datname FROM pg_database ORDER BY 1")
	dbs, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return "", fmt.Errorf("physical: databases: %w", err)
	}
	if !slices.Contains(dbs, opts.From) {
		return "", fmt.Errorf("%w: the backup holds no database %s (it holds %s)", ErrNoBackup, opts.From, strings.Join(dbs, ", "))
	}
	var dropped []string
	for _, db := range dbs {
		if db == opts.From || slices.Contains(system, db) || slices.Contains(opts.Keep, db) {
			continue
		}
		if _, err := conn.Exec(ctx, "DROP DATABASE "+pgx.Identifier{db}.Sanitize()+" WITH (FORCE)"); err != nil {
			return "", fmt.Errorf("physical: drop %s: %w", db, err)
		}
		dropped = append(dropped, db)
	}
	if opts.From != opts.To {
		if slices.Contains(opts.Keep, opts.To) && slices.Contains(dbs, opts.To) {
			return "", fmt.Errorf("physical: the backup holds a database %s besides %s, and cluster.keep keeps it", opts.To, opts.From)
		}
		if _, err := conn.Exec(ctx, "ALTER DATABASE "+pgx.Identifier{opts.From}.Sanitize()+" RENAME TO "+pgx.Identifier{opts.To}.Sanitize()); err != nil {
			return "", fmt.Errorf("physical: rename %s to %s: %w", opts.From, opts.To, err)
		}
		did = append(did, fmt.Sprintf("renamed %s to %s", opts.From, opts.To))
	}
	if len(dropped) > 0 {
		did = append(did, "dropped production's databases "+strings.Join(dropped, ", "))
	}
	// User mappings last, in every database left that takes connections: the logins
	// postgres_fdw and dblink use to reach other servers, production's among them.
	rows, _ = conn.Query(ctx, "SELECT datname FROM pg_database WHERE datallowconn ORDER BY 1")
	left, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return "", fmt.Errorf("physical: databases: %w", err)
	}
	for _, db := range left {
		mappings, err := c.dropUserMappings(ctx, s, db)
		if err != nil {
			return "", err
		}
		if len(mappings) > 0 {
			did = append(did, fmt.Sprintf("dropped user mappings %s in %s", strings.Join(mappings, ", "), db))
		}
	}
	if opts.ClearPasswords {
		cleared, err := clearPasswords(ctx, conn)
		if err != nil {
			return "", err
		}
		if len(cleared) > 0 {
			did = append(did, "removed the passwords of roles "+strings.Join(cleared, ", "))
		}
	}
	if len(did) == 0 {
		did = append(did, "nothing to neutralize")
	}
	return "archive_mode off, no standby; " + strings.Join(did, "; "), nil
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

// ExecFiles runs each SQL file in database on the slot running on the side port, each
// in a transaction, as role when it is not "".
func (c *Clusters) ExecFiles(ctx context.Context, s *Slot, database, role string, files []string) error {
	conn, err := c.Conn(ctx, s, database, false)
	if err != nil {
		return err
	}
	defer conn.Close(context.WithoutCancel(ctx))
	for _, f := range files {
		sql, err := os.ReadFile(f)
		if err != nil {
			return fmt.Errorf("physical: %w", err)
		}
		err = pgx.BeginFunc(ctx, conn, func(tx pgx.Tx) error {
			if role != "" {
				if _, err := tx.Exec(ctx, "SET LOCAL ROLE "+pgx.Identifier{role}.Sanitize()); err != nil {
					return err
				}
			}
			_, err := tx.Exec(ctx, string(sql))
			return err
		})
		if err != nil {
			return fmt.Errorf("physical: %s: %w", f, withholdRows(err))
		}
	}
	return nil
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
