package dbrestore

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// A dump's functions run while it loads: with RestoreDSN they run as that login, which
// cannot reach beyond the database being restored; the admin's superuser login is
// never theirs. Its password stays out of every message.
func TestRestoreLoginContainsTheDump(t *testing.T) {
	prod, staging := servers(t)
	ctx := testCtx(t)
	db := prod.Database(t)
	suffix := fmt.Sprint(time.Now().UnixNano() % 1e9)
	protected, role, secret := "protected_"+suffix, "restorer_"+suffix, "pw-"+suffix+"-secret"
	// The function reaches out only on staging (on production it would rename nothing).
	prod.Exec(t, db, fmt.Sprintf(`CREATE FUNCTION reach(id int) RETURNS boolean LANGUAGE plpgsql AS $$
BEGIN
	IF current_database() <> %s AND EXISTS (SELECT FROM pg_database WHERE datname = '%s') THEN
		EXECUTE 'RESET ROLE';
		EXECUTE 'ALTER DATABASE %s RENAME TO %s_gone';
	END IF;
	RETURN true;
END $$;
CREATE TABLE t (id int CHECK (public.reach(id)));
INSERT INTO t VALUES (1), (2);`, quoteLit(db), protected, protected, protected))
	b := dumpOf(t, prod, db, DumpOptions{Counts: true})
	staging.Exec(t, "postgres", "CREATE DATABASE "+protected)
	staging.Exec(t, "postgres", fmt.Sprintf("CREATE ROLE %s LOGIN PASSWORD '%s'", role, secret))
	t.Cleanup(func() {
		dropQuietly(staging, protected)
		dropQuietly(staging, protected+"_gone")
		if conn, err := pgx.Connect(context.Background(), staging.AdminDSN()); err == nil {
			_, _ = conn.Exec(context.Background(), "DROP ROLE IF EXISTS "+role)
			conn.Close(context.Background())
		}
	})
	ids := []uint64{prod.SystemIdentifier(t)}

	// As the admin's superuser (Role set, --role given), the dump renames the database.
	admin := newServer(t, staging, ServerConfig{Production: ids, Role: role})
	if _, err := admin.Restore(ctx, b, RestoreOptions{Target: dbName(t, staging, "as_admin")}); err != nil {
		t.Fatal(err)
	}
	if !dbExists(t, staging, protected+"_gone") {
		t.Fatal("the test's dump did not reach out as the admin: it proves nothing")
	}
	staging.Exec(t, "postgres", "ALTER DATABASE "+protected+"_gone RENAME TO "+protected)

	// As the restore login, it cannot: the restore fails, the target is dropped.
	u, err := url.Parse(staging.DSN("postgres"))
	if err != nil {
		t.Fatal(err)
	}
	u.User = url.UserPassword(role, secret)
	srv := newServer(t, staging, ServerConfig{Production: ids, Role: role, RestoreDSN: u.String()})
	if err := srv.CheckRestoreLogin(ctx); err != nil {
		t.Fatalf("CheckRestoreLogin of a login without superuser rights: %v", err)
	}
	target := dbName(t, staging, "as_login")
	res, err := srv.Restore(ctx, b, RestoreOptions{Target: target})
	requireErrContains(t, err, "must be owner of database "+protected)
	if !dbExists(t, staging, protected) || dbExists(t, staging, target) {
		t.Fatalf("protected %v, target kept %v", dbExists(t, staging, protected), dbExists(t, staging, target))
	}
	if strings.Contains(err.Error(), secret) || res != nil && strings.Contains(res.Output, secret) {
		t.Fatal("the restore login's password is in the error or the output")
	}

	// A dump that keeps to its database restores as the login, and its objects are the role's.
	plain := prod.Database(t)
	prod.Exec(t, plain, "CREATE TABLE item (id int PRIMARY KEY); INSERT INTO item SELECT generate_series(1, 100)")
	pb := dumpOf(t, prod, plain, DumpOptions{Counts: true})
	res, err = srv.Restore(ctx, pb, RestoreOptions{Target: dbName(t, staging, "plain"), PostRestore: nil})
	if err != nil {
		t.Fatal(err)
	}
	if owner := staging.QueryString(t, res.Database, "SELECT tableowner FROM pg_tables WHERE tablename = 'item'"); owner != role {
		t.Fatalf("item belongs to %s", owner)
	}

	// A masked restore runs as the login too (its streams, its checks).
	masked := prod.Database(t)
	prod.Exec(t, masked, personalSchema)
	mb := dumpOf(t, prod, masked, DumpOptions{Counts: true})
	res, err = srv.Restore(ctx, mb, RestoreOptions{Target: dbName(t, staging, "masked"), Jobs: 2, Mask: personalRules(t)})
	if err != nil {
		t.Fatal(err)
	}
	if n := staging.QueryInt(t, res.Database, "SELECT count(*) FROM person WHERE email LIKE 'u%@example.invalid'"); n != 500 {
		t.Fatalf("%d masked emails, want 500", n)
	}
	if owner := staging.QueryString(t, res.Database, "SELECT tableowner FROM pg_tables WHERE tablename = 'person'"); owner != role {
		t.Fatalf("person belongs to %s", owner)
	}

	// A restore login that is a superuser contains nothing, nor one that may SET ROLE to
	// a superuser, nor a superuser login whose options set a lesser role: refused.
	member := role + "_m"
	staging.Exec(t, "postgres", fmt.Sprintf("CREATE ROLE %s LOGIN IN ROLE postgres", member))
	t.Cleanup(func() {
		if conn, err := pgx.Connect(context.Background(), staging.AdminDSN()); err == nil {
			_, _ = conn.Exec(context.Background(), "DROP ROLE IF EXISTS "+member)
			conn.Close(context.Background())
		}
	})
	query := u.RawQuery
	for _, login := range []string{"postgres", member, "postgres:options"} {
		u.User = url.User(strings.TrimSuffix(login, ":options"))
		u.RawQuery = query
		if strings.HasSuffix(login, ":options") {
			// libpq's options, "-c role=…", escaped with %20 for the space (not "+").
			u.RawQuery += "&options=" + strings.ReplaceAll(url.QueryEscape("-c role="+role), "+", "%20")
		}
		super := newServer(t, staging, ServerConfig{Production: ids, RestoreDSN: u.String()})
		// Told before anything is changed (the verify step, a dry run), and by the restore.
		requireErrContains(t, super.CheckRestoreLogin(ctx), "a superuser or a member of one")
		// The operator's key is named, not only the Go field.
		requireErrContains(t, super.CheckRestoreLogin(ctx), "[database] restore_dsn")
		_, err = super.Restore(ctx, pb, RestoreOptions{Target: dbName(t, staging, "super")})
		requireErrContains(t, err, "a superuser or a member of one")
		// A release's migrations do not log in as it either.
		if dsn, err := super.MigrationDSN(ctx, "postgres"); dsn != "" || err == nil || !strings.Contains(err.Error(), "a superuser or a member of one") {
			t.Errorf("MigrationDSN of a superuser restore login: %q, %v", dsn, err)
		}
	}
}

