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

// Sessions returns the server's client sessions other than the one asking, in every
// database (background workers, WAL senders and autovacuum are not sessions). It
// changes nothing.
func (s *Server) Sessions(ctx context.Context) ([]Session, error) {
	return readRows(ctx, s, "pg_stat_activity", `SELECT pid, coalesce(usename, ''), coalesce(datname, ''), coalesce(application_name, ''),
	coalesce(host(client_addr), ''), coalesce(state, ''),
	coalesce(extract(epoch FROM clock_timestamp() - xact_start)::float8, 0)
FROM pg_stat_activity
WHERE pid <> pg_backend_pid() AND backend_type = 'client backend'
ORDER BY pid`, func(row pgx.CollectableRow) (Session, error) {
		var se Session
		var age float64
		err := row.Scan(&se.PID, &se.User, &se.Database, &se.Application, &se.Client, &se.State, &age)
		se.XactAge = seconds(age)
		return se, err
	})
}

// Replicas returns the standbys streaming from the server. It changes nothing.
func (s *Server) Replicas(ctx context.Context) ([]Replica, error) {
	return readRows(ctx, s, "pg_stat_replication", `SELECT coalesce(application_name, ''), coalesce(host(client_addr), ''), coalesce(state, ''),
	coalesce(extract(epoch FROM replay_lag)::float8, 0)
FROM pg_stat_replication ORDER BY pid`, func(row pgx.CollectableRow) (Replica, error) {
		var r Replica
		var lag float64
		err := row.Scan(&r.Name, &r.Client, &r.State, &lag)
		r.ReplayLag = seconds(lag)
		return r, err
	})
}

// readRows runs the query sql on the server and returns its rows, each made by scan (nil
// for none); view names what it reads, for the error.
func readRows[T any](ctx context.Context, s *Server, view, sql string, scan pgx.RowToFunc[T]) ([]T, error) {
	var out []T
	err := s.withConn(ctx, func(c *pgx.Conn) error {
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
