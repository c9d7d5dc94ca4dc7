package mask

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"strings"
	"testing"
	"unicode/utf8"
)

func env(key string) func(string) string {
	return func(name string) string {
		if name == DefaultKeyEnv || name == "MY_KEY" {
			return key
		}
		return ""
	}
}

func rules(t testing.TB, c Config) *Rules {
	t.Helper()
	r, err := New(c, env("k3y-s3cret"))
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func TestValidateNamesEveryKey(t *testing.T) {
	c := Config{
		Columns: map[string]string{"public.person.email": "emial", "person.email": "hash", "public.a.b": "fixed:x"},
		Tables:  map[string]string{"public.session": "sample:2", "public.log": "truncate"},
		Strict:  []string{"nodot"},
	}
	err := c.Validate()
	if !errors.Is(err, ErrRule) {
		t.Fatalf("err = %v, want ErrRule", err)
	}
	for _, want := range []string{`mask.columns."public.person.email": "emial"`, `mask.columns."person.email"`,
		`mask.tables."public.session": "sample:2"`, `mask.strict[0] "nodot"`} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not name %s", err, want)
		}
	}
	for _, ok := range []string{"fixed:x", "public.log"} {
		if strings.Contains(err.Error(), ok) {
			t.Errorf("error %q names the good rule %s", err, ok)
		}
	}
}

// Large objects are kept or emptied: no other rule can reach them.
func TestValidateLargeObjectRules(t *testing.T) {
	for _, c := range []Config{
		{Tables: map[string]string{LargeObjects: "sample:0.1"}},
		{Columns: map[string]string{LargeObjects + ".data": "null"}},
		{Columns: map[string]string{LargeObjects + ".loid": "keep"}},
	} {
		if err := c.Validate(); !errors.Is(err, ErrRule) || !strings.Contains(err.Error(), LargeObjects) {
			t.Errorf("%+v: %v, want ErrRule naming %s", c, err, LargeObjects)
		}
	}
	for _, c := range []Config{
		{Tables: map[string]string{LargeObjects: "truncate"}},
		{Columns: map[string]string{LargeObjects + ".data": "keep"}},
	} {
		if err := c.Validate(); err != nil {
			t.Errorf("%+v: %v", c, err)
		}
	}
}

func TestNewNeedsKeyAndHidesIt(t *testing.T) {
	c := Config{KeyEnv: "MY_KEY", Columns: map[string]string{"public.p.email": "email"}}
	if _, err := New(c, env("")); !errors.Is(err, ErrNoKey) || !strings.Contains(err.Error(), "MY_KEY") {
		t.Fatalf("err = %v, want ErrNoKey naming MY_KEY", err)
	}
	// null, keep and fixed need no key.
	if _, err := New(Config{Columns: map[string]string{"public.p.pw": "null"}}, env("")); err != nil {
		t.Fatal(err)
	}
	r := rules(t, c)
	if s := fmt.Sprintf("%v %+v %#v", r, r, r); strings.Contains(s, "k3y-s3cret") {
		t.Fatalf("the key is printed: %s", s)
	}
}

func TestClassified(t *testing.T) {
	r := rules(t, Config{Classify: []string{"iban"}})
	for name, want := range map[string]bool{
		"email": true, "EmailAddress": true, "display_name": true, "username": true, "phone_no": true,
		"ip": true, "client_ip": true, "password_hash": true, "api_token": true, "date_of_birth": true,
		"iban": true, "home_address": true, "secret": true, "E-Mail": true, "e_mail": true, "Pass Word": true,
		"user.name":   true,
		"description": false, "id": false, "created": false, "status": false,
		// Common personal-data names beyond the first patterns.
		"mail": true, "contact_mail": true, "mobile": true, "mobile_no": true, "tel": true, "home_tel": true,
		"fax": true, "street": true, "postcode": true, "post_code": true, "zip": true, "zip_code": true,
		"passwd": true, "pwd": true, "dob": true, "ssn": true, "national_ssn": true, "IBAN": true,
		"passport_no": true,
		// Short patterns are whole words only.
		"hotel": false, "telemetry": false, "fax_sent_at": true, "dobby": false, "zipped": false, "lipid": false,
	} {
		if got := r.Classified(name); got != want {
			t.Errorf("Classified(%q) = %v, want %v", name, got, want)
		}
	}
	// The defaults alone, without classify: iban is one of them.
	if !rules(t, Config{}).Classified("iban") {
		t.Error("iban is not classified by default")
	}
}

