package svcctl

import (
	"fmt"
	"net"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/restage/restage/internal/testutil"
)

// The service (process type) and the commands of the command type get no descriptor
// restage holds without close-on-exec: a lock's, held by a service that runs for
// weeks, would hold the lock that long.
func TestServiceGetsNoInheritedDescriptor(t *testing.T) {
	fd, path := testutil.RawDescriptor(t)
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

// A health URL answered by another program listening on the service's port (here this
// test process) does not make the service healthy: the process type checks that the
// sockets listening on the URL's port are its service's.
func TestHealthAnsweredByAnotherProcessIsNotHealthy(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write([]byte("ok")) })}
	go func() { _ = srv.Serve(l) }()
	t.Cleanup(func() { _ = srv.Close() })
	url := "http://" + l.Addr().String() + "/health"

	// The service cannot listen on the port (taken) and sleeps instead.
	tag := newTag(t)
	p := newTestProcess(t, tag, ProcessConfig{Command: []string{"sleep", "60"}, StartWait: 100 * time.Millisecond})
	err = StartHealthy(t.Context(), p, HTTPCheck{URL: url, Timeout: 5 * time.Second})
	requireIs(t, err, ErrUnhealthy)
	testutil.RequireErrorContains(t, err, fmt.Sprintf("pid %d", os.Getpid()), "not by the service")

	// The service's own listener passes.
	addr := testutil.FreeAddr(t)
	q := newTestProcess(t, newTag(t), ProcessConfig{Command: []string{testBinary(t), "http", addr}, StartWait: 100 * time.Millisecond})
	if err := StartHealthy(t.Context(), q, HTTPCheck{URL: "http://" + addr + "/health", Timeout: time.Minute}); err != nil {
		t.Fatal(err)
	}
}
