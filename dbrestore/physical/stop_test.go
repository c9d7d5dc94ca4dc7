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
