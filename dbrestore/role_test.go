package dbrestore

import (
	"errors"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/restage/restage/internal/testutil"
)

// Issue 12 item 5: with ServerConfig.Role, the restored database, its objects and clones
// belong to the role, and the post-restore SQL runs as the role: it can change the
// restored data but not drop or rename other databases or create roles, and such a file
// fails the restore cleanly.
func TestRestoreAsRole(t *testing.T) {
	prod, staging := servers(t)
	ctx := testCtx(t)
	const role = `restage "app" role`
	staging.Exec(t, "postgres", `DO $$ BEGIN CREATE ROLE "restage ""app"" role" NOLOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE;
		EXCEPTION WHEN duplicate_object THEN NULL; END $$`)
	db := prod.Database(t)
	seed(t, prod, db, 20)
	b := dumpOf(t, prod, db, DumpOptions{Counts: true})
	other := dbName(t, staging, "other")
	makeDB(t, staging, other, 9)
	srv := newServer(t, staging, ServerConfig{Production: []uint64{prod.SystemIdentifier(t)}, Role: role})

	owner := func(target string) string {
		t.Helper()
		var name string
		conn := staging.Connect(t, "postgres")
		if err := conn.QueryRow(ctx, "SELECT pg_get_userbyid(datdba) FROM pg_database WHERE datname = $1", target).Scan(&name); err != nil {
			t.Fatal(err)
		}
		return name
	}

	// A file that changes the restored data works, as the role.
	good := testutil.WriteTemp(t, "scrub.sql", "UPDATE users SET email = 'user' || id || '@example.invalid';\n"+
		"CREATE TABLE scrubbed_by AS SELECT current_user AS who;\n")
	target := dbName(t, staging, "asrole")
	if _, err := srv.Restore(ctx, b, RestoreOptions{Target: target, PostRestore: []string{good}}); err != nil {
		t.Fatal(err)
	}
	if n := staging.QueryInt(t, target, "SELECT count(*) FROM users WHERE email LIKE '%@example.invalid'"); n != 20 {
		t.Fatalf("scrubbed %d users, want 20", n)
	}
	if got := owner(target); got != role {
		t.Errorf("restored database owned by %q, want %q", got, role)
	}
	if n := staging.QueryInt(t, target, "SELECT count(*) FROM pg_tables WHERE schemaname <> 'pg_catalog' AND schemaname <> 'information_schema' AND tableowner <> $1", role); n != 0 {
		t.Errorf("%d restored tables not owned by the role", n)
	}
	if n := staging.QueryInt(t, target, "SELECT count(*) FROM pg_tables WHERE tablename IN ('users', 'sessions', 'we ird ''table''', 'scrubbed_by')"); n != 4 {
		t.Fatalf("%d of the 4 tables found", n)
	}
	if n := staging.QueryInt(t, target, "SELECT count(*) FROM scrubbed_by WHERE who = $1", role); n != 1 {
		t.Error("the post-restore file did not run as the role")
	}
	clone := dbName(t, staging, "asrole_clone")
	if err := srv.Clone(ctx, target, clone); err != nil {
		t.Fatal(err)
	}
	if got := owner(clone); got != role {
		t.Errorf("clone owned by %q, want %q", got, role)
	}

	// Files that reach beyond the restored database fail, and the target is dropped.
	for _, c := range []struct{ name, sql string }{
		{"createrole.sql", "CREATE ROLE restage_evil SUPERUSER LOGIN;"},
		{"renamedb.sql", "ALTER DATABASE " + ident(other) + " RENAME TO restage_evil_db;"},
		{"dropdb.sql", "DROP DATABASE " + ident(other) + ";"},
		{"resetrole.sql", "RESET ROLE;"},
	} {
		t.Run(c.name, func(t *testing.T) {
			f := testutil.WriteTemp(t, c.name, "UPDATE sessions SET token = 'x';\n"+c.sql+"\n")
			target := dbName(t, staging, "asrole_bad")
			_, err := srv.Restore(ctx, b, RestoreOptions{Target: target, PostRestore: []string{f}})
			if err == nil {
				t.Fatalf("%s ran", c.name)
			}
			t.Logf("%s: %v", c.name, err)
			var pe *pgconn.PgError
			switch c.name {
			case "createrole.sql", "renamedb.sql":
				if !errors.As(err, &pe) || pe.Code != "42501" {
					t.Errorf("%s: %v, want permission denied (SQLSTATE 42501)", c.name, err)
				}
			case "resetrole.sql":
				requireErrContains(t, err, "not the role")
			}
			requireErrContains(t, err, c.name)
			if dbExists(t, staging, target) {
				t.Fatal("target left after a refused post-restore file")
			}
		})
	}
	if !dbExists(t, staging, other) || marker(t, staging, other) != 9 || dbExists(t, staging, "restage_evil_db") {
		t.Fatal("another database was changed")
	}
	if n := staging.QueryInt(t, "postgres", "SELECT count(*) FROM pg_roles WHERE rolname = 'restage_evil'"); n != 0 {
		staging.Exec(t, "postgres", "DROP ROLE restage_evil")
		t.Fatal("a post-restore file created a superuser role")
	}
	if _, err := NewServer(ServerConfig{AdminDSN: staging.AdminDSN(), Role: strings.Repeat("r", MaxNameLen+1)}); err == nil {
		t.Error("NewServer accepted a role name PostgreSQL would truncate")
	}
}
