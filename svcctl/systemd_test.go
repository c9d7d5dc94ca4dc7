package svcctl

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/restage/restage/internal/testutil"
)

// TestSystemdOnPATH uses the default program names, found on PATH.
func TestSystemdOnPATH(t *testing.T) {
	tag, addr := newTag(t), testutil.FreeAddr(t)
	f := newFakeSystemd(t)
	f.AddUnit(t, "app.service", fakeUnit{Command: []string{testBinary(t), "http", addr}, Env: serviceEnv(tag)})
	t.Setenv("PATH", f.Bin()+string(os.PathListSeparator)+os.Getenv("PATH"))
	s, err := NewSystemd(SystemdConfig{Unit: "app.service"})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Start(t.Context()); err != nil {
		t.Fatal(err)
	}
	requireServing(t, "http://"+addr+"/health")
	if err := s.Stop(t.Context()); err != nil {
		t.Fatal(err)
	}
	requireNoOrphans(t, tag)
	if calls := f.Calls(t); !strings.Contains(calls, "systemctl start app.service\n") {
		t.Fatalf("fake systemctl on PATH not used; calls:\n%s", calls)
	}
}

func TestSystemdFailure(t *testing.T) {
	t.Parallel()
	tag := newTag(t)
	f := newFakeSystemd(t)
	f.AddUnit(t, "broken.service", fakeUnit{Command: []string{testBinary(t), "exit"}, Env: serviceEnv(tag), StartWait: time.Minute})
	s, err := NewSystemd(SystemdConfig{Unit: "broken.service", Systemctl: filepath.Join(f.Bin(), "systemctl"), Journalctl: filepath.Join(f.Bin(), "journalctl")})
	if err != nil {
		t.Fatal(err)
	}
	err = s.Start(t.Context())
	testutil.RequireErrorContains(t, err, "broken.service", "ActiveState=failed", "Result=exit-code",
		"Job for broken.service failed", "journal:", "broken[1234]: fatal: cannot open config /etc/app/missing.conf")
	var cerr *CommandError
	if !errors.As(err, &cerr) || cerr.ExitCode != 1 {
		t.Fatalf("want systemctl's *CommandError with exit 1, got %#v", err)
	}
	if st := requireState(t, s, StateFailed); !strings.Contains(st.Detail, "Result=exit-code") {
		t.Fatalf("Detail %q", st.Detail)
	}
	if calls := f.Calls(t); !strings.Contains(calls, "journalctl -u broken.service -n 20 --no-pager\n") ||
		!strings.Contains(calls, "systemctl show -p LoadState,ActiveState,SubState,Result,MainPID broken.service\n") {
		t.Fatalf("calls:\n%s", calls)
	}
	requireNoOrphans(t, tag)

	// Without a journal (Journalctl "-"), the state is still there.
	s, _ = NewSystemd(SystemdConfig{Unit: "broken.service", Systemctl: filepath.Join(f.Bin(), "systemctl"), Journalctl: "-"})
	err = s.Start(t.Context())
	testutil.RequireErrorContains(t, err, "ActiveState=failed")
	if strings.Contains(err.Error(), "journal:") {
		t.Fatalf("journal read although disabled: %v", err)
	}
}

func TestSystemdUnitNotFound(t *testing.T) {
	t.Parallel()
	f := newFakeSystemd(t)
	s, err := NewSystemd(SystemdConfig{Unit: "nope.service", Systemctl: filepath.Join(f.Bin(), "systemctl"), Journalctl: filepath.Join(f.Bin(), "journalctl")})
	if err != nil {
		t.Fatal(err)
	}
	err = s.Start(t.Context())
	requireIs(t, err, ErrNotFound)
	testutil.RequireErrorContains(t, err, "Unit nope.service not found")
	_, err = s.Status(t.Context())
	requireIs(t, err, ErrNotFound)

	// A systemctl that does not exist.
	s, _ = NewSystemd(SystemdConfig{Unit: "app.service", Systemctl: filepath.Join(t.TempDir(), "systemctl")})
	_, err = s.Status(t.Context())
	requireIs(t, err, ErrNotFound)
	testutil.RequireErrorContains(t, err, "systemctl")
}

func TestSystemdConfig(t *testing.T) {
	t.Parallel()
	for _, unit := range []string{"", "--now"} {
		if _, err := NewSystemd(SystemdConfig{Unit: unit}); err == nil {
			t.Fatalf("unit %q accepted", unit)
		}
	}
}
