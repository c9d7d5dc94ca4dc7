package dbrestore

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"slices"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"

	"github.com/restage/restage/dbrestore/mask"
	"github.com/restage/restage/dbrestore/pgtest"
)

const maskKey = "s3cret-mask-key-for-tests"

// personalSchema is a production database with personal data: people with unique
// e-mails and tokens, names (with awkward characters), phones, an array of aliases,
// subscriptions whose foreign keys point at the e-mail and the (hashed) token, sessions
// and an audit log.
const personalSchema = `
CREATE TABLE person (id serial PRIMARY KEY, email text NOT NULL UNIQUE, full_name text, phone text,
  api_token text UNIQUE, aliases text[], note text, karma int);
INSERT INTO person (email, full_name, phone, api_token, aliases, note, karma)
SELECT 'person' || g || '@prod.example.org',
       CASE WHEN g % 10 = 0 THEN NULL ELSE 'Realname' || g || E' O''Tab\tLast\\' END,
       CASE WHEN g % 7 = 0 THEN NULL ELSE '+44 20 7946 ' || lpad(g::text, 4, '0') END,
       'tok-' || md5(g::text),
       ARRAY['alias' || g || 'x', NULL, 'nick "' || g || '"'],
       E'private note\nof person ' || g, g
FROM generate_series(1, 500) g;
CREATE TABLE subscription (id serial PRIMARY KEY, person_email text NOT NULL REFERENCES person (email),
  person_token text REFERENCES person (api_token), topic text);
INSERT INTO subscription (person_email, person_token, topic)
SELECT 'person' || (g % 500 + 1) || '@prod.example.org', 'tok-' || md5((g % 500 + 1)::text), 'topic' || g
FROM generate_series(1, 900) g;
CREATE TABLE session (id serial PRIMARY KEY, token text, person_id int REFERENCES person);
INSERT INTO session (token, person_id) SELECT 'sess-' || md5(g::text), g % 500 + 1 FROM generate_series(1, 1000) g;
CREATE TABLE audit (id serial PRIMARY KEY, ip inet, what text);
INSERT INTO audit (ip, what) SELECT '10.0.0.1', 'login' FROM generate_series(1, 50);
`

// personalRules mask personalSchema.
func personalRules(tb testing.TB) *mask.Rules {
	tb.Helper()
	r, err := mask.New(mask.Config{
		Strict: []string{"public.person"},
		Columns: map[string]string{
			"public.person.id": "keep", "public.person.email": "email", "public.person.full_name": "name",
			"public.person.phone": "phone", "public.person.api_token": "hash", "public.person.aliases": "name",
			"public.person.note": "text", "public.person.karma": "keep",
			"public.subscription.person_email": "email", "public.subscription.person_token": "hash",
			"public.session.token": "hash",
		},
		Tables: map[string]string{"public.session": "sample:0.5", "public.audit": "truncate"},
	}, func(string) string { return maskKey })
	if err != nil {
		tb.Fatal(err)
	}
	return r
}

// testConn connects to dsn until the test ends.
func testConn(tb testing.TB, dsn string) *pgx.Conn {
	tb.Helper()
	conn, err := pgx.Connect(testCtx(tb), dsn)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { conn.Close(context.Background()) })
	return conn
}

// productionValues returns every value of the masked columns in production.
func productionValues(tb testing.TB, prod *pgtest.Server, db string) []string {
	tb.Helper()
	ctx := testCtx(tb)
	conn := testConn(tb, prod.DSN(db))
	rows, err := conn.Query(ctx, `
SELECT email FROM person UNION SELECT full_name FROM person WHERE full_name IS NOT NULL
UNION SELECT phone FROM person WHERE phone IS NOT NULL UNION SELECT api_token FROM person
UNION SELECT unnest(aliases) FROM person UNION SELECT note FROM person UNION SELECT token FROM session`)
	if err != nil {
		tb.Fatal(err)
	}
	var out []string
	for rows.Next() {
		var v *string
		if err := rows.Scan(&v); err != nil {
			tb.Fatal(err)
		}
		if v != nil {
			out = append(out, *v)
		}
	}
	if len(out) < 3000 {
		tb.Fatalf("only %d production values", len(out))
	}
	return out
}

// dumpSQL returns pg_dump's plain SQL of database.
func dumpSQL(tb testing.TB, srv *pgtest.Server, database string) string {
	tb.Helper()
	pgDump, err := (Config{}).tool("pg_dump")
	if err != nil {
		tb.Fatal(err)
	}
	out, err := exec.CommandContext(testCtx(tb), pgDump, "--dbname", srv.DSN(database)).Output()
	if err != nil {
		tb.Fatalf("pg_dump: %v", err)
	}
	return string(out)
}

// maskWorld is a production database made by sql, its backup, and a Server that
// restores into the staging server and knows production.
type maskWorld struct {
	prod, staging *pgtest.Server
	db            string
	b             *Backup
	srv           *Server
}

func newMaskWorld(t *testing.T, sql string, opts DumpOptions) *maskWorld {
	t.Helper()
	w := &maskWorld{}
	w.prod, w.staging = servers(t)
	w.db = w.prod.Database(t)
	w.prod.Exec(t, w.db, sql)
	w.b = dumpOf(t, w.prod, w.db, opts)
	w.srv = newServer(t, w.staging, ServerConfig{Production: []uint64{w.prod.SystemIdentifier(t)}})
	return w
}

