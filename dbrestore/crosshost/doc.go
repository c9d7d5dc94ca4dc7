// Package crosshost holds restage's end-to-end test across hosts: a production and a
// staging PostgreSQL server in two containers on one Docker network, each at its own
// address, a backup taken from one with dbrestore.Dump and restored into the other with
// dbrestore.Server, and the safety rule that a restore pointed at the production server is
// refused by system_identifier, not by name. It has no code besides its test; run it with
//
//	RESTAGE_TEST_PG_IMAGE=restage/postgres:15 TESTCONTAINERS_RYUK_DISABLED=true go test ./dbrestore/crosshost
//
// Without a Docker engine the test is skipped (RESTAGE_REQUIRE_DOCKER=1 makes that a failure).
package crosshost