// The starter rules suggest a rule of the right kind for the common names.
func TestStarterSuggestions(t *testing.T) {
	for name, want := range map[string]string{
		"contact_mail": "email", "mobile": "phone", "home_tel": "phone", "fax": "phone", "passwd": "hash",
		"pwd": "hash", "ssn": "hash", "iban": "hash", "passport_no": "hash", "street": "text", "zip": "text",
		"postcode": "text", "dob": "null", "date_of_birth": "null", "hotel_name": "name",
	} {
		if got := suggest(name); got != want {
			t.Errorf("suggest(%q) = %q, want %q", name, got, want)
		}
	}
}

func TestCheck(t *testing.T) {
	r := rules(t, Config{
		Strict:  []string{"public.person"},
		Columns: map[string]string{"public.person.email": "email", "public.person.id": "keep"},
		Tables:  map[string]string{"public.session": "truncate"},
	})
	cols := []Column{{Schema: "public", Table: "person", Name: "id"}, {Schema: "public", Table: "person", Name: "email"},
		{Schema: "public", Table: "person", Name: "karma"}, {Schema: "public", Table: "session", Name: "token"},
		{Schema: "public", Table: "bug", Name: "title"}, {Schema: "public", Table: "bug", Name: "reporter_email"}, {Schema: "public", Table: "bug", Name: "ip"}}
	err := r.Check(cols)
	var ue *UnmaskedError
	if !errors.As(err, &ue) {
		t.Fatalf("err = %v, want *UnmaskedError", err)
	}
	want := []string{"public.bug.ip", "public.bug.reporter_email", "public.person.karma"}
	if fmt.Sprint(ue.Columns) != fmt.Sprint(want) {
		t.Fatalf("unmasked = %v, want %v", ue.Columns, want)
	}
	if errors.Is(err, ErrRule) {
		t.Fatalf("err = %v: no rule is bad", err)
	}
	// A column masked in a parent (inheritance, partitions) must be decided in its children.
	r3 := rules(t, Config{Columns: map[string]string{"public.event.note": "text", "public.event_2026.note": "keep"}})
	err = r3.Check([]Column{{Schema: "public", Table: "event", Name: "note"},
		{Schema: "public", Table: "event_2025", Name: "note", Parents: []string{"public.event"}},
		{Schema: "public", Table: "event_2026", Name: "note", Parents: []string{"public.event"}}})
	if !errors.As(err, &ue) || fmt.Sprint(ue.Columns) != "[public.event_2025.note]" {
		t.Fatalf("children: %v", err)
	}
	// The children of a strict table, and of a table with a table rule, are strict too,
	// at any depth (their rows are the parent's and load on their own), unless truncated.
	r4 := rules(t, Config{Strict: []string{"public.member"}, Tables: map[string]string{"public.log": "truncate", "public.log_2024": "truncate"},
		Columns: map[string]string{"public.member.id": "keep", "public.member_vip.id": "keep"}})
	err = r4.Check([]Column{{Schema: "public", Table: "member", Name: "id"},
		{Schema: "public", Table: "member_vip", Name: "id", Parents: []string{"public.member"}},
		{Schema: "public", Table: "member_vip", Name: "remark"},
		{Schema: "public", Table: "member_vip_old", Name: "since", Parents: []string{"public.member_vip"}},
		{Schema: "public", Table: "log", Name: "line"},
		{Schema: "public", Table: "log_2024", Name: "line", Parents: []string{"public.log"}},
		{Schema: "public", Table: "log_2025", Name: "line", Parents: []string{"public.log"}}})
	if !errors.As(err, &ue) || fmt.Sprint(ue.Columns) != "[public.log_2025.line public.member_vip.remark public.member_vip_old.since]" {
		t.Fatalf("children of strict and truncated tables: %v", err)
	}
	// A rule for a column the backup does not hold is a bad rule, named.
	r2 := rules(t, Config{Columns: map[string]string{"public.person.mail": "email"}})
	err = r2.Check(cols[:1])
	if !errors.Is(err, ErrRule) || !strings.Contains(err.Error(), `mask.columns."public.person.mail"`) {
		t.Fatalf("err = %v, want ErrRule naming the column", err)
	}
}

