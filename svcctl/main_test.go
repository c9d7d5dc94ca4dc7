package svcctl

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/restage/restage/internal/proc"
)

// The test binary plays several parts, chosen by its name or by envRole:
//   - "service": the service under control (modes below);
//   - "starter": starts a service with a Process controller, then exits;
//   - "crash-starter": starts one, prints its pid and blocks before writing the pidfile;
//   - "ctl": an LSB-style init script (start|stop|status) built on Process, for Command;
//   - named "systemctl" / "journalctl" (a symlink): a fake systemd that runs real processes.
const (
	envRole = "RESTAGE_SVCCTL_ROLE"
	envTag  = "RESTAGE_SVCCTL_TAG" // marks every process a test starts, to find orphans
)

func TestMain(m *testing.M) {
	switch name := filepath.Base(os.Args[0]); name {
	case "systemctl", "journalctl":
		os.Exit(runFake(name, os.Args[1:]))
	}
	switch os.Getenv(envRole) {
	case "service":
		os.Exit(runService(os.Args[1:]))
	case "starter":
		os.Exit(runStarter(os.Args[1:]))
	case "crash-starter":
		os.Exit(runCrashStarter(os.Args[1:]))
	case "ctl":
		os.Exit(runCtl(os.Args[1:]))
	}
	os.Exit(m.Run())
}

// runService is the service. Modes:
//
//	http ADDR      serve /health (200) and /fail (503) on ADDR; exit 0 on SIGTERM
//	exit           complain on stderr and exit 3 at once
//	ignore-term    print a line for every SIGTERM and carry on
//	tree ADDR      start a child that ignores SIGTERM, then serve like http
//	escape ADDR    like tree, but the child leads a session of its own (setsid)
//	daemonize      start such a child, then exit 0 (a program that daemonizes itself)
//	die-later D    run for duration D, then fail with exit 1
func runService(args []string) int {
	if len(args) == 0 {
		fmt.Fprintln(os.Stderr, "service: mode required")
		return 2
	}
	switch args[0] {
	case "exit":
		fmt.Fprintln(os.Stderr, "fatal: cannot open config /etc/app/missing.conf")
		return 3
	case "ignore-term":
		sig := make(chan os.Signal, 1)
		signal.Notify(sig, syscall.SIGTERM)
		fmt.Println("ignoring SIGTERM from now on")
		for range sig {
			fmt.Println("got SIGTERM, ignoring it")
		}
		return 0
	case "die-later":
		d, _ := time.ParseDuration(args[1])
		fmt.Println("up for", d)
		time.Sleep(d)
		fmt.Fprintln(os.Stderr, "panic: lost connection to the database")
		return 1
	case "tree", "escape", "daemonize":
		self, _ := os.Executable()
		cmd := exec.Command(self, "ignore-term")
		cmd.Stdout, cmd.Stderr = os.Stdout, os.Stderr
		cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: args[0] != "tree"}
		if err := cmd.Start(); err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		fmt.Println("child", cmd.Process.Pid)
		if args[0] == "daemonize" {
			return 0
		}
		return serveHTTP(args[1])
	case "http":
		return serveHTTP(args[1])
	}
	fmt.Fprintln(os.Stderr, "service: unknown mode", args[0])
	return 2
}

func serveHTTP(addr string) int {
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGTERM)
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		fmt.Fprintln(os.Stderr, "listen:", err)
		return 1
	}
	fmt.Println("listening on", addr)
	mux := http.NewServeMux()
	mux.HandleFunc("/health", func(w http.ResponseWriter, r *http.Request) { fmt.Fprintln(w, "ok") })
	mux.HandleFunc("/fail", func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, "database is still starting up", http.StatusServiceUnavailable)
	})
	go func() { _ = http.Serve(ln, mux) }()
	<-sig
	fmt.Println("got SIGTERM, exiting")
	return 0
}

// starterConfig is what runStarter is told, as JSON in its first argument.
type starterConfig struct {
	Command []string
	Env     []string
	Pidfile string
}

// starterProcess is the Process controller a starter is told of in its first argument;
// when it cannot be made, the reason is printed and code is the starter's exit code.
func starterProcess(args []string) (p *Process, code int) {
	var sc starterConfig
	if err := json.Unmarshal([]byte(args[0]), &sc); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return nil, 2
	}
	p, err := NewProcess(ProcessConfig{Command: sc.Command, Env: sc.Env, Pidfile: sc.Pidfile, StartWait: 200 * time.Millisecond})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return nil, 1
	}
	return p, 0
}

// runStarter starts a service with a Process controller and exits, printing its pid.
func runStarter(args []string) int {
	p, code := starterProcess(args)
	if p == nil {
		return code
	}
	if err := p.Start(context.Background()); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	st, err := p.Status(context.Background())
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	fmt.Println(st.PID)
	return 0
}

