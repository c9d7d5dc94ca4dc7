package staging_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/restage/restage/staging/stagingtest"
)

// With strategy physical and [schema] role, the migrations log in to the restored
// cluster as that role, not as the superuser with SET ROLE: a migration (the code's,
// a branch's once merged) that does SET ROLE NONE has the role's rights only, and cannot
// run a program as the cluster's user (which reads pgBackRest's config and production's
// repository). A role that cannot log in keeps the old way, with a note saying so.
func TestPhysicalMigrationsLogInAsTheSchemaRole(t *testing.T) {
	w := newPhysicalWorld(t)
	ctx := context.Background()
	w.Production.Exec(t, w.ProdDB, `CREATE ROLE bugs_owner LOGIN NOSUPERUSER;
ALTER SCHEMA public OWNER TO bugs_owner;
DO $$DECLARE r record; BEGIN
  FOR r IN SELECT tablename FROM pg_tables WHERE schemaname = 'public' LOOP
    EXECUTE format('ALTER TABLE public.%I OWNER TO bugs_owner', r.tablename);
  END LOOP;
END$$;`)
	if _, err := w.Backup(ctx); err != nil {
		t.Fatal(err)
	}
	editConfig(t, w.ConfigPath, `migrations = "migrations"`, "migrations = \"migrations\"\nrole = \"bugs_owner\"")
	rep := mustRun(t, w)
	if notes := strings.Join(rep.Notes, "\n"); strings.Contains(notes, "SET ROLE") {
		t.Errorf("a note about the migrations' login:\n%s", notes)
	}
	if v := w.Staging.QueryString(t, w.StagingDB, "SELECT version::text FROM schema_migrations"); v != fmt.Sprint(stagingtest.CodePatch) {
		t.Fatalf("staging at patch %s", v)
	}

	// The folder the cluster's user may write into: the hostile migration's program
	// would leave its file there.
	out, err := os.MkdirTemp("", "restage-program-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(out) })
	if err := os.Chmod(out, 0o777); err != nil {
		t.Fatal(err)
	}
	pwned := filepath.Join(out, "pwned")
	inject, repair := replaceFile(filepath.Join(w.Source, "migrations", "5_bug_heat.up.sql"),
		"ALTER TABLE bug ADD COLUMN heat int;\nSET ROLE NONE;\nCOPY (SELECT 'ran as the superuser') TO PROGRAM 'cat > "+pwned+"';\n")
	inject(t)
	before := physicalSnapshot(t, w)
	rep, err = run(t, w)
	if _, serr := os.Stat(pwned); serr == nil {
		t.Fatalf("the migration ran a program as the cluster's user (run err %v)", err)
	}
	if err == nil || rep.FailedStep != "schema" || !strings.Contains(err.Error(), "pg_execute_server_program") {
		t.Fatalf("the hostile migration: err %v, step %q", err, rep.FailedStep)
	}
	if after := physicalSnapshot(t, w); after != before {
		t.Errorf("staging changed:\n%s\n---\n%s", before, after)
	}
	repair(t)

	// A role that cannot log in: the migrations run as before, and the report says why.
	w.Production.Exec(t, w.ProdDB, "ALTER ROLE bugs_owner NOLOGIN")
	if _, err := w.Backup(ctx); err != nil {
		t.Fatal(err)
	}
	rep = mustRun(t, w)
	if notes := strings.Join(rep.Notes, "\n"); !strings.Contains(notes, "SET ROLE bugs_owner, which cannot log in") {
		t.Errorf("no note about the migrations' login:\n%s", notes)
	}

	// A superuser that cannot log in: the same (a login as it would be refused).
	w.Production.Exec(t, w.ProdDB, "ALTER ROLE bugs_owner SUPERUSER NOLOGIN")
	if _, err := w.Backup(ctx); err != nil {
		t.Fatal(err)
	}
	rep = mustRun(t, w)
	if notes := strings.Join(rep.Notes, "\n"); !strings.Contains(notes, "SET ROLE bugs_owner, which cannot log in") {
		t.Errorf("no note about the migrations' login:\n%s", notes)
	}
}
