package dbrestore

import (
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5/pgconn"
)

func TestRedact(t *testing.T) {
	const pw = `p@ss w:rd/'"%`
	cases := []struct{ in, secret string }{
		{"postgres://alice:" + strings.ReplaceAll(pw, " ", "%20") + "@db:5432/x", pw},
		{"failed: postgres://alice:hunter2@db/x?sslmode=disable", ""},
		{"postgresql://alice:hunter2@db/x", ""},
		{"host=db password=hunter2 user=alice", ""},
		{"host=db password = 'hun ter\\'2' user=alice", ""},
		{"postgres://db/x?password=hunter2&sslmode=disable", ""},
		{"plain hunter2 in a message", "hunter2"},
		{"escaped " + "p%40ss+w%3Ard%2F%27%22%25", pw},
	}
	for _, c := range cases {
		out := redact(c.in, c.secret)
		for _, leak := range []string{"hunter2", "hun ter", pw, "p%40ss", "p@ss"} {
			if strings.Contains(out, leak) {
				t.Errorf("redact(%q) = %q: still contains %q", c.in, out, leak)
			}
		}
		if !strings.Contains(out, redactedMark) {
			t.Errorf("redact(%q) = %q: no %q marker", c.in, out, redactedMark)
		}
	}
	if got := redact("postgres://alice@db/x", "hunter2"); got != "postgres://alice@db/x" {
		t.Errorf("redact changed a string without password: %q", got)
	}
}

func TestRedactErrKeepsChain(t *testing.T) {
	sentinel := errors.New("sentinel")
	err := redactErr(fmt.Errorf("connect postgres://u:hunter2@h/db: %w", sentinel), "hunter2")
	if strings.Contains(err.Error(), "hunter2") {
		t.Fatalf("password in %q", err)
	}
	if !errors.Is(err, sentinel) {
		t.Fatal("redactErr broke errors.Is")
	}
	plain := errors.New("nothing secret")
	if redactErr(plain, "hunter2") != plain {
		t.Fatal("redactErr wrapped an error without secrets")
	}
}

func TestConnString(t *testing.T) {
	for _, in := range []string{
		"postgres://alice:s%20cret@127.0.0.1:5432/postgres?sslmode=disable",
		"postgresql://alice@127.0.0.1/postgres?password=s%20cret&sslmode=disable",
		"host=127.0.0.1 port=5432 user=alice password='s cret' dbname=postgres sslmode=disable",
		`host=127.0.0.1 user=alice password=s\ cret sslmode=disable`,
	} {
		cs, err := parseConnString(in)
		if err != nil {
			t.Fatalf("%q: %v", in, err)
		}
		if cs.password() != "s cret" {
			t.Errorf("%q: password %q", in, cs.password())
		}
		for _, db := range []string{"plain", `we"ird 'name'`, "sl/ash?#%", "ünï"} {
			out := cs.withDatabase(db)
			pc, err := pgconn.ParseConfig(out.String())
			if err != nil {
				t.Fatalf("%q with database %q: %v", in, db, err)
			}
			if pc.Database != db || pc.Password != "s cret" || pc.User != "alice" || pc.Host != "127.0.0.1" {
				t.Errorf("%q with database %q: parsed %q/%q/%q/%q", in, db, pc.Database, pc.User, pc.Password, pc.Host)
			}
			np := out.withoutPassword()
			if strings.Contains(np.String(), "cret") {
				t.Errorf("withoutPassword left it in %q", np.String())
			}
			pc, err = pgconn.ParseConfig(np.String())
			if err != nil || pc.Database != db || pc.Password != "" {
				t.Errorf("withoutPassword(%q): %v, database %q, password %q", out.String(), err, pc.Database, pc.Password)
			}
			if r := out.Redacted(); strings.Contains(r, "cret") || !strings.Contains(r, redactedMark) {
				t.Errorf("Redacted() = %q", r)
			}
		}
	}
	if _, err := parseConnString("host='unterminated password=hunter2"); err == nil || strings.Contains(err.Error(), "hunter2") {
		t.Errorf("bad string: err %v", err)
	}
}
