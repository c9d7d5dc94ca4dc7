package pgtest_test

import (
	"context"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/restage/restage/dbrestore/pgtest"
)

func TestContainerHonoursCredentialsAndDatabase(t *testing.T) {
	srv := pgtest.Container(t, pgtest.ContainerOptions{
		User:     "alice",
		Password: `pa ss"word`,
		Database: "my app",
	})
	if srv.Container == nil || srv.Container.ID == "" {
		t.Fatalf("no container details: %+v", srv.Container)
	}
	if n := srv.QueryInt(t, "my app", "SELECT count(*) FROM pg_roles WHERE rolname = current_user AND current_user = 'alice' AND rolsuper"); n != 1 {
		t.Fatalf("current_user is not the superuser alice (count %d)", n)
	}
	srv.Exec(t, "my app", "CREATE TABLE t (id int); INSERT INTO t SELECT generate_series(1, 42)")
	if n := srv.QueryInt(t, "my app", "SELECT count(*) FROM t"); n != 42 {
		t.Fatalf("count = %d, want 42", n)
	}

	// TCP connections need the password: a wrong one is refused.
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	wrong := &pgtest.Server{Host: srv.Host, Port: srv.Port, User: "alice", Password: "wrong"}
	conn, err := pgx.Connect(ctx, wrong.DSN("my app"))
	if err == nil {
		conn.Close(ctx)
		t.Fatal("connected with a wrong password")
	}
	if !strings.Contains(err.Error(), "password authentication failed") {
		t.Fatalf("wrong password: got %v, want a password authentication failure", err)
	}
}

func TestContainerStopRemovesIt(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	srv := pgtest.Container(t, pgtest.ContainerOptions{})
	if n := srv.QueryInt(t, "postgres", "SELECT 1"); n != 1 {
		t.Fatalf("SELECT 1 = %d", n)
	}
	if err := srv.Stop(); err != nil {
		t.Fatal(err)
	}
	if _, _, err := srv.Container.Exec(ctx, "true"); err == nil {
		t.Fatalf("container %.12s still runs after Stop", srv.Container.ID)
	}
	cctx, ccancel := context.WithTimeout(ctx, 5*time.Second)
	defer ccancel()
	if conn, err := pgx.Connect(cctx, srv.AdminDSN()); err == nil {
		conn.Close(ctx)
		t.Fatal("server still accepts connections after Stop")
	}
}

func TestContainersReachEachOtherOnANetwork(t *testing.T) {
	net := pgtest.ContainerNetwork(t)
	prod := pgtest.Container(t, pgtest.ContainerOptions{Network: net, Aliases: []string{"production"}, Database: "app"})
	staging := pgtest.Container(t, pgtest.ContainerOptions{Network: net, Aliases: []string{"staging"}})
	if prod.Container.IP == "" || prod.Container.IP == staging.Container.IP {
		t.Fatalf("addresses on the network: production %q, staging %q", prod.Container.IP, staging.Container.IP)
	}
	if got := prod.Container.Addr(); got != "production:5432" {
		t.Fatalf("Addr() = %q, want production:5432", got)
	}
	prod.Exec(t, "app", "CREATE TABLE marker (v text); INSERT INTO marker VALUES ('from production')")

	// From inside the staging container, production is reached by its alias, with its password.
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	code, out, err := staging.Container.Exec(ctx, "psql", "-X", "-At", "-d", prod.InternalDSN("app"),
		"-c", "SELECT v || ' ' || system_identifier FROM marker, pg_control_system()")
	if err != nil || code != 0 {
		t.Fatalf("psql in staging against production: exit %d, %v\n%s", code, err, out)
	}
	want := "from production " + strconv.FormatUint(prod.SystemIdentifier(t), 10)
	if !strings.Contains(out, want) {
		t.Fatalf("psql output %q, want %q", out, want)
	}
	if a, b := prod.SystemIdentifier(t), staging.SystemIdentifier(t); a == b {
		t.Fatalf("both containers have system_identifier %d", a)
	}
}

func TestStartContainerValidatesOptions(t *testing.T) {
	_, err := pgtest.StartContainer(context.Background(), pgtest.ContainerOptions{Aliases: []string{"db"}})
	if err == nil || !strings.Contains(err.Error(), "Network") {
		t.Fatalf("aliases without a network: got %v, want an error naming Network", err)
	}
	_, err = pgtest.StartContainer(context.Background(), pgtest.ContainerOptions{Env: map[string]string{"POSTGRES_PASSWORD": "x"}})
	if err == nil || !strings.Contains(err.Error(), "Password") {
		t.Fatalf("POSTGRES_PASSWORD in Env: got %v, want an error pointing to Password", err)
	}
}