// escapedForms are the ways a value can appear in pg_dump's COPY text.
func escapedForms(v string) []string {
	return []string{v, string(mask.EncodeField(nil, []byte(v)))}
}

func TestMaskedRestore(t *testing.T) {
	w := newMaskWorld(t, personalSchema, DumpOptions{Counts: true})
	ctx := testCtx(t)
	rules := personalRules(t)

	restore := func(name string) *RestoreResult {
		t.Helper()
		target := dbName(t, w.staging, name)
		res, err := w.srv.Restore(ctx, w.b, RestoreOptions{Target: target, Jobs: 2, Mask: rules})
		if err != nil {
			t.Fatalf("Restore: %v", err)
		}
		return res
	}
	res := restore("masked_a")
	target := res.Database

	// No production value of a masked column appears anywhere in staging's dump.
	sql := dumpSQL(t, w.staging, target)
	for _, v := range productionValues(t, w.prod, w.db) {
		for _, form := range escapedForms(v) {
			if strings.Contains(sql, form) {
				t.Fatalf("production value %q is in pg_dump of the masked database", v)
			}
		}
	}
	if strings.Contains(sql, "10.0.0.1") {
		t.Fatal("the truncated audit table's rows are in the masked database")
	}
	if strings.Contains(res.Output, maskKey) {
		t.Fatal("the mask key is in the restore's output")
	}

	// Joins match, unique constraints hold, NULLs stay NULL, counts as the rules say.
	q := func(database, sql string) int64 { return w.staging.QueryInt(t, database, sql) }
	for _, check := range []struct {
		sql  string
		want int64
	}{
		{"SELECT count(*) FROM subscription s JOIN person p ON p.email = s.person_email", 900},
		{"SELECT count(*) FROM subscription s JOIN person p ON p.api_token = s.person_token", 900},
		{"SELECT count(DISTINCT email) FROM person", 500},
		{"SELECT count(*) FROM person WHERE email LIKE 'u%@example.invalid'", 500},
		{"SELECT count(*) FROM person WHERE full_name IS NULL", 50},
		{"SELECT count(*) FROM person WHERE phone IS NULL", 71},
		{"SELECT count(*) FROM person WHERE aliases[2] IS NULL AND cardinality(aliases) = 3", 500},
		{"SELECT count(*) FROM person WHERE karma = id", 500},
		{"SELECT count(*) FROM audit", 0},
		{"SELECT count(*) FROM pg_constraint WHERE contype IN ('u', 'f') AND conrelid::regclass::text IN ('person', 'subscription', 'session')", 5},
	} {
		if got := q(target, check.sql); got != check.want {
			t.Errorf("%s = %d, want %d", check.sql, got, check.want)
		}
	}
	sessions := q(target, "SELECT count(*) FROM session")
	if sessions < 400 || sessions > 600 {
		t.Errorf("sample:0.5 kept %d of 1000 sessions", sessions)
	}

	// The result says what was masked.
	if res.Mask == nil || len(res.Mask.Columns) != 9 || len(res.Mask.Tables) != 2 {
		t.Fatalf("mask result = %+v", res.Mask)
	}
	for _, c := range res.Mask.Columns {
		if c.Column == "public.person.email" && (c.Rule != "email" || c.Rows != 500) {
			t.Errorf("person.email: %+v", c)
		}
		if c.Column == "public.person.full_name" && c.Rows != 450 {
			t.Errorf("person.full_name: %+v (NULLs are not changed)", c)
		}
	}

	// Two restores give identical masked values.
	res2 := restore("masked_b")
	digest := "SELECT md5(string_agg(p::text, '|' ORDER BY id)) FROM person p"
	var d1, d2 string
	c1 := testConn(t, w.staging.DSN(target))
	c2 := testConn(t, w.staging.DSN(res2.Database))
	if err := c1.QueryRow(ctx, digest).Scan(&d1); err != nil {
		t.Fatal(err)
	}
	if err := c2.QueryRow(ctx, digest).Scan(&d2); err != nil {
		t.Fatal(err)
	}
	if d1 != d2 {
		t.Fatal("two masked restores of one backup differ")
	}
	if q(target, "SELECT count(*) FROM session") != q(res2.Database, "SELECT count(*) FROM session") {
		t.Fatal("two samples of one backup differ")
	}
}

