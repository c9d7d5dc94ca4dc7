package dbrestore_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/restage/restage/dbrestore"
	"github.com/restage/restage/dbrestore/pgtest"
)

// A nightly backup on the production side, then on the staging side: wait for it,
// verify it, restore it beside the live database, and swap it in.
func Example() {
	ctx := context.Background()
	prod, staging, cleanup := exampleServers(ctx)
	defer cleanup()
	dir, _ := os.MkdirTemp("", "backups-")
	defer os.RemoveAll(dir)
	quiet := dbrestore.Config{Logger: slog.New(slog.DiscardHandler)}

	// Production: pg_dump plus a manifest, with row counts from the dump's snapshot.
	_, err := dbrestore.Dump(ctx, quiet, dbrestore.DumpOptions{
		DSN: prod.DSN("launchpad_prod"), Dir: dir, Counts: true, Keep: 3,
	})
	if err != nil {
		fmt.Println(err)
		return
	}

	// Staging: the newest complete backup, at most 20h old, waiting up to 45m for it.
	cat, _ := dbrestore.NewCatalog(dir, quiet)
	b, err := cat.Wait(ctx, dbrestore.WaitOptions{Database: "launchpad_prod", MaxAge: 20 * time.Hour, Wait: 45 * time.Minute})
	if err != nil {
		fmt.Println(err)
		return
	}
	if err := cat.Verify(ctx, b); err != nil {
		fmt.Println(err)
		return
	}
	srv, _ := dbrestore.NewServer(dbrestore.ServerConfig{
		AdminDSN: staging.AdminDSN(), Protect: []string{"launchpad_prod"}, Logger: quiet.Logger,
	})
	// Before anything is dropped: this server must not be the backup's source. From now
	// on srv knows production's identity (without one it would refuse every change).
	if err := srv.GuardSource(ctx, b); err != nil {
		fmt.Println(err)
		return
	}
	res, err := srv.Restore(ctx, b, dbrestore.RestoreOptions{Target: "launchpad_staging_next", Replace: true, Jobs: 2})
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println("restored", res.Database, "with", res.RowCounts["public.person"], "people")
	if err := srv.Swap(ctx, "launchpad_staging", "launchpad_staging_next", "launchpad_staging_prev"); err != nil {
		fmt.Println(err)
		return
	}
	names, _ := srv.List(ctx)
	fmt.Println(names)

	// The production server is never touched, whatever the name.
	onProd, _ := dbrestore.NewServer(dbrestore.ServerConfig{AdminDSN: prod.AdminDSN(), Logger: quiet.Logger})
	_, err = onProd.Restore(ctx, b, dbrestore.RestoreOptions{Target: "scratch"})
	fmt.Println(err != nil && errors.Is(err, dbrestore.ErrProduction))
	// Output:
	// restored launchpad_staging_next with 3 people
	// [launchpad_staging postgres]
	// true
}

// exampleServers starts a production server holding launchpad_prod and a staging server.
func exampleServers(ctx context.Context) (prod, staging *pgtest.Server, cleanup func()) {
	binDir, err := pgtest.BinDir()
	if err != nil {
		panic(err)
	}
	prod, err = pgtest.StartLocal(ctx, binDir)
	if err != nil {
		panic(err)
	}
	staging, err = pgtest.StartLocal(ctx, binDir)
	if err != nil {
		prod.Stop()
		panic(err)
	}
	for _, sql := range []struct{ db, sql string }{
		{"postgres", "CREATE DATABASE launchpad_prod"},
		{"launchpad_prod", "CREATE TABLE person (id int PRIMARY KEY, email text)"},
		{"launchpad_prod", "INSERT INTO person VALUES (1, 'a@example.org'), (2, 'b@example.org'), (3, 'c@example.org')"},
	} {
		conn, err := pgx.Connect(ctx, prod.DSN(sql.db))
		if err != nil {
			panic(err)
		}
		_, err = conn.Exec(ctx, sql.sql)
		conn.Close(ctx)
		if err != nil {
			panic(err)
		}
	}
	return prod, staging, func() { prod.Stop(); staging.Stop() }
}
