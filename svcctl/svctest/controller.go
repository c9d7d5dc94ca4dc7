package svctest

import (
	"context"
	"errors"
	"net/http"
	"slices"
	"testing"
	"time"

	"github.com/restage/restage/internal/testutil"
	"github.com/restage/restage/svcctl"
)

// Fixture makes the services the Controller suite runs against. New is required; the
// other fields widen what the suite checks, and a check whose field is not set is
// skipped with the reason.
type Fixture struct {
	// New returns a fresh Service: a stopped service that, once started, keeps running
	// until it is stopped (required). Every check calls it once; it releases what it made
	// with t.Cleanup (stopping the service there too, in case a check failed halfway).
	New func(t *testing.T) Service
	// Exiting returns a fresh Service whose service exits at once whenever it is started
	// (a bad config, a missing database); nil skips the check of a failing start.
	Exiting func(t *testing.T) Service
	// AnyStartError lets Start of an Exiting service fail with any error. False (the
	// default): the error must wrap svcctl.ErrExited, as it does with drivers that watch
	// the service start (svcctl.Process, docker.Container). Set it for a driver that
	// only relays a service manager's failure (systemctl start, an init script).
	AnyStartError bool
	// PID says Status reports the main process's pid while the service runs; the suite
	// then checks it is set and that Start of a running service keeps it.
	PID bool
	// Settle bounds how long the service's own answer (Service.Running) may lag behind
	// Start, Stop and Service.Kill, e.g. a program that listens a moment after its start,
	// a container's port proxy that lingers; 0: 15s.
	Settle time.Duration
}

// Service is one controller under test, with ways to reach the service behind it.
type Service struct {
	// Controller controls the service (required).
	Controller svcctl.Controller
	// Running asks the service itself, not Controller, whether it runs (required): an
	// HTTP probe (HTTPProbe), a process lookup, a fake's own state. The suite compares it
	// with what Status says.
	Running func(ctx context.Context) bool
	// Kill, if set, makes the service die behind the controller's back (SIGKILL to its
	// processes, docker kill); the suite then checks that Status notices and that Start
	// brings it back. Nil skips that check.
	Kill func(t *testing.T)
	// Health, if set, passes once the service serves; the suite then checks
	// svcctl.StartHealthy with it. Nil skips that check.
	Health svcctl.Checker
}

// Controller runs the checks every svcctl.Controller must pass, each as a subtest with a
// fresh service from f.New: Start, Stop and Status round trips that agree with the
// service itself; Start of a running service and Stop of a stopped one are no-ops; Status
// notices a service that died; a service that exits at once makes Start fail; a done
// context is honoured; StartHealthy works; Close (for an io.Closer) can be called twice.
//
// The checks run one after another; a caller that has several drivers runs each in its
// own (parallel) subtest.
func Controller(t *testing.T, f Fixture) {
	t.Helper()
	if f.New == nil {
		t.Fatal("svctest: Fixture.New is required")
	}
	if f.Settle <= 0 {
		f.Settle = 15 * time.Second
	}
	s := suite{f: f}
	t.Run("StartStopStatus", s.startStopStatus)
	t.Run("StartWhenRunning", s.startWhenRunning)
	t.Run("StopWhenStopped", s.stopWhenStopped)
	t.Run("DiesBehindItsBack", s.diesBehindItsBack)
	t.Run("ExitsAtOnce", s.exitsAtOnce)
	t.Run("CanceledContext", s.canceledContext)
	t.Run("StartHealthy", s.startHealthy)
	t.Run("Close", s.close)
}

type suite struct{ f Fixture }

// service makes a fresh service with newService and checks the fixture filled it in.
func (s suite) service(t *testing.T, newService func(t *testing.T) Service) Service {
	t.Helper()
	svc := newService(t)
	if svc.Controller == nil || svc.Running == nil {
		t.Fatal("svctest: the fixture's Service needs Controller and Running")
	}
	return svc
}

