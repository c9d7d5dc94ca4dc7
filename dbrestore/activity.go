package dbrestore

import (
	"context"
	"fmt"
	"math"
	"time"

	"github.com/jackc/pgx/v5"
)

// Session is a client connection to a server (pg_stat_activity), as the release
// train's preflight sees it before production's service is stopped.
type Session struct {
	PID         int
	User        string
	Database    string
	Application string
	Client      string // client address; "": a unix socket
	State       string // active, idle, idle in transaction, ...
	// XactAge is how long its current transaction has been open, by the server's clock;
	// 0 when it has none.
	XactAge time.Duration
	// GID names a prepared transaction (PREPARE TRANSACTION; State "prepared", PID 0,
	// XactAge since it was prepared): no session holds it, and it keeps its locks until
	// COMMIT PREPARED or ROLLBACK PREPARED. "": a session.
	GID string
}

// Replica is a standby streaming from a server (pg_stat_replication).
type Replica struct {
	Name   string // application_name
	Client string
	State  string // streaming, catchup, ...
	// ReplayLag is how far the standby's replay is behind (replay_lag); 0 when the
	// server reports none (a standby that has caught up and is idle).
	ReplayLag time.Duration
}

// checkStatsVisible fails with ErrStatsHidden unless the connection's role sees other
// users' rows of pg_stat_activity and pg_stat_replication in full: without
// pg_read_all_stats (superusers have it), their backend_type, state, xact_start and
// replay_lag read as NULL, and a check built on them passes blind.
func checkStatsVisible(ctx context.Context, c *pgx.Conn) error {
	var role string
	var ok bool
	if err := c.QueryRow(ctx, `SELECT current_user, pg_has_role(current_user, 'pg_read_all_stats', 'USAGE')`).Scan(&role, &ok); err != nil {
		return fmt.Errorf("dbrestore: check the privileges of the role: %w", err)
	}
	if !ok {
		return fmt.Errorf("%w: role %s is neither a superuser nor a member of pg_read_all_stats, so pg_stat_activity and pg_stat_replication hide other users' sessions, transactions and standby lag from it; on the server run: GRANT pg_read_all_stats TO %s",
			ErrStatsHidden, pgx.Identifier{role}.Sanitize(), pgx.Identifier{role}.Sanitize())
	}
	return nil
}

// Sessions returns the server's client sessions other than the one asking, in every
// database (background workers, WAL senders and autovacuum are not sessions), then its
// prepared transactions (Session.GID), which hold locks without a session. It changes
// nothing. A role that cannot see other users' sessions (not a superuser, not
// in pg_read_all_stats) gets ErrStatsHidden, never a partial list.
func (s *Server) Sessions(ctx context.Context) ([]Session, error) {
	return readStats(ctx, s, "pg_stat_activity", `SELECT pid, coalesce(usename, ''), coalesce(datname, ''), coalesce(application_name, ''),
	coalesce(host(client_addr), ''), coalesce(state, ''),
	coalesce(extract(epoch FROM clock_timestamp() - xact_start)::float8, 0), ''
FROM pg_stat_activity
WHERE pid <> pg_backend_pid() AND backend_type = 'client backend'
UNION ALL
SELECT 0, owner::text, database::text, '', '', 'prepared', extract(epoch FROM clock_timestamp() - prepared)::float8, gid
FROM pg_prepared_xacts
ORDER BY 1, 8`, func(row pgx.CollectableRow) (Session, error) {
		var se Session
		var age float64
		err := row.Scan(&se.PID, &se.User, &se.Database, &se.Application, &se.Client, &se.State, &age, &se.GID)
		se.XactAge = seconds(age)
		return se, err
	})
}

// Replicas returns the standbys streaming from the server. It changes nothing. A role
// that cannot see their lag (not a superuser, not in pg_read_all_stats) gets
// ErrStatsHidden.
func (s *Server) Replicas(ctx context.Context) ([]Replica, error) {
	return readStats(ctx, s, "pg_stat_replication", `SELECT coalesce(application_name, ''), coalesce(host(client_addr), ''), coalesce(state, ''),
	coalesce(extract(epoch FROM replay_lag)::float8, 0)
FROM pg_stat_replication ORDER BY pid`, func(row pgx.CollectableRow) (Replica, error) {
		var r Replica
		var lag float64
		err := row.Scan(&r.Name, &r.Client, &r.State, &lag)
		r.ReplayLag = seconds(lag)
		return r, err
	})
}

// readStats reads the statistics view named view with the query sql, once
// checkStatsVisible says the role sees it in full, and returns its rows, each made by
// scan (nil for none).
func readStats[T any](ctx context.Context, s *Server, view, sql string, scan pgx.RowToFunc[T]) ([]T, error) {
	var out []T
	err := s.withConn(ctx, func(c *pgx.Conn) error {
		if err := checkStatsVisible(ctx, c); err != nil {
			return err
		}
		rows, err := c.Query(ctx, sql)
		if err == nil {
			out, err = pgx.AppendRows(out, rows, scan)
		}
		if err != nil {
			return fmt.Errorf("dbrestore: read %s: %w", view, err)
		}
		return nil
	})
	return out, err
}

func seconds(f float64) time.Duration {
	if f <= 0 || math.IsNaN(f) {
		return 0
	}
	return time.Duration(f * float64(time.Second))
}