func TestMaskedRestoreFailsClosed(t *testing.T) {
	w := newMaskWorld(t, personalSchema+"ALTER TABLE subscription ADD COLUMN backup_email text; CREATE TABLE contact (id int, mobile_phone text, home_address text);", DumpOptions{})
	ctx := testCtx(t)

	target := dbName(t, w.staging, "masked_closed")
	_, err := w.srv.Restore(ctx, w.b, RestoreOptions{Target: target, Mask: personalRules(t)})
	var ue *mask.UnmaskedError
	if !errors.As(err, &ue) {
		t.Fatalf("err = %v, want *mask.UnmaskedError", err)
	}
	if got := strings.Join(ue.Columns, " "); got != "public.contact.home_address public.contact.mobile_phone public.subscription.backup_email" {
		t.Fatalf("unmasked = %s", got)
	}
	if dbExists(t, w.staging, target) {
		t.Fatal("the half-built target was kept")
	}

	// A column masked in a partitioned table must be decided in each partition, which
	// holds the rows.
	w.prod.Exec(t, w.db, "CREATE TABLE event (id int, note text) PARTITION BY RANGE (id); CREATE TABLE event_1 PARTITION OF event FOR VALUES FROM (0) TO (100); INSERT INTO event VALUES (1, 'private')")
	b2 := dumpOf(t, w.prod, w.db, DumpOptions{})
	parted, err := mask.New(mask.Config{Columns: map[string]string{"public.event.note": "text"}}, func(string) string { return maskKey })
	if err != nil {
		t.Fatal(err)
	}
	_, err = w.srv.Restore(ctx, b2, RestoreOptions{Target: target, Mask: parted})
	if !errors.As(err, &ue) || !slices.Contains(ue.Columns, "public.event_1.note") {
		t.Fatalf("partition without the parent's rule: %v", err)
	}

	// A rule for a column the backup lacks is a bad rule, named.
	bad, err := mask.New(mask.Config{Columns: map[string]string{"public.person.e_mail": "email"}},
		func(string) string { return maskKey })
	if err != nil {
		t.Fatal(err)
	}
	_, err = w.srv.Restore(ctx, w.b, RestoreOptions{Target: target, Mask: bad})
	if !errors.Is(err, mask.ErrRule) || !strings.Contains(err.Error(), `mask.columns."public.person.e_mail"`) {
		t.Fatalf("err = %v, want mask.ErrRule naming the rule", err)
	}
	if strings.Contains(err.Error(), maskKey) {
		t.Fatal("the key is in the error")
	}
}

// TestApplyMatchesMaskedRestore: masking a restored database in place with SQL (the
// physical strategy's way) gives the values a masked restore gives, keeps the joins on
// hashed columns and the sample, and refuses a database with an unmasked column.
func TestApplyMatchesMaskedRestore(t *testing.T) {
	w := newMaskWorld(t, personalSchema, DumpOptions{Counts: true})
	ctx := testCtx(t)
	rules := personalRules(t)

	masked := dbName(t, w.staging, "masked_stream")
	if _, err := w.srv.Restore(ctx, w.b, RestoreOptions{Target: masked, Mask: rules}); err != nil {
		t.Fatal(err)
	}
	plain := dbName(t, w.staging, "masked_sql")
	if _, err := w.srv.Restore(ctx, w.b, RestoreOptions{Target: plain}); err != nil {
		t.Fatal(err)
	}
	conn := testConn(t, w.staging.DSN(plain))
	res, err := mask.Apply(ctx, conn, rules, mask.ApplyOptions{TempDir: t.TempDir()})
	if err != nil {
		t.Fatalf("Apply: %v", err)
	}
	if len(res.Columns) != 9 || len(res.Tables) != 2 {
		t.Fatalf("Apply result = %+v", res)
	}
	for _, sql := range []string{
		"SELECT md5(string_agg(p::text, '|' ORDER BY id)) FROM person p",
		"SELECT md5(string_agg(s::text, '|' ORDER BY id)) FROM subscription s",
		"SELECT md5(string_agg(s::text, '|' ORDER BY id)) FROM session s",
		"SELECT count(*)::text FROM audit",
	} {
		var a, b string
		if err := testConn(t, w.staging.DSN(masked)).QueryRow(ctx, sql).Scan(&a); err != nil {
			t.Fatal(err)
		}
		if err := conn.QueryRow(ctx, sql).Scan(&b); err != nil {
			t.Fatal(err)
		}
		if a != b {
			t.Errorf("%s: masked restore %s, Apply %s", sql, a, b)
		}
	}
	if n := w.staging.QueryInt(t, plain, "SELECT count(*) FROM subscription s JOIN person p ON p.api_token = s.person_token"); n != 900 {
		t.Errorf("join on the hashed token after Apply: %d rows, want 900", n)
	}
	sql := dumpSQL(t, w.staging, plain)
	if strings.Contains(sql, "@prod.example.org") || strings.Contains(sql, "tok-") {
		t.Error("production values are left after Apply")
	}

	// A column without a decision: nothing is changed.
	w.staging.Exec(t, plain, "ALTER TABLE person ADD COLUMN backup_email text; UPDATE person SET backup_email = 'x@prod.example.org'")
	before := w.staging.QueryInt(t, plain, "SELECT count(*) FROM person WHERE backup_email = 'x@prod.example.org'")
	if _, err := mask.Apply(ctx, conn, rules, mask.ApplyOptions{}); !errors.Is(err, mask.ErrUnmasked) {
		t.Fatalf("Apply with an unmasked column: %v", err)
	}
	if before != 500 {
		t.Fatal("setup")
	}
}

// Trust rule 10: the pg_restore children of a masked restore never get the key (nor
// any other secret of this process), though it is in this process's environment.
func TestMaskedRestoreChildrenNeverSeeTheKey(t *testing.T) {
	prod, staging, db := seeded(t, 20)
	t.Setenv("RESTAGE_MASK_KEY", "mask-Secret-key")
	bin, runs := spyBinDir(t)
	ctx := testCtx(t)
	b := dumpOf(t, prod, db, DumpOptions{})
	rules, err := mask.New(mask.Config{Columns: map[string]string{"public.users.email": "email", "public.sessions.token": "hash"}},
		os.Getenv)
	if err != nil {
		t.Fatal(err)
	}
	srv := newServer(t, staging, ServerConfig{BinDir: bin, Production: []uint64{prod.SystemIdentifier(t)}})
	target := dbName(t, staging, "masked_env")
	if _, err := srv.Restore(ctx, b, RestoreOptions{Target: target, Mask: rules}); err != nil {
		t.Fatal(err)
	}
	streamed := 0
	for _, r := range runs() {
		for _, kv := range r.env {
			if strings.Contains(kv, "Secret") {
				t.Errorf("%s %s saw %s", r.tool, r.args, kv)
			}
		}
		if strings.Contains(r.args, "mask-Secret") {
			t.Errorf("%s got the key as an argument: %s", r.tool, r.args)
		}
		if strings.Contains(r.args, "--file=-") {
			streamed++
		}
	}
	if streamed != 2 {
		t.Fatalf("%d tables streamed through the masker, want 2: %+v", streamed, runs())
	}
	if n := staging.QueryInt(t, target, "SELECT count(*) FROM users WHERE email LIKE '%@example.org'"); n != 0 {
		t.Fatalf("%d e-mails unmasked", n)
	}
}

