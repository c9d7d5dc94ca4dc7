package svcctl

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/restage/restage/internal/testutil"
)

// TestProcessFilesArePrivate: the pidfile and the service log are 0600, also a log that
// existed with wider permissions.
func TestProcessFilesArePrivate(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	logFile := filepath.Join(dir, "app.log")
	if err := os.WriteFile(logFile, []byte("an older run\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	p, err := NewProcess(ProcessConfig{Command: sh("echo up; exec sleep 600"), Pidfile: filepath.Join(dir, "app.pid"),
		LogFile: logFile, StartWait: 100 * time.Millisecond, StopTimeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	if err := p.Start(t.Context()); err != nil {
		t.Fatal(err)
	}
	testutil.RequireMode(t, p.Pidfile(), 0o600)
	testutil.RequireMode(t, logFile, 0o600)
	if err := p.Stop(t.Context()); err != nil {
		t.Fatal(err)
	}
	fresh := filepath.Join(dir, "fresh.pid")
	q, err := NewProcess(ProcessConfig{Command: sh("exec sleep 600"), Pidfile: fresh, StartWait: 100 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	if err := q.Start(t.Context()); err != nil {
		t.Fatal(err)
	}
	testutil.RequireMode(t, fresh, 0o600)
	testutil.RequireMode(t, fresh+".log", 0o600)
	if err := q.Stop(t.Context()); err != nil {
		t.Fatal(err)
	}
}

// TestProcessNeverFollowsPlantedSymlinks: a symbolic link planted at the log file's path
// makes Start fail, and the file it points to stays as it was; one planted at the
// pidfile's path, pointing to another service's pidfile, makes Status and Stop fail
// instead of signalling that other service.
func TestProcessNeverFollowsPlantedSymlinks(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()

	t.Run("log", func(t *testing.T) {
		victim := filepath.Join(dir, "victim.conf")
		if err := os.WriteFile(victim, []byte("precious\n"), 0o644); err != nil {
			t.Fatal(err)
		}
		pidfile := filepath.Join(dir, "log-test.pid")
		if err := os.Symlink(victim, pidfile+".log"); err != nil {
			t.Fatal(err)
		}
		p, err := NewProcess(ProcessConfig{Command: sh("echo written; exec sleep 600"), Pidfile: pidfile, StartWait: 100 * time.Millisecond})
		if err != nil {
			t.Fatal(err)
		}
		err = p.Start(t.Context())
		t.Cleanup(func() { _ = p.Stop(t.Context()) })
		testutil.RequireErrorContains(t, err, "symbolic link")
		b, _ := os.ReadFile(victim)
		fi, _ := os.Stat(victim)
		if string(b) != "precious\n" || fi.Mode().Perm() != 0o644 {
			t.Fatalf("the symlink's target changed: %q, mode %v", b, fi.Mode().Perm())
		}
		if _, err := os.Stat(pidfile); !os.IsNotExist(err) {
			t.Fatalf("a service was started: pidfile %v", err)
		}
	})

	t.Run("pidfile", func(t *testing.T) {
		tag := newTag(t)
		other, err := NewProcess(ProcessConfig{Command: []string{"sleep", "600"}, Env: []string{envTag + "=" + tag},
			Pidfile: filepath.Join(dir, "other.pid"), StartWait: 100 * time.Millisecond})
		if err != nil {
			t.Fatal(err)
		}
		if err := other.Start(t.Context()); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = other.Stop(t.Context()) })
		before, _ := os.ReadFile(other.Pidfile())
		planted := filepath.Join(dir, "app.pid")
		if err := os.Symlink(other.Pidfile(), planted); err != nil {
			t.Fatal(err)
		}
		p, err := NewProcess(ProcessConfig{Command: []string{"sleep", "600"}, Pidfile: planted, StopTimeout: time.Second})
		if err != nil {
			t.Fatal(err)
		}
		_, serr := p.Status(t.Context())
		testutil.RequireErrorContains(t, serr, "symbolic link")
		testutil.RequireErrorContains(t, p.Stop(t.Context()), "symbolic link")
		testutil.RequireErrorContains(t, p.Start(t.Context()), "symbolic link")
		time.Sleep(200 * time.Millisecond)
		if st := requireState(t, other, StateRunning); st.PID <= 0 {
			t.Fatalf("other service: %+v", st)
		}
		if after, _ := os.ReadFile(other.Pidfile()); string(after) != string(before) || len(taggedProcesses(tag)) != 1 {
			t.Fatalf("the other service's pidfile or process was touched: %q -> %q", before, after)
		}
		if fi, err := os.Lstat(planted); err != nil || fi.Mode()&os.ModeSymlink == 0 || !strings.HasSuffix(mustReadlink(t, planted), "other.pid") {
			t.Fatalf("the planted link changed: %v %v", fi, err)
		}
	})
}

func mustReadlink(t testing.TB, path string) string {
	t.Helper()
	s, err := os.Readlink(path)
	if err != nil {
		t.Fatal(err)
	}
	return s
}