func TestTransformsDeterministicAndShaped(t *testing.T) {
	m := newMasker([]byte("key"))
	other := newMasker([]byte("other key"))
	for _, tc := range []struct {
		rule Rule
		in   string
		ok   func(string) bool
	}{
		{Rule{Kind: Hash}, "alice", func(s string) bool { return len(s) == 16 }},
		{Rule{Kind: Hash}, strings.Repeat("x", 100), func(s string) bool { return len(s) == 64 }},
		{Rule{Kind: Email}, "alice@example.org", func(s string) bool {
			return strings.HasPrefix(s, "u") && strings.HasSuffix(s, "@example.invalid") && len(s) == 33
		}},
		{Rule{Kind: Name}, "Alice Liddell", func(s string) bool { return strings.Count(s, " ") == 1 && len(s) >= 11 && len(s) <= 20 }},
		{Rule{Kind: Name}, "Bo", func(s string) bool { return len(s) <= 5 && !strings.Contains(s, " ") }},
		{Rule{Kind: Phone}, "+44 20 7946 0958", func(s string) bool {
			return len(s) == 16 && s[:2] == "+4" && s[3] == ' ' && s != "+44 20 7946 0958"
		}},
		{Rule{Kind: Text}, "Ünïcode street 12", func(s string) bool { return utf8.RuneCountInString(s) == 17 }},
		{Rule{Kind: Fixed, Value: "redacted"}, "x", func(s string) bool { return s == "redacted" }},
	} {
		a, null := m.value(nil, tc.rule, []byte(tc.in))
		b, _ := m.value(nil, tc.rule, []byte(tc.in))
		if null || !bytes.Equal(a, b) {
			t.Errorf("%s(%q): not deterministic: %q, %q", tc.rule, tc.in, a, b)
		}
		if !tc.ok(string(a)) {
			t.Errorf("%s(%q) = %q: wrong shape", tc.rule, tc.in, a)
		}
		if tc.rule.Kind != Fixed {
			if c, _ := other.value(nil, tc.rule, []byte(tc.in)); bytes.Equal(a, c) {
				t.Errorf("%s(%q) = %q with another key too", tc.rule, tc.in, a)
			}
			if string(a) == tc.in {
				t.Errorf("%s(%q) kept the value", tc.rule, tc.in)
			}
		}
	}
	if _, null := m.value(nil, Rule{Kind: Null}, []byte("x")); !null {
		t.Error("null rule: not NULL")
	}
}

func TestEmailUnique(t *testing.T) {
	m := newMasker([]byte("key"))
	seen := map[string]string{}
	for i := range 200000 {
		in := fmt.Sprintf("user%d@example.org", i)
		out, _ := m.value(nil, Rule{Kind: Email}, []byte(in))
		if prev, ok := seen[string(out)]; ok {
			t.Fatalf("%s and %s both give %s", prev, in, out)
		}
		seen[string(out)] = in
	}
}

