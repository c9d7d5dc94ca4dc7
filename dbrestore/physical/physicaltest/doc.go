// Package physicaltest starts a throwaway "production" PostgreSQL cluster that archives
// its WAL into a pgBackRest repository (a folder), for tests of physical rebuilds.
//
//	prod, err := physicaltest.StartProduction(ctx, physicaltest.Options{})
//	defer prod.Stop()
//	prod.Exec(ctx, "postgres", "CREATE DATABASE shop")
//	err = prod.Backup(ctx, "full")
//
// As root (CI), the cluster and pgBackRest run as the "postgres" user, in a folder that
// user owns. Require skips a test without the server binaries or pgbackrest (fails it
// with RESTAGE_REQUIRE_POSTGRES=1).
package physicaltest
