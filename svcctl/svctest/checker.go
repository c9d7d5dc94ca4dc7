package svctest

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/restage/restage/svcctl"
)

// CheckerFixture makes the health checkers the Checker suite runs against.
type CheckerFixture struct {
	// New returns a fresh Checker whose Wait gives up after a few seconds at most
	// (required), and setHealthy, which makes what it checks answer healthy (true) or
	// not (false) from then on; it starts unhealthy. Release what it made with t.Cleanup.
	New func(t *testing.T) (c svcctl.Checker, setHealthy func(healthy bool))
}

// checkerBound is how long a Wait may take beyond the checker's own give-up time.
const checkerBound = 30 * time.Second

// Checker runs the checks every svcctl.Checker must pass, each as a subtest with a fresh
// checker from f.New: Wait returns nil for a healthy target and for one that becomes
// healthy while it waits; it fails with an error wrapping svcctl.ErrUnhealthy for one
// that never does; a done context makes it return at once with an error wrapping the
// context's error, even for a healthy target.
func Checker(t *testing.T, f CheckerFixture) {
	t.Helper()
	if f.New == nil {
		t.Fatal("svctest: CheckerFixture.New is required")
	}
	t.Run("Healthy", func(t *testing.T) {
		c, setHealthy := f.New(t)
		setHealthy(true)
		if err := wait(t, t.Context(), c); err != nil {
			t.Fatalf("Wait for a healthy target: %v", err)
		}
	})
	t.Run("BecomesHealthy", func(t *testing.T) {
		c, setHealthy := f.New(t)
		timer := time.AfterFunc(300*time.Millisecond, func() { setHealthy(true) })
		defer timer.Stop()
		if err := wait(t, t.Context(), c); err != nil {
			t.Fatalf("Wait for a target that becomes healthy: %v", err)
		}
	})
	t.Run("NeverHealthy", func(t *testing.T) {
		c, _ := f.New(t)
		if err := wait(t, t.Context(), c); !errors.Is(err, svcctl.ErrUnhealthy) {
			t.Fatalf("Wait for a target never healthy: %v; want an error wrapping svcctl.ErrUnhealthy", err)
		}
	})
	t.Run("CanceledContext", func(t *testing.T) {
		c, setHealthy := f.New(t)
		ctx, cancel := context.WithCancel(t.Context())
		timer := time.AfterFunc(200*time.Millisecond, cancel)
		defer timer.Stop()
		start := time.Now()
		if err := wait(t, ctx, c); !errors.Is(err, context.Canceled) {
			t.Fatalf("Wait canceled while waiting: %v; want an error wrapping context.Canceled", err)
		}
		if d := time.Since(start); d > 5*time.Second {
			t.Fatalf("Wait returned %s after its context was canceled", d)
		}
		setHealthy(true)
		if err := wait(t, ctx, c); !errors.Is(err, context.Canceled) {
			t.Fatalf("Wait for a healthy target with a canceled context: %v; want an error wrapping context.Canceled", err)
		}
	})
}

// wait runs c.Wait, failing the test if it does not return within checkerBound.
func wait(t *testing.T, ctx context.Context, c svcctl.Checker) error {
	t.Helper()
	errc := make(chan error, 1)
	go func() { errc <- c.Wait(ctx) }()
	select {
	case err := <-errc:
		return err
	case <-time.After(checkerBound):
		t.Fatalf("Wait did not return within %s", checkerBound)
		return nil
	}
}