func TestRowMasksOnlyItsColumns(t *testing.T) {
	r := rules(t, Config{Columns: map[string]string{"public.p.email": "email", "public.p.note": "text",
		"public.p.tags": "hash", "public.p.pw": "null", "public.p.id": "keep"}})
	tm, err := r.Masker("public.p", []string{"id", "email", "note", "tags", "pw", "other"},
		[]Column{{Schema: "public", Table: "p", Name: "tags", Array: true}})
	if err != nil {
		t.Fatal(err)
	}
	line := []byte("7\tbob@x.org\tline1\\nline2\\tx\\\\\t{a,\"b c\",NULL}\tsecret\tkept \\N")
	out, keep, err := tm.Row(nil, line)
	if err != nil || !keep {
		t.Fatal(keep, err)
	}
	f := strings.Split(strings.TrimSuffix(string(out), "\n"), "\t")
	if len(f) != 6 || f[0] != "7" || f[5] != `kept \N` || f[4] != `\N` {
		t.Fatalf("row = %q", out)
	}
	if !strings.HasSuffix(f[1], "@example.invalid") || strings.Contains(string(out), "bob") {
		t.Fatalf("email not masked: %q", out)
	}
	if n := utf8.RuneCount(DecodeField(nil, []byte(f[2]))); n != len("line1\nline2\tx\\") {
		t.Fatalf("text %q: %d characters", f[2], n)
	}
	if !strings.HasPrefix(f[3], "{\"") || !strings.HasSuffix(f[3], ",NULL}") || strings.Count(f[3], ",") != 2 {
		t.Fatalf("array = %q", f[3])
	}
	// NULL stays NULL.
	out, _, _ = tm.Row(nil, []byte("8\t\\N\t\\N\t\\N\t\\N\t\\N"))
	if string(out) != "8\t\\N\t\\N\t\\N\t\\N\t\\N\n" {
		t.Fatalf("NULLs: %q", out)
	}
	if tm.Changed[1] != 1 || tm.RowsOut != 2 {
		t.Fatalf("counts: changed %v, out %d", tm.Changed, tm.RowsOut)
	}
	if _, _, err := tm.Row(nil, []byte("1\t2")); !errors.Is(err, ErrCopy) {
		t.Fatalf("short row: %v", err)
	}
}

func TestSampleAndTruncate(t *testing.T) {
	r := rules(t, Config{Tables: map[string]string{"public.s": "sample:0.25", "public.t": "truncate"}})
	ts, _ := r.Masker("public.s", []string{"id"}, nil)
	tt, _ := r.Masker("public.t", []string{"id"}, nil)
	kept := 0
	for i := range 10000 {
		line := []byte(fmt.Sprint(i))
		if _, keep, _ := ts.Row(nil, line); keep {
			kept++
		}
		if _, keep, _ := tt.Row(nil, line); keep {
			t.Fatal("truncate kept a row")
		}
	}
	if kept < 2200 || kept > 2800 {
		t.Fatalf("sample:0.25 kept %d of 10000", kept)
	}
}

func TestParseHeader(t *testing.T) {
	h, err := ParseHeader(`COPY "My Schema"."we""ird" (id, "Full Name", email) FROM stdin;`)
	if err != nil {
		t.Fatal(err)
	}
	if h.Table != `My Schema.we"ird` || fmt.Sprint(h.Columns) != "[id Full Name email]" ||
		h.Statement != `COPY "My Schema"."we""ird" (id, "Full Name", email) FROM STDIN` {
		t.Fatalf("%+v", h)
	}
	for _, bad := range []string{"COPY x FROM stdin;", "SELECT 1", `COPY public.t (a, "b) FROM stdin;`} {
		if _, err := ParseHeader(bad); !errors.Is(err, ErrCopy) {
			t.Errorf("ParseHeader(%q) = %v", bad, err)
		}
	}
}

