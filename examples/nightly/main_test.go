package main

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/restage/restage/dbrestore/pgtest"
	"github.com/restage/restage/staging"
	"github.com/restage/restage/staging/stagingtest"
)

// The demo runs a copy of this test binary as its web app.
func TestMain(m *testing.M) {
	if len(os.Args) > 1 && os.Args[1] == stagingtest.AppCommand {
		if err := stagingtest.ServeApp(context.Background(), os.Args[2:]); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

func TestDemo(t *testing.T) {
	pgtest.Require(t)
	var out, errs bytes.Buffer
	if err := run(context.Background(), []string{"-demo"}, &out, &errs); err != nil {
		t.Fatalf("demo: %v\n%s\n%s", err, out.String(), errs.String())
	}
	for _, want := range []string{
		"staging rebuild OK", "schema:      3 -> 5", "GET /+health\n    200 OK",
		"Disallow: /", "Subject: [staging-rebuild] staging rebuild OK", "Keywords: staging-rebuild",
	} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("demo output lacks %q:\n%s", want, out.String())
		}
	}
}

// config writes a config whose parts exist but whose backup folder is empty and whose
// database server is unreachable: enough to exercise the exit statuses.
func config(t *testing.T, extra string) (path, lock string) {
	t.Helper()
	dir := t.TempDir()
	for _, d := range []string{"backups", "src", "releases"} {
		if err := os.MkdirAll(filepath.Join(dir, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	text := `environment = "staging"
lock_file = "staging.lock"
state_dir = "state"
[backup]
dir = "backups"
database = "prod"
[database]
admin_dsn = "postgres://postgres:hunter2@127.0.0.1:1/postgres"
name = "staging"
[code]
source = "src"
releases = "releases"
current = "current"
[service]
type = "process"
command = ["/bin/true"]
pidfile = "run/app.pid"
` + extra
	path = filepath.Join(dir, "staging.toml")
	if err := os.WriteFile(path, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	return path, filepath.Join(dir, "staging.lock")
}

func TestExitStatuses(t *testing.T) {
	ctx := context.Background()
	status := func(args ...string) (int, string) {
		var out, errs bytes.Buffer
		err := run(ctx, args, &out, &errs)
		msg := errs.String()
		if err != nil {
			msg += err.Error()
		}
		return exitCode(err), msg
	}
	good, lock := config(t, "")
	bad, _ := config(t, "[schema]\nmigratons = \"db\"\n")
	if code, msg := status("-config", bad); code != 2 || !strings.Contains(msg, "unknown key schema.migratons") {
		t.Errorf("unknown key: exit %d, %s", code, msg)
	}
	if code, _ := status(); code != 2 {
		t.Errorf("no -config: exit %d", code)
	}
	if code, _ := status("-config", filepath.Join(t.TempDir(), "missing.toml")); code != 2 {
		t.Errorf("missing config: exit %d", code)
	}
	code, msg := status("-config", good)
	if code != 1 || !strings.Contains(msg, "no complete backup") {
		t.Errorf("no backup: exit %d, %s", code, msg)
	}
	if strings.Contains(msg, "hunter2") {
		t.Errorf("password in output: %s", msg)
	}
	l, err := staging.AcquireExclusive(ctx, lock, staging.LockOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Release()
	if code, msg := status("-config", good); code != 3 || !strings.Contains(msg, fmt.Sprintf("pid %d", os.Getpid())) {
		t.Errorf("locked: exit %d, %s", code, msg)
	}
}