func (s suite) startStopStatus(t *testing.T) {
	svc := s.service(t, s.f.New)
	c, ctx := svc.Controller, t.Context()
	requireState(t, c, svcctl.StateStopped)
	s.requireRunning(t, svc, false)
	for round := 1; round <= 2; round++ { // the second round: a restart after a stop
		if err := c.Start(ctx); err != nil {
			t.Fatalf("round %d: Start: %v", round, err)
		}
		st := requireState(t, c, svcctl.StateRunning)
		if s.f.PID && st.PID <= 0 {
			t.Fatalf("round %d: Status after Start has no pid: %+v", round, st)
		}
		s.requireRunning(t, svc, true)
		requireState(t, c, svcctl.StateRunning)
		if err := c.Stop(ctx); err != nil {
			t.Fatalf("round %d: Stop: %v", round, err)
		}
		requireState(t, c, svcctl.StateStopped)
		s.requireRunning(t, svc, false)
	}
}

func (s suite) startWhenRunning(t *testing.T) {
	svc := s.service(t, s.f.New)
	c, ctx := svc.Controller, t.Context()
	if err := c.Start(ctx); err != nil {
		t.Fatalf("Start: %v", err)
	}
	first := requireState(t, c, svcctl.StateRunning)
	s.requireRunning(t, svc, true)
	if err := c.Start(ctx); err != nil {
		t.Fatalf("Start of a running service: %v", err)
	}
	again := requireState(t, c, svcctl.StateRunning)
	if s.f.PID && again.PID != first.PID {
		t.Fatalf("Start of a running service replaced it: pid %d, then %d", first.PID, again.PID)
	}
	s.requireRunning(t, svc, true)
	if err := c.Stop(ctx); err != nil {
		t.Fatalf("Stop: %v", err)
	}
	requireState(t, c, svcctl.StateStopped)
}

func (s suite) stopWhenStopped(t *testing.T) {
	svc := s.service(t, s.f.New)
	c, ctx := svc.Controller, t.Context()
	if err := c.Stop(ctx); err != nil {
		t.Fatalf("Stop of a service never started: %v", err)
	}
	requireState(t, c, svcctl.StateStopped)
	if err := c.Start(ctx); err != nil {
		t.Fatalf("Start: %v", err)
	}
	s.requireRunning(t, svc, true)
	if err := c.Stop(ctx); err != nil {
		t.Fatalf("Stop: %v", err)
	}
	if err := c.Stop(ctx); err != nil {
		t.Fatalf("Stop of a stopped service: %v", err)
	}
	requireState(t, c, svcctl.StateStopped)
	s.requireRunning(t, svc, false)
}

func (s suite) diesBehindItsBack(t *testing.T) {
	svc := s.service(t, s.f.New)
	if svc.Kill == nil {
		t.Skip("the fixture's Service has no Kill")
	}
	c, ctx := svc.Controller, t.Context()
	if err := c.Start(ctx); err != nil {
		t.Fatalf("Start: %v", err)
	}
	s.requireRunning(t, svc, true)
	svc.Kill(t)
	s.requireRunning(t, svc, false)
	// The controller may take a moment to see it (a process being reaped, an engine
	// noticing its container's end), never longer than Settle.
	deadline := time.Now().Add(s.f.Settle)
	for {
		st, err := c.Status(ctx)
		if err != nil {
			t.Fatalf("Status of a killed service: %v", err)
		}
		if st.State != svcctl.StateRunning {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("Status still says %+v %s after the service was killed", st, s.f.Settle)
		}
		time.Sleep(20 * time.Millisecond)
	}
	if err := c.Start(ctx); err != nil {
		t.Fatalf("Start after the service died: %v", err)
	}
	requireState(t, c, svcctl.StateRunning)
	s.requireRunning(t, svc, true)
	if err := c.Stop(ctx); err != nil {
		t.Fatalf("Stop: %v", err)
	}
	requireState(t, c, svcctl.StateStopped)
}

func (s suite) exitsAtOnce(t *testing.T) {
	if s.f.Exiting == nil {
		t.Skip("the fixture has no Exiting service")
	}
	svc := s.service(t, s.f.Exiting)
	c, ctx := svc.Controller, t.Context()
	err := c.Start(ctx)
	if err == nil {
		t.Fatal("Start of a service that exits at once succeeded")
	}
	if !s.f.AnyStartError && !errors.Is(err, svcctl.ErrExited) {
		t.Fatalf("Start of a service that exits at once: %v; want an error wrapping svcctl.ErrExited", err)
	}
	requireState(t, c, svcctl.StateStopped, svcctl.StateFailed)
	s.requireRunning(t, svc, false)
	if err := c.Stop(ctx); err != nil {
		t.Fatalf("Stop after a failed start: %v", err)
	}
	requireState(t, c, svcctl.StateStopped, svcctl.StateFailed)
}

