package proc

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"
	"time"
)

func TestGroupReadsCountsWhatTheGroupRead(t *testing.T) {
	file := filepath.Join(t.TempDir(), "data")
	const size = 300_000
	if err := os.WriteFile(file, bytes.Repeat([]byte("y"), size), 0o600); err != nil {
		t.Fatal(err)
	}
	// The shell reads the file itself, then waits on a child: the group's reads are
	// at least the file's size.
	cmd := exec.Command("bash", "-c", `read -r -N 300000 x < "$1"; sleep 600`, "bash", file)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		_ = cmd.Wait()
	})
	g := NewGroupReads(cmd.Process.Pid)
	deadline := time.Now().Add(10 * time.Second)
	var got int64
	for time.Now().Before(deadline) {
		var err error
		if got, err = g.Sample(); err != nil {
			t.Fatal(err)
		}
		if got >= size {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if got < size {
		t.Fatalf("group read %d bytes, want at least %d", got, size)
	}
	if again, _ := g.Sample(); again < got {
		t.Errorf("second sample %d < first %d: the count went back", again, got)
	}
	if _, err := ReadChars(1 << 30); err != ErrNoProcess {
		t.Errorf("ReadChars of no process: %v, want ErrNoProcess", err)
	}
}
