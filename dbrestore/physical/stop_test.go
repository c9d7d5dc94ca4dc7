package physical

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// awaitExit returns once postmaster.pid is gone, not while its server runs; a server that
// died leaving the file is an error, not a wait until the timeout.
func TestAwaitExit(t *testing.T) {
	data := t.TempDir()
	pidFile := filepath.Join(data, "postmaster.pid")
	server := exec.Command("sleep", "60")
	if err := server.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { server.Process.Kill(); server.Wait() })
	if err := os.WriteFile(pidFile, fmt.Appendf(nil, "%d\n%s\n", server.Process.Pid, data), 0o600); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- awaitExit(context.Background(), data) }()
	select {
	case err := <-done:
		t.Fatalf("returned while the server runs: %v", err)
	case <-time.After(200 * time.Millisecond):
	}
	// The server exits and removes its postmaster.pid, as PostgreSQL does.
	os.Remove(pidFile)
	server.Process.Kill()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("still waiting after postmaster.pid went")
	}

	// A server that died without removing the file.
	if err := os.WriteFile(pidFile, fmt.Appendf(nil, "%d\n%s\n", server.Process.Pid, data), 0o600); err != nil {
		t.Fatal(err)
	}
	server.Wait()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := awaitExit(ctx, data); err == nil || !strings.Contains(err.Error(), "exited and left") {
		t.Fatalf("a dead server's pid file: %v", err)
	}
}

// Once pg_ctl has reported the server started, awaitPrimary keeps waiting for the end of
// recovery only while that server lives: one that died ends the wait with an error at
// once, not at the cluster timeout.
func TestAwaitPrimaryServerDied(t *testing.T) {
	c := newTestClusters(t)
	s := &Slot{Name: "a", Dir: t.TempDir()}
	s.Data = filepath.Join(s.Dir, "data")
	if err := os.Mkdir(s.Data, 0o700); err != nil {
		t.Fatal(err)
	}
	server := exec.Command("sleep", "60")
	if err := server.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { server.Process.Kill(); server.Wait() })
	// A server in recovery that accepts connections (hot standby) on a port nobody answers.
	pidFile := fmt.Sprintf("%d\n%s\n0\n%d\n%s\n127.0.0.1\n0\nstandby\n", server.Process.Pid, s.Data, c.cfg.SidePort, s.Dir)
	if err := os.WriteFile(filepath.Join(s.Data, "postmaster.pid"), []byte(pidFile), 0o600); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	started := make(chan error, 1)
	started <- nil // pg_ctl start -w succeeded
	done := make(chan error, 1)
	go func() { done <- c.awaitPrimary(ctx, s, c.cfg.SidePort, started) }()
	select {
	case err := <-done:
		t.Fatalf("returned while the server runs: %v", err)
	case <-time.After(300 * time.Millisecond):
	}
	server.Process.Kill() // kill -9: postmaster.pid stays
	server.Wait()
	select {
	case err := <-done:
		if err == nil || !strings.Contains(err.Error(), "exited before the end of its recovery") {
			t.Fatalf("after the server died: %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("still waiting 5s after the server died")
	}
}