func TestStream(t *testing.T) {
	r := rules(t, Config{Columns: map[string]string{"public.p.email": "email"}})
	long := strings.Repeat("y", 600<<10) // longer than the reader's buffer
	in := "--\n-- PostgreSQL database dump\n--\nSET client_encoding = 'UTF8';\n\n" +
		"COPY public.p (id, email) FROM stdin;\n1\ta@x.org\n2\t\\N\n3\t" + long + "\n\\.\n\n\n"
	s := r.NewStream(strings.NewReader(in), nil)
	h, tm, err := s.Header()
	if err != nil {
		t.Fatal(err)
	}
	if s.Encoding != "UTF8" || h.Table != "public.p" {
		t.Fatalf("%q %+v", s.Encoding, h)
	}
	out, err := io.ReadAll(s)
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(string(out), "\n")
	if len(lines) != 4 || !strings.HasSuffix(lines[0], "@example.invalid") || lines[1] != "2\t\\N" ||
		strings.Contains(string(out), "a@x.org") || strings.Contains(string(out), long) {
		t.Fatalf("out = %.200q", out)
	}
	if err := s.Drain(); err != nil || tm.RowsOut != 3 {
		t.Fatal(err, tm.RowsOut)
	}
	// Data cut short is an error, never a silent end.
	s = r.NewStream(strings.NewReader("COPY public.p (id, email) FROM stdin;\n1\ta\n"), nil)
	if _, _, err := s.Header(); err != nil {
		t.Fatal(err)
	}
	if _, err := io.ReadAll(s); !errors.Is(err, ErrCopy) {
		t.Fatalf("truncated data: %v", err)
	}
}

func TestParseSchema(t *testing.T) {
	sql := `CREATE TABLE public.person (
    id integer NOT NULL,
    "Full Name" text,
    email character varying(100) DEFAULT 'x'::character varying,
    CONSTRAINT c CHECK ((id > 0))
);

CREATE UNLOGGED TABLE public.log (
    msg text
);

CREATE TABLE public.customer (
    vip boolean
)
INHERITS (public.person);

CREATE FOREIGN TABLE public.remote (
    email text
)
SERVER s;

CREATE TABLE public."Event 2024" (
    note text
);

ALTER TABLE ONLY public.event ATTACH PARTITION public."Event 2024" FOR VALUES FROM (0) TO (10);
`
	cols, err := ParseSchema(strings.NewReader(sql))
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, c := range cols {
		got = append(got, c.Key())
	}
	want := "[public.person.id public.person.Full Name public.person.email public.log.msg public.customer.vip public.customer.id public.customer.Full Name public.customer.email public.remote.email public.Event 2024.note]"
	if fmt.Sprint(got) != want {
		t.Fatalf("columns = %v\nwant      %v", got, want)
	}
	for _, c := range cols {
		if c.Foreign != (c.Table == "remote") {
			t.Fatalf("%s: Foreign = %v", c.Key(), c.Foreign)
		}
	}
	if p := cols[len(cols)-1].Parents; fmt.Sprint(p) != "[public.event]" {
		t.Fatalf("the partition's parents = %v, want [public.event]", p)
	}
	r := rules(t, Config{Columns: map[string]string{"public.person.email": "email"}})
	starter := r.Starter(cols)
	for _, line := range []string{`"public.person.Full Name" = "name"`, `"public.customer.email" = "email"`} {
		if !strings.Contains(starter, line) {
			t.Errorf("starter lacks %s:\n%s", line, starter)
		}
	}
	if strings.Contains(starter, `"public.person.email"`) {
		t.Errorf("starter repeats a decided column:\n%s", starter)
	}
}

