package main

import (
	"context"
	"os"
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
	r := clitest.Run(context.Background(), "demo", run, staging.ExitStatus)
	if r.Code != 0 {
		t.Fatalf("demo: exit %d\n%s\n%s", r.Code, r.Stdout, r.Stderr)
	}
	for _, want := range []string{
		"staging rebuild OK", "schema:      3 -> 5", "GET /+health\n    200 OK",
		"Disallow: /", "bug tracker (release ", "Subject: [staging-rebuild] staging rebuild OK",
		"Keywords: staging-rebuild", "== demo finished in ",
		"   production: 7 | Person 7 | person7@users.example.com\n   staging:    7 | ",
		"@example.invalid\n", "public.person.email: email, ", "public.session: truncate",
	} {
		if !strings.Contains(r.Stdout, want) {
			t.Errorf("demo output lacks %q:\n%s", want, r.Stdout)
		}
	}
}

func TestDemoPhysical(t *testing.T) {
	physicaltest.Require(t)
	r := clitest.Run(context.Background(), "demo", run, staging.ExitStatus, "-strategy", "physical")
	if r.Code != 0 {
		t.Fatalf("demo: exit %d\n%s\n%s", r.Code, r.Stdout, r.Stderr)
	}
	for _, want := range []string{
		"== rebuilding staging (strategy physical)", "staging rebuild OK", "strategy:    physical",
		"neutralize", "GET /+health\n    200 OK", "masked with SQL", "@example.invalid\n",
	} {
		if !strings.Contains(r.Stdout, want) {
			t.Errorf("demo output lacks %q:\n%s", want, r.Stdout)
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
	})
}

func TestDemoTrain(t *testing.T) {
	pgtest.Require(t)
	r := clitest.Run(context.Background(), "demo", run, staging.ExitStatus, "-train")
	if r.Code != 0 {
		t.Fatalf("demo -train: exit %d\n%s\n%s", r.Code, r.Stdout, r.Stderr)
	}
	for _, want := range []string{
		"production promote OK", "cut staging-", "2 commits went from devel into staging",
		"staging rebuild OK", "schema:      3 -> 5", "staging commits not on production: 0",
		"patch level 5 (release knows 5)", "== demo finished in ",
	} {
		if !strings.Contains(r.Stdout, want) {
			t.Errorf("demo -train output lacks %q:\n%s", want, r.Stdout)
		}
	}
}
