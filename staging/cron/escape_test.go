package cron_test

import (
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/restage/restage/internal/flock"
	"github.com/restage/restage/internal/proc"
	"github.com/restage/restage/internal/safefile"
	"github.com/restage/restage/staging"
	"github.com/restage/restage/staging/cron/crontest"
)

// escapeScript double-forks a sleep into a session of its own (setsid), out of the
// job's process group, writing its pid to pidFile; the sleep keeps the job's
// descriptors, the environment's lock among them. Then the job ends (or, with stay,
// runs on until its timeout).
func escapeScript(pidFile string, stay bool) []string {
	end := "sleep 0.3"
	if stay {
		end = "exec sleep 300"
	}
	return []string{"/bin/sh", "-c", fmt.Sprintf(
		`setsid /bin/sh -c 'sleep 300 & echo $! > %s' </dev/null >/dev/null 2>&1 & wait; %s`, pidFile, end)}
}

// A job's descendant that leaves the job's process group and session (setsid, a double
// fork) is killed with the job, whether the job ends or times out: it held the
// environment's lock shared, so every rebuild would wait cron_wait for it and fail. A
// child of the runner's process that no job started is left alone.
func TestJobDescendantThatEscapedTheGroupIsKilled(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("the runner finds escaped descendants through Linux's child subreaper")
	}
	e := newEnv(t)
	other := exec.Command("sleep", "300") // not a job's
	if err := other.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = other.Process.Kill(); _ = other.Wait() })

	ends := crontest.Job(t, "ends", "* * * * *")
	ends.Command = escapeScript(e.path("ends.pid"), false)
	stays := crontest.Job(t, "stays", "* * * * *")
	stays.Command = escapeScript(e.path("stays.pid"), true)
	stays.Timeout = staging.Duration{Duration: 2 * time.Second}
	cfg := e.config(ends, stays)
	cfg.KillDelay = 200 * time.Millisecond
	sum := runOnce(t, newRunner(t, cfg), at(0))
	if got := outcomes(sum); got != "ends=ok stays=timed-out" {
		t.Fatalf("%s (%v; %v)", got, sum.Jobs[0].Err, sum.Jobs[1].Err)
	}
	for _, name := range []string{"ends.pid", "stays.pid"} {
		data, err := os.ReadFile(e.path(name))
		if err != nil {
			t.Fatal(err)
		}
		pid, _ := strconv.Atoi(strings.TrimSpace(string(data)))
		// Killed and reaped by the time RunOnce returns: no process, not even a zombie.
		if st, err := proc.ReadStat(pid); err == nil {
			t.Errorf("%s: the escaped process %d is still there (state %c)", name, pid, st.State)
		}
	}
	// The environment's lock is free: a rebuild takes it at once.
	f, err := safefile.Open(e.lock, os.O_RDWR, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if ok, err := flock.Try(f, flock.Exclusive); err != nil || !ok {
		t.Errorf("the lock is still held (ok %v, err %v)", ok, err)
	}
	if v, _, _ := proc.Check(proc.ID{PID: other.Process.Pid}); v != proc.Alive {
		t.Errorf("a child of the runner's process that no job started was killed: %s", v)
	}
}
