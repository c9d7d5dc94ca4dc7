package dbrestoretest_test

import (
	"context"
	"errors"
	"fmt"

	"github.com/restage/restage/dbrestore"
	"github.com/restage/restage/dbrestore/dbrestoretest"
)

// A cutover whose swap fails: staging keeps yesterday's database, and the guard still
// refuses the production server.
func ExampleFake() {
	ctx := context.Background()
	dbs := &dbrestoretest.Fake{SystemID: 2, Production: []uint64{1}}
	dbs.Create("staging", "yesterday")
	b := &dbrestore.Backup{Path: "/srv/backups/prod-20260101T000000.000Z.dump",
		Manifest: dbrestore.Manifest{Database: "prod", SystemIdentifier: 1}}
	if _, err := dbs.Restore(ctx, b, dbrestore.RestoreOptions{Target: "staging_next"}); err != nil {
		panic(err)
	}
	dbs.SwapFunc = func(context.Context, string, string, string) error { return errors.New("connection reset") }
	err := dbs.Swap(ctx, "staging", "staging_next", "staging_prev")
	live, _ := dbs.Content("staging")
	fmt.Printf("swap: %v; staging holds %s\n", err, live)

	prod := &dbrestoretest.Fake{SystemID: 1}
	err = prod.GuardSource(ctx, b)
	fmt.Println("on production:", errors.Is(err, dbrestore.ErrProduction))
	// Output:
	// swap: connection reset; staging holds yesterday
	// on production: true
}
