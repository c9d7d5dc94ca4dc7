package schema

import (
	"errors"
	"io/fs"
	"strings"
	"testing"
)

// TestParseDSNNamesThePassword: the password of a DSN that parses is a named secret, so an
// error that shows it bare (no "password=" or URL around it) is still cleaned, and the
// cleaned error keeps its chain.
func TestParseDSNNamesThePassword(t *testing.T) {
	for _, dsn := range []string{
		"postgres://:hunter2-pw@127.0.0.1:5432/db",
		"postgres://u:hunter2-pw@127.0.0.1/db?sslmode=disable",
		"postgres://u@127.0.0.1/db?password=hunter2-pw",
		`host=127.0.0.1 user=u password='hunter2-pw' dbname=db`,
		`host=127.0.0.1 user=u password=hunter2-pw dbname=db`,
	} {
		_, sec, err := parseDSN(dsn)
		if err != nil {
			t.Fatalf("parseDSN(%q): %v", dsn, err)
		}
		base := &fs.PathError{Op: "auth", Path: "server said hunter2-pw is wrong", Err: fs.ErrPermission}
		got := sec.wrap(base)
		if strings.Contains(got.Error(), "hunter2-pw") {
			t.Errorf("%q: the password is not a named secret: %v", dsn, got)
		}
		if !errors.Is(got, fs.ErrPermission) {
			t.Errorf("%q: the cleaned error lost its chain: %v", dsn, got)
		}
	}
}