// A masked value the column cannot take fails the restore, naming the table and the
// server's reason; pg_restore is stopped and the half-built target dropped.
func TestMaskedRestoreCopyFailure(t *testing.T) {
	w := newMaskWorld(t, "CREATE TABLE member (id int, email varchar(12)); INSERT INTO member SELECT g, 'm' || g || '@x.org' FROM generate_series(1, 20000) g", DumpOptions{})
	rules, err := mask.New(mask.Config{Columns: map[string]string{"public.member.email": "email"}}, func(string) string { return maskKey })
	if err != nil {
		t.Fatal(err)
	}
	target := dbName(t, w.staging, "masked_fail")
	_, err = w.srv.Restore(testCtx(t), w.b, RestoreOptions{Target: target, Mask: rules})
	requireErrContains(t, err, "masking public.member", "value too long")
	if dbExists(t, w.staging, target) {
		t.Fatal("the half-built target was kept")
	}
}

// The rows of a partition or an inheritance child load on their own, so neither a
// truncate or sample of its parent nor the parent's strict reaches them: such a child
// is strict itself, in the backup's schema (the run's mask step) and in the restored
// one, until its own table rule or a decision for each of its columns.
func TestMaskedRestoreChildrenOfStrictAndTruncatedTables(t *testing.T) {
	w := newMaskWorld(t, `
CREATE TABLE person (id int, remark text) PARTITION BY RANGE (id);
CREATE TABLE person_2024 PARTITION OF person FOR VALUES FROM (0) TO (100);
INSERT INTO person VALUES (1, 'private remark of person 1');
CREATE TABLE member (id int, karma int);
CREATE TABLE member_vip (remark text) INHERITS (member);
INSERT INTO member_vip VALUES (1, 2, 'private remark of member 1');`, DumpOptions{})
	ctx := testCtx(t)
	leaky, err := mask.New(mask.Config{Strict: []string{"public.member"}, Tables: map[string]string{"public.person": "truncate"},
		Columns: map[string]string{"public.member.id": "keep", "public.member.karma": "keep"}}, func(string) string { return maskKey })
	if err != nil {
		t.Fatal(err)
	}
	want := "public.member_vip.id public.member_vip.karma public.member_vip.remark public.person_2024.id public.person_2024.remark"
	cols, err := (&DirCatalog{}).Columns(ctx, w.b)
	if err != nil {
		t.Fatal(err)
	}
	var ue *mask.UnmaskedError
	if err := leaky.Check(cols); !errors.As(err, &ue) || strings.Join(ue.Columns, " ") != want {
		t.Fatalf("check of the backup's schema: %v, want %s", err, want)
	}
	target := dbName(t, w.staging, "masked_children")
	_, err = w.srv.Restore(ctx, w.b, RestoreOptions{Target: target, Mask: leaky})
	if !errors.As(err, &ue) || strings.Join(ue.Columns, " ") != want {
		t.Fatalf("restore: %v, want the children's columns %s", err, want)
	}

	// With the children's own rules, nothing of theirs is left.
	fixed, err := mask.New(mask.Config{Strict: []string{"public.member"},
		Tables:  map[string]string{"public.person": "truncate", "public.person_2024": "truncate"},
		Columns: map[string]string{"public.member.id": "keep", "public.member.karma": "keep", "public.member_vip.id": "keep", "public.member_vip.karma": "keep", "public.member_vip.remark": "text"}},
		func(string) string { return maskKey })
	if err != nil {
		t.Fatal(err)
	}
	if _, err := w.srv.Restore(ctx, w.b, RestoreOptions{Target: target, Mask: fixed}); err != nil {
		t.Fatal(err)
	}
	if sql := dumpSQL(t, w.staging, target); strings.Contains(sql, "private remark") {
		t.Fatal("a child's production rows are on staging")
	}
}

// pg_dump --load-via-partition-root writes a partition's data as a COPY into the root:
// the partition's rules mask it, not the root's.
func TestMaskedRestoreLoadViaPartitionRoot(t *testing.T) {
	w := newMaskWorld(t, `
CREATE TABLE person (id int, email text) PARTITION BY RANGE (id);
CREATE TABLE person_2024 PARTITION OF person FOR VALUES FROM (0) TO (100);
INSERT INTO person VALUES (1, 'person1@prod.example.org');`, DumpOptions{Args: []string{"--load-via-partition-root"}})
	rules, err := mask.New(mask.Config{Columns: map[string]string{"public.person.email": "keep", "public.person_2024.email": "email"}},
		func(string) string { return maskKey })
	if err != nil {
		t.Fatal(err)
	}
	target := dbName(t, w.staging, "masked_via_root")
	if _, err := w.srv.Restore(testCtx(t), w.b, RestoreOptions{Target: target, Jobs: 2, Mask: rules}); err != nil {
		t.Fatal(err)
	}
	if n := w.staging.QueryInt(t, target, "SELECT count(*) FROM person_2024 WHERE email LIKE 'u%@example.invalid'"); n != 1 {
		t.Fatalf("%d masked e-mails in the partition, want 1", n)
	}
	if sql := dumpSQL(t, w.staging, target); strings.Contains(sql, "@prod.example.org") {
		t.Fatal("the partition's e-mail is unmasked")
	}
}

