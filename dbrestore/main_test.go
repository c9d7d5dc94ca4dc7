package dbrestore

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/restage/restage/dbrestore/pgtest"
	"github.com/restage/restage/internal/syncbuf"
	"github.com/restage/restage/internal/testutil"
)

func TestMain(m *testing.M) {
	if tool := os.Getenv(procHelperEnv); tool != "" {
		// A process that runs tool as restage runs pg_dump, for a test to kill it.
		err := (&proc{path: tool, args: os.Args[1:]}).run(context.Background())
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	flag.Parse()
	if _, err := pgtest.BinDir(); err != nil && os.Getenv(pgtest.RequireEnv) != "1" {
		// Examples need real servers and cannot skip themselves: run the tests only
		// (which skip with a message).
		if f := flag.Lookup("test.run"); f != nil && f.Value.String() == "" {
			_ = flag.Set("test.run", "^(Test|Benchmark)")
		}
	}
	os.Exit(pgtest.Main(m))
}

// testCtx returns a context ending with the test (generous: machines are loaded).
func testCtx(tb testing.TB) context.Context {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	tb.Cleanup(cancel)
	return ctx
}

// servers returns the production and staging servers, skipping when the PostgreSQL
// client programs are missing (failing with RESTAGE_REQUIRE_POSTGRES=1).
func servers(tb testing.TB) (prod, staging *pgtest.Server) {
	tb.Helper()
	pgtest.Require(tb)
	for _, tool := range []string{"pg_dump", "pg_restore"} {
		if _, err := (Config{}).tool(tool); err != nil {
			if os.Getenv(pgtest.RequireEnv) == "1" {
				tb.Fatal(err)
			}
			tb.Skip(err)
		}
	}
	return pgtest.Shared(tb, "production"), pgtest.Shared(tb, "staging")
}

// testLogger returns a logger whose lines the returned buffer collects.
func testLogger(tb testing.TB) (*slog.Logger, *syncbuf.Buffer) {
	tb.Helper()
	lb := &syncbuf.Buffer{}
	return slog.New(slog.NewTextHandler(lb, &slog.HandlerOptions{Level: slog.LevelDebug})), lb
}

// seed fills db with a few tables, one with an awkward name in an awkward schema.
func seed(tb testing.TB, srv *pgtest.Server, db string, rows int) {
	tb.Helper()
	srv.Exec(tb, db, fmt.Sprintf(`
CREATE TABLE users (id serial PRIMARY KEY, email text NOT NULL UNIQUE, created timestamptz DEFAULT now());
INSERT INTO users (email) SELECT 'user' || g || '@example.org' FROM generate_series(1, %[1]d) g;
CREATE TABLE sessions (id bigserial PRIMARY KEY, user_id int REFERENCES users, token text);
INSERT INTO sessions (user_id, token) SELECT g, md5(g::text) FROM generate_series(1, %[1]d / 2) g;
CREATE SCHEMA "Odd ""schema""";
CREATE TABLE "Odd ""schema"""."we ird 'table'" (id int PRIMARY KEY, note text);
INSERT INTO "Odd ""schema"""."we ird 'table'" SELECT g, 'n' || g FROM generate_series(1, 7) g;
CREATE INDEX ON users (created);
CREATE VIEW active AS SELECT u.email FROM users u JOIN sessions s ON s.user_id = u.id;
COMMENT ON TABLE users IS 'people';
`, rows))
}

// dumpOf backs up db of srv into a fresh folder with row counts.
func dumpOf(tb testing.TB, srv *pgtest.Server, db string, opts DumpOptions) *Backup {
	tb.Helper()
	if opts.DSN == "" {
		opts.DSN = srv.DSN(db)
	}
	if opts.Dir == "" {
		opts.Dir = tb.TempDir()
	}
	b, err := Dump(testCtx(tb), Config{}, opts)
	if err != nil {
		tb.Fatalf("Dump: %v", err)
	}
	return b
}

// seeded returns the production and staging servers and a fresh production database
// seeded with rows users (seed).
func seeded(tb testing.TB, rows int) (prod, staging *pgtest.Server, db string) {
	tb.Helper()
	prod, staging = servers(tb)
	db = prod.Database(tb)
	seed(tb, prod, db, rows)
	return prod, staging, db
}

// backupOf returns the production and staging servers and a backup of a fresh
// production database seeded with rows users.
func backupOf(tb testing.TB, rows int, opts DumpOptions) (prod, staging *pgtest.Server, b *Backup) {
	tb.Helper()
	prod, staging, db := seeded(tb, rows)
	return prod, staging, dumpOf(tb, prod, db, opts)
}

// stagingServer returns the staging server and a Server on it that knows production.
func stagingServer(tb testing.TB) (*pgtest.Server, *Server) {
	tb.Helper()
	prod, staging := servers(tb)
	return staging, newServer(tb, staging, ServerConfig{Production: []uint64{prod.SystemIdentifier(tb)}})
}

// newServer returns a Server on srv.
func newServer(tb testing.TB, srv *pgtest.Server, cfg ServerConfig) *Server {
	tb.Helper()
	if cfg.AdminDSN == "" {
		cfg.AdminDSN = srv.AdminDSN()
	}
	s, err := NewServer(cfg)
	if err != nil {
		tb.Fatal(err)
	}
	return s
}

// dbName returns a fresh database name for the test, dropped at the end.
func dbName(tb testing.TB, srv *pgtest.Server, stem string) string {
	tb.Helper()
	name := fmt.Sprintf("%s_%d", stem, time.Now().UnixNano()%1e9)
	tb.Cleanup(func() { dropQuietly(srv, name) })
	return name
}

func dropQuietly(srv *pgtest.Server, name string) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	conn, err := pgx.Connect(ctx, srv.AdminDSN())
	if err != nil {
		return
	}
	defer conn.Close(ctx)
	_, _ = conn.Exec(ctx, "DROP DATABASE IF EXISTS "+pgx.Identifier{name}.Sanitize()+" WITH (FORCE)")
}

func dbExists(tb testing.TB, srv *pgtest.Server, name string) bool {
	tb.Helper()
	return srv.QueryInt(tb, "postgres", "SELECT count(*) FROM pg_database WHERE datname = $1", name) == 1
}

func allowConn(tb testing.TB, srv *pgtest.Server, name string) bool {
	tb.Helper()
	return srv.QueryInt(tb, "postgres", "SELECT datallowconn::int FROM pg_database WHERE datname = $1", name) == 1
}

// rewriteManifest changes a backup's manifest on disk (and in b).
func rewriteManifest(tb testing.TB, b *Backup, change func(*Manifest)) {
	tb.Helper()
	change(&b.Manifest)
	data, err := json.MarshalIndent(b.Manifest, "", "  ")
	if err != nil {
		tb.Fatal(err)
	}
	if err := os.WriteFile(b.ManifestPath, data, 0o644); err != nil {
		tb.Fatal(err)
	}
}

// requireErrContains fails tb unless err's message holds every part.
var requireErrContains = testutil.RequireErrorContains
