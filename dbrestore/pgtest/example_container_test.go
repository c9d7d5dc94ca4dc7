package pgtest_test

import (
	"context"
	"fmt"
	"log"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/restage/restage/dbrestore/pgtest"
)

// StartContainer runs PostgreSQL in a container outside of a test (in a test, use
// pgtest.Container, which skips without Docker and stops the container at the end).
// The image is ContainerOptions.Image, else $RESTAGE_TEST_PG_IMAGE, else postgres:15.
func ExampleStartContainer() {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	srv, err := pgtest.StartContainer(ctx, pgtest.ContainerOptions{Database: "app"})
	if err != nil {
		log.Fatal(err)
	}
	defer srv.Stop() // removes the container

	conn, err := pgx.Connect(ctx, srv.DSN("app")) // postgres://postgres:…@127.0.0.1:<mapped>/app
	if err != nil {
		log.Fatal(err)
	}
	defer conn.Close(ctx)
	var id uint64
	if err := conn.QueryRow(ctx, "SELECT system_identifier FROM pg_control_system()").Scan(&id); err != nil {
		log.Fatal(err)
	}
	fmt.Println("container", srv.Container.ID[:12], "system_identifier", id)
}