// runCrashStarter starts a service with a Process controller, prints the service's pid
// once it is spawned and then blocks, before the pidfile is written, until it is killed.
func runCrashStarter(args []string) int {
	p, code := starterProcess(args)
	if p == nil {
		return code
	}
	p.afterSpawn = func(pid int) {
		fmt.Println(pid)
		select {}
	}
	err := p.Start(context.Background())
	fmt.Fprintln(os.Stderr, "Start returned:", err)
	return 1
}

// runCtl is an init script: ctl start|stop|status PIDFILE MODE [ARG], with LSB status
// codes, controlling the service "MODE [ARG]" (runService) through a Process.
func runCtl(args []string) int {
	if len(args) < 3 {
		fmt.Fprintln(os.Stderr, "usage: ctl start|stop|status PIDFILE MODE [ARG]")
		return 2
	}
	self, _ := os.Executable()
	p, err := NewProcess(ProcessConfig{
		Command: append([]string{self}, args[2:]...), Env: serviceEnv(os.Getenv(envTag)),
		Pidfile: args[1], StartWait: 200 * time.Millisecond, StopTimeout: 5 * time.Second,
	})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	ctx := context.Background()
	switch args[0] {
	case "start":
		err = p.Start(ctx)
	case "stop":
		err = p.Stop(ctx)
	case "status":
		st, err := p.Status(ctx)
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 4
		}
		fmt.Println(st.State, st.Detail)
		if st.State == StateRunning {
			return 0
		}
		return 3
	default:
		err = fmt.Errorf("unknown action %q", args[0])
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	return 0
}

// ---- helpers

func testBinary(t testing.TB) string {
	t.Helper()
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	return self
}

// newTag returns a tag for the processes of one test; at the end of the test no process
// with this tag may remain (checked, then killed so that a failure leaves nothing behind).
func newTag(t testing.TB) string {
	t.Helper()
	tag := fmt.Sprintf("%s-%d-%d", strings.ReplaceAll(t.Name(), "/", "_"), os.Getpid(), time.Now().UnixNano())
	t.Cleanup(func() {
		for _, pid := range taggedProcesses(tag) {
			_ = syscall.Kill(pid, syscall.SIGKILL)
		}
	})
	return tag
}

// serviceEnv is the environment of a service process in a test.
func serviceEnv(tag string) []string {
	return []string{envRole + "=service", envTag + "=" + tag}
}

// taggedProcesses lists the living processes whose environment carries tag.
func taggedProcesses(tag string) []int {
	want := []byte(envTag + "=" + tag + "\x00")
	ents, _ := os.ReadDir("/proc")
	var pids []int
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid == os.Getpid() {
			continue
		}
		st, err := proc.ReadStat(pid)
		if err != nil || st.Dead() {
			continue
		}
		env, err := os.ReadFile(filepath.Join("/proc", e.Name(), "environ"))
		if err != nil {
			continue
		}
		if strings.Contains(string(env)+"\x00", string(want)) {
			pids = append(pids, pid)
		}
	}
	return pids
}

// requireNoOrphans fails unless every process tagged tag is gone (waiting a little for
// processes that are exiting on their own).
func requireNoOrphans(t testing.TB, tag string) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for {
		pids := taggedProcesses(tag)
		if len(pids) == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("orphans left behind: pids %v", pids)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// requireState fails unless c reports state.
func requireState(t testing.TB, c Controller, want State) Status {
	t.Helper()
	st, err := c.Status(t.Context())
	if err != nil {
		t.Fatalf("Status: %v", err)
	}
	if st.State != want {
		t.Fatalf("Status = %+v, want %s", st, want)
	}
	return st
}

// requireServing fails unless url answers 2xx within a generous deadline.
func requireServing(t testing.TB, url string) {
	t.Helper()
	if err := (HTTPCheck{URL: url, Timeout: 60 * time.Second}).Wait(t.Context()); err != nil {
		t.Fatal(err)
	}
}

// requireNotServing fails unless url gives no 2xx answer (polling a little: a container's
// port proxy may linger).
func requireNotServing(t testing.TB, url string) {
	t.Helper()
	client := &http.Client{Timeout: 2 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	deadline := time.Now().Add(15 * time.Second)
	for {
		resp, err := client.Get(url)
		if err != nil {
			return
		}
		resp.Body.Close()
		if resp.StatusCode/100 != 2 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s still answers %s after Stop", url, resp.Status)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func requireIs(t testing.TB, err, target error) {
	t.Helper()
	if !errors.Is(err, target) {
		t.Fatalf("error %v is not %v", err, target)
	}
}
