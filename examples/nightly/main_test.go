package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/restage/restage/examples/internal/cli/clitest"
	"github.com/restage/restage/internal/testutil"
	"github.com/restage/restage/staging"
)

// invoke runs nightly in-process as main does.
func invoke(ctx context.Context, args ...string) clitest.Result {
	return clitest.Run(ctx, "nightly", run, staging.ExitStatus, args...)
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
		r := invoke(ctx, args...)
		return r.Code, r.Stdout + r.Stderr
	}
	good, lock := config(t, "")
	bad, _ := config(t, "[schema]\nmigratons = \"db\"\n")
	if code, msg := status("-config", bad); code != 2 || !strings.HasPrefix(msg, "nightly: config: ") ||
		!strings.Contains(msg, "unknown key schema.migratons") || strings.Contains(msg, "usage:") {
		t.Errorf("unknown key: exit %d, %s", code, msg)
	}
	noBackups, _ := config(t, "")
	text, err := os.ReadFile(noBackups)
	if err != nil {
		t.Fatal(err)
	}
	text = []byte(strings.Replace(string(text), "[backup]\ndir = \"backups\"\ndatabase = \"prod\"\n", "", 1))
	if err := os.WriteFile(noBackups, text, 0o644); err != nil {
		t.Fatal(err)
	}
	if code, msg := status("-config", noBackups); code != 2 || !strings.HasPrefix(msg, "nightly: config: ") || !strings.Contains(msg, "backup.dir") {
		t.Errorf("no [backup]: exit %d, %s", code, msg)
	}
	badRule, _ := config(t, "[mask]\n[mask.columns]\n\"public.person.email\" = \"scramble\"\n")
	if code, msg := status("-config", badRule); code != 2 || !strings.Contains(msg, `mask.columns."public.person.email": "scramble"`) {
		t.Errorf("bad masking rule: exit %d, %s", code, msg)
	}
	noKey, _ := config(t, "[mask]\nkey_env = \"RESTAGE_TEST_UNSET_KEY\"\n[mask.columns]\n\"public.person.email\" = \"email\"\n")
	if code, msg := status("-config", noKey); code != 2 || !strings.Contains(msg, "mask.key_env") || !strings.Contains(msg, "RESTAGE_TEST_UNSET_KEY") {
		t.Errorf("masking key unset: exit %d, %s", code, msg)
	}
	// A state_dir other users may write to (one of them could plant a cutover record
	// for the repair to follow): refused before anything runs.
	open, _ := config(t, "")
	if err := os.Mkdir(filepath.Join(filepath.Dir(open), "state"), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(filepath.Join(filepath.Dir(open), "state"), os.ModeSticky|0o777); err != nil {
		t.Fatal(err)
	}
	if code, msg := status("-config", open); code != 2 || !strings.Contains(msg, "state_dir: ") || !strings.Contains(msg, "lets other users write to it") {
		t.Errorf("a state_dir of mode 1777: exit %d, %s", code, msg)
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

func TestUsage(t *testing.T) {
	const usage = "usage: nightly -config FILE [-dry-run [-mask-rules]] [-v]\n       nightly -demo [-keep] [-v]\n"
	cfg, _ := config(t, "")
	clitest.Check(t, "nightly", run, staging.ExitStatus, []clitest.Case{
		{Args: []string{"-h"}, Code: 0, StderrStart: usage + "\nflags:\n"},
		{Args: []string{"-help"}, Code: 0, StderrStart: usage},
		{Args: nil, Code: 2, Stderr: "nightly: -config FILE or -demo is required\n" + usage},
		{Args: []string{"-config"}, Code: 2, Stderr: "nightly: flag needs an argument: -config\n" + usage},
		{Args: []string{"-confg", cfg}, Code: 2, Stderr: "nightly: flag provided but not defined: -confg\n" + usage},
		{Args: []string{"-config", cfg, "now"}, Code: 2, Stderr: "nightly: unexpected argument \"now\"\n" + usage},
		{Args: []string{"-config", cfg, "-keep"}, Code: 2, Stderr: "nightly: -keep goes with -demo\n" + usage},
		{Args: []string{"-config", cfg, "-mask-rules"}, Code: 2, Stderr: "nightly: -mask-rules goes with -dry-run\n" + usage},
		{Args: []string{"-demo", "-config", cfg}, Code: 2, Stderr: "nightly: -demo takes neither -config nor -dry-run\n" + usage},
		{Args: []string{"-demo", "-dry-run"}, Code: 2, Stderr: "nightly: -demo takes neither -config nor -dry-run\n" + usage},
	})
}

// testCode are packages an installed binary must not link: the test harness pulls in
// testing, containers and throwaway servers.
func testCode(pkg string) bool {
	return pkg == "testing" || strings.HasPrefix(pkg, "testing/") ||
		strings.HasPrefix(pkg, "github.com/testcontainers/") ||
		pkg == "github.com/restage/restage/staging/stagingtest" ||
		pkg == "github.com/restage/restage/dbrestore/pgtest" ||
		strings.HasPrefix(pkg, "github.com/restage/restage/") && strings.HasSuffix(pkg, "test")
}

func TestTestCode(t *testing.T) {
	for pkg, want := range map[string]bool{
		"testing":        true,
		"testing/iotest": true,
		"github.com/testcontainers/testcontainers-go":    true,
		"github.com/restage/restage/staging/stagingtest": true,
		"github.com/restage/restage/dbrestore/pgtest":    true,
		"github.com/restage/restage/svcctl/svctest":      true,
		"github.com/restage/restage/staging":             false,
		"github.com/moby/moby/client":                    false,
		"net/http":                                       false,
	} {
		if testCode(pkg) != want {
			t.Errorf("testCode(%q) = %v", pkg, !want)
		}
	}
}

// TestInstalledBinariesLinkNoTestCode: the binaries installed on a staging host link no
// test code (the demo, which needs the test harness, is its own program).
func TestInstalledBinariesLinkNoTestCode(t *testing.T) {
	for _, bin := range []string{"nightly", "experimental", "backup", "cronrunner", "history"} {
		pkg := "github.com/restage/restage/examples/" + bin
		deps := testutil.Deps(t, pkg)
		for _, dep := range deps {
			if testCode(dep) {
				t.Errorf("%s links test code: %s", bin, dep)
			}
		}
	}
}

// README: -dry-run -mask-rules prints a starter [mask] section for the backup the
// rebuild would take, which it reads from a dump's schema. With strategy physical there
// is none to read before a restore: the message said only "the backup catalog cannot
// read a backup's schema", naming no key and not the strategy.
func TestMaskRulesOfAPhysicalConfig(t *testing.T) {
	path, _ := config(t, "")
	text, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	physicalText := strings.NewReplacer(
		"[backup]\ndir = \"backups\"\n", "[backup]\ntype = \"basebackup\"\ndir = \"backups\"\n",
		"admin_dsn = \"postgres://postgres:hunter2@127.0.0.1:1/postgres\"\n", "strategy = \"physical\"\nproduction_ids = [\"7312345678901234567\"]\n",
		"[code]\n", "[cluster]\ndir = \"pg\"\nport = 1\n[code]\n",
	).Replace(string(text))
	if err := os.WriteFile(path, []byte(physicalText), 0o644); err != nil {
		t.Fatal(err)
	}
	r := invoke(context.Background(), "-config", path, "-dry-run", "-mask-rules")
	if r.Code != 2 || !strings.Contains(r.Stderr, `database.strategy "physical"`) || !strings.Contains(r.Stderr, "restored") || r.Stdout != "" {
		t.Errorf("-dry-run -mask-rules with strategy physical: exit %d\nstdout: %s\nstderr: %s", r.Code, r.Stdout, r.Stderr)
	}
}