// canceledContext: Start and Stop given a done context return its error and change
// nothing; Status then fails with it or tells the truth.
func (s suite) canceledContext(t *testing.T) {
	svc := s.service(t, s.f.New)
	c := svc.Controller
	done, cancel := context.WithCancel(t.Context())
	cancel()
	call := func(what string, f func(context.Context) error) {
		t.Helper()
		start := time.Now()
		err := f(done)
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("%s with a canceled context: %v; want an error wrapping context.Canceled", what, err)
		}
		if d := time.Since(start); d > 10*time.Second {
			t.Fatalf("%s with a canceled context took %s", what, d)
		}
	}

	call("Start", c.Start)
	requireState(t, c, svcctl.StateStopped)
	if svc.Running(t.Context()) {
		t.Fatal("Start with a canceled context started the service")
	}
	if err := c.Start(t.Context()); err != nil {
		t.Fatalf("Start: %v", err)
	}
	s.requireRunning(t, svc, true)
	call("Stop", c.Stop)
	requireState(t, c, svcctl.StateRunning)
	if !svc.Running(t.Context()) {
		t.Fatal("Stop with a canceled context stopped the service")
	}
	if st, err := c.Status(done); err == nil && st.State != svcctl.StateRunning {
		t.Fatalf("Status with a canceled context says %+v of a running service", st)
	} else if err != nil && !errors.Is(err, context.Canceled) {
		t.Fatalf("Status with a canceled context: %v; want the truth or an error wrapping context.Canceled", err)
	}
	if err := c.Stop(t.Context()); err != nil {
		t.Fatalf("Stop: %v", err)
	}
	requireState(t, c, svcctl.StateStopped)
}

func (s suite) startHealthy(t *testing.T) {
	svc := s.service(t, s.f.New)
	if svc.Health == nil {
		t.Skip("the fixture's Service has no Health")
	}
	c, ctx := svc.Controller, t.Context()
	if err := svcctl.StartHealthy(ctx, c, svc.Health); err != nil {
		t.Fatalf("StartHealthy: %v", err)
	}
	requireState(t, c, svcctl.StateRunning)
	if !svc.Running(ctx) {
		t.Fatal("StartHealthy returned, but the service does not answer")
	}
	if err := c.Stop(ctx); err != nil {
		t.Fatalf("Stop: %v", err)
	}
	requireState(t, c, svcctl.StateStopped)
}

func (s suite) close(t *testing.T) {
	testutil.RequireCloseTwice(t, s.service(t, s.f.New).Controller)
}

// requireState fails unless c's Status is one of want, and returns it.
func requireState(t *testing.T, c svcctl.Controller, want ...svcctl.State) svcctl.Status {
	t.Helper()
	st, err := c.Status(t.Context())
	if err != nil {
		t.Fatalf("Status: %v", err)
	}
	if !slices.Contains(want, st.State) {
		t.Fatalf("Status = %+v, want %v", st, want)
	}
	return st
}

// requireRunning fails unless the service itself says it runs (want true) or not
// within Settle.
func (s suite) requireRunning(t *testing.T, svc Service, want bool) {
	t.Helper()
	deadline := time.Now().Add(s.f.Settle)
	for svc.Running(t.Context()) != want {
		if time.Now().After(deadline) {
			t.Fatalf("Service.Running still says %v after %s, want %v", !want, s.f.Settle, want)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// HTTPProbe returns a Service.Running that asks url: running means it answers 2xx
// within two seconds. Each probe is a new connection, so that one a stopped service's
// port proxy still holds open does not count.
func HTTPProbe(url string) func(ctx context.Context) bool {
	client := &http.Client{Timeout: 2 * time.Second, Transport: &http.Transport{DisableKeepAlives: true, Proxy: nil}}
	return func(ctx context.Context) bool {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		if err != nil {
			return false
		}
		resp, err := client.Do(req)
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode/100 == 2
	}
}