// A restored cluster's materialized views hold rows computed from production's values:
// Apply refreshes them (after the ones they read) once the tables are masked.
func TestApplyRefreshesMaterializedViews(t *testing.T) {
	w := newMaskWorld(t, `
CREATE TABLE person (id int, email text);
INSERT INTO person SELECT g, 'person' || g || '@prod.example.org' FROM generate_series(1, 10) g;
CREATE VIEW person_v AS SELECT * FROM person;
CREATE MATERIALIZED VIEW person_mv AS SELECT * FROM person_v;
CREATE MATERIALIZED VIEW person_mv2 AS SELECT email FROM person_mv;
CREATE MATERIALIZED VIEW empty_mv AS SELECT email FROM person WITH NO DATA;`, DumpOptions{})
	ctx := testCtx(t)
	rules, err := mask.New(mask.Config{Columns: map[string]string{"public.person.email": "email"}}, func(string) string { return maskKey })
	if err != nil {
		t.Fatal(err)
	}
	plain := dbName(t, w.staging, "masked_views")
	if _, err := w.srv.Restore(ctx, w.b, RestoreOptions{Target: plain}); err != nil {
		t.Fatal(err)
	}
	if _, err := mask.Apply(ctx, testConn(t, w.staging.DSN(plain)), rules, mask.ApplyOptions{TempDir: t.TempDir()}); err != nil {
		t.Fatal(err)
	}
	for _, view := range []string{"person_mv", "person_mv2"} {
		if n := w.staging.QueryInt(t, plain, "SELECT count(*) FROM "+view+" WHERE email LIKE '%@prod.example.org'"); n != 0 {
			t.Errorf("%s holds %d production e-mails after Apply", view, n)
		}
	}
	if n := w.staging.QueryInt(t, plain, "SELECT count(*) FROM pg_matviews WHERE ispopulated"); n != 2 {
		t.Errorf("%d populated materialized views, want 2 (a view without data stays so)", n)
	}
}

// pg_restore --list prints names unquoted: the data of public."person x" is that
// table's, not public.person's (whose rules would mask it otherwise).
func TestTableOfLongestName(t *testing.T) {
	e, ok := parseTOCLine("3364; 0 16391 TABLE DATA public person x postgres")
	if !ok {
		t.Fatal("parseTOCLine")
	}
	if got := tableOf(e, []string{"public.person", "public.person x"}); got != "public.person x" {
		t.Fatalf("tableOf = %q, want public.person x", got)
	}
}

// Large objects are in no table, so no column rule reaches them: a backup holding any
// needs a decision (the check of its schema and the restore's both name them), a
// truncate keeps each one empty (references hold), in a masked restore and in Apply.
func TestMaskedLargeObjects(t *testing.T) {
	w := newMaskWorld(t, `
CREATE TABLE person (id int, email text, cv oid);
INSERT INTO person VALUES (1, 'person1@prod.example.org', lo_from_bytea(0, 'production CV of person 1'::bytea));`, DumpOptions{})
	ctx := testCtx(t)
	key := func(string) string { return maskKey }
	cols := map[string]string{"public.person.email": "email", "public.person.cv": "keep"}
	undecided, err := mask.New(mask.Config{Columns: cols}, key)
	if err != nil {
		t.Fatal(err)
	}
	want := mask.LargeObjects + ".data"
	backupCols, err := (&DirCatalog{}).Columns(ctx, w.b)
	if err != nil {
		t.Fatal(err)
	}
	var ue *mask.UnmaskedError
	if err := undecided.Check(backupCols); !errors.As(err, &ue) || strings.Join(ue.Columns, " ") != want {
		t.Fatalf("check of the backup: %v, want %s undecided", err, want)
	}
	target := dbName(t, w.staging, "masked_los")
	if _, err := w.srv.Restore(ctx, w.b, RestoreOptions{Target: target, Mask: undecided}); !errors.As(err, &ue) || strings.Join(ue.Columns, " ") != want {
		t.Fatalf("restore without a decision: %v, want %s undecided", err, want)
	}

	emptied := func(db string) {
		t.Helper()
		if n := w.staging.QueryInt(t, db, "SELECT count(*) FROM pg_largeobject_metadata"); n != 1 {
			t.Errorf("%d large objects, want the one kept", n)
		}
		if n := w.staging.QueryInt(t, db, "SELECT count(*) FROM pg_largeobject"); n != 0 {
			t.Errorf("%d pages of large object data on staging, want none", n)
		}
	}
	truncate, err := mask.New(mask.Config{Columns: cols, Tables: map[string]string{mask.LargeObjects: "truncate"}}, key)
	if err != nil {
		t.Fatal(err)
	}
	res, err := w.srv.Restore(ctx, w.b, RestoreOptions{Target: target, Jobs: 2, Mask: truncate})
	if err != nil {
		t.Fatal(err)
	}
	emptied(target)
	if res.Mask == nil || !slices.Contains(res.Mask.Tables, mask.TableResult{Table: mask.LargeObjects, Rule: "truncate", RowsIn: 1}) {
		t.Errorf("the result does not say the large object was emptied: %+v", res.Mask)
	}

	// Apply (the physical strategy's masking) empties them in place, owner kept.
	plain := dbName(t, w.staging, "masked_los_apply")
	if _, err := w.srv.Restore(ctx, w.b, RestoreOptions{Target: plain}); err != nil {
		t.Fatal(err)
	}
	if _, err := mask.Apply(ctx, testConn(t, w.staging.DSN(plain)), undecided, mask.ApplyOptions{TempDir: t.TempDir()}); !errors.As(err, &ue) {
		t.Fatalf("Apply without a decision: %v", err)
	}
	owner := w.staging.QueryInt(t, plain, "SELECT lomowner::int FROM pg_largeobject_metadata")
	if _, err := mask.Apply(ctx, testConn(t, w.staging.DSN(plain)), truncate, mask.ApplyOptions{TempDir: t.TempDir()}); err != nil {
		t.Fatal(err)
	}
	emptied(plain)
	if n := w.staging.QueryInt(t, plain, "SELECT lomowner::int FROM pg_largeobject_metadata"); n != owner {
		t.Errorf("the large object's owner is %d, was %d", n, owner)
	}

	// Kept on purpose: restored as they are.
	keep, err := mask.New(mask.Config{Columns: map[string]string{"public.person.email": "email", "public.person.cv": "keep", want: "keep"}}, key)
	if err != nil {
		t.Fatal(err)
	}
	kept := dbName(t, w.staging, "masked_los_kept")
	if _, err := w.srv.Restore(ctx, w.b, RestoreOptions{Target: kept, Mask: keep}); err != nil {
		t.Fatal(err)
	}
	if n := w.staging.QueryInt(t, kept, "SELECT count(*) FROM pg_largeobject"); n != 1 {
		t.Errorf("%d pages of the kept large object, want 1", n)
	}
}

