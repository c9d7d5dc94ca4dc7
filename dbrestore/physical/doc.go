// Package physical rebuilds a staging PostgreSQL cluster from production's physical
// backups: a Source (pgBackRest, or a pg_basebackup in a folder) restores a backup set
// into one of two data directories (A/B slots) that Clusters manages under one folder;
// the restored copy is started on a side port with nothing but its own socket, made
// harmless (no archiving, no standby, no replication slots or subscriptions, no pg_cron
// jobs or pglogical subscriptions), reshaped (the backup's database renamed, production's
// other databases dropped), and switched onto the live port at the cutover, the other
// slot kept for a rollback and the next delta restore.
//
// Clusters never touches a data directory it did not create: each slot carries a marker
// naming the environment, and every SQL change first checks that the server it reached
// runs from that slot's data directory (a restored cluster carries production's
// system_identifier, so that is how restage tells them apart).
//
//	src, _ := physical.NewPgBackRest(physical.PgBackRestConfig{Stanza: "main"})
//	cl, _ := physical.NewClusters(physical.ClustersConfig{Environment: "staging",
//		Dir: "/srv/restage/pg", Port: 5433})
//	set, _ := src.Latest(ctx)
//	slot, _ := cl.Restore(ctx, src, set, true) // into the idle slot, --delta
//	_ = cl.StartSide(ctx, slot)
//	_, _ = cl.Neutralize(ctx, slot, physical.NeutralizeOptions{From: "shop", To: "shop_staging"})
//	// ... post-restore SQL, migrations through cl.SideDSN(slot, "shop_staging") ...
//	old, _ := cl.Switch(ctx, slot) // the live port now serves slot; old is kept
package physical
