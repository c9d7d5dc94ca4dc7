package pgtest_test

import (
	"os"
	"testing"

	"github.com/restage/restage/dbrestore/pgtest"
)

func TestMain(m *testing.M) { os.Exit(pgtest.Main(m)) }

func TestTwoServersHaveDifferentIdentities(t *testing.T) {
	prod := pgtest.Shared(t, "production")
	staging := pgtest.Shared(t, "staging")
	if prod.Port == staging.Port {
		t.Fatalf("both servers on port %d", prod.Port)
	}
	a, b := prod.SystemIdentifier(t), staging.SystemIdentifier(t)
	if a == 0 || a == b {
		t.Fatalf("system identifiers %d and %d: want distinct, non-zero", a, b)
	}
	if again := pgtest.Shared(t, "production"); again != prod {
		t.Fatal("Shared started a second production server")
	}
}

func TestDatabaseIsFreshPerTest(t *testing.T) {
	s := pgtest.Shared(t, "production")
	db1, db2 := s.Database(t), s.Database(t)
	if db1 == db2 {
		t.Fatalf("same database twice: %s", db1)
	}
	s.Exec(t, db1, "CREATE TABLE x (id int); INSERT INTO x VALUES (1), (2)")
	if n := s.QueryInt(t, db1, "SELECT count(*) FROM x"); n != 2 {
		t.Fatalf("count = %d, want 2", n)
	}
	if n := s.QueryInt(t, db2, "SELECT count(*) FROM pg_tables WHERE tablename = 'x'"); n != 0 {
		t.Fatalf("table x leaked into %s", db2)
	}
}

func TestStartStopRemovesFolder(t *testing.T) {
	pgtest.Require(t)
	s := pgtest.Start(t)
	dir := s.Dir
	if _, err := os.Stat(dir); err != nil {
		t.Fatal(err)
	}
	if err := s.Stop(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(dir); !os.IsNotExist(err) {
		t.Fatalf("folder %s still there after Stop: %v", dir, err)
	}
}