// A physical copy carries production's statistics: pg_statistic's most common values
// and histogram bounds (pg_stats, readable by whoever may read the column), those of
// expression indexes and the MCV lists of extended statistics, and the statistics of
// the parents whose inherited statistics read a masked partition. After Apply none of
// them holds a production value (the plain restore's ANALYZE stands for production's).
func TestApplyLeavesNoProductionStatistics(t *testing.T) {
	w := newMaskWorld(t, `
CREATE TABLE person (id int, contact text, remark text) PARTITION BY RANGE (id);
CREATE TABLE person_1 PARTITION OF person FOR VALUES FROM (0) TO (1000);
CREATE INDEX ON person_1 (lower(contact));
CREATE STATISTICS person_1_mcv (mcv) ON contact, remark FROM person_1;
INSERT INTO person SELECT g, 'person' || (g % 20) || '@prod.example.org', 'Realname ' || (g % 20) FROM generate_series(1, 400) g;
CREATE MATERIALIZED VIEW person_mv AS SELECT contact FROM person;`, DumpOptions{})
	ctx := testCtx(t)
	// The partition's rules only: the partitioned table holds no rows of its own.
	rules, err := mask.New(mask.Config{Columns: map[string]string{
		"public.person_1.contact": "email", "public.person_1.remark": "text"}}, func(string) string { return maskKey })
	if err != nil {
		t.Fatal(err)
	}
	plain := dbName(t, w.staging, "masked_stats")
	if _, err := w.srv.Restore(ctx, w.b, RestoreOptions{Target: plain}); err != nil {
		t.Fatal(err)
	}
	stats := `SELECT coalesce(string_agg(s::text, ' '), '') FROM (
  SELECT most_common_vals::text || histogram_bounds::text AS s FROM pg_stats WHERE schemaname = 'public'
  UNION ALL SELECT most_common_vals::text FROM pg_stats_ext WHERE schemaname = 'public'
  UNION ALL SELECT most_common_vals::text || histogram_bounds::text FROM pg_stats_ext_exprs WHERE schemaname = 'public'
  UNION ALL SELECT s::text FROM pg_statistic s) x`
	leaked := func() bool {
		t.Helper()
		var s string
		if err := testConn(t, w.staging.DSN(plain)).QueryRow(ctx, stats).Scan(&s); err != nil {
			t.Fatal(err)
		}
		return strings.Contains(s, "prod.example.org") || strings.Contains(s, "Realname")
	}
	if !leaked() {
		t.Fatal("setup: no production value in the statistics before Apply")
	}
	if _, err := mask.Apply(ctx, testConn(t, w.staging.DSN(plain)), rules, mask.ApplyOptions{TempDir: t.TempDir()}); err != nil {
		t.Fatal(err)
	}
	if leaked() {
		t.Fatal("production values are in the statistics after Apply")
	}
}

