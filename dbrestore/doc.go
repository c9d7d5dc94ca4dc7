// Package dbrestore takes production PostgreSQL backups in and gives staging databases out.
//
// On the production side, Dump runs pg_dump and writes a JSON Manifest beside the dump
// (checksum, source server identity, optional row counts from the same snapshot), both
// under temporary names renamed into place. On the staging side, a Catalog finds and waits
// for the newest complete backup and verifies it, and a Server (Restorer and Admin)
// restores it into a named database with pg_restore and swaps, drops and clones
// databases through pgx, refusing ever to touch the production server or protected names.
//
//	b, _ := dbrestore.Dump(ctx, dbrestore.Config{}, dbrestore.DumpOptions{DSN: prodDSN, Dir: "/srv/backups", Counts: true, Keep: 3})
//
//	cat, _ := dbrestore.NewCatalog("/srv/backups", dbrestore.Config{})
//	b, err := cat.Wait(ctx, dbrestore.WaitOptions{Database: "launchpad_prod", MaxAge: 20 * time.Hour, Wait: 45 * time.Minute})
//	err = cat.Verify(ctx, b)
//	srv, _ := dbrestore.NewServer(dbrestore.ServerConfig{AdminDSN: adminDSN, Protect: []string{"launchpad_prod"}})
//	res, err := srv.Restore(ctx, b, dbrestore.RestoreOptions{Target: "launchpad_staging_next", Replace: true, PostRestore: []string{"sanitize.sql"}})
//	err = srv.Swap(ctx, "launchpad_staging", "launchpad_staging_next", "launchpad_staging_prev")
//
// Backups are named "<database>-<UTC yyyymmddThhmmss.mmmZ>.dump" (a file in custom format,
// a folder in directory format) with "<same>.manifest.json" beside it; while being
// written both carry the prefix ".tmp-". The catalog trusts manifests only.
//
// Production is known by its system_identifier: ServerConfig.Production, the sources of
// the backups a Server restores or guards (GuardSource), the ids given to GuardProduction
// (e.g. a Catalog's SourceIDs). A Server that knows none refuses to drop, rename, restore,
// clone or terminate anything (ErrNoProduction): it fails closed.
//
// Passwords in DSNs reach pg_dump and pg_restore through PGPASSWORD, never argv, and are
// removed from every error, log line and CommandError.
//
// Package dbrestore/dbrestoretest holds the conformance suite of what the staging
// Rebuilder requires of a staging server (Server runs it against a throwaway PostgreSQL
// server; a decorator or another implementation runs it in its own tests) and Fake, an
// in-memory server for tests.
package dbrestore
