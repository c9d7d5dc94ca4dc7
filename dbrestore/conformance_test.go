package dbrestore_test

import (
	"context"
	"log/slog"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/restage/restage/dbrestore"
	"github.com/restage/restage/dbrestore/dbrestoretest"
	"github.com/restage/restage/dbrestore/pgtest"
)

// Server keeps the promises the staging Rebuilder relies on, on a real PostgreSQL server.
func TestServerConformance(t *testing.T) {
	pgtest.Require(t)
	staging := pgtest.Shared(t, "staging")
	const protected = "dbrt_protected"
	dbrestoretest.Admin(t, dbrestoretest.Fixture{
		New: func(t *testing.T) dbrestoretest.Server {
			s, err := dbrestore.NewServer(dbrestore.ServerConfig{AdminDSN: staging.AdminDSN(),
				Protect: []string{protected}, Logger: slog.New(slog.DiscardHandler)})
			if err != nil {
				t.Fatal(err)
			}
			return s
		},
		SystemID:  staging.SystemIdentifier(t),
		Protected: protected,
		Create: func(t *testing.T, _ dbrestoretest.Server, name, mark string) {
			staging.Exec(t, "postgres", "CREATE DATABASE "+pgx.Identifier{name}.Sanitize())
			staging.Exec(t, name, "CREATE TABLE mark (v text)")
			staging.Exec(t, name, "INSERT INTO mark VALUES ($1)", mark)
		},
		Mark: func(t *testing.T, _ dbrestoretest.Server, name string) string { return readMark(t, staging, name) },
		Drop: func(t *testing.T, _ dbrestoretest.Server, name string) {
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			conn, err := pgx.Connect(ctx, staging.AdminDSN())
			if err != nil {
				t.Errorf("drop %q: %v", name, err)
				return
			}
			defer conn.Close(ctx)
			if _, err := conn.Exec(ctx, "DROP DATABASE IF EXISTS "+pgx.Identifier{name}.Sanitize()+" WITH (FORCE)"); err != nil {
				t.Errorf("drop %q: %v", name, err)
			}
		},
		Backup: func(t *testing.T) (*dbrestore.Backup, string) {
			prod := pgtest.Shared(t, "production")
			db := prod.Database(t)
			prod.Exec(t, db, "CREATE TABLE mark (v text)")
			prod.Exec(t, db, "INSERT INTO mark VALUES ('from the backup')")
			b, err := dbrestore.Dump(t.Context(), dbrestore.Config{Logger: slog.New(slog.DiscardHandler)},
				dbrestore.DumpOptions{DSN: prod.DSN(db), Dir: t.TempDir(), Counts: true})
			if err != nil {
				t.Fatalf("Dump: %v", err)
			}
			return b, "from the backup"
		},
	})
	if n := staging.QueryInt(t, "postgres", "SELECT count(*) FROM pg_database WHERE datname LIKE 'dbrt\\_%'"); n != 0 {
		t.Errorf("the suite left %d databases behind", n)
	}
}

// readMark returns the mark Create put in database name.
func readMark(t *testing.T, srv *pgtest.Server, name string) string {
	t.Helper()
	conn, err := pgx.Connect(t.Context(), srv.DSN(name))
	if err != nil {
		t.Fatalf("read the mark of %q: %v", name, err)
	}
	defer conn.Close(context.WithoutCancel(t.Context()))
	var mark string
	if err := conn.QueryRow(t.Context(), "SELECT v FROM mark").Scan(&mark); err != nil {
		t.Fatalf("read the mark of %q: %v", name, err)
	}
	return mark
}
