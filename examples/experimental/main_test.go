package main

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/restage/restage/examples/internal/cli/clitest"
	"github.com/restage/restage/staging"
)

func TestUsage(t *testing.T) {
	const usage = "usage: experimental -config FILE [-source DIR | -git REPO -ref REF] [-refresh-db]\n"
	cfg := filepath.Join(t.TempDir(), "experimental.toml")
	if err := os.WriteFile(cfg, []byte("environment = \"experimental\"\nbogus = 1\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	clitest.Check(t, "experimental", run, staging.ExitStatus, []clitest.Case{
		{Args: []string{"-h"}, Code: 0, StderrStart: usage + "\nflags:\n"},
		{Args: []string{"-help"}, Code: 0, StderrStart: usage},
		{Args: nil, Code: 2, Stderr: "experimental: -config FILE is required\n" + usage},
		{Args: []string{"-config", cfg, "-branch", "x"}, Code: 2, Stderr: "experimental: flag provided but not defined: -branch\n" + usage},
		{Args: []string{"-config", cfg, "main"}, Code: 2, Stderr: "experimental: unexpected argument \"main\"\n" + usage},
		{Args: []string{"-config", cfg, "-source", "a", "-git", "b", "-ref", "c"}, Code: 2, Stderr: "experimental: -source and -git are exclusive\n" + usage},
		{Args: []string{"-config", cfg, "-git", "repo"}, Code: 2, Stderr: "experimental: -git REPO needs -ref REF\n" + usage},
		{Args: []string{"-config", cfg, "-ref", "main"}, Code: 2, Stderr: "experimental: -ref needs -git REPO\n" + usage},
		// A config error names the key, on one line without the usage.
		{Args: []string{"-config", cfg}, Code: 2, Stderr: "experimental: config: " + cfg + ": unknown key bogus\n"},
	})
}
