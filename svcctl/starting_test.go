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
		if pid, err = strconv.Atoi(strings.TrimSpace(s)); err != nil {
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

// A service whose starter was killed between the spawn and the pidfile is found by the
// next controller: Status adopts it (running, its pidfile written), Stop stops it.
func TestProcessStarterKilledBeforePidfileStop(t *testing.T) {
	t.Parallel()
	tag, addr := newTag(t), testutil.FreeAddr(t)
	pidfile := filepath.Join(t.TempDir(), "app.pid")
	command := []string{testBinary(t), "http", addr}
	pid := crashStart(t, tag, pidfile, command)

	p, err := NewProcess(ProcessConfig{Command: command, Pidfile: pidfile})
	if err != nil {
		t.Fatal(err)
	}
	if st := requireState(t, p, StateRunning); st.PID != pid {
		t.Fatalf("Status pid %d, the service is %d", st.PID, pid)
	}
	b, err := os.ReadFile(pidfile)
	if err != nil || strings.Split(string(b), "\n")[0] != strconv.Itoa(pid) {
		t.Fatalf("pidfile %q, %v; want pid %d", b, err, pid)
	}
	if _, err := os.Stat(pidfile + ".starting"); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the starting record is still there: %v", err)
	}
	if err := p.Stop(t.Context()); err != nil {
		t.Fatal(err)
	}
	requireNotServing(t, "http://"+addr+"/health")
	requireNoOrphans(t, tag)
	requireState(t, p, StateStopped)
}

// The next Start (a fresh controller, as the next run) adopts such a service and leaves
// it running, instead of starting a second one; Stop with no Status first stops it.
func TestProcessStarterKilledBeforePidfileStart(t *testing.T) {
	t.Parallel()
	tag, addr := newTag(t), testutil.FreeAddr(t)
	pidfile := filepath.Join(t.TempDir(), "app.pid")
	command := []string{testBinary(t), "http", addr}
	pid := crashStart(t, tag, pidfile, command)

	p, err := NewProcess(ProcessConfig{Command: command, Pidfile: pidfile, StartWait: 200 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	if err := p.Start(t.Context()); err != nil {
		t.Fatal(err)
	}
	if pids := taggedProcesses(tag); len(pids) != 1 || pids[0] != pid {
		t.Fatalf("after Start, processes %v; want the adopted service %d alone", pids, pid)
	}
	requireServing(t, "http://"+addr+"/health")

	q, err := NewProcess(ProcessConfig{Command: command, Pidfile: pidfile})
	if err != nil {
		t.Fatal(err)
	}
	if err := q.Stop(t.Context()); err != nil {
		t.Fatal(err)
	}
	requireNoOrphans(t, tag)

	// Stop straight after a killed start, with no Status or Start first.
	crashStart(t, tag, pidfile, command)
	if err := q.Stop(t.Context()); err != nil {
		t.Fatal(err)
	}
	requireNoOrphans(t, tag)
	if _, err := os.Stat(pidfile + ".starting"); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the starting record is still there: %v", err)
	}
}

// When the service spawned by a killed start is gone but left a child (one that ignores
// SIGTERM), Status says so and Stop stops the child.
func TestProcessStarterKilledBeforePidfileLeftovers(t *testing.T) {
	t.Parallel()
	tag, addr := newTag(t), testutil.FreeAddr(t)
	pidfile := filepath.Join(t.TempDir(), "app.pid")
	command := []string{testBinary(t), "tree", addr}
	pid := crashStart(t, tag, pidfile, command)
	deadline := time.Now().Add(30 * time.Second)
	for len(taggedProcesses(tag)) < 2 {
		if time.Now().After(deadline) {
			t.Fatalf("the service's child did not start: %v", taggedProcesses(tag))
		}
		time.Sleep(20 * time.Millisecond)
	}
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	for slices.Contains(taggedProcesses(tag), pid) {
		if time.Now().After(deadline) {
			t.Fatalf("pid %d survived SIGKILL", pid)
		}
		time.Sleep(20 * time.Millisecond)
	}

	p, err := NewProcess(ProcessConfig{Command: command, Pidfile: pidfile, StopTimeout: 300 * time.Millisecond})
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
	requireNoOrphans(t, tag)
	st = requireState(t, p, StateStopped)
	if st.Detail != "no pidfile" {
		t.Errorf("Status after Stop: %+v", st)
	}
}
