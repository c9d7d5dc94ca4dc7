package main

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/restage/restage/dbrestore/pgtest"
	"github.com/restage/restage/dbrestore/physical/physicaltest"
	"github.com/restage/restage/examples/internal/cli"
	"github.com/restage/restage/examples/internal/cli/clitest"
	"github.com/restage/restage/staging"
	"github.com/restage/restage/staging/stagingtest"
)

// The demo runs a copy of this test binary as its web app, as it runs itself.
func TestMain(m *testing.M) {
	if len(os.Args) > 1 && os.Args[1] == stagingtest.AppCommand {
		cli.Main("demo", run, staging.ExitStatus)
	}
	os.Exit(m.Run())
}

func TestDemo(t *testing.T) {
	pgtest.Require(t)
	checkDemo(t, nil,
		"staging rebuild OK", "schema:      3 -> 5", "GET /+health\n    200 OK",
		"Disallow: /", "bug tracker (release ", "Subject: [staging-rebuild] staging rebuild OK",
		"Keywords: staging-rebuild", "== demo finished in ",
		"   production: 7 | Person 7 | person7@users.example.com\n   staging:    7 | ",
		"@example.invalid\n", "public.person.email: email, ", "public.session: truncate",
	)
}

// TestDemoKeepModes runs the demo with -keep and checks the folder it keeps: the state
// and lock folders are 0700 and the state files 0600 (the metrics textfile 0644), as
// restage makes them.
func TestDemoKeepModes(t *testing.T) {
	pgtest.Require(t)
	// A folder the postgres user can reach (t.TempDir is 0700): the servers' clusters
	// are made under $TMPDIR too.
	tmp, err := os.MkdirTemp("", "demo-keep-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = os.RemoveAll(tmp) })
	if err := os.Chmod(tmp, 0o755); err != nil {
		t.Fatal(err)
	}
	t.Setenv("TMPDIR", tmp)
	r := clitest.Run(context.Background(), "demo", run, staging.ExitStatus, "-keep")
	if r.Code != 0 {
		t.Fatalf("demo -keep: exit %d\n%s\n%s", r.Code, r.Stdout, r.Stderr)
	}
	dirs, _ := filepath.Glob(filepath.Join(tmp, "restage-demo-*"))
	if len(dirs) != 1 {
		t.Fatalf("demo -keep kept %v in %s", dirs, tmp)
	}
	for name, want := range map[string]os.FileMode{
		"state": 0o700, "run": 0o700, "state/history.jsonl": 0o600, "run/staging.lock": 0o600,
		"state/metrics.prom": 0o644,
	} {
		fi, err := os.Stat(filepath.Join(dirs[0], name))
		if err != nil {
			t.Error(err)
		} else if fi.Mode().Perm() != want {
			t.Errorf("%s: mode %#o, want %#o", name, fi.Mode().Perm(), want)
		}
	}
}

func TestDemoPhysical(t *testing.T) {
	physicaltest.Require(t)
	checkDemo(t, []string{"-strategy", "physical"},
		"== rebuilding staging (strategy physical)", "staging rebuild OK", "strategy:    physical",
		"neutralize", "GET /+health\n    200 OK", "masked with SQL", "@example.invalid\n",
	)
}

func TestDemoTrain(t *testing.T) {
	pgtest.Require(t)
	checkDemo(t, []string{"-train"},
		"production promote OK", "cut staging-", "2 commits went from devel into staging",
		"staging rebuild OK", "schema:      3 -> 5", "staging commits not on production: 0",
		"patch level 5 (release knows 5)", "== demo finished in ",
	)
}

// checkDemo runs the demo with args and fails the test unless it exits 0 and its
// output holds each of want.
func checkDemo(t *testing.T, args []string, want ...string) {
	t.Helper()
	r := clitest.Run(context.Background(), "demo", run, staging.ExitStatus, args...)
	if r.Code != 0 {
		t.Fatalf("demo %s: exit %d\n%s\n%s", strings.Join(args, " "), r.Code, r.Stdout, r.Stderr)
	}
	for _, w := range want {
		if !strings.Contains(r.Stdout, w) {
			t.Errorf("demo %s: output lacks %q:\n%s", strings.Join(args, " "), w, r.Stdout)
		}
	}
}

func TestUsage(t *testing.T) {
	const usage = "usage: demo [-keep] [-v] [-strategy swap|physical] [-train]\n"
	clitest.Check(t, "demo", run, staging.ExitStatus, []clitest.Case{
		{Args: []string{"-h"}, Code: 0, StderrStart: usage + "\nflags:\n  -keep\n"},
		{Args: []string{"-help"}, Code: 0, StderrStart: usage},
		{Args: []string{"-keep", "now"}, Code: 2, Stderr: "demo: unexpected argument \"now\"\n" + usage},
		{Args: []string{"-config", "x.toml"}, Code: 2, Stderr: "demo: flag provided but not defined: -config\n" + usage},
		{Args: []string{"-train", "-strategy", "physical"}, Code: 2, Stderr: "demo: -train shows the release train with swap rebuilds; -strategy physical goes without it\n" + usage},
	})
}
