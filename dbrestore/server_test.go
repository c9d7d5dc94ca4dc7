package dbrestore

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/restage/restage/dbrestore/pgtest"
	"github.com/restage/restage/progress"
)

// makeDB creates name on srv with a marker row, dropped at the end of the test.
func makeDB(tb testing.TB, srv *pgtest.Server, name string, marker int) {
	tb.Helper()
	tb.Cleanup(func() { dropQuietly(srv, name) })
	srv.Exec(tb, "postgres", "CREATE DATABASE "+ident(name))
	srv.Exec(tb, name, fmt.Sprintf("CREATE TABLE marker (v int); INSERT INTO marker VALUES (%d)", marker))
}

func marker(tb testing.TB, srv *pgtest.Server, name string) int64 {
	tb.Helper()
	return srv.QueryInt(tb, name, "SELECT v FROM marker")
}

func TestSwap(t *testing.T) {
	staging, srv := stagingServer(t)
	ctx := testCtx(t)
	stem := dbName(t, staging, `sw "q" `)
	live, next, prev := stem+" live", stem+" next", stem+"'s prev"
	t.Cleanup(func() { dropQuietly(staging, live); dropQuietly(staging, next); dropQuietly(staging, prev) })

	// First run: no live database yet.
	makeDB(t, staging, next, 1)
	if err := srv.Swap(ctx, live, next, prev); err != nil {
		t.Fatal(err)
	}
	if marker(t, staging, live) != 1 || dbExists(t, staging, next) || dbExists(t, staging, prev) {
		t.Fatal("first swap")
	}

	// Second run, with a session still connected to live and one to next.
	makeDB(t, staging, next, 2)
	liveConn := staging.Connect(t, live)
	nextConn := staging.Connect(t, next)
	if err := srv.Swap(ctx, live, next, prev); err != nil {
		t.Fatal(err)
	}
	if marker(t, staging, live) != 2 || marker(t, staging, prev) != 1 || dbExists(t, staging, next) {
		t.Fatal("second swap")
	}
	for _, c := range []*pgx.Conn{liveConn, nextConn} {
		if err := c.Ping(ctx); err == nil {
			t.Error("a session survived the swap")
		}
	}
	if !allowConn(t, staging, live) || !allowConn(t, staging, prev) {
		t.Fatal("connections not allowed again after the swap")
	}

	// prev exists / next missing / same names: refused, nothing renamed.
	makeDB(t, staging, next, 3)
	if err := srv.Swap(ctx, live, next, prev); !errors.Is(err, ErrExists) {
		t.Fatalf("swap onto an existing prev: %v", err)
	}
	if err := srv.Swap(ctx, live, next+"x", prev+"x"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("swap without next: %v", err)
	}
	if err := srv.Swap(ctx, live, live, prev+"x"); err == nil {
		t.Fatal("swap with equal names")
	}
	if marker(t, staging, live) != 2 || marker(t, staging, prev) != 1 || marker(t, staging, next) != 3 {
		t.Fatal("a refused swap renamed something")
	}
}

// datallowconn is restored when an operation fails after closing a database to new
// connections (here: its context is cancelled at that moment).
func TestAllowConnectionsRestoredAfterFailure(t *testing.T) {
	prod, staging := servers(t)
	stem := dbName(t, staging, "allow")
	live, next, prev := stem+"_live", stem+"_next", stem+"_prev"
	makeDB(t, staging, live, 1)
	makeDB(t, staging, next, 2)
	srv := newServer(t, staging, ServerConfig{Production: []uint64{prod.SystemIdentifier(t)}})
	check := func(op string, err error, names ...string) {
		t.Helper()
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("%s: %v, want context.Canceled", op, err)
		}
		for _, n := range names {
			if !dbExists(t, staging, n) {
				t.Fatalf("%s: %s gone", op, n)
			}
			if !allowConn(t, staging, n) {
				t.Fatalf("%s: connections to %s still refused", op, n)
			}
		}
	}
	cancelAfterTerminate := func() context.Context {
		ctx, cancel := context.WithCancel(testCtx(t))
		srv.afterTerminate = cancel
		return ctx
	}
	check("swap", srv.Swap(cancelAfterTerminate(), live, next, prev), live, next)
	if dbExists(t, staging, prev) || marker(t, staging, live) != 1 {
		t.Fatal("a failed swap renamed something")
	}
	check("drop", srv.Drop(cancelAfterTerminate(), next), next)
	check("rename", srv.Rename(cancelAfterTerminate(), next, prev), next)
	srv.afterTerminate = nil

	// A database that was closed to connections before stays closed.
	staging.Exec(t, "postgres", "ALTER DATABASE "+ident(next)+" ALLOW_CONNECTIONS false")
	if _, err := srv.Terminate(testCtx(t), next); err != nil {
		t.Fatal(err)
	}
	if allowConn(t, staging, next) {
		t.Fatal("Terminate opened a closed database")
	}
}

