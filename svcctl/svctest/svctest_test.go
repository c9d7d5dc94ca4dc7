package svctest_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/restage/restage/internal/suitetest"
	"github.com/restage/restage/svcctl"
	"github.com/restage/restage/svcctl/svctest"
)

// fakeFixture runs the suite against Fakes; wrap, if set, stands between the suite and
// each Fake (a broken driver built on one).
func fakeFixture(wrap func(*svctest.Fake) svcctl.Controller) svctest.Fixture {
	if wrap == nil {
		wrap = func(f *svctest.Fake) svcctl.Controller { return f }
	}
	service := func(f *svctest.Fake) svctest.Service {
		return svctest.Service{
			Controller: wrap(f),
			Running:    func(context.Context) bool { return f.Running() },
			Kill:       func(*testing.T) { f.Kill() },
			Health:     runningCheck{f},
		}
	}
	return svctest.Fixture{
		New: func(t *testing.T) svctest.Service { return service(&svctest.Fake{}) },
		Exiting: func(t *testing.T) svctest.Service {
			return service(&svctest.Fake{StartFunc: func(context.Context) error {
				return fmt.Errorf("fake: exit status 3: %w", svcctl.ErrExited)
			}})
		},
		PID:    true,
		Settle: time.Second,
	}
}

// runningCheck is a Checker that is healthy while the Fake runs.
type runningCheck struct{ f *svctest.Fake }

func (c runningCheck) Wait(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	for !c.f.Running() {
		select {
		case <-ctx.Done():
			return fmt.Errorf("fake not running: %w: %w", svcctl.ErrUnhealthy, ctx.Err())
		case <-time.After(10 * time.Millisecond):
		}
	}
	return nil
}

func TestFakeConforms(t *testing.T) {
	svctest.Controller(t, fakeFixture(nil))
}

func TestFakeFunctionFields(t *testing.T) {
	ctx := t.Context()
	boom := errors.New("boom")
	var calls []string
	f := &svctest.Fake{
		StartFunc: func(context.Context) error { calls = append(calls, "start"); return nil },
		StopFunc:  func(context.Context) error { calls = append(calls, "stop"); return boom },
	}
	if err := f.Start(ctx); err != nil {
		t.Fatal(err)
	}
	if err := f.Start(ctx); err != nil { // a no-op: StartFunc not called
		t.Fatal(err)
	}
	if err := f.Stop(ctx); !errors.Is(err, boom) {
		t.Fatalf("Stop: %v, want StopFunc's error", err)
	}
	if !f.Running() || f.Starts() != 1 || f.Stops() != 0 {
		t.Fatalf("after a failed stop: running %v, %d starts, %d stops", f.Running(), f.Starts(), f.Stops())
	}
	f.Kill()
	if st, err := f.Status(ctx); err != nil || st.State != svcctl.StateFailed {
		t.Fatalf("Status after Kill: %+v, %v", st, err)
	}
	f.StatusFunc = func(context.Context) error { return boom }
	if _, err := f.Status(ctx); !errors.Is(err, boom) {
		t.Fatalf("Status: %v, want StatusFunc's error", err)
	}
	if got := strings.Join(calls, " "); got != "start stop" {
		t.Fatalf("function fields called: %q", got)
	}
}

// Broken drivers: each must fail the check named, which shows the check can fail
// (TestSuiteFailsBrokenDrivers).
var broken = map[string]suitetest.Breakage[func() svctest.Fixture]{
	"start-does-nothing": {Catches: "StartStopStatus", Break: wrapped(func(f *svctest.Fake) svcctl.Controller { return noStart{f} })},
	"status-always-running": {Catches: "StartStopStatus", Break: wrapped(func(f *svctest.Fake) svcctl.Controller {
		return &statusLies{Fake: f, lie: func(st svcctl.Status, _ bool) svcctl.Status { st.State = svcctl.StateRunning; return st }}
	})},
	"status-remembers-instead-of-asking": {Catches: "DiesBehindItsBack", Break: wrapped(func(f *svctest.Fake) svcctl.Controller {
		return &statusLies{Fake: f, lie: func(st svcctl.Status, started bool) svcctl.Status {
			if started {
				st.State = svcctl.StateRunning
			}
			return st
		}}
	})},
	"start-restarts-running": {Catches: "StartWhenRunning", Break: wrapped(func(f *svctest.Fake) svcctl.Controller { return restarts{f} })},
	"start-of-running-fails": {Catches: "StartWhenRunning", Break: wrapped(func(f *svctest.Fake) svcctl.Controller {
		return &guarded{Fake: f, start: "service already running"}
	})},
	"stop-of-stopped-fails": {Catches: "StopWhenStopped", Break: wrapped(func(f *svctest.Fake) svcctl.Controller {
		return &guarded{Fake: f, stop: "service not running"}
	})},
	"exit-unnoticed": {Catches: "ExitsAtOnce", Break: func() svctest.Fixture {
		fx := fakeFixture(nil)
		fx.Exiting = func(t *testing.T) svctest.Service { return fx.New(t) } // starts fine
		return fx
	}},
	"exit-without-ErrExited": {Catches: "ExitsAtOnce", Break: func() svctest.Fixture {
		fx := fakeFixture(nil)
		fx.Exiting = func(t *testing.T) svctest.Service {
			f := &svctest.Fake{StartFunc: func(context.Context) error { return errors.New("exit status 3") }}
			return svctest.Service{Controller: f, Running: func(context.Context) bool { return f.Running() }}
		}
		return fx
	}},
	"ignores-ctx":       {Catches: "CanceledContext", Break: wrapped(func(f *svctest.Fake) svcctl.Controller { return ignoresCtx{f} })},
	"close-twice-fails": {Catches: "Close", Break: wrapped(func(f *svctest.Fake) svcctl.Controller { return &closer{Fake: f} })},
}

