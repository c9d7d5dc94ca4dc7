package redact

import (
	"strings"
	"testing"
)

// PostgreSQL 15's and pg_restore's own words, as they printed them (the values hold
// "real" or "secret").
var rowMessages = []struct{ in, want string }{
	{`DETAIL:  Key (email)=(alice@real.example) is duplicated.`,
		`DETAIL:  Key (email)=([withheld]) is duplicated.`},
	{`DETAIL:  Key (email)=(alice@real.example) already exists.`,
		`DETAIL:  Key (email)=([withheld]) already exists.`},
	{`DETAIL:  Key (p)=(99 real) is not present in table "person".`,
		`DETAIL:  Key (p)=([withheld]) is not present in table "person".`},
	{`DETAIL:  Key (id)=(7 real) is still referenced from table "bug".`,
		`DETAIL:  Key (id)=([withheld]) is still referenced from table "bug".`},
	{`DETAIL:  Key (lower(name))=(real (a) is duplicated) is duplicated.`,
		`DETAIL:  Key (lower(name))=([withheld]) is duplicated) is duplicated.`},
	{`DETAIL:  Key (during)=([2024-01-01 real,)) conflicts with existing key (during)=([2024-01-02 real,)).`,
		`DETAIL:  Key (during)=([withheld]) conflicts with existing key (during)=([withheld])`},
	{`DETAIL:  Failing row contains (1, alice@real.example, Alice Smith, f).`,
		`DETAIL:  Failing row contains ([withheld])`},
	{`DETAIL:  Partition key of the failing row contains (k) = (zz-real).`,
		`DETAIL:  Partition key of the failing row contains (k) = ([withheld])`},
	{`CONTEXT:  COPY person, line 1: "1	alice@real.example	Alice Smith	t"`,
		`CONTEXT:  COPY person, line 1: [withheld]`},
	{`CONTEXT:  COPY person, line 1, column email: "alice@real.example"`,
		`CONTEXT:  COPY person, line 1, column email: [withheld]`},
	{`pg_restore: error: COPY failed for table "person": ERROR:  invalid input syntax for type integer: "alice@real.example"`,
		`pg_restore: error: COPY failed for table "person": ERROR:  invalid input syntax for type integer: [withheld]`},
	{`ERROR:  invalid input value for enum mood: "real-mood"`, `ERROR:  invalid input value for enum mood: [withheld]`},
	{`ERROR:  malformed array literal: "{1,real"`, `ERROR:  malformed array literal: [withheld]`},
	{`ERROR:  date/time field value out of range: "2024-13-45 real"`,
		`ERROR:  date/time field value out of range: [withheld]`},
	{`ERROR:  value "99999999999 real" is out of range for type integer`,
		`ERROR:  value [withheld] is out of range for type integer`},
	{`DETAIL:  Token "real" is invalid.`, `DETAIL:  Token [withheld] is invalid.`},
	{`CONTEXT:  JSON data, line 1: {"a": real...`, `CONTEXT:  JSON data, line 1: [withheld]`},
	{`Command was: INSERT INTO public.person (id, email, name, ok) VALUES (3, 'alice@real.example', 'Alice Two', true);`,
		`Command was: INSERT INTO public.person (id, email, name, ok) VALUES [withheld]`},
	// pgx's error with its fields on one line, as restage's errors put them.
	{`line 1: ERROR: new row for relation "person" violates check constraint "c" (SQLSTATE 23514); DETAIL: Failing row contains (1, real).; CONTEXT: COPY person, line 1: "1	real"`,
		`line 1: ERROR: new row for relation "person" violates check constraint "c" (SQLSTATE 23514); DETAIL: Failing row contains ([withheld])`},
}

func TestRowsWithholdsRowValues(t *testing.T) {
	for _, tc := range rowMessages {
		got := Rows(tc.in)
		if got != tc.want {
			t.Errorf("Rows(%q)\n got %q\nwant %q", tc.in, got, tc.want)
		}
		if strings.Contains(String(tc.in), "real") {
			t.Errorf("String(%q) = %q: a row's value is left", tc.in, String(tc.in))
		}
		if again := Rows(got); again != got {
			t.Errorf("Rows is not stable: %q, then %q", got, again)
		}
	}
}

