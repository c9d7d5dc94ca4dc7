package dbrestore

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/restage/restage/dbrestore/mask"
	"github.com/restage/restage/internal/testutil"
)

// Post-restore files that mask with UPDATEs (the way that predates [mask]) leave the old
// row versions, production's values, in the pages of the table and its indexes, and
// what was computed from them in materialized views and planner statistics. The restore
// rewrites what the files changed, as the restore login's role (the database's owner);
// KeepOldRows leaves it.
func TestPostRestoreLeavesNoOldRowVersions(t *testing.T) {
	prod, staging := servers(t)
	db := prod.Database(t)
	prod.Exec(t, db, `
CREATE TABLE person (id int PRIMARY KEY, email text UNIQUE, bio text);
INSERT INTO person SELECT g, 'person' || g || '@prod.example.org', repeat('x', 3000) || 'bio' || g || '@prod.example.org'
  FROM generate_series(1, 200) g;
ALTER TABLE person ALTER COLUMN bio SET STORAGE EXTERNAL;
CREATE TABLE session (id int, token text);
INSERT INTO session SELECT g, 'tok' || g || '@prod.example.org' FROM generate_series(1, 100) g;
CREATE TABLE bug (id int, title text);
INSERT INTO bug SELECT g, 'bug ' || g FROM generate_series(1, 100) g;
CREATE MATERIALIZED VIEW domains AS SELECT email FROM person;`)
	b := dumpOf(t, prod, db, DumpOptions{Counts: true})
	suffix := fmt.Sprint(time.Now().UnixNano() % 1e9)
	role := "scrubber_" + suffix
	login := staging.LoginRole(t, role, "postgres")
	srv := newServer(t, staging, ServerConfig{Production: []uint64{prod.SystemIdentifier(t)}, Role: role, RestoreDSN: login})
	files := []string{
		// As autovacuum may, after the load: production's values in pg_statistic.
		testutil.WriteTemp(t, "analyze.sql", "ANALYZE person; ANALYZE session;\n"),
		testutil.WriteTemp(t, "scrub.sql", `UPDATE person SET email = 'u' || id || '@example.invalid', bio = 'bio';
DELETE FROM session; INSERT INTO bug VALUES (101, 'new');
`),
	}
	pages := func(target string) int64 {
		staging.Exec(t, target, "CREATE EXTENSION IF NOT EXISTS pageinspect")
		return staging.QueryInt(t, target, `SELECT count(*) FROM (SELECT r.rel FROM unnest(ARRAY['public.person', 'public.person_email_key',
  'public.session', 'public.domains', 'pg_catalog.pg_statistic']) r(rel)
  UNION ALL SELECT reltoastrelid::regclass::text FROM pg_class WHERE oid = 'public.person'::regclass) r,
  generate_series(0, pg_relation_size(r.rel) / current_setting('block_size')::int - 1) b
WHERE position(convert_to('@prod.example.org', 'UTF8') IN get_raw_page(r.rel, b::int)) > 0`)
	}

	kept := dbName(t, staging, "post_restore_kept")
	if _, err := srv.Restore(testCtx(t), b, RestoreOptions{Target: kept, PostRestore: files, KeepOldRows: true}); err != nil {
		t.Fatal(err)
	}
	if pages(kept) == 0 {
		t.Fatal("no page holds production's values with KeepOldRows: the test proves nothing")
	}

	target := dbName(t, staging, "post_restore")
	res, err := srv.Restore(testCtx(t), b, RestoreOptions{Target: target, PostRestore: files})
	if err != nil {
		t.Fatal(err)
	}
	if n := pages(target); n != 0 {
		t.Fatalf("%d pages still hold production's values after the post-restore files masked them", n)
	}
	if n := staging.QueryInt(t, target, "SELECT count(*) FROM domains WHERE email LIKE '%@prod.example.org'"); n != 0 {
		t.Fatalf("the materialized view still shows %d production e-mails", n)
	}
	if !strings.Contains(res.Output, "rewrote the 2 table(s) the files updated or deleted rows of") ||
		!strings.Contains(res.Output, "public.person, public.session") {
		t.Errorf("output does not say what was rewritten:\n%s", res.Output)
	}

	// A file that ends its transaction itself: what it wrote before is unknown, so every
	// table is rewritten.
	committing := testutil.WriteTemp(t, "commit.sql", "ANALYZE person; UPDATE person SET email = 'u' || id || '@example.invalid'; COMMIT; SELECT 1;\n")
	target = dbName(t, staging, "post_restore_commit")
	if res, err = srv.Restore(testCtx(t), b, RestoreOptions{Target: target, PostRestore: []string{committing}}); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(res.Output, "rewrote the 4 table(s)") {
		t.Errorf("output does not say every table was rewritten:\n%s", res.Output)
	}
	staging.Exec(t, target, "CREATE EXTENSION pageinspect")
	if n := staging.QueryInt(t, target, `SELECT count(*) FROM unnest(ARRAY['person', 'person_email_key']) r(rel),
  generate_series(0, pg_relation_size(r.rel) / current_setting('block_size')::int - 1) b
WHERE position(convert_to('@prod.example.org', 'UTF8') IN get_raw_page(r.rel, b::int)) > 0`); n != 0 {
		t.Fatalf("%d pages of person and its index hold production's e-mails after a file that committed itself", n)
	}
}

// A role that may not rewrite a table (it owns neither the table nor the database) is
// refused before anything is done: VACUUM would skip the table with a warning, leaving
// its old row versions.
func TestRewriteRefusesWhatTheRoleMayNotRewrite(t *testing.T) {
	_, staging := servers(t)
	db := dbName(t, staging, "rewrite_denied")
	staging.Exec(t, "postgres", "CREATE DATABASE "+db)
	staging.Exec(t, db, "CREATE TABLE person (id int, email text); INSERT INTO person VALUES (1, 'a@prod.example.org')")
	login := staging.LoginRole(t, fmt.Sprintf("outsider_%d", time.Now().UnixNano()%1e9), db)
	t.Cleanup(func() { dropQuietly(staging, db) }) // before the role goes
	err := mask.Rewrite(testCtx(t), testConn(t, login), []string{"public.person"})
	if err == nil || !strings.Contains(err.Error(), "may not rewrite public.person") {
		t.Fatalf("Rewrite as a role that owns nothing: %v", err)
	}
}
