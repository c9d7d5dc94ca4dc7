package dbrestore

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"syscall"
	"testing"
	"time"
)

// procHelperEnv names the program TestMain runs through proc, instead of the tests.
const procHelperEnv = "RESTAGE_TEST_PROC_HELPER"

// A pg_dump (or pg_restore) whose restage is killed with SIGKILL (kill -9, the OOM
// killer, timeout -s KILL) dies with it: left alone on production it held its locks
// and its snapshot for the rest of the dump, beside the next night's.
func TestToolDiesWithRestage(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("the kernel's parent-death signal is Linux's")
	}
	dir := t.TempDir()
	tool := filepath.Join(dir, "pg_dump")
	if err := os.WriteFile(tool, []byte("#!/bin/sh\necho $$ > \"$1.tmp\" && mv \"$1.tmp\" \"$1\"\nexec sleep 600\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	pidFile := filepath.Join(dir, "pid")
	restage := exec.Command(os.Args[0], pidFile)
	restage.Env = append(os.Environ(), procHelperEnv+"="+tool)
	if err := restage.Start(); err != nil {
		t.Fatal(err)
	}
	var pid int
	for deadline := time.Now().Add(time.Minute); pid == 0; time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			_ = restage.Process.Kill()
			t.Fatal("the tool did not start")
		}
		data, _ := os.ReadFile(pidFile)
		pid, _ = strconv.Atoi(string(bytes.TrimSpace(data)))
	}
	t.Cleanup(func() { _ = syscall.Kill(pid, syscall.SIGKILL) }) // the tool this test started
	if err := restage.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	_ = restage.Wait()
	for deadline := time.Now().Add(5 * time.Second); alive(pid); time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("the tool (pid %d) still runs 5s after its restage was killed", pid)
		}
	}
}

// alive says whether pid runs (a zombie does not).
func alive(pid int) bool {
	data, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return false
	}
	i := bytes.LastIndexByte(data, ')')
	return i > 0 && i+2 < len(data) && data[i+2] != 'Z'
}
