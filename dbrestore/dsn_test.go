package dbrestore

import (
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/restage/restage/internal/redact"
)

// Passwords are removed from what dbrestore shows of its children (CommandError.Args and
// Stderr) and from its errors, by the module's one redaction function (internal/redact),
// with the DSN's password passed as a named secret.
func TestRedact(t *testing.T) {
	const pw = `p@ss w:rd/'"%`
	cases := []struct {
		in, secret string
		leaks      []string
	}{
		{"postgres://alice:" + strings.ReplaceAll(pw, " ", "%20") + "@db:5432/x", pw, []string{pw, "p@ss", "w:rd"}},
		{"failed: postgres://alice:hunter2@db/x?sslmode=disable", "", []string{"hunter2"}},
		{"postgresql://alice:hunter2@db/x", "", []string{"hunter2"}},
		{"host=db password=hunter2 user=alice", "", []string{"hunter2"}},
		{"host=db password = 'hun ter\\'2' user=alice", "", []string{"hun ter", "hunter2"}},
		{"postgres://db/x?password=hunter2&sslmode=disable", "", []string{"hunter2"}},
		{"plain hunter2 in a message", "hunter2", []string{"hunter2"}},
		{"escaped " + "p%40ss+w%3Ard%2F%27%22%25", pw, []string{"p%40ss"}},
		// An empty user, a quoted password with an escaped quote and a space, upper case.
		{"postgres://:pw1234@h/db", "", []string{"pw1234"}},
		{`host=h password='a\'b c' dbname=x`, "", []string{`a\'b`, "b c"}},
		{"host=h PASSWORD=x9secret dbname=x", "", []string{"x9secret"}},
		{"PGPASSWORD=x9secret pg_restore", "", []string{"x9secret"}},
		// Other schemes (a git remote in a message): dbrestore's own patterns knew only postgres://.
		{"fetch https://deploy:tok3n@git.example.org/r.git", "", []string{"tok3n"}},
		{"fetch https://ghp_tok3n@git.example.org/r.git", "", []string{"ghp_tok3n"}},
	}
	ctx := testCtx(t)
	for _, c := range cases {
		// A real child: its argument and its standard error carry the string.
		p := &proc{path: "/bin/sh", args: []string{"-c", `echo "$0" >&2; exit 3`, c.in}, secrets: []string{c.secret}}
		err := p.run(ctx)
		var ce *CommandError
		if !errors.As(err, &ce) || ce.ExitCode != 3 {
			t.Fatalf("%q: %v", c.in, err)
		}
		wrapped := redact.Error(fmt.Errorf("dbrestore: restore: %w", err), c.secret)
		for what, out := range map[string]string{
			"CommandError.Args": strings.Join(ce.Args, " "), "CommandError.Stderr": ce.Stderr, "error": wrapped.Error(),
		} {
			for _, leak := range c.leaks {
				if strings.Contains(out, leak) {
					t.Errorf("%q: %s %q still contains %q", c.in, what, out, leak)
				}
			}
			if !strings.Contains(out, redact.Mark) {
				t.Errorf("%q: %s %q has no %q marker", c.in, what, out, redact.Mark)
			}
		}
	}
	p := &proc{path: "/usr/bin/pg_restore", args: []string{"--dbname", "postgres://alice@db/x"}, secrets: []string{"hunter2"}}
	if got := strings.Join(p.argv(), " "); got != "pg_restore --dbname postgres://alice@db/x" {
		t.Errorf("argv changed a string without password: %q", got)
	}
}

func TestRedactErrKeepsChain(t *testing.T) {
	sentinel := errors.New("sentinel")
	err := redact.Error(fmt.Errorf("connect postgres://u:hunter2@h/db: %w", sentinel), "hunter2")
	if strings.Contains(err.Error(), "hunter2") {
		t.Fatalf("password in %q", err)
	}
	if !errors.Is(err, sentinel) {
		t.Fatal("redact.Error broke errors.Is")
	}
	plain := errors.New("nothing secret")
	if redact.Error(plain, "hunter2") != plain {
		t.Fatal("redact.Error wrapped an error without secrets")
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
			if r := out.Redacted(); strings.Contains(r, "cret") || !strings.Contains(r, redact.Mark) {
				t.Errorf("Redacted() = %q", r)
			}
		}
	}
	if _, err := parseConnString("host='unterminated password=hunter2"); err == nil || strings.Contains(err.Error(), "hunter2") {
		t.Errorf("bad string: err %v", err)
	}
}
