package staging

import (
	"context"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/restage/restage/notify"
	"github.com/restage/restage/svcctl"
)

func TestDriverKeysAreStrictAndNamed(t *testing.T) {
	for _, tc := range []struct{ edit, want string }{
		{`s/^pidfile .*/pidfile = "run.pid"\npidfiel = "x"/`, `unknown key service.pidfiel`},
		{`s/^pidfile .*/pidfile = "run.pid"\nstop_timeout = "soon"/`, `service.stop_timeout: bad duration "soon"`},
		// A driver's key of the wrong type is named in full (it said `service: toml: line
		// 1 (last key "command")`, the line of the re-encoded table, not of the file).
		{`s/^pidfile .*/pidfile = "run.pid"\nenv = { A = "b" }/`, `service.env: incompatible types`},
		{`s/^to   = .*/to = "a@example.org"/`, `notify.email.to: incompatible types`},
		{`s/type           = "process"/type = "docker"/`, `service.type "docker": want one of command, process, systemd`},
		{`s/^to   = .*/to = ["a@example.org"]\nsmpt = "x"/`, `unknown key notify.email.smpt`},
		{`s/^topic = .*/topic = "x"\n[notify.slack]\nurl = "x"/`, `unknown key notify.slack`},
		{`s/^health_timeout = .*/health_timeout = "a minute"/`, `service.health_timeout`},
	} {
		_, err := LoadEnvironment(writeConfig(t, sed(t, sampleConfig, tc.edit)))
		if !errors.Is(err, ErrConfig) || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: err = %v, want one naming %q", tc.edit, err, tc.want)
		}
		if strings.Contains(tc.want, ": ") && strings.Contains(err.Error(), "line ") {
			t.Errorf("%s: err = %v: the line is the re-encoded table's, not the file's", tc.edit, err)
		}
	}
}

// fakeKeys is a third-party [service] type: one struct and one line in Drivers.
type fakeKeys struct {
	Name string `toml:"name"`
}

func (k *fakeKeys) Check() []string {
	if k.Name == "" {
		return []string{"missing required key service.name"}
	}
	return nil
}
func (k *fakeKeys) Open(env DriverEnv) (svcctl.Controller, error) { return fakeController{k.Name}, nil }

type fakeController struct{ name string }

func (fakeController) Start(context.Context) error { return nil }
func (fakeController) Stop(context.Context) error  { return nil }
func (fakeController) Status(context.Context) (svcctl.Status, error) {
	return svcctl.Status{State: svcctl.StateRunning}, nil
}

type fakeTarget struct {
	Channel string `toml:"channel"`
}

func (f *fakeTarget) Check(prefix string) []string { return nil }
func (f *fakeTarget) Open(DriverEnv) (notify.Notifier, error) {
	return notify.NewWriter(notify.WriterConfig{Out: &strings.Builder{}})
}

func TestADriverIsOneLine(t *testing.T) {
	d := DefaultDrivers()
	d.Services["fake"] = func() ServiceKeys { return &fakeKeys{} }
	d.Notifiers["chat"] = func() NotifierKeys { return &fakeTarget{} }
	text := sed(t, sampleConfig, `s/type           = "process"/type = "fake"\nname = "app"/`)
	text = strings.Replace(text, "command        = [", "# command = [", 1)
	text = strings.Replace(text, "pidfile        =", "# pidfile =", 1)
	text = sed(t, text, `s/^topic = .*/topic = "x"\n[notify.chat]\nchannel = "#ops"/`)
	path := writeConfig(t, text)
	if _, err := LoadEnvironment(path); err == nil || !strings.Contains(err.Error(), `service.type "fake"`) {
		t.Fatalf("without the driver: %v", err)
	}
	c, err := LoadEnvironmentWith(path, d)
	if err != nil {
		t.Fatal(err)
	}
	ctl, _, err := c.service(nil)
	if err != nil || ctl.(fakeController).name != "app" {
		t.Fatalf("service %v, %v", ctl, err)
	}
	keys, bad := d.notifierKeys(&c.Notify)
	if len(bad) > 0 || keys["chat"].(*fakeTarget).Channel != "#ops" || keys["email"] == nil {
		t.Fatalf("targets %v %v", keys, bad)
	}
}

// The process service's pidfile folder, made when missing, is private (0700), as the
// lock's: with the pidfile beside the lock file (/run/restage), the lock's folder stays 0700.
func TestPidfileFolderIsPrivate(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "run", "restage")
	k := &ProcessKeys{Command: []string{"/bin/true"}, Pidfile: filepath.Join(dir, "app.pid")}
	if _, err := k.Open(DriverEnv{Logger: slog.New(slog.DiscardHandler)}); err != nil {
		t.Fatal(err)
	}
	for _, d := range []string{dir, filepath.Dir(dir)} {
		if st, err := os.Stat(d); err != nil || st.Mode().Perm() != 0o700 {
			t.Fatalf("%s: %v, %v", d, st.Mode().Perm(), err)
		}
	}
}

// [service] user reaches the process service: run as root, restage starts it as that
// user (here nobody, which cannot read restage's 0600 files); an unknown user is a config
// error naming the key.
func TestProcessServiceUser(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("switching to another user needs root")
	}
	dir := t.TempDir()
	secret := filepath.Join(dir, "history.jsonl")
	if err := os.WriteFile(secret, []byte("restage's state\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	k := &ProcessKeys{Command: []string{"/bin/sh", "-c", "id -un; cat " + secret + " || echo unreadable; exec sleep 600"},
		Pidfile: filepath.Join(dir, "run", "app.pid"), User: "nobody", StopTimeout: Duration{5e9}}
	ctl, err := k.Open(DriverEnv{Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	if err := ctl.Start(t.Context()); err != nil {
		t.Fatal(err)
	}
	defer ctl.Stop(context.WithoutCancel(t.Context()))
	var out []byte
	for range 500 {
		if out, _ = os.ReadFile(k.Pidfile + ".log"); strings.Contains(string(out), "unreadable") {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if !strings.HasPrefix(string(out), "nobody\n") || strings.Contains(string(out), "restage's state") {
		t.Errorf("the service's output:\n%s", out)
	}
	var logged strings.Builder
	k.User = ""
	if _, err := k.Open(DriverEnv{Logger: slog.New(slog.NewTextHandler(&logged, nil))}); err != nil || !strings.Contains(logged.String(), "service.user is not set") {
		t.Errorf("no user, restage as root: %v; logged %q", err, logged.String())
	}
	k.User = "no-such-user-restage"
	if _, err := k.Open(DriverEnv{Logger: slog.New(slog.DiscardHandler)}); err == nil || !strings.HasPrefix(err.Error(), "service.user: ") {
		t.Errorf("an unknown user: %v", err)
	}
}
