package redact

import (
	"errors"
	"io/fs"
	"strings"
	"testing"
)

func TestString(t *testing.T) {
	for _, tc := range []struct{ in, secret string }{
		{"postgres://u:hunter2@h/db", "hunter2"},
		{"postgres://:hunter2@h/db", "hunter2"},
		{"connect to postgresql://u:hun@ter2@h/db failed", "ter2"},
		{"https://user:hunter2@git.example.org/repo.git", "hunter2"},
		{"https://hunter2@git.example.org/repo.git", "hunter2"},
		{"fetch HTTPS://ghp_hunter2@git.example.org/r: 403", "ghp_hunter2"},
		{"host=h password=hunter2 dbname=x", "hunter2"},
		{`host=h password='a\'b hunter2' dbname=x`, "hunter2"},
		{"host=h PASSWORD= hunter2 dbname=x", "hunter2"},
		{"PGPASSWORD=hunter2", "hunter2"},
		{"postgres://u@h/db?sslmode=disable&password=hunter2", "hunter2"},
	} {
		got := String(tc.in)
		if strings.Contains(got, tc.secret) {
			t.Errorf("String(%q) = %q: still holds %q", tc.in, got, tc.secret)
		}
		if !strings.Contains(got, Mark) {
			t.Errorf("String(%q) = %q: no %s mark", tc.in, got, Mark)
		}
	}
}

func TestStringKeepsWhatIsNoSecret(t *testing.T) {
	for _, s := range []string{
		"postgres://postgres@db:5432/postgres",
		"ssh://git@host/repo.git",
		"/srv/git/launchpad at 1a2b3c",
		"password_env = \"SMTP_PASSWORD\"",
	} {
		if got := String(s); got != s {
			t.Errorf("String(%q) = %q, want it unchanged", s, got)
		}
	}
}

func TestNamedSecrets(t *testing.T) {
	got := String("token is s3cr/t and s3cr%2Ft", "s3cr/t")
	if strings.Contains(got, "s3cr") {
		t.Errorf("got %q", got)
	}
}

func TestError(t *testing.T) {
	base := &fs.PathError{Op: "open", Path: "postgres://u:hunter2@h/db", Err: fs.ErrNotExist}
	err := Error(base)
	if strings.Contains(err.Error(), "hunter2") {
		t.Errorf("Error() = %q", err)
	}
	if !errors.Is(err, fs.ErrNotExist) {
		t.Error("the redacted error no longer unwraps")
	}
	var pe *fs.PathError
	if !errors.As(err, &pe) {
		t.Error("errors.As lost the *PathError")
	}
	plain := errors.New("no secret here")
	if Error(plain) != plain || Error(nil) != nil {
		t.Error("an error without secrets should come back as it is")
	}
}
