package main

import (
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/restage/restage/dbrestore/pgtest"
	"github.com/restage/restage/examples/internal/cli/clitest"
	"github.com/restage/restage/staging"
	"github.com/restage/restage/staging/stagingtest"
)

const usage = "usage: train cut -config train.toml [-now] [-v]\n" +
	"       train promote -config production.toml [-v]\n" +
	"       train status -config train.toml [-json]\n"

func TestUsage(t *testing.T) {
	dir := t.TempDir()
	bad := filepath.Join(dir, "train.toml")
	if err := os.WriteFile(bad, []byte("repo = \"r\"\nbranch = \"x\"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	stagingCfg := filepath.Join(dir, "staging.toml")
	if err := os.WriteFile(stagingCfg, []byte(`environment = "staging"
lock_file = "l"
state_dir = "s"
[database]
admin_dsn = "postgres://postgres@127.0.0.1:1/postgres"
name = "bugs"
production_ids = ["7"]
[code]
source = "."
releases = "r"
current = "c"
[service]
type = "command"
start = ["true"]
stop = ["true"]
status = ["true"]
`), 0o644); err != nil {
		t.Fatal(err)
	}
	clitest.Check(t, "train", run, staging.ExitStatus, []clitest.Case{
		{Args: []string{"-h"}, Code: 0, Stderr: usage},
		{Args: []string{"cut", "-h"}, Code: 0, StderrStart: "usage: train cut -config train.toml [-now] [-v]\n\nflags:\n"},
		{Args: []string{"promote", "-help"}, Code: 0, StderrStart: "usage: train promote -config production.toml [-v]\n\nflags:\n"},
		{Args: nil, Code: 2, Stderr: "train: a command is required: cut, promote or status\n" + usage},
		{Args: []string{"release"}, Code: 2, Stderr: "train: unknown command \"release\": want cut, promote or status\n" + usage},
		{Args: []string{"cut"}, Code: 2, Stderr: "train: -config FILE is required\nusage: train cut -config train.toml [-now] [-v]\n"},
		{Args: []string{"status", "-config", bad, "-xml"}, Code: 2, Stderr: "train: flag provided but not defined: -xml\nusage: train status -config train.toml [-json]\n"},
		{Args: []string{"promote", "-config", bad, "now"}, Code: 2, Stderr: "train: unexpected argument \"now\"\nusage: train promote -config production.toml [-v]\n"},
		// A config error names the key, on one line without the usage.
		{Args: []string{"cut", "-config", bad}, Code: 2, Stderr: "train: config: " + bad + ": unknown key branch\n"},
		// A promote config whose role is not production: exit 2, naming the role.
		{Args: []string{"promote", "-config", stagingCfg}, Code: 2,
			StderrStart: "train: config: " + stagingCfg + ": role \"staging\": train promote deploys only to a config with role = \"production\""},
	})
}

func TestCutAndStatus(t *testing.T) {
	if _, err := exec.LookPath("git"); err != nil {
		t.Skip("no git")
	}
	dir := t.TempDir()
	git := func(args ...string) string {
		t.Helper()
		cmd := exec.Command("git", append([]string{"-c", "user.name=Dev", "-c", "user.email=dev@example.org"}, args...)...)
		cmd.Dir = dir
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("git %v: %v\n%s", args, err, out)
		}
		return strings.TrimSpace(string(out))
	}
	git("init", "-q", "--bare", "bugs.git")
	git("init", "-q", "work")
	git("-C", "work", "commit", "-q", "--allow-empty", "-m", "one")
	git("-C", "work", "push", "-q", "../bugs.git", "HEAD:refs/heads/staging", "HEAD:refs/heads/devel")
	git("-C", "work", "commit", "-q", "--allow-empty", "-m", "two")
	two := git("-C", "work", "rev-parse", "HEAD")
	git("-C", "work", "push", "-q", "../bugs.git", "HEAD:refs/heads/devel")
	cfg := filepath.Join(dir, "train.toml")
	if err := os.WriteFile(cfg, []byte("repo = \"bugs.git\"\ncheck = [\"true\"]\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	r := clitest.Run(context.Background(), "train", run, staging.ExitStatus, "status", "-config", cfg, "-json")
	var st struct {
		DevelNotOnStaging *int `json:"devel_not_on_staging"`
	}
	if err := json.Unmarshal([]byte(r.Stdout), &st); r.Code != 0 || err != nil || st.DevelNotOnStaging == nil || *st.DevelNotOnStaging != 1 {
		t.Fatalf("status -json: exit %d, %v\n%s%s", r.Code, err, r.Stdout, r.Stderr)
	}
	r = clitest.Run(context.Background(), "train", run, staging.ExitStatus, "cut", "-config", cfg)
	if r.Code != 0 || !strings.Contains(r.Stdout, "1 commit went from devel into staging") {
		t.Fatalf("cut: exit %d\n%s%s", r.Code, r.Stdout, r.Stderr)
	}
	if got := git("--git-dir", "bugs.git", "rev-parse", "staging"); got != two {
		t.Errorf("staging at %s, want %s", got, two)
	}
	r = clitest.Run(context.Background(), "train", run, staging.ExitStatus, "status", "-config", cfg)
	if r.Code != 0 || !strings.Contains(r.Stdout, "devel commits not on staging: 0") {
		t.Fatalf("status: exit %d\n%s%s", r.Code, r.Stdout, r.Stderr)
	}
	// Staging moved on by a fix: the cut is refused, exit 1.
	git("-C", "work", "commit", "-q", "--allow-empty", "-m", "fix")
	git("-C", "work", "push", "-q", "../bugs.git", "HEAD:refs/heads/staging")
	r = clitest.Run(context.Background(), "train", run, staging.ExitStatus, "cut", "-config", cfg)
	if r.Code != 1 || !strings.Contains(r.Stderr, "would move backwards") {
		t.Fatalf("a backwards cut: exit %d\n%s%s", r.Code, r.Stdout, r.Stderr)
	}

	// cut -now with a bad environment config: exit 2 naming it, and nothing cut.
	badEnv := filepath.Join(dir, "staging.toml")
	if err := os.WriteFile(badEnv, []byte("environment = \"staging\"\nbogus_key = 1\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	nowCfg := filepath.Join(dir, "train-now.toml")
	if err := os.WriteFile(nowCfg, []byte("repo = \"bugs.git\"\ntag = \"now-%Y-%m-%d\"\nenvironments = [\"staging.toml\"]\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	// devel moves on by a commit of its own, so a cut would move staging and tag.
	before := git("--git-dir", "bugs.git", "rev-parse", "staging")
	git("-C", "work", "checkout", "-q", "--detach", before)
	git("-C", "work", "commit", "-q", "--allow-empty", "-m", "three")
	git("-C", "work", "push", "-q", "../bugs.git", "HEAD:refs/heads/devel")
	r = clitest.Run(context.Background(), "train", run, staging.ExitStatus, "cut", "-config", nowCfg, "-now")
	if r.Code != 2 || !strings.Contains(r.Stderr, badEnv+": unknown key bogus_key") || !strings.Contains(r.Stderr, "nothing cut") {
		t.Errorf("cut -now with a bad environment config: exit %d\n%s%s", r.Code, r.Stdout, r.Stderr)
	}
	if got := git("--git-dir", "bugs.git", "rev-parse", "staging"); got != before {
		t.Errorf("cut -now with a bad config moved staging to %s, want it at %s", got, before)
	}
	if tags := git("--git-dir", "bugs.git", "tag", "-l", "now-*"); tags != "" {
		t.Errorf("cut -now with a bad config tagged %s", tags)
	}
}

// The test binary doubles as the bug tracker's web app (the environments' service).
func TestMain(m *testing.M) {
	stagingtest.RunApp()
	os.Exit(pgtest.Main(m))
}

// The Monday procedure through the binary, on real servers: promote, cut -now, status
// -json; a promote the preflight refuses exits 1.
func TestMondayProcedure(t *testing.T) {
	w := stagingtest.Start(t, stagingtest.Options{People: 300, Bugs: 2000})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	tr, err := w.AddTrain(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer tr.Close()
	trainRun := func(args ...string) clitest.Result {
		t.Helper()
		return clitest.Run(ctx, "train", run, staging.ExitStatus, args...)
	}
	if r := trainRun("promote", "-config", tr.Prod.ConfigPath); r.Code != 0 || !strings.Contains(r.Stdout, "production promote OK") {
		t.Fatalf("promote: exit %d\n%s%s", r.Code, r.Stdout, r.Stderr)
	}
	if r := trainRun("cut", "-config", tr.ConfigPath, "-now"); r.Code != 0 || !strings.Contains(r.Stdout, "staging rebuild OK") {
		t.Fatalf("cut -now: exit %d\n%s%s", r.Code, r.Stdout, r.Stderr)
	}
	r := trainRun("status", "-config", tr.ConfigPath, "-json")
	var st struct {
		StagingNotOnProduction *int `json:"staging_not_on_production"`
		Environments           []struct {
			Role   string `json:"role"`
			Schema *uint  `json:"schema"`
		} `json:"environments"`
	}
	if err := json.Unmarshal([]byte(r.Stdout), &st); r.Code != 0 || err != nil || len(st.Environments) != 2 ||
		st.StagingNotOnProduction == nil || *st.StagingNotOnProduction != 2 ||
		st.Environments[0].Schema == nil || *st.Environments[0].Schema != 3 || st.Environments[1].Schema == nil || *st.Environments[1].Schema != 5 {
		t.Fatalf("status -json: exit %d, %v\n%s%s", r.Code, err, r.Stdout, r.Stderr)
	}
	// A promote whose migrations staging ran slower than the limit: exit 1, nothing changed.
	data, err := os.ReadFile(tr.Prod.ConfigPath)
	if err != nil {
		t.Fatal(err)
	}
	slow := filepath.Join(w.Dir, "production-slow.toml")
	if err := os.WriteFile(slow, []byte(strings.Replace(string(data), `max_migration_time  = "15s"`, `max_migration_time  = "1ns"`, 1)), 0o644); err != nil {
		t.Fatal(err)
	}
	if r := trainRun("promote", "-config", slow); r.Code != 1 || !strings.Contains(r.Stderr, "preflight refused the promote") {
		t.Fatalf("a refused promote: exit %d\n%s%s", r.Code, r.Stdout, r.Stderr)
	}
	if r := trainRun("promote", "-config", tr.Prod.ConfigPath); r.Code != 0 || !strings.Contains(r.Stdout, "schema:      3 -> 5") {
		t.Fatalf("promote: exit %d\n%s%s", r.Code, r.Stdout, r.Stderr)
	}
}