func quoteLit(s string) string { return "'" + strings.ReplaceAll(s, "'", "''") + "'" }

// A restore_dsn that reaches another server than the admin DSN (production's address
// copied by mistake, or a name that resolves elsewhere) is refused before pg_restore
// runs: the guard checked the admin connection only. Here production has a database
// of the target's name, owned by a login without superuser rights, as when staging and
// production name their database alike: pg_restore would fill it.
func TestRestoreLoginOnAnotherServerIsRefused(t *testing.T) {
	prod, staging := servers(t)
	ctx := testCtx(t)
	db := prod.Database(t)
	prod.Exec(t, db, "CREATE TABLE item (id int PRIMARY KEY); INSERT INTO item SELECT generate_series(1, 10)")
	b := dumpOf(t, prod, db, DumpOptions{Counts: true})

	suffix := fmt.Sprint(time.Now().UnixNano() % 1e9)
	role, secret := "app_"+suffix, "pw-"+suffix
	target := dbName(t, staging, "same_name")
	prod.Exec(t, "postgres", fmt.Sprintf("CREATE ROLE %s LOGIN PASSWORD '%s'", role, secret))
	prod.Exec(t, "postgres", fmt.Sprintf("CREATE DATABASE %s OWNER %s", target, role))
	t.Cleanup(func() {
		dropQuietly(prod, target)
		if conn, err := pgx.Connect(context.Background(), prod.AdminDSN()); err == nil {
			_, _ = conn.Exec(context.Background(), "DROP ROLE IF EXISTS "+role)
			conn.Close(context.Background())
		}
	})
	u, err := url.Parse(prod.DSN("postgres"))
	if err != nil {
		t.Fatal(err)
	}
	u.User = url.UserPassword(role, secret)

	srv := newServer(t, staging, ServerConfig{Production: []uint64{prod.SystemIdentifier(t)}, RestoreDSN: u.String()})
	if err := srv.CheckRestoreLogin(ctx); !errors.Is(err, ErrProduction) {
		t.Fatalf("CheckRestoreLogin with a restore_dsn on production: %v, want ErrProduction", err)
	}
	// Migrations would run on production's database of that name: refused too.
	if dsn, err := srv.MigrationDSN(ctx, target); dsn != "" || !errors.Is(err, ErrProduction) || strings.Contains(err.Error(), secret) {
		t.Fatalf("MigrationDSN with a restore_dsn on production: %q, %v, want ErrProduction", dsn, err)
	}
	_, err = srv.Restore(ctx, b, RestoreOptions{Target: target})
	if !errors.Is(err, ErrProduction) {
		t.Fatalf("Restore with a restore_dsn on production: %v, want ErrProduction", err)
	}
	if n := prod.QueryInt(t, target, "SELECT count(*) FROM pg_tables WHERE schemaname = 'public'"); n != 0 {
		t.Fatalf("the restore wrote %d table(s) into production's %s", n, target)
	}
	if strings.Contains(err.Error(), secret) {
		t.Fatal("the restore login's password is in the error")
	}

	// Another server that is not known as production is refused too: it is not the
	// server the guard checked.
	other := newServer(t, staging, ServerConfig{Production: []uint64{1}, RestoreDSN: u.String()})
	if err := other.CheckRestoreLogin(ctx); !errors.Is(err, ErrOtherServer) {
		t.Fatalf("CheckRestoreLogin with a restore_dsn on another server: %v, want ErrOtherServer", err)
	}
}
