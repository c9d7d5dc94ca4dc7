package dbrestore

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/restage/restage/dbrestore/mask"
)

// A dump of production holds its user mappings: the logins postgres_fdw (and dblink)
// use to reach another server, production itself here. A restore drops them before the
// post-restore SQL runs, so that an UPDATE or INSERT of a foreign table on staging (by
// that SQL, a migration or the service) cannot reach production.
func TestRestoreDropsUserMappings(t *testing.T) {
	prod, staging := servers(t)
	ctx := testCtx(t)
	db := prod.Database(t)
	prod.Exec(t, db, fmt.Sprintf(`CREATE EXTENSION postgres_fdw;
CREATE TABLE t (id int);
CREATE SERVER prodsrv FOREIGN DATA WRAPPER postgres_fdw OPTIONS (host '127.0.0.1', port '%d', dbname '%s');
CREATE USER MAPPING FOR postgres SERVER prodsrv OPTIONS (user 'postgres');
CREATE USER MAPPING FOR PUBLIC SERVER prodsrv OPTIONS (user 'postgres');
CREATE FOREIGN TABLE remote_t (id int) SERVER prodsrv OPTIONS (table_name 't');`, prod.Port, db))
	b := dumpOf(t, prod, db, DumpOptions{Counts: true})
	srv := newServer(t, staging, ServerConfig{Production: []uint64{prod.SystemIdentifier(t)}})

	res, err := srv.Restore(ctx, b, RestoreOptions{Target: dbName(t, staging, "fdw")})
	if err != nil {
		t.Fatal(err)
	}
	if n := staging.QueryInt(t, res.Database, "SELECT count(*) FROM pg_user_mappings"); n != 0 {
		t.Fatalf("%d user mapping(s) restored", n)
	}
	if n := staging.QueryInt(t, res.Database, "SELECT count(*) FROM pg_foreign_table"); n != 1 {
		t.Fatalf("%d foreign tables, want the dump's 1", n)
	}
	if !strings.Contains(res.Output, "postgres@prodsrv") || !strings.Contains(res.Output, "public@prodsrv") {
		t.Fatalf("the output does not name the dropped mappings:\n%s", res.Output)
	}

	// A post-restore file writing to the foreign table does not reach production.
	file := filepath.Join(t.TempDir(), "reach.sql")
	if err := os.WriteFile(file, []byte("INSERT INTO remote_t VALUES (42);"), 0o600); err != nil {
		t.Fatal(err)
	}
	_, err = srv.Restore(ctx, b, RestoreOptions{Target: dbName(t, staging, "fdw_sql"), PostRestore: []string{file}})
	if err == nil || !strings.Contains(err.Error(), "user mapping not found") {
		t.Fatalf("post-restore insert into a foreign table: %v, want a missing user mapping", err)
	}
	if errors.Is(err, ErrProduction) {
		t.Fatal("refused for another reason")
	}
	if n := prod.QueryInt(t, db, "SELECT count(*) FROM t"); n != 0 {
		t.Fatalf("the post-restore SQL on staging inserted %d row(s) into production", n)
	}
}

