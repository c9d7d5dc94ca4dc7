package svcctl_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/restage/restage/internal/testutil"
	"github.com/restage/restage/svcctl"
	"github.com/restage/restage/svcctl/svctest"
)

// The drivers of this package under svctest's conformance suite; the Docker driver runs
// it in its own package (svcctl/docker).

func TestControllerSuite(t *testing.T) {
	for _, d := range []struct {
		name       string
		newService func(t *testing.T, mode string, addr ...string) svctest.Service
		// anyStartError: the driver relays a start command's failure as a *CommandError
		// (the init script's start, systemctl start, fail for a service that exits at
		// once); ErrExited is for a start that succeeds and a status that then says
		// stopped (TestCommandErrors).
		anyStartError, pid bool
	}{
		{"process", newProcessService, false, true},
		{"command", newCommandService, true, false},
		{"systemd", newSystemdService, true, true},
	} {
		t.Run(d.name, func(t *testing.T) {
			t.Parallel()
			svctest.Controller(t, svctest.Fixture{
				New:           func(t *testing.T) svctest.Service { return d.newService(t, "http", testutil.FreeAddr(t)) },
				Exiting:       func(t *testing.T) svctest.Service { return d.newService(t, "exit") },
				AnyStartError: d.anyStartError,
				PID:           d.pid,
			})
		})
	}
}

// testService is what the three fixtures share: a tagged service "mode [addr]" of the
// test binary (runService), probed over HTTP when it serves, killed by its tag, stopped
// and checked for orphans at the end of the test.
func testService(t *testing.T, tag string, c svcctl.Controller, mode string, addr ...string) svctest.Service {
	t.Helper()
	t.Cleanup(func() {
		if err := c.Stop(context.WithoutCancel(t.Context())); err != nil {
			t.Errorf("Stop at the end of the test: %v", err)
		}
		svcctl.RequireNoOrphans(t, tag)
	})
	svc := svctest.Service{
		Controller: c,
		Running:    func(context.Context) bool { return len(svcctl.TaggedProcesses(tag)) > 0 },
		Kill: func(t *testing.T) {
			for _, pid := range svcctl.TaggedProcesses(tag) {
				if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
					t.Errorf("kill %d: %v", pid, err)
				}
			}
		},
	}
	if mode == "http" {
		url := "http://" + addr[0] + "/health"
		svc.Running = svctest.HTTPProbe(url)
		svc.Health = svcctl.HTTPCheck{URL: url, Timeout: time.Minute}
	}
	return svc
}

func newProcessService(t *testing.T, mode string, addr ...string) svctest.Service {
	t.Helper()
	tag := svcctl.NewTag(t)
	p, err := svcctl.NewProcess(svcctl.ProcessConfig{
		Command:   append([]string{svcctl.TestBinary(t), mode}, addr...),
		Env:       svcctl.ServiceEnv(tag),
		Pidfile:   filepath.Join(t.TempDir(), "app.pid"),
		StartWait: 200 * time.Millisecond,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if _, err := os.Stat(p.Pidfile()); !os.IsNotExist(err) {
			t.Errorf("pidfile left after Stop: %v", err)
		}
	})
	return testService(t, tag, p, mode, addr...)
}

func newCommandService(t *testing.T, mode string, addr ...string) svctest.Service {
	t.Helper()
	tag := svcctl.NewTag(t)
	pidfile := filepath.Join(t.TempDir(), "app.pid")
	ctl := func(action string) []string {
		return append([]string{svcctl.TestBinary(t), action, pidfile, mode}, addr...)
	}
	c, err := svcctl.NewCommand(svcctl.CommandConfig{
		Start: ctl("start"), Stop: ctl("stop"), Status: ctl("status"),
		Env: []string{svcctl.EnvRole + "=ctl", svcctl.EnvTag + "=" + tag},
	})
	if err != nil {
		t.Fatal(err)
	}
	return testService(t, tag, c, mode, addr...)
}

func newSystemdService(t *testing.T, mode string, addr ...string) svctest.Service {
	t.Helper()
	tag := svcctl.NewTag(t)
	f := svcctl.NewFakeSystemd(t)
	f.AddUnit(t, "app.service", svcctl.FakeUnit{Command: append([]string{svcctl.TestBinary(t), mode}, addr...), Env: svcctl.ServiceEnv(tag)})
	s, err := svcctl.NewSystemd(svcctl.SystemdConfig{
		Unit:       "app.service",
		Systemctl:  filepath.Join(f.Bin(), "systemctl"),
		Journalctl: filepath.Join(f.Bin(), "journalctl"),
	})
	if err != nil {
		t.Fatal(err)
	}
	return testService(t, tag, s, mode, addr...)
}

func TestHTTPCheckSuite(t *testing.T) {
	t.Parallel()
	svctest.Checker(t, svctest.CheckerFixture{New: func(t *testing.T) (svcctl.Checker, func(bool)) {
		var healthy atomic.Bool
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if !healthy.Load() {
				http.Error(w, "database is still starting up", http.StatusServiceUnavailable)
				return
			}
			w.Write([]byte("ok"))
		}))
		t.Cleanup(srv.Close)
		return svcctl.HTTPCheck{URL: srv.URL + "/+health", Timeout: 2 * time.Second, Backoff: 20 * time.Millisecond}, healthy.Store
	}})
}