// FuzzCodec: decoding what EncodeField wrote gives the value back, and an encoded value
// never holds a raw tab or newline (it cannot end its field or row).
func FuzzCodec(f *testing.F) {
	for _, s := range []string{"", "a\tb", "x\\ny", "\\", "\r\n\b\f\v", "é\x00\xff"} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, v []byte) {
		enc := EncodeField(nil, v)
		if bytes.ContainsAny(enc, "\t\n\r") {
			t.Fatalf("EncodeField(%q) = %q holds a raw separator", v, enc)
		}
		if dec := DecodeField(nil, enc); !bytes.Equal(dec, v) {
			t.Fatalf("DecodeField(EncodeField(%q)) = %q", v, dec)
		}
	})
}

// FuzzRow: whatever a row holds, a masked row has as many fields as its header, ends in
// one newline, keeps the unmasked fields byte for byte, and never holds the masked
// column's original value (when it is long enough not to occur by chance).
func FuzzRow(f *testing.F) {
	r := rules(f, Config{Columns: map[string]string{"public.p.a": "email", "public.p.b": "text", "public.p.c": "name"}})
	f.Add([]byte("k\tsecret@x.org\tsome text\t{x,y}"))
	f.Add([]byte("k\t\\N\t\\\\\\t\t{\"a\\\"b\",NULL}"))
	f.Fuzz(func(t *testing.T, line []byte) {
		tm, err := r.Masker("public.p", []string{"k", "a", "b", "c"}, []Column{{Schema: "public", Table: "p", Name: "c", Array: true}})
		if err != nil {
			t.Fatal(err)
		}
		if bytes.ContainsAny(line, "\n") {
			return
		}
		out, keep, err := tm.Row(nil, line)
		if err != nil {
			return // a malformed row or array fails the restore: never passed unmasked
		}
		if !keep || !bytes.HasSuffix(out, []byte("\n")) || bytes.Count(out, []byte("\n")) != 1 {
			t.Fatalf("Row(%q) = %q, %v", line, out, keep)
		}
		in := bytes.Split(line, []byte("\t"))
		got := bytes.Split(out[:len(out)-1], []byte("\t"))
		if len(got) != 4 || !bytes.Equal(got[0], in[0]) {
			t.Fatalf("Row(%q) = %q", line, out)
		}
		if orig := in[1]; len(orig) >= 8 && !bytes.Equal(orig, nullField) && bytes.Contains(out, orig) {
			t.Fatalf("Row(%q) = %q keeps %q", line, out, orig)
		}
	})
}

// A foreign table's rows are on its server, read from staging, in no backup: a column
// of one that needs a decision takes keep (a decision to read it from staging); no
// other rule, nor a table rule, can mask it, so either is a bad rule, never a silent
// pass (nor an UPDATE through the foreign server).
func TestCheckForeignTables(t *testing.T) {
	cols := []Column{{Schema: "public", Table: "remote", Name: "id", Foreign: true}, {Schema: "public", Table: "remote", Name: "email", Foreign: true}}
	var ue *UnmaskedError
	if err := rules(t, Config{}).Check(cols); !errors.As(err, &ue) || fmt.Sprint(ue.Columns) != "[public.remote.email]" {
		t.Fatalf("undecided: %v", err)
	}
	if err := rules(t, Config{Columns: map[string]string{"public.remote.email": "keep"}}).Check(cols); err != nil {
		t.Fatalf("keep: %v", err)
	}
	if s := rules(t, Config{}).Starter(cols); !strings.Contains(s, `"public.remote.email" = "keep"   # a foreign table`) {
		t.Errorf("starter suggests a rule that cannot mask a foreign table:\n%s", s)
	}
	for _, c := range []Config{
		{Columns: map[string]string{"public.remote.email": "email"}},
		{Tables: map[string]string{"public.remote": "truncate"}},
		{Columns: map[string]string{"public.remote.email": "keep"}, Tables: map[string]string{"public.remote": "sample:0.5"}},
	} {
		err := rules(t, c).Check(cols)
		if !errors.Is(err, ErrRule) || !strings.Contains(err.Error(), "foreign table") {
			t.Errorf("%+v: %v, want a bad rule naming the foreign table", c, err)
		}
	}
}