func TestCloneDropRenameListTerminate(t *testing.T) {
	staging, srv := stagingServer(t)
	ctx := testCtx(t)
	stem := dbName(t, staging, `cl "x"`)
	tmpl, clone, renamed := stem+" tmpl", stem+" clone", stem+" renamed"
	t.Cleanup(func() { dropQuietly(staging, clone); dropQuietly(staging, renamed) })
	makeDB(t, staging, tmpl, 5)
	held := staging.Connect(t, tmpl) // Clone must terminate it to copy

	if err := srv.Clone(ctx, tmpl, clone); err != nil {
		t.Fatal(err)
	}
	if marker(t, staging, clone) != 5 || !allowConn(t, staging, tmpl) || !allowConn(t, staging, clone) {
		t.Fatal("clone")
	}
	if held.Ping(ctx) == nil {
		t.Error("the template's session survived")
	}
	// Cloning again replaces the clone, and reports the template's size as progress.
	staging.Exec(t, clone, "UPDATE marker SET v = 99")
	staging.Exec(t, tmpl, "UPDATE marker SET v = 6")
	var last [2]int64
	pctx := progress.With(ctx, func(done, total int64) { last = [2]int64{done, total} })
	if err := srv.Clone(pctx, tmpl, clone); err != nil {
		t.Fatal(err)
	}
	if size := staging.QueryInt(t, "postgres", "SELECT pg_database_size($1)", tmpl); last[0] != last[1] || last[1] < size/2 || last[1] > size*2 {
		t.Errorf("clone progress %v, want done = total ≈ the template's %d bytes", last, size)
	}
	if marker(t, staging, clone) != 6 {
		t.Fatal("clone not replaced")
	}
	if err := srv.Clone(ctx, stem+" missing", clone); !errors.Is(err, ErrNotFound) {
		t.Fatalf("clone of a missing template: %v", err)
	}

	names, err := srv.List(ctx)
	if err != nil || !slices.Contains(names, tmpl) || !slices.Contains(names, clone) || slices.Contains(names, "template0") {
		t.Fatalf("List = %v, %v", names, err)
	}
	if ok, err := srv.Exists(ctx, clone); err != nil || !ok {
		t.Fatalf("Exists(clone) = %v, %v", ok, err)
	}
	if ok, err := srv.Exists(ctx, stem+" missing"); err != nil || ok {
		t.Fatalf("Exists(missing) = %v, %v", ok, err)
	}

	c1, c2 := staging.Connect(t, clone), staging.Connect(t, clone)
	_, _ = c1, c2
	n, err := srv.Terminate(ctx, clone)
	if err != nil || n < 2 {
		t.Fatalf("Terminate = %d, %v", n, err)
	}

	if err := srv.Rename(ctx, clone, renamed); err != nil {
		t.Fatal(err)
	}
	if marker(t, staging, renamed) != 6 || dbExists(t, staging, clone) || !allowConn(t, staging, renamed) {
		t.Fatal("rename")
	}
	if err := srv.Rename(ctx, tmpl, renamed); !errors.Is(err, ErrExists) {
		t.Fatalf("rename onto an existing name: %v", err)
	}

	_ = staging.Connect(t, renamed)
	if err := srv.Drop(ctx, renamed); err != nil {
		t.Fatal(err)
	}
	if dbExists(t, staging, renamed) {
		t.Fatal("not dropped")
	}
	if err := srv.Drop(ctx, renamed); err != nil {
		t.Fatalf("dropping a missing database: %v", err)
	}

	id, err := srv.SystemIdentifier(ctx)
	if err != nil || id != staging.SystemIdentifier(t) {
		t.Fatalf("SystemIdentifier = %d, %v", id, err)
	}
	cfg, err := pgx.ParseConfig(srv.DSN(`x "y"/z`))
	if err != nil || cfg.Database != `x "y"/z` || cfg.Port != uint16(staging.Port) {
		t.Fatalf("DSN: %v, %+v", err, cfg)
	}
}
