package svcctl

import (
	"bufio"
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/restage/restage/internal/proc"
	"github.com/restage/restage/internal/testutil"
)

// crashStart starts the service "mode [arg]" from a helper that is killed -9 (as restage
// may be) after it spawned the service and before it wrote the pidfile. It returns the
// service's pid, once the kill is done. Before the kill, a controller's Status says a
// start is under way and changes nothing.
func crashStart(t *testing.T, tag, pidfile string, command []string) int {
	t.Helper()
	sc, _ := json.Marshal(starterConfig{Command: command, Env: serviceEnv(tag), Pidfile: pidfile})
	starter := exec.Command(testBinary(t), string(sc))
	starter.Env = append(os.Environ(), envRole+"=crash-starter", envTag+"="+tag)
	out, err := starter.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := starter.Start(); err != nil {
		t.Fatal(err)
	}
	line := make(chan string, 1)
	go func() {
		s, _ := bufio.NewReader(out).ReadString('\n')
		line <- s
	}()
	var pid int
	select {
	case s := <-line:
		if pid, err = strconv.Atoi(strings.TrimSpace(s)); err != nil || pid <= 0 { // 0 would signal the whole process group
			_ = starter.Process.Kill()
			_ = starter.Wait()
			t.Fatalf("crash-starter printed %q", s)
		}
	case <-time.After(30 * time.Second):
		_ = starter.Process.Kill()
		_ = starter.Wait()
		t.Fatal("crash-starter printed no pid")
	}

	// A start under way (its starter alive) is left alone by another controller.
	p, err := NewProcess(ProcessConfig{Command: command, Pidfile: pidfile})
	if err != nil {
		t.Fatal(err)
	}
	st, err := p.Status(t.Context())
	if err != nil || st.State != StateStopped || !strings.Contains(st.Detail, "pid "+strconv.Itoa(starter.Process.Pid)+" is starting the service") {
		t.Errorf("Status while another program starts the service: %+v, %v", st, err)
	}

	if err := starter.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	_ = starter.Wait()
	if _, err := os.Stat(pidfile); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("a pidfile was written before the kill: %v", err)
	}
	if _, err := os.Stat(pidfile + ".starting"); err != nil {
		t.Fatalf("no starting record: %v", err)
	}
	if st, err := proc.ReadStat(pid); err != nil || st.Dead() {
		t.Fatalf("the service (pid %d) does not run after its starter's kill: %+v, %v", pid, st, err)
	}
	return pid
}

// crashed is a service whose starter was killed -9 between the spawn and the pidfile.
type crashed struct {
	tag, addr, pidfile string
	command            []string
	pid                int
}

// crashStarted runs the test binary's service mode ("http" or "tree") on a free address
// through crashStart.
func crashStarted(t *testing.T, mode string) crashed {
	t.Helper()
	c := crashed{tag: newTag(t), addr: testutil.FreeAddr(t), pidfile: filepath.Join(t.TempDir(), "app.pid")}
	c.command = []string{testBinary(t), mode, c.addr}
	c.pid = crashStart(t, c.tag, c.pidfile, c.command)
	return c
}

// A service whose starter was killed between the spawn and the pidfile is found by the
// next controller: Status adopts it (running, its pidfile written), Stop stops it.
func TestProcessStarterKilledBeforePidfileStop(t *testing.T) {
	t.Parallel()
	c := crashStarted(t, "http")

	p, err := NewProcess(ProcessConfig{Command: c.command, Pidfile: c.pidfile})
	if err != nil {
		t.Fatal(err)
	}
	if st := requireState(t, p, StateRunning); st.PID != c.pid {
		t.Fatalf("Status pid %d, the service is %d", st.PID, c.pid)
	}
	b, err := os.ReadFile(c.pidfile)
	if err != nil || strings.Split(string(b), "\n")[0] != strconv.Itoa(c.pid) {
		t.Fatalf("pidfile %q, %v; want pid %d", b, err, c.pid)
	}
	if _, err := os.Stat(c.pidfile + ".starting"); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the starting record is still there: %v", err)
	}
	if err := p.Stop(t.Context()); err != nil {
		t.Fatal(err)
	}
	requireNotServing(t, "http://"+c.addr+"/health")
	requireNoOrphans(t, c.tag)
	requireState(t, p, StateStopped)
}

// The next Start (a fresh controller, as the next run) adopts such a service and leaves
// it running, instead of starting a second one; Stop with no Status first stops it.
func TestProcessStarterKilledBeforePidfileStart(t *testing.T) {
	t.Parallel()
	c := crashStarted(t, "http")

	p, err := NewProcess(ProcessConfig{Command: c.command, Pidfile: c.pidfile, StartWait: 200 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	if err := p.Start(t.Context()); err != nil {
		t.Fatal(err)
	}
	if pids := taggedProcesses(c.tag); len(pids) != 1 || pids[0] != c.pid {
		t.Fatalf("after Start, processes %v; want the adopted service %d alone", pids, c.pid)
	}
	requireServing(t, "http://"+c.addr+"/health")

	q, err := NewProcess(ProcessConfig{Command: c.command, Pidfile: c.pidfile})
	if err != nil {
		t.Fatal(err)
	}
	if err := q.Stop(t.Context()); err != nil {
		t.Fatal(err)
	}
	requireNoOrphans(t, c.tag)

	// Stop straight after a killed start, with no Status or Start first.
	crashStart(t, c.tag, c.pidfile, c.command)
	if err := q.Stop(t.Context()); err != nil {
		t.Fatal(err)
	}
	requireNoOrphans(t, c.tag)
	if _, err := os.Stat(c.pidfile + ".starting"); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the starting record is still there: %v", err)
	}
}

// When the service spawned by a killed start is gone but left a child (one that ignores
// SIGTERM), Status says so and Stop stops the child.
func TestProcessStarterKilledBeforePidfileLeftovers(t *testing.T) {
	t.Parallel()
	c := crashStarted(t, "tree")
	deadline := time.Now().Add(30 * time.Second)
	for len(taggedProcesses(c.tag)) < 2 {
		if time.Now().After(deadline) {
			t.Fatalf("the service's child did not start: %v", taggedProcesses(c.tag))
		}
		time.Sleep(20 * time.Millisecond)
	}
	if err := syscall.Kill(c.pid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	for slices.Contains(taggedProcesses(c.tag), c.pid) {
		if time.Now().After(deadline) {
			t.Fatalf("pid %d survived SIGKILL", c.pid)
		}
		time.Sleep(20 * time.Millisecond)
	}

	p, err := NewProcess(ProcessConfig{Command: c.command, Pidfile: c.pidfile, StopTimeout: 300 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	st := requireState(t, p, StateStopped)
	if !strings.Contains(st.Detail, "are left of a start whose starter") {
		t.Errorf("Status detail %q does not name the leftovers", st.Detail)
	}
	if err := p.Stop(t.Context()); err != nil {
		t.Fatal(err)
	}
	requireNoOrphans(t, c.tag)
	st = requireState(t, p, StateStopped)
	if st.Detail != "no pidfile" {
		t.Errorf("Status after Stop: %+v", st)
	}
}