// Apply masks with UPDATE and DELETE statements on a restored copy, which production's
// rules and triggers would rewrite or follow: an ON UPDATE rule DO INSTEAD NOTHING
// would leave every value as it was, a soft-delete rule would keep a truncated table's
// rows, and a rule or an ENABLE ALWAYS / ENABLE REPLICA trigger (session_replication_role
// is replica) would copy the old values into a table masked before. None of them runs
// while Apply masks, and each is left as it was.
func TestApplyDespiteRulesAndTriggers(t *testing.T) {
	w := newMaskWorld(t, `
CREATE TABLE history (id int, email text);
CREATE TABLE person (id int, email text, full_name text);
INSERT INTO person SELECT g, 'person' || g || '@prod.example.org', 'Realname ' || g FROM generate_series(1, 10) g;
CREATE RULE keep_email AS ON UPDATE TO person WHERE NEW.email LIKE '%example.invalid' DO INSTEAD NOTHING;
CREATE FUNCTION remember() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN INSERT INTO history VALUES (OLD.id, OLD.email); RETURN NEW; END $$;
CREATE TRIGGER remember_always BEFORE UPDATE ON person FOR EACH ROW EXECUTE FUNCTION remember();
ALTER TABLE person ENABLE ALWAYS TRIGGER remember_always;
CREATE TRIGGER remember_replica BEFORE UPDATE ON person FOR EACH ROW EXECUTE FUNCTION remember();
ALTER TABLE person ENABLE REPLICA TRIGGER remember_replica;
CREATE TABLE session (id int, token text, deleted bool DEFAULT false);
INSERT INTO session SELECT g, 'sess-prod-' || g FROM generate_series(1, 10) g;
CREATE RULE soft_delete AS ON DELETE TO session DO INSTEAD UPDATE session SET deleted = true WHERE id = OLD.id;
CREATE TRIGGER forget BEFORE DELETE ON session FOR EACH ROW EXECUTE FUNCTION remember();
-- An inheritance child's trigger, which a DELETE of its truncated parent reached.
CREATE TABLE kid (id int, email text);
CREATE TABLE kid_1 () INHERITS (kid);
INSERT INTO kid_1 VALUES (1, 'kid@prod.example.org');
CREATE TRIGGER forget_kid BEFORE DELETE ON kid_1 FOR EACH ROW EXECUTE FUNCTION remember();
-- A partition's trigger cloned from its parent's, and a truncated partitioned table.
CREATE TABLE member (id int, email text) PARTITION BY RANGE (id);
CREATE TABLE member_1 PARTITION OF member FOR VALUES FROM (0) TO (100);
INSERT INTO member VALUES (1, 'member@prod.example.org');
CREATE TRIGGER remember_member BEFORE UPDATE ON member FOR EACH ROW EXECUTE FUNCTION remember();
ALTER TABLE member ENABLE ALWAYS TRIGGER remember_member;
CREATE TABLE visit (id int, ip inet) PARTITION BY RANGE (id);
CREATE TABLE visit_1 PARTITION OF visit FOR VALUES FROM (0) TO (100);
INSERT INTO visit VALUES (1, '10.1.2.3');`, DumpOptions{})
	ctx := testCtx(t)
	rules, err := mask.New(mask.Config{Columns: map[string]string{"public.person.email": "email", "public.person.full_name": "name",
		"public.history.email": "email", "public.member.email": "email", "public.member_1.email": "email"},
		Tables: map[string]string{"public.session": "truncate", "public.kid": "truncate", "public.kid_1": "truncate",
			"public.visit": "truncate", "public.visit_1": "truncate"}}, func(string) string { return maskKey })
	if err != nil {
		t.Fatal(err)
	}
	plain := dbName(t, w.staging, "masked_rules")
	if _, err := w.srv.Restore(ctx, w.b, RestoreOptions{Target: plain}); err != nil {
		t.Fatal(err)
	}
	state := `SELECT string_agg(x, ' ' ORDER BY x) FROM (
  SELECT tgname || '=' || tgenabled::text AS x FROM pg_trigger WHERE NOT tgisinternal
  UNION ALL SELECT rulename || '=' || ev_enabled::text FROM pg_rewrite WHERE rulename <> '_RETURN') s`
	var before, after string
	conn := testConn(t, w.staging.DSN(plain))
	if err := conn.QueryRow(ctx, state).Scan(&before); err != nil {
		t.Fatal(err)
	}
	if _, err := mask.Apply(ctx, conn, rules, mask.ApplyOptions{TempDir: t.TempDir()}); err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(dumpSQL(t, w.staging, plain), "\n") {
		if strings.Contains(line, "prod.example.org") || strings.Contains(line, "Realname") || strings.Contains(line, "sess-prod") || strings.Contains(line, "10.1.2.3") {
			t.Errorf("a production value is on staging after Apply: %q", line)
		}
	}
	if err := conn.QueryRow(ctx, state).Scan(&after); err != nil {
		t.Fatal(err)
	}
	if after != before {
		t.Errorf("rules and triggers after Apply: %s, before: %s", after, before)
	}
}

