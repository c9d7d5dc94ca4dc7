package crosshost_test

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/restage/restage/dbrestore"
	"github.com/restage/restage/dbrestore/pgtest"
	"github.com/restage/restage/internal/syncbuf"
)

const (
	prodDB    = "launchpad_prod"
	stagingDB = "launchpad_staging"
)

// schema is production's data: a few related tables, an index, a view, a sequence in use.
const schema = `
CREATE TABLE person (id serial PRIMARY KEY, name text NOT NULL, email text UNIQUE);
CREATE TABLE bug (
	id      serial PRIMARY KEY,
	owner   int NOT NULL REFERENCES person,
	title   text NOT NULL,
	created timestamptz NOT NULL DEFAULT '2026-01-01 00:00:00+00'
);
CREATE INDEX bug_owner ON bug (owner);
CREATE VIEW open_bug AS SELECT * FROM bug WHERE id % 3 <> 0;
INSERT INTO person (name, email) SELECT 'person ' || i, 'p' || i || '@example.org' FROM generate_series(1, 400) i;
INSERT INTO bug (owner, title) SELECT 1 + i % 400, 'bug #' || i || ' ''quoted'' ' || md5(i::text) FROM generate_series(1, 6000) i;
`

// fingerprint sums up the data of db, so that two servers can be compared.
const fingerprint = `SELECT concat_ws(' ',
	(SELECT md5(string_agg(p::text, ',' ORDER BY id)) FROM person p),
	(SELECT md5(string_agg(b::text, ',' ORDER BY id)) FROM bug b),
	(SELECT count(*) FROM open_bug),
	(SELECT last_value FROM bug_id_seq))`