func wrapped(wrap func(*svctest.Fake) svcctl.Controller) func() svctest.Fixture {
	return func() svctest.Fixture { return fakeFixture(wrap) }
}

type noStart struct{ *svctest.Fake }

func (noStart) Start(context.Context) error { return nil }

// statusLies reports lie(the truth, whether it was last started) as its status.
type statusLies struct {
	*svctest.Fake
	lie     func(st svcctl.Status, started bool) svcctl.Status
	started atomic.Bool
}

func (s *statusLies) Start(ctx context.Context) error {
	err := s.Fake.Start(ctx)
	if err == nil {
		s.started.Store(true)
	}
	return err
}

func (s *statusLies) Stop(ctx context.Context) error {
	err := s.Fake.Stop(ctx)
	if err == nil {
		s.started.Store(false)
	}
	return err
}

func (s *statusLies) Status(ctx context.Context) (svcctl.Status, error) {
	st, err := s.Fake.Status(ctx)
	return s.lie(st, s.started.Load()), err
}

type restarts struct{ *svctest.Fake }

func (r restarts) Start(ctx context.Context) error {
	if err := r.Fake.Stop(ctx); err != nil {
		return err
	}
	return r.Fake.Start(ctx)
}

// guarded refuses Start of a running service (start != "") or Stop of a stopped one.
type guarded struct {
	*svctest.Fake
	start, stop string
}

func (g *guarded) Start(ctx context.Context) error {
	if g.start != "" && g.Running() {
		return errors.New(g.start)
	}
	return g.Fake.Start(ctx)
}

func (g *guarded) Stop(ctx context.Context) error {
	if g.stop != "" && !g.Running() {
		return errors.New(g.stop)
	}
	return g.Fake.Stop(ctx)
}

type ignoresCtx struct{ *svctest.Fake }

func (i ignoresCtx) Start(ctx context.Context) error {
	return i.Fake.Start(context.WithoutCancel(ctx))
}

func (i ignoresCtx) Stop(ctx context.Context) error {
	return i.Fake.Stop(context.WithoutCancel(ctx))
}

type closer struct {
	*svctest.Fake
	mu     sync.Mutex
	closed bool
}

func (c *closer) Close() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return errors.New("already closed")
	}
	c.closed = true
	return nil
}

// TestSuiteFailsBrokenDrivers: each broken driver fails the check named, which shows
// the check can fail.
func TestSuiteFailsBrokenDrivers(t *testing.T) {
	suitetest.Catches(t, broken, func(t *testing.T, fixture func() svctest.Fixture) {
		svctest.Controller(t, fixture())
	})
}

// fakeChecker is healthy while its flag is set. alwaysHealthy makes it report healthy
// whatever the flag says, ignoreCtx makes it ignore its ctx (broken checkers).
type fakeChecker struct {
	healthy       atomic.Bool
	alwaysHealthy bool
	ignoreCtx     bool
}

func (c *fakeChecker) Wait(ctx context.Context) error {
	if c.alwaysHealthy {
		return nil
	}
	if c.ignoreCtx {
		ctx = context.WithoutCancel(ctx)
	}
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	for {
		if ctx.Err() == nil && c.healthy.Load() {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("fake checker: %w: %w", svcctl.ErrUnhealthy, ctx.Err())
		case <-time.After(10 * time.Millisecond):
		}
	}
}

func checkerFixture(c func() *fakeChecker) svctest.CheckerFixture {
	return svctest.CheckerFixture{New: func(t *testing.T) (svcctl.Checker, func(bool)) {
		fc := c()
		return fc, fc.healthy.Store
	}}
}

var brokenCheckers = map[string]suitetest.Breakage[svctest.CheckerFixture]{
	"always-healthy": {Catches: "NeverHealthy", Break: checkerFixture(func() *fakeChecker { return &fakeChecker{alwaysHealthy: true} })},
	"ignores-ctx":    {Catches: "CanceledContext", Break: checkerFixture(func() *fakeChecker { return &fakeChecker{ignoreCtx: true} })},
}

func TestFakeCheckerConforms(t *testing.T) {
	svctest.Checker(t, checkerFixture(func() *fakeChecker { return &fakeChecker{} }))
}

// TestCheckerSuiteFailsBrokenCheckers: each broken checker fails the check named.
func TestCheckerSuiteFailsBrokenCheckers(t *testing.T) {
	suitetest.Catches(t, brokenCheckers, svctest.Checker)
}