func TestRowsKeepsWhatIsNoRow(t *testing.T) {
	for _, s := range []string{
		`pg_restore: error: could not execute query: ERROR:  relation "person" already exists`,
		`ERROR:  duplicate key value violates unique constraint "person_email_key"`,
		`ERROR:  null value in column "x" of relation "person" violates not-null constraint`,
		`Command was: CREATE TABLE public.person (`,
		`Command was: COPY public.person (id, email, name, ok) FROM stdin;`,
		`CONTEXT:  COPY person, line 3`,
		`ALTER TABLE ONLY public.bug ADD CONSTRAINT bug_pkey PRIMARY KEY (id);`,
		`step restore: 2 of 14 tables in 1.2s`,
	} {
		if got := Rows(s); got != s {
			t.Errorf("Rows(%q) = %q, want it unchanged", s, got)
		}
	}
}

// A value with a line break continues on the next lines: the filter drops them until
// the next message line.
func TestRowFilterDropsAValuesOtherLines(t *testing.T) {
	in := []string{
		`pg_restore: error: COPY failed for table "person": ERROR:  null value in column "x" of relation "person" violates not-null constraint`,
		`DETAIL:  Failing row contains (1, a@b, first real line`,
		`second real line, t, null).`,
		`CONTEXT:  COPY person, line 1: "1	a@b	first real line\nsecond real line	t"`,
		`Command was: CREATE TABLE public.t (`,
		`    id integer`,
		`);`,
		`pg_restore: warning: errors ignored on restore: 1`,
	}
	var f RowFilter
	var out []string
	for _, l := range in {
		if l, ok := f.Line(l); ok {
			out = append(out, l)
		}
	}
	got := strings.Join(out, "\n")
	if strings.Contains(got, "real") {
		t.Errorf("a value is left:\n%s", got)
	}
	for _, keep := range []string{"violates not-null constraint", "Failing row contains ([withheld])",
		"COPY person, line 1: [withheld]", "    id integer", "errors ignored on restore: 1"} {
		if !strings.Contains(got, keep) {
			t.Errorf("%q is missing from:\n%s", keep, got)
		}
	}
}

// libpq puts the start of a failed statement that has an error position under the
// message (LINE n:), the values of a dump made with --inserts included, above the
// Command was line; pg_restore prints it as it is (PostgreSQL 15's pg_restore, a
// regrole column naming a role only production has).
func TestRowFilterWithholdsTheStatementExcerpt(t *testing.T) {
	out := `pg_restore: error: could not execute query: ERROR:  role "prod_only" does not exist
LINE 1: INSERT INTO public.grantee VALUES ('prod_only', 'person1@rea...
                                           ^
Command was: INSERT INTO public.grantee VALUES ('prod_only', 'person1@real.example.org');`
	var f RowFilter
	var kept []string
	for l := range strings.SplitSeq(out, "\n") {
		if l, ok := f.Line(l); ok {
			kept = append(kept, l)
		}
	}
	got := strings.Join(kept, "\n")
	want := `pg_restore: error: could not execute query: ERROR:  role "prod_only" does not exist
LINE 1: [withheld]
Command was: INSERT INTO public.grantee VALUES [withheld]`
	if got != want {
		t.Errorf("filtered\n%s\nwant\n%s", got, want)
	}
	if s := Rows(out); strings.Contains(s, "person1") {
		t.Errorf("Rows left a value:\n%s", s)
	}
}

// pg_restore relays the notices production's code raises while the rows load (here a
// function a CHECK constraint calls, PostgreSQL 15's pg_restore --verbose): their text,
// and the lines that follow up to pg_restore's next message, are withheld.
func TestRowFilterWithholdsRelayedNotices(t *testing.T) {
	out := `pg_restore: processing data for table "public.person"
pg_restore: WARNING:  checking person1@real.example.org
DETAIL:  detail person1@real.example.org
CONTEXT:  PL/pgSQL function loud(text) line 2 at RAISE
pg_restore: NOTICE:  was person2@real.example.org
pg_restore: finished item 3342 TABLE DATA person`
	var f RowFilter
	var kept []string
	for l := range strings.SplitSeq(out, "\n") {
		if l, ok := f.Line(l); ok {
			kept = append(kept, l)
		}
	}
	got := strings.Join(kept, "\n")
	want := `pg_restore: processing data for table "public.person"
pg_restore: WARNING:  [withheld]
pg_restore: NOTICE:  [withheld]
pg_restore: finished item 3342 TABLE DATA person`
	if got != want {
		t.Errorf("filtered\n%s\nwant\n%s", got, want)
	}
}
