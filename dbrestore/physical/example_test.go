package physical_test

import (
	"context"
	"log"

	"github.com/restage/restage/dbrestore/physical"
)

// A physical refresh of a staging cluster from production's pgBackRest stanza: restore
// into the idle slot, recover on the side port, neutralize, then switch. (Not run: it
// needs a repository and the server binaries.)
func Example() {
	ctx := context.Background()
	src, err := physical.NewPgBackRest(physical.PgBackRestConfig{Stanza: "main", Config: "/etc/pgbackrest/pgbackrest.conf"})
	if err != nil {
		log.Fatal(err)
	}
	cl, err := physical.NewClusters(physical.ClustersConfig{Environment: "staging", Dir: "/srv/restage/pg", Port: 5433})
	if err != nil {
		log.Fatal(err)
	}
	if err := cl.CheckOrigin(src.Origin()); err != nil {
		log.Fatal(err) // the configured cluster could reach production
	}
	if _, err := cl.Repair(ctx); err != nil {
		log.Fatal(err)
	}
	set, err := src.Latest(ctx)
	if err != nil {
		log.Fatal(err)
	}
	slot, err := cl.Restore(ctx, src, set, cl.Delta())
	if err != nil {
		log.Fatal(err)
	}
	if err := cl.StartSide(ctx, slot); err != nil {
		log.Fatal(err)
	}
	if _, err := cl.Neutralize(ctx, slot, physical.NeutralizeOptions{From: "shop", To: "shop_staging"}); err != nil {
		log.Fatal(err)
	}
	// ... post-restore SQL and migrations through cl.SideDSN(slot, "shop_staging") ...
	if old, err := cl.Switch(ctx, slot); err != nil {
		if berr := cl.SwitchBack(ctx, slot, old); berr != nil { // the old cluster back live
			log.Print(berr)
		}
		log.Fatal(err)
	}
}
