package physical

import (
	"errors"
	"fmt"
	"os"
	"strings"
	"testing"
)

// TestDSNHasPassword: every way libpq takes a password in a DSN is seen, so that
// BaseBackup refuses to put it on pg_basebackup's (public) command line.
func TestDSNHasPassword(t *testing.T) {
	for dsn, want := range map[string]bool{
		"postgres://rep:pw@prod/postgres":                          true,
		"postgres://rep:@prod/postgres":                            true,
		"postgresql://rep@prod/postgres?password=pw":               true,
		"postgres://rep@prod/postgres?sslmode=require&password=pw": true,
		"host=prod user=rep password=pw":                           true,
		"host=prod user=rep password = pw":                         true,
		"host=prod user=rep password= 'p w'":                       true,
		"password='p\\'w' host=prod":                               true,
		"host=prod\tpassword\t=\tpw":                               true,
		"postgres://rep@prod/postgres":                             false,
		"host=prod user=rep passfile=/home/rep/.pgpass":            false,
		"host=prod user=rep dbname=password_reset":                 false,
		"": false,
	} {
		if got := dsnHasPassword(dsn); got != want {
			t.Errorf("dsnHasPassword(%q) = %v, want %v", dsn, got, want)
		}
	}
	for _, dsn := range []string{"host=127.0.0.1 port=1 user=rep password = 'hunter2 x'", "host=127.0.0.1 port=1 password =hunter2"} {
		_, err := BaseBackup(t.Context(), BaseBackupOptions{DSN: dsn, Dir: t.TempDir()})
		if err == nil || !strings.Contains(err.Error(), "the DSN holds a password") || strings.Contains(err.Error(), "hunter2") {
			t.Errorf("BaseBackup(%q) = %v; want the DSN refused for its password, the password not shown", dsn, err)
		}
	}
}

// TestRunRedactsPasswords: a failed program's *CommandError (argv and standard error)
// shows no password, whether a DSN in argv carries it or the program echoes it.
func TestRunRedactsPasswords(t *testing.T) {
	o := &owner{home: os.Getenv("HOME"), name: "test"}
	_, err := o.run(t.Context(), []string{"/bin/sh", "-c", `echo "could not connect: $1 $2" >&2; exit 2`, "sh",
		"postgres://rep:hunter2@prod/db", "host=prod password = 'hunter3 x'"})
	var ce *CommandError
	if !errors.As(err, &ce) || ce.ExitCode != 2 || !strings.Contains(ce.Stderr, "could not connect") {
		t.Fatalf("run = %v; want a *CommandError with exit status 2 and the program's message", err)
	}
	for _, text := range []string{err.Error(), fmt.Sprint(ce.Args), ce.Stderr} {
		if strings.Contains(text, "hunter2") || strings.Contains(text, "hunter3") {
			t.Errorf("a password shows: %s", text)
		}
	}
	if !strings.Contains(fmt.Sprint(ce.Args), "postgres://rep:xxxxx@prod/db") {
		t.Errorf("the argv %q no longer names the server", ce.Args)
	}
}