func TestBackupFromProductionHostRestoresIntoStagingHost(t *testing.T) {
	network := pgtest.ContainerNetwork(t)
	prod := pgtest.Container(t, pgtest.ContainerOptions{
		Network: network, Aliases: []string{"production-db"}, Database: prodDB,
	})
	staging := pgtest.Container(t, pgtest.ContainerOptions{
		Network: network, Aliases: []string{"staging-db"},
	})

	// Each server at its own address: its IP on the network where this host reaches it
	// (both on port 5432, so only the host tells them apart), else its mapped port.
	prodAt, stagingAt := direct(t, prod), direct(t, staging)
	if prodAt.Host == stagingAt.Host && prodAt.Port == stagingAt.Port {
		t.Fatalf("production and staging share the address %s:%d", prodAt.Host, prodAt.Port)
	}
	t.Logf("production at %s:%d (%s), staging at %s:%d (%s)",
		prodAt.Host, prodAt.Port, prod.Container.Addr(), stagingAt.Host, stagingAt.Port, staging.Container.Addr())
	prodID, stagingID := prodAt.SystemIdentifier(t), stagingAt.SystemIdentifier(t)
	if prodID == stagingID {
		t.Fatalf("both servers have system_identifier %d", prodID)
	}

	prodAt.Exec(t, prodDB, schema)
	want := queryText(t, prodAt, prodDB, fingerprint)
	var logs syncbuf.Buffer
	cfg := dbrestore.Config{Logger: slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))}
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Minute)
	defer cancel()

	// Production side: pg_dump on this host against the production container.
	dir := t.TempDir()
	b, err := dbrestore.Dump(ctx, cfg, dbrestore.DumpOptions{DSN: prodAt.DSN(prodDB), Dir: dir, Counts: true})
	if err != nil {
		t.Fatal(err)
	}
	if b.Manifest.SystemIdentifier != prodID {
		t.Fatalf("manifest system_identifier %d, want production's %d", b.Manifest.SystemIdentifier, prodID)
	}
	if n := b.Manifest.RowCounts["public.bug"]; n != 6000 {
		t.Fatalf("manifest row count of public.bug = %d, want 6000", n)
	}

	// Staging side: find, verify, restore beside the live database, swap.
	cat, err := dbrestore.NewCatalog(dir, cfg)
	if err != nil {
		t.Fatal(err)
	}
	found, err := cat.Wait(ctx, dbrestore.WaitOptions{Database: prodDB, MaxAge: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	if err := cat.Verify(ctx, found); err != nil {
		t.Fatal(err)
	}
	stagingSrv, err := dbrestore.NewServer(dbrestore.ServerConfig{
		AdminDSN: stagingAt.AdminDSN(), Protect: []string{prodDB}, Logger: cfg.Logger,
	})
	if err != nil {
		t.Fatal(err)
	}
	opts := dbrestore.RestoreOptions{Target: stagingDB + "_next"}
	res, err := stagingSrv.Restore(ctx, found, opts)
	if err != nil {
		t.Fatal(err)
	}
	if res.Objects == 0 || res.RowCounts["public.bug"] != 6000 {
		t.Fatalf("restore result: %d objects, row counts %v", res.Objects, res.RowCounts)
	}
	if err := stagingSrv.Swap(ctx, stagingDB, stagingDB+"_next", stagingDB+"_prev"); err != nil {
		t.Fatal(err)
	}
	if got := queryText(t, stagingAt, stagingDB, fingerprint); got != want {
		t.Fatalf("staging's data differs from production's:\n got %s\nwant %s", got, want)
	}

	// The same restore pointed at the production server, through a different address than
	// the one the backup was taken from and with a target name nothing protects, is refused
	// because the server's system_identifier is the backup's source.
	for _, at := range []*pgtest.Server{prod, prodAt} {
		prodSrv, err := dbrestore.NewServer(dbrestore.ServerConfig{
			AdminDSN: at.AdminDSN(), Protect: []string{prodDB}, Logger: cfg.Logger,
		})
		if err != nil {
			t.Fatal(err)
		}
		_, err = prodSrv.Restore(ctx, found, opts)
		if !errors.Is(err, dbrestore.ErrProduction) || errors.Is(err, dbrestore.ErrProtected) {
			t.Fatalf("restore into production at %s:%d: got %v, want ErrProduction (not ErrProtected)", at.Host, at.Port, err)
		}
		if !strings.Contains(err.Error(), strconv.FormatUint(prodID, 10)) {
			t.Errorf("refusal does not name the system_identifier %d: %v", prodID, err)
		}
		if strings.Contains(err.Error(), prod.Password) {
			t.Errorf("refusal shows the password: %v", err)
		}
		// Having seen the backup, this Server refuses every change on production.
		prodAt.Exec(t, "postgres", "CREATE DATABASE scratch")
		if err := prodSrv.Drop(ctx, "scratch"); !errors.Is(err, dbrestore.ErrProduction) {
			t.Fatalf("drop on production: got %v, want ErrProduction", err)
		}
		prodAt.Exec(t, "postgres", "DROP DATABASE scratch")
	}
	if n := prodAt.QueryInt(t, "postgres", "SELECT count(*) FROM pg_database WHERE datname LIKE 'launchpad_staging%'"); n != 0 {
		t.Fatalf("%d staging databases appeared on production", n)
	}
	if got := queryText(t, prodAt, prodDB, fingerprint); got != want {
		t.Fatalf("production's data changed:\n got %s\nwant %s", got, want)
	}
	if strings.Contains(logs.String(), prod.Password) || strings.Contains(logs.String(), staging.Password) {
		t.Error("a password appears in dbrestore's log")
	}
}

// direct returns srv at its container's IP and port 5432 when this process reaches it
// there, else srv itself (the mapped port, e.g. where the engine runs in a VM).
func direct(t *testing.T, srv *pgtest.Server) *pgtest.Server {
	t.Helper()
	addr := net.JoinHostPort(srv.Container.IP, "5432")
	conn, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Logf("container %.12s: %s unreachable from this host (%v); using the mapped port", srv.Container.ID, addr, err)
		return srv
	}
	conn.Close()
	return &pgtest.Server{Host: srv.Container.IP, Port: 5432, User: srv.User, Password: srv.Password, Container: srv.Container}
}

func queryText(t *testing.T, srv *pgtest.Server, db, sql string) string {
	t.Helper()
	conn := srv.Connect(t, db)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	var s string
	if err := conn.QueryRow(ctx, sql).Scan(&s); err != nil {
		t.Fatalf("%s: %v", sql, err)
	}
	return s
}
