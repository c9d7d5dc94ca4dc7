package svcctl

import (
	"errors"
	"os"
	"os/user"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/restage/restage/internal/testutil"
)

// readEnvFile reads what `env` (or os.Environ) wrote to path: KEY=value lines.
func readEnvFile(t testing.TB, path string) map[string]string {
	t.Helper()
	var b []byte
	deadline := time.Now().Add(30 * time.Second)
	for {
		var err error
		b, err = os.ReadFile(path)
		if err == nil && len(b) > 0 && b[len(b)-1] == '\n' {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no environment written to %s: %v", path, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
	env := map[string]string{}
	for _, line := range strings.Split(strings.TrimSpace(string(b)), "\n") {
		k, v, _ := strings.Cut(line, "=")
		env[k] = v
	}
	return env
}

// requireChildEnv fails unless env lacks every secret of the caller and has PATH and want.
func requireChildEnv(t testing.TB, who string, env map[string]string, want map[string]string, absent ...string) {
	t.Helper()
	for k, v := range env {
		if strings.Contains(v, testutil.Secret) {
			t.Errorf("%s got a secret of the caller: %s=%s", who, k, v)
		}
	}
	for _, k := range append([]string{"SMTP_PASSWORD", "PGPASSWORD", "RESTAGE_MASK_KEY"}, absent...) {
		if _, ok := env[k]; ok {
			t.Errorf("%s got %s from the caller", who, k)
		}
	}
	if env["PATH"] != os.Getenv("PATH") {
		t.Errorf("%s got PATH=%q, want the caller's %q", who, env["PATH"], os.Getenv("PATH"))
	}
	for k, v := range want {
		if env[k] != v {
			t.Errorf("%s got %s=%q, want %q", who, k, env[k], v)
		}
	}
}

// TestChildrenGetOnlyTheirEnvironment: the service a Process starts, the commands of a
// Command and systemctl see none of the caller's secrets, only PATH and the like, their
// configured variables, and (systemctl) what reaches the service manager. Not parallel:
// it sets the test process's environment.
func TestChildrenGetOnlyTheirEnvironment(t *testing.T) {
	testutil.SetSecrets(t)
	t.Setenv("XDG_RUNTIME_DIR", "/run/user/4242")
	t.Setenv("DBUS_SESSION_BUS_ADDRESS", "unix:path=/run/user/4242/bus")
	ctx := t.Context()
	dir := t.TempDir()

	t.Run("process", func(t *testing.T) {
		for _, tc := range []struct {
			name string
			env  []string
			want map[string]string
		}{
			{"configured", []string{"APP_MODE=staging"}, map[string]string{"APP_MODE": "staging"}},
			{"empty", nil, nil},
		} {
			out := filepath.Join(dir, "process-"+tc.name+".env")
			p, err := NewProcess(ProcessConfig{
				Command: sh("env > " + out + "; exec sleep 600"), Env: tc.env,
				Pidfile: filepath.Join(dir, tc.name+".pid"), StartWait: 100 * time.Millisecond, StopTimeout: 5 * time.Second,
			})
			if err != nil {
				t.Fatal(err)
			}
			if err := p.Start(ctx); err != nil {
				t.Fatal(err)
			}
			got := readEnvFile(t, out)
			if err := p.Stop(ctx); err != nil {
				t.Fatal(err)
			}
			requireChildEnv(t, "service ("+tc.name+" Env)", got, tc.want, "XDG_RUNTIME_DIR", "DBUS_SESSION_BUS_ADDRESS")
		}
	})

	t.Run("command", func(t *testing.T) {
		started := filepath.Join(dir, "started")
		c, err := NewCommand(CommandConfig{
			Start:  sh("env > " + filepath.Join(dir, "start.env") + "; touch " + started),
			Stop:   sh("env > " + filepath.Join(dir, "stop.env") + "; rm -f " + started),
			Status: sh("env > " + filepath.Join(dir, "status.env") + "; test -f " + started + " && exit 0; exit 3"),
			Env:    []string{"APP_MODE=cmd"},
		})
		if err != nil {
			t.Fatal(err)
		}
		if err := c.Start(ctx); err != nil {
			t.Fatal(err)
		}
		if err := c.Stop(ctx); err != nil {
			t.Fatal(err)
		}
		for _, name := range []string{"start", "stop", "status"} {
			requireChildEnv(t, name+" command", readEnvFile(t, filepath.Join(dir, name+".env")),
				map[string]string{"APP_MODE": "cmd"}, "XDG_RUNTIME_DIR", "DBUS_SESSION_BUS_ADDRESS")
		}
	})

	t.Run("systemctl", func(t *testing.T) {
		f := newFakeSystemd(t)
		s, err := NewSystemd(SystemdConfig{Unit: "app.service", Systemctl: filepath.Join(f.Bin(), "systemctl"), Journalctl: "-"})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := s.Status(ctx); err == nil {
			t.Fatal("Status of a unit the fake does not know succeeded")
		}
		requireChildEnv(t, "systemctl", readEnvFile(t, filepath.Join(f.dir, "systemctl.env")), map[string]string{
			"XDG_RUNTIME_DIR":          "/run/user/4242",
			"DBUS_SESSION_BUS_ADDRESS": "unix:path=/run/user/4242/bus",
		})
	})
}

// TestProcessRunsAsItsUser: with ProcessConfig.User the service runs as that user (its
// uid, groups, HOME and USER), so it cannot read what the caller reads (here a root's
// file 0600, as production's backups or restage's state would be); an unknown user is
// ErrUser when the Process is made. Run as root (as CI runs), it switches users.
func TestProcessRunsAsItsUser(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("switching to another user needs root")
	}
	nobody, err := user.Lookup("nobody")
	if err != nil {
		t.Skip("no user nobody:", err)
	}
	dir := t.TempDir()
	secret := filepath.Join(dir, "secret")
	if err := os.WriteFile(secret, []byte("production's rows\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	p, err := NewProcess(ProcessConfig{
		Command: sh("echo uid=$(id -u) gid=$(id -g) HOME=$HOME USER=$USER; cat " + secret + " || echo unreadable; exec sleep 600"),
		User:    "nobody", Env: []string{"APP_MODE=staging"},
		Pidfile: filepath.Join(dir, "app.pid"), StartWait: 100 * time.Millisecond, StopTimeout: 5 * time.Second,
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx := t.Context()
	if err := p.Start(ctx); err != nil {
		t.Fatal(err)
	}
	waitForLog(t, p, "unreadable")
	out, _ := os.ReadFile(p.LogFile())
	want := "uid=" + nobody.Uid + " gid=" + nobody.Gid + " HOME=" + nobody.HomeDir + " USER=nobody"
	if !strings.Contains(string(out), want) || strings.Contains(string(out), "production's rows") {
		t.Errorf("the service's log:\n%s\nwant %q and no secret", out, want)
	}
	if st, err := p.Status(ctx); err != nil || st.State != StateRunning {
		t.Errorf("status %v, %v", st, err)
	}
	if err := p.Stop(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := NewProcess(ProcessConfig{Command: []string{"sleep", "1"}, User: "no-such-user-restage",
		Pidfile: filepath.Join(dir, "x.pid")}); !errors.Is(err, ErrUser) {
		t.Errorf("an unknown user: %v", err)
	}
}