// pg_restore --list shows a line break in a name as a space, and pg_dump's statements
// carry it inside the quoted name: the data of public."per<newline>son" is still
// streamed through its rules (it once loaded unmasked, matched to no rule), and the
// backup's schema (the mask step's check) names its columns.
func TestMaskedRestoreNameWithLineBreak(t *testing.T) {
	w := newMaskWorld(t, `
CREATE TABLE "per
son" (id int, "e
mail" text, email text DEFAULT 'no
    phone text,
) here');
INSERT INTO "per
son" SELECT g, 'x', 'person' || g || '@prod.example.org' FROM generate_series(1, 10) g;`, DumpOptions{})
	ctx := testCtx(t)
	cols, err := (&DirCatalog{}).Columns(ctx, w.b)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, c := range cols {
		names = append(names, c.Key())
	}
	if want := []string{"public.per\nson.id", "public.per\nson.e\nmail", "public.per\nson.email"}; !slices.Equal(names, want) {
		t.Fatalf("columns of the backup's schema: %q, want %q", names, want)
	}
	rules, err := mask.New(mask.Config{Columns: map[string]string{"public.per\nson.email": "email", "public.per\nson.e\nmail": "text"}},
		func(string) string { return maskKey })
	if err != nil {
		t.Fatal(err)
	}
	if err := rules.Check(cols); err != nil {
		t.Fatal(err)
	}
	target := dbName(t, w.staging, "masked_line_break")
	res, err := w.srv.Restore(ctx, w.b, RestoreOptions{Target: target, Jobs: 2, Mask: rules})
	if err != nil {
		t.Fatal(err)
	}
	if sql := dumpSQL(t, w.staging, target); strings.Contains(sql, "@prod.example.org") {
		t.Fatal("the e-mails of public.\"per<newline>son\" are on staging unmasked")
	}
	if res.Mask == nil || len(res.Mask.Columns) != 2 {
		t.Fatalf("mask result %+v, want both columns masked", res.Mask)
	}
}

// A foreign table's rows are not in the backup: staging reads them from the foreign
// server, production's often, through the user mapping the dump restores. A column of
// one that the classification marks personal needs a decision, in the backup's schema
// (the mask step) and in the restored one, and only keep can be it.
func TestMaskedRestoreForeignTables(t *testing.T) {
	w := newMaskWorld(t, `
CREATE FOREIGN DATA WRAPPER dummy;
CREATE SERVER production FOREIGN DATA WRAPPER dummy;
CREATE FOREIGN TABLE remote_person (id int, email text) SERVER production;`, DumpOptions{})
	ctx := testCtx(t)
	key := func(string) string { return maskKey }
	undecided, err := mask.New(mask.Config{}, key)
	if err != nil {
		t.Fatal(err)
	}
	cols, err := (&DirCatalog{}).Columns(ctx, w.b)
	if err != nil {
		t.Fatal(err)
	}
	var ue *mask.UnmaskedError
	if err := undecided.Check(cols); !errors.As(err, &ue) || strings.Join(ue.Columns, " ") != "public.remote_person.email" {
		t.Fatalf("check of the backup's schema: %v, want public.remote_person.email undecided", err)
	}
	target := dbName(t, w.staging, "masked_foreign")
	if _, err := w.srv.Restore(ctx, w.b, RestoreOptions{Target: target, Mask: undecided}); !errors.As(err, &ue) || strings.Join(ue.Columns, " ") != "public.remote_person.email" {
		t.Fatalf("restore: %v, want public.remote_person.email undecided", err)
	}
	masked, err := mask.New(mask.Config{Columns: map[string]string{"public.remote_person.email": "email"}}, key)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := w.srv.Restore(ctx, w.b, RestoreOptions{Target: target, Mask: masked}); !errors.Is(err, mask.ErrRule) {
		t.Fatalf("a rule that cannot mask a foreign table: %v, want mask.ErrRule", err)
	}
	kept, err := mask.New(mask.Config{Columns: map[string]string{"public.remote_person.email": "keep"}}, key)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := w.srv.Restore(ctx, w.b, RestoreOptions{Target: target, Mask: kept}); err != nil {
		t.Fatalf("kept on purpose: %v", err)
	}
}

// After Apply, no page of a masked table, of its indexes, or of the planner statistics
// holds a production value: an UPDATE leaves the old row versions in the table's pages
// (and the old keys in its indexes), where pageinspect, or anyone reading the files,
// finds them. Apply rewrites what it changed.
func TestApplyLeavesNoOldRowVersions(t *testing.T) {
	w := newMaskWorld(t, `
CREATE TABLE person (id int PRIMARY KEY, email text UNIQUE);
INSERT INTO person SELECT g, 'person' || g || '@prod.example.org' FROM generate_series(1, 200) g;
CREATE TABLE person_archive () INHERITS (person);
INSERT INTO person_archive SELECT g, 'old' || g || '@prod.example.org' FROM generate_series(1, 50) g;`, DumpOptions{})
	ctx := testCtx(t)
	rules, err := mask.New(mask.Config{Columns: map[string]string{"public.person.email": "email", "public.person_archive.email": "email"}},
		func(string) string { return maskKey })
	if err != nil {
		t.Fatal(err)
	}
	db := dbName(t, w.staging, "masked_pages")
	if _, err := w.srv.Restore(ctx, w.b, RestoreOptions{Target: db}); err != nil {
		t.Fatal(err)
	}
	w.staging.Exec(t, db, "CREATE EXTENSION pageinspect")
	pages := func() int64 {
		return w.staging.QueryInt(t, db, `SELECT count(*) FROM unnest(ARRAY['public.person', 'public.person_email_key',
  'public.person_archive', 'pg_catalog.pg_statistic']) r(rel),
  generate_series(0, pg_relation_size(r.rel) / current_setting('block_size')::int - 1) b
WHERE position(convert_to('@prod.example.org', 'UTF8') IN get_raw_page(r.rel, b::int)) > 0`)
	}
	if pages() == 0 {
		t.Fatal("no page holds production's e-mails before Apply: the test proves nothing")
	}
	if _, err := mask.Apply(ctx, testConn(t, w.staging.DSN(db)), rules, mask.ApplyOptions{TempDir: t.TempDir()}); err != nil {
		t.Fatal(err)
	}
	if n := pages(); n != 0 {
		t.Fatalf("%d pages still hold production's e-mails after Apply", n)
	}
}
