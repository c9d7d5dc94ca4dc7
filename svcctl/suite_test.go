package svcctl

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// suiteFixture is one Controller implementation under the shared suite: a stopped
// service that serves healthURL while it runs.
type suiteFixture struct {
	c         Controller
	healthURL string
	hasPID    bool // Status reports the main pid
	after     func(t *testing.T)
}

// testControllerSuite checks the Start/Stop/Status semantics every Controller shares
// against the real service: starting twice, stopping twice, status after each step.
func testControllerSuite(t *testing.T, fx suiteFixture) {
	t.Helper()
	ctx := t.Context()
	c := fx.c

	requireState(t, c, StateStopped)
	if err := c.Stop(ctx); err != nil {
		t.Fatalf("Stop of a stopped service: %v", err)
	}
	requireState(t, c, StateStopped)
	requireNotServing(t, fx.healthURL)

	if err := c.Start(ctx); err != nil {
		t.Fatalf("Start: %v", err)
	}
	st := requireState(t, c, StateRunning)
	if fx.hasPID && st.PID <= 0 {
		t.Fatalf("Status after Start has no pid: %+v", st)
	}
	requireServing(t, fx.healthURL)

	if err := c.Start(ctx); err != nil {
		t.Fatalf("Start of a running service: %v", err)
	}
	st2 := requireState(t, c, StateRunning)
	if st2.PID != st.PID {
		t.Fatalf("second Start replaced the service: pid %d, then %d", st.PID, st2.PID)
	}
	requireServing(t, fx.healthURL)

	if err := c.Stop(ctx); err != nil {
		t.Fatalf("Stop: %v", err)
	}
	requireState(t, c, StateStopped)
	requireNotServing(t, fx.healthURL)
	if err := c.Stop(ctx); err != nil {
		t.Fatalf("second Stop: %v", err)
	}
	requireState(t, c, StateStopped)

	// Start + health gate in one call, then a restart.
	if err := StartHealthy(ctx, c, HTTPCheck{URL: fx.healthURL, Timeout: 60 * time.Second}); err != nil {
		t.Fatalf("StartHealthy: %v", err)
	}
	requireState(t, c, StateRunning)
	if err := c.Stop(ctx); err != nil {
		t.Fatalf("Stop: %v", err)
	}
	requireState(t, c, StateStopped)
	if fx.after != nil {
		fx.after(t)
	}
}

func TestControllerSuite(t *testing.T) {
	t.Run("process", func(t *testing.T) {
		t.Parallel()
		tag, addr := newTag(t), freeAddr(t)
		p, err := NewProcess(ProcessConfig{
			Command:   []string{testBinary(t), "http", addr},
			Env:       serviceEnv(tag),
			Pidfile:   filepath.Join(t.TempDir(), "app.pid"),
			StartWait: 200 * time.Millisecond,
		})
		if err != nil {
			t.Fatal(err)
		}
		testControllerSuite(t, suiteFixture{c: p, healthURL: "http://" + addr + "/health", hasPID: true,
			after: func(t *testing.T) {
				requireNoOrphans(t, tag)
				if _, err := os.Stat(p.Pidfile()); !os.IsNotExist(err) {
					t.Fatalf("pidfile left after Stop: %v", err)
				}
				log, _ := os.ReadFile(p.LogFile())
				if n := strings.Count(string(log), "got SIGTERM, exiting"); n != 2 {
					t.Fatalf("log shows %d graceful stops, want 2:\n%s", n, log)
				}
			}})
	})
	t.Run("command", func(t *testing.T) {
		t.Parallel()
		tag, addr := newTag(t), freeAddr(t)
		pidfile := filepath.Join(t.TempDir(), "app.pid")
		ctl := func(action string) []string { return []string{testBinary(t), action, pidfile, addr} }
		c, err := NewCommand(CommandConfig{
			Start: ctl("start"), Stop: ctl("stop"), Status: ctl("status"),
			Env: []string{envRole + "=ctl", envTag + "=" + tag},
		})
		if err != nil {
			t.Fatal(err)
		}
		testControllerSuite(t, suiteFixture{c: c, healthURL: "http://" + addr + "/health",
			after: func(t *testing.T) { requireNoOrphans(t, tag) }})
	})
	t.Run("systemd", func(t *testing.T) {
		t.Parallel()
		tag, addr := newTag(t), freeAddr(t)
		f := newFakeSystemd(t)
		f.addUnit(t, "app.service", fakeUnit{Command: []string{testBinary(t), "http", addr}, Env: serviceEnv(tag)})
		s, err := NewSystemd(SystemdConfig{
			Unit:       "app.service",
			Systemctl:  filepath.Join(f.bin(), "systemctl"),
			Journalctl: filepath.Join(f.bin(), "journalctl"),
		})
		if err != nil {
			t.Fatal(err)
		}
		testControllerSuite(t, suiteFixture{c: s, healthURL: "http://" + addr + "/health", hasPID: true,
			after: func(t *testing.T) {
				requireNoOrphans(t, tag)
				calls := f.calls(t)
				for _, want := range []string{"systemctl start app.service\n", "systemctl stop app.service\n", "systemctl is-active app.service\n"} {
					if !strings.Contains(calls, want) {
						t.Fatalf("systemctl never ran as %q; calls:\n%s", want, calls)
					}
				}
			}})
	})
	t.Run("docker", func(t *testing.T) {
		t.Parallel()
		dk := newDockerFixture(t)
		name, addr := dk.createContainer(t, "-listen", ":8080")
		d, err := NewDocker(DockerConfig{Container: name, Client: dk.cli, StartWait: 300 * time.Millisecond})
		if err != nil {
			t.Fatal(err)
		}
		testControllerSuite(t, suiteFixture{c: d, healthURL: "http://" + addr + "/health", hasPID: true})
	})
}
