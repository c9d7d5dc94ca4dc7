// Package dbrestoretest checks that a staging database server keeps the promises the
// staging Rebuilder relies on, and provides Fake, an in-memory one for tests of code that
// restores, swaps, drops and clones databases.
//
// Server is what the Rebuilder requires (staging.Databases has the same methods);
// Admin is its conformance suite. It checks Exists, Drop, Rename, Swap (with and without
// a live database), Clone, AllowConnections and, when the fixture can give a backup,
// Restore; and the safety promises: a server that knows no production identity changes
// nothing (dbrestore.ErrNoProduction), one that knows it is production changes nothing
// (dbrestore.ErrProduction), protected names (dbrestore.ErrProtected) and names over 63
// bytes (dbrestore.ErrNameTooLong) are refused, and a refused call leaves every database
// as it was. *dbrestore.Server runs it against a throwaway PostgreSQL server, Fake runs
// it, and so does a third-party server or a decorator around one, in its own tests:
//
//	func TestMyServerConformance(t *testing.T) {
//		pg := pgtest.Shared(t, "staging")
//		dbrestoretest.Admin(t, dbrestoretest.Fixture{
//			New: func(t *testing.T) dbrestoretest.Server {
//				inner, err := dbrestore.NewServer(dbrestore.ServerConfig{AdminDSN: pg.AdminDSN(), Protect: []string{"keep"}})
//				if err != nil {
//					t.Fatal(err)
//				}
//				return myserver.Wrap(inner) // must not lose the guard
//			},
//			SystemID:  pg.SystemIdentifier(t),
//			Protected: "keep",
//			Create: func(t *testing.T, _ dbrestoretest.Server, name, mark string) {
//				pg.Exec(t, "postgres", "CREATE DATABASE "+pgx.Identifier{name}.Sanitize())
//				pg.Exec(t, name, "CREATE TABLE mark (v text)")
//				pg.Exec(t, name, "INSERT INTO mark VALUES ($1)", mark)
//			},
//			Mark: func(t *testing.T, _ dbrestoretest.Server, name string) string {
//				return readMark(t, pg, name) // SELECT v FROM mark
//			},
//			Drop: func(t *testing.T, _ dbrestoretest.Server, name string) { dropIfExists(pg, name) },
//			Backup: func(t *testing.T) (*dbrestore.Backup, string) {
//				return dumpOfAnotherServer(t), "the mark in the dumped database" // optional
//			},
//		})
//	}
//
// dbrestore's own TestServerConformance is a complete fixture to copy from.
//
// Code that takes a Server is tested with a Fake, whose function fields inject faults:
//
//	dbs := &dbrestoretest.Fake{SystemID: 2, Production: []uint64{1}}
//	dbs.Create("staging", "yesterday")
//	dbs.SwapFunc = func(context.Context, string, string, string) error {
//		return errors.New("connection reset") // the cutover fails; staging keeps yesterday's data
//	}
//
// The package imports testing; programs must not link it, only their tests.
package dbrestoretest