// A dump of a database that subscribes to a publication holds the subscription, with
// the name of its slot on the publisher. The restore leaves it out: restored, it would
// make every later drop of the copy fail ("being used by logical replication
// subscription"), and enabling or dropping it on staging would take or drop that slot.
func TestRestoreLeavesSubscriptionsOut(t *testing.T) {
	prod, staging := servers(t)
	ctx := testCtx(t)
	db := prod.Database(t)
	prod.Exec(t, db, personalSchema)
	prod.Exec(t, db, `CREATE TABLE t (id int);
CREATE SUBSCRIPTION sub CONNECTION 'host=127.0.0.1 port=1 dbname=x connect_timeout=1' PUBLICATION pub
	WITH (connect = false, slot_name = 'production_slot')`)
	t.Cleanup(func() {
		prod.Exec(t, db, "ALTER SUBSCRIPTION sub DISABLE; ALTER SUBSCRIPTION sub SET (slot_name = NONE); DROP SUBSCRIPTION sub")
	})
	b := dumpOf(t, prod, db, DumpOptions{Counts: true})
	srv := newServer(t, staging, ServerConfig{Production: []uint64{prod.SystemIdentifier(t)}})
	for _, m := range []*mask.Rules{nil, personalRules(t)} {
		res, err := srv.Restore(ctx, b, RestoreOptions{Target: dbName(t, staging, "sub"), Mask: m})
		if err != nil {
			t.Fatal(err)
		}
		if n := staging.QueryInt(t, res.Database, "SELECT count(*) FROM pg_subscription"); n != 0 {
			t.Fatalf("masked %v: %d subscription(s) restored", m != nil, n)
		}
		if err := srv.Drop(ctx, res.Database); err != nil {
			t.Fatalf("masked %v: drop the restored copy: %v", m != nil, err)
		}
	}
}

// The dump's user mappings are never restored, so the dump's own code cannot use them
// while the data loads: here a CHECK constraint writes every row it checks to a
// foreign table on production, through production's mapping. Masked or not, staging's
// restore adds no row to production, and the mappings' names are in the output.
func TestRestoreLeavesUserMappingsOut(t *testing.T) {
	prod, staging := servers(t)
	ctx := testCtx(t)
	db := prod.Database(t)
	prod.Exec(t, db, personalSchema)
	prod.Exec(t, db, "CREATE TABLE t (id int)") // committed, so that the loopback sees it
	prod.Exec(t, db, fmt.Sprintf(`CREATE EXTENSION postgres_fdw;
CREATE SERVER prodsrv FOREIGN DATA WRAPPER postgres_fdw OPTIONS (host '127.0.0.1', port '%d', dbname '%s');
CREATE USER MAPPING FOR postgres SERVER prodsrv OPTIONS (user 'postgres');
CREATE FOREIGN TABLE remote_t (id int) SERVER prodsrv OPTIONS (table_name 't');
CREATE FUNCTION reach(id int) RETURNS boolean LANGUAGE plpgsql AS $$
BEGIN
	INSERT INTO public.remote_t VALUES (id);
	RETURN true;
EXCEPTION WHEN others THEN
	RETURN true;
END $$;
CREATE TABLE data (id int CHECK (public.reach(id)));`, prod.Port, db))
	prod.Exec(t, db, "INSERT INTO data SELECT generate_series(1, 5)")
	before := prod.QueryInt(t, db, "SELECT count(*) FROM t")
	if before != 5 {
		t.Fatalf("production's own inserts reached t %d times, want 5 (the loopback does not work)", before)
	}
	b := dumpOf(t, prod, db, DumpOptions{Counts: true})
	srv := newServer(t, staging, ServerConfig{Production: []uint64{prod.SystemIdentifier(t)}})
	for _, m := range []*mask.Rules{nil, personalRules(t)} {
		res, err := srv.Restore(ctx, b, RestoreOptions{Target: dbName(t, staging, "fdw_load"), Mask: m})
		if err != nil {
			t.Fatalf("masked %v: %v", m != nil, err)
		}
		if n := prod.QueryInt(t, db, "SELECT count(*) FROM t"); n != before {
			t.Fatalf("masked %v: staging's restore wrote %d row(s) into production", m != nil, n-before)
		}
		if n := staging.QueryInt(t, res.Database, "SELECT count(*) FROM data"); n != 5 {
			t.Fatalf("masked %v: %d rows in data, want 5", m != nil, n)
		}
		if !strings.Contains(res.Output, "left out the dump's user mappings (they may reach production): postgres@prodsrv") {
			t.Fatalf("masked %v: the output does not name the mapping left out:\n%s", m != nil, res.Output)
		}
		if err := srv.Drop(ctx, res.Database); err != nil {
			t.Fatal(err)
		}
	}
}
