package main

import (
	"bufio"
	"context"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/restage/restage/examples/internal/cli"
	"github.com/restage/restage/examples/internal/cli/clitest"
	"github.com/restage/restage/staging"
	"github.com/restage/restage/staging/historypage/historytest"
)

const usage = "usage: history -config FILE -out PAGE.html [-runs N]\n       history -config FILE -serve ADDR [-runs N]\n"

func TestUsage(t *testing.T) {
	clitest.Check(t, "history", run, staging.ExitStatus, []clitest.Case{
		{Args: []string{"-h"}, Code: 0, StderrStart: usage + "\nflags:\n"},
		{Args: nil, Code: 2, Stderr: "history: -config FILE is required\n" + usage},
		{Args: []string{"-config", "staging.toml"}, Code: 2, Stderr: "history: give one of -out PAGE.html and -serve ADDR\n" + usage},
		{Args: []string{"-config", "staging.toml", "-out", "a.html", "-serve", ":0"}, Code: 2, Stderr: "history: give one of -out PAGE.html and -serve ADDR\n" + usage},
		{Args: []string{"-config", "staging.toml", "-out", "a.html", "-runs", "0"}, Code: 2, Stderr: "history: -runs 0: want at least 1\n" + usage},
		{Args: []string{"-config", "staging.toml", "-out", "a.html", "now"}, Code: 2, Stderr: "history: unexpected argument \"now\"\n" + usage},
		{Args: []string{"-config", filepath.Join(t.TempDir(), "missing.toml"), "-out", "a.html"}, Code: 2, StderrStart: "history: config: "},
	})
}

// recorded returns a recorded history of nights rebuilds and its config file.
func recorded(t *testing.T, nights int) *historytest.Recording {
	t.Helper()
	rec, err := historytest.Record(context.Background(), historytest.Options{Dir: t.TempDir(), Nights: nights})
	if err != nil {
		t.Fatal(err)
	}
	return rec
}

func TestOut(t *testing.T) {
	rec := recorded(t, 5)
	out := filepath.Join(t.TempDir(), "history.html")
	r := clitest.Run(context.Background(), "history", run, staging.ExitStatus, "-config", rec.ConfigPath, "-out", out)
	if r.Code != 0 || r.Stdout != "" || r.Stderr != "" {
		t.Fatalf("exit %d, stdout %q, stderr %q", r.Code, r.Stdout, r.Stderr)
	}
	page, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	if n := strings.Count(string(page), `<tr class="ok"`); n != 5 {
		t.Errorf("%d rows of successful runs, want 5", n)
	}
	if n := strings.Count(string(page), `<svg class="plot"`); n != 4 {
		t.Errorf("%d plots, want 4", n)
	}

	// -runs shows the newest runs only.
	r = clitest.Run(context.Background(), "history", run, staging.ExitStatus, "-config", rec.ConfigPath, "-out", out, "-runs", "2")
	page, _ = os.ReadFile(out)
	if r.Code != 0 || strings.Count(string(page), "<tr class=") != 2 || !strings.Contains(string(page), "the newest 2 of 5 runs") {
		t.Errorf("-runs 2: exit %d, stderr %q, page:\n%s", r.Code, r.Stderr, page)
	}

	// A file that cannot be written is a failure (exit 1), not a usage error.
	r = clitest.Run(context.Background(), "history", run, staging.ExitStatus, "-config", rec.ConfigPath, "-out", filepath.Join(t.TempDir(), "no", "such", "folder.html"))
	if r.Code != 1 || !strings.HasPrefix(r.Stderr, "history: atomic write ") {
		t.Errorf("unwritable -out: exit %d, stderr %q", r.Code, r.Stderr)
	}
}

// TestDockerConfig: history reads the configs nightly reads, docker services included.
func TestDockerConfig(t *testing.T) {
	rec := recorded(t, 2)
	text, err := os.ReadFile(rec.ConfigPath)
	if err != nil {
		t.Fatal(err)
	}
	i := strings.Index(string(text), "[service]")
	if i < 0 {
		t.Fatalf("no [service] in\n%s", text)
	}
	docker := string(text[:i]) + "[service]\ntype      = \"docker\"\ncontainer = \"staging-app\"\n"
	if err := os.WriteFile(rec.ConfigPath, []byte(docker), 0o600); err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(t.TempDir(), "history.html")
	if r := clitest.Run(context.Background(), "history", run, staging.ExitStatus, "-config", rec.ConfigPath, "-out", out); r.Code != 0 {
		t.Fatalf("docker service: exit %d, stderr %q", r.Code, r.Stderr)
	}
}

// TestProductionConfig: production's history (its promotes) is shown from its config,
// role = "production", which nightly and experimental refuse.
func TestProductionConfig(t *testing.T) {
	rec := recorded(t, 2)
	prod := filepath.Join(t.TempDir(), "production.toml")
	text := `environment = "production"
role        = "production"
lock_file   = "run/production.lock"
state_dir   = "` + rec.StateDir + `"
[database]
admin_dsn = "postgres://postgres@prod-db:5432/postgres"
name      = "launchpad_prod"
[code]
source   = "build"
releases = "releases"
current  = "current"
[schema]
migrations = "database/migrations"
[service]
type = "systemd"
unit = "launchpad.service"
[preflight]
staging_state_dir = "staging-state"
`
	if err := os.WriteFile(prod, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(t.TempDir(), "history.html")
	if r := clitest.Run(context.Background(), "history", run, staging.ExitStatus, "-config", prod, "-out", out); r.Code != 0 {
		t.Fatalf("production config: exit %d, stderr %q", r.Code, r.Stderr)
	}
	page, err := os.ReadFile(out)
	if err != nil || !strings.Contains(string(page), "<tr class=") {
		t.Fatalf("production's page: %v\n%s", err, page)
	}
}

func TestServe(t *testing.T) {
	rec := recorded(t, 3)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	pr, pw := io.Pipe()
	var stderr strings.Builder
	done := make(chan error, 1)
	go func() {
		done <- run(ctx, []string{"-config", rec.ConfigPath, "-serve", "127.0.0.1:0"}, pw, &stderr)
		pw.Close()
	}()
	line, err := bufio.NewReader(pr).ReadString('\n')
	if err != nil {
		t.Fatalf("no line on stdout: %v (stderr %q, run: %v)", err, stderr.String(), <-done)
	}
	const prefix = "serving the history of staging on "
	if !strings.HasPrefix(line, prefix) {
		t.Fatalf("stdout %q", line)
	}
	url := strings.TrimSpace(strings.TrimPrefix(line, prefix))
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	body, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != 200 || strings.Count(string(body), "<tr class=") != 3 || !strings.Contains(string(body), `<svg class="plot"`) {
		t.Errorf("GET %s: %s\n%s", url, resp.Status, body)
	}

	cancel() // as SIGINT does through cli.Main
	select {
	case err := <-done:
		if code := cli.Exit(io.Discard, "history", err, staging.ExitStatus); code != 0 {
			t.Errorf("interrupted: %v, exit %d; want 0", err, code)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("-serve did not stop when its context ended")
	}
}

func TestServeAddressInUse(t *testing.T) {
	rec := recorded(t, 1)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	r := clitest.Run(context.Background(), "history", run, staging.ExitStatus, "-config", rec.ConfigPath, "-serve", l.Addr().String())
	if r.Code != 1 || !strings.Contains(r.Stderr, "address already in use") {
		t.Errorf("exit %d, stderr %q", r.Code, r.Stderr)
	}
}
