package main

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/restage/restage/examples/internal/cli/clitest"
	"github.com/restage/restage/staging"
)

func TestUsage(t *testing.T) {
	const usage = "usage: experimental -config FILE [-source DIR | -git REPO -ref REF] [-refresh-db] [-v]\n"
	cfg := filepath.Join(t.TempDir(), "experimental.toml")
	if err := os.WriteFile(cfg, []byte("environment = \"experimental\"\nbogus = 1\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	stagingCfg := filepath.Join(t.TempDir(), "staging.toml")
	if err := os.WriteFile(stagingCfg, []byte(stagingConfig), 0o644); err != nil {
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
		// -v (debug logging) is a flag, as for nightly.
		{Args: []string{"-v", "-config", cfg}, Code: 2, Stderr: "experimental: config: " + cfg + ": unknown key bogus\n"},
		// A staging config: a branch deployed there would bypass the release train.
		{Args: []string{"-config", stagingCfg, "-source", t.TempDir()}, Code: 2,
			Stderr: "experimental: config: " + stagingCfg + ": role \"staging\": experimental deploys to an environment with role \"experimental\" (or none); staging is rebuilt by nightly\n"},
	})
}

// stagingConfig is a valid staging environment's config (role staging).
const stagingConfig = `environment = "staging"
role        = "staging"
lock_file   = "/tmp/restage-test-staging.lock"
state_dir   = "/tmp/restage-test-staging"
[backup]
dir = "/tmp/restage-test-backups"
[database]
admin_dsn = "postgres://postgres@127.0.0.1:1/postgres"
name      = "app_staging"
[code]
source   = "/tmp/restage-test-src"
releases = "/tmp/restage-test-releases"
current  = "/tmp/restage-test-current"
[service]
type       = "process"
command    = ["true"]
pidfile    = "/tmp/restage-test.pid"
health_url = "http://127.0.0.1:1/"
`
