package svcctl

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// rawDescriptor opens a file without close-on-exec, as a descriptor restage inherited
// from its parent (a flock(1) wrapper's lock) is, and returns its number and path.
func rawDescriptor(t *testing.T) (int, string) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "held.lock")
	if err := os.WriteFile(path, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	fd, err := syscall.Open(path, syscall.O_RDONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = syscall.Close(fd) })
	return fd, path
}

// The service (process type) and the commands of the command type get no descriptor
// restage holds without close-on-exec: a lock's, held by a service that runs for
// weeks, would hold the lock that long.
func TestServiceGetsNoInheritedDescriptor(t *testing.T) {
	fd, path := rawDescriptor(t)
	show := fmt.Sprintf("readlink /proc/$$/fd/%d || echo no-descriptor-%d", fd, fd)

	p := newTestProcess(t, newTag(t), ProcessConfig{Command: []string{"/bin/sh", "-c", show + "; echo shown; exec sleep 60"}, StartWait: 100 * time.Millisecond})
	if err := p.Start(t.Context()); err != nil {
		t.Fatal(err)
	}
	waitForLog(t, p, "shown")
	if b, _ := os.ReadFile(p.LogFile()); strings.Contains(string(b), path) {
		t.Errorf("the service holds descriptor %d (%s): %s", fd, path, b)
	}

	c, err := NewCommand(CommandConfig{Start: []string{"true"}, Stop: []string{"true"}, Status: []string{"/bin/sh", "-c", show}})
	if err != nil {
		t.Fatal(err)
	}
	st, err := c.Status(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(st.Detail, "no-descriptor") {
		t.Errorf("the status command holds descriptor %d: %s", fd, st.Detail)
	}
}
