// Package pgtest starts throwaway PostgreSQL servers for tests.
//
// A server is a fresh cluster made with initdb in a temporary folder, listening on a free
// loopback port and on a unix socket in that folder, with trust authentication for the
// superuser "postgres". When the process runs as root (initdb refuses root), the cluster is
// owned and run by the "postgres" user. On Linux the server process is tied to the test
// process (it is killed if the test binary dies); elsewhere a test binary killed by a
// signal leaves it running. Stop removes the folder.
//
// Use Shared for a server per test binary (pair it with Main in TestMain so it is stopped at
// the end), Start for a server owned by one test, and Database for a fresh database per test:
//
//	func TestMain(m *testing.M) { os.Exit(pgtest.Main(m)) }
//
//	func TestRestore(t *testing.T) {
//		prod := pgtest.Shared(t, "production")
//		staging := pgtest.Shared(t, "staging")
//		db := prod.Database(t)
//		...
//	}
//
// Without server binaries, Shared and Start run the server in a container where a Docker
// engine answers (StartContainer); otherwise the tests are skipped, or fail when
// RESTAGE_REQUIRE_POSTGRES=1. Container starts one for a test explicitly, e.g. on a
// Docker network with other containers (ContainerNetwork).
package pgtest
