package svctest

import (
	"context"
	"fmt"
	"sync"

	"github.com/restage/restage/svcctl"
)

// Fake is an in-memory svcctl.Controller: the service is a state and a pid, nothing
// runs. Its zero value is a stopped service that behaves as the Controller contract says
// (it passes the Controller suite); the function fields inject faults or observe calls.
// It is safe for concurrent use.
type Fake struct {
	// StartFunc, if set, is called by Start when the service does not run, before it
	// runs; an error is returned as is and the service stays as it was. Return an error
	// wrapping svcctl.ErrExited for a service that exits at once. Start of a running
	// service is a no-op and does not call it.
	StartFunc func(ctx context.Context) error
	// StopFunc, if set, is called by Stop when the service runs or has failed, before it
	// stops; an error is returned as is and the service stays as it was. Stop of a
	// stopped service is a no-op and does not call it.
	StopFunc func(ctx context.Context) error
	// StatusFunc, if set, is called by Status; an error is returned as is instead of the
	// service's state.
	StatusFunc func(ctx context.Context) error

	op sync.Mutex // serialises Start and Stop, held while their function fields run

	mu      sync.Mutex // guards the fields below
	state   svcctl.State
	detail  string
	pid     int
	lastPID int
	starts  int
	stops   int
}

var _ svcctl.Controller = (*Fake)(nil)

// Start starts the service unless it runs: it calls StartFunc, then gives the service a
// new pid. A done ctx is an error wrapping ctx.Err().
func (f *Fake) Start(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("svctest: fake start: %w", err)
	}
	f.op.Lock()
	defer f.op.Unlock()
	if f.Running() {
		return nil
	}
	if f.StartFunc != nil {
		if err := f.StartFunc(ctx); err != nil {
			return err
		}
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.lastPID++
	f.state, f.detail, f.pid = svcctl.StateRunning, "", 1000+f.lastPID
	f.starts++
	return nil
}

// Stop stops the service unless it is stopped: it calls StopFunc, then the service is
// stopped. A done ctx is an error wrapping ctx.Err().
func (f *Fake) Stop(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("svctest: fake stop: %w", err)
	}
	f.op.Lock()
	defer f.op.Unlock()
	f.mu.Lock()
	stopped := f.state == "" || f.state == svcctl.StateStopped
	f.mu.Unlock()
	if stopped {
		return nil
	}
	if f.StopFunc != nil {
		if err := f.StopFunc(ctx); err != nil {
			return err
		}
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.state, f.detail, f.pid = svcctl.StateStopped, "", 0
	f.stops++
	return nil
}

// Status reports the service's state (after StatusFunc, if set, let it). A done ctx is
// an error wrapping ctx.Err().
func (f *Fake) Status(ctx context.Context) (svcctl.Status, error) {
	if err := ctx.Err(); err != nil {
		return svcctl.Status{}, fmt.Errorf("svctest: fake status: %w", err)
	}
	if f.StatusFunc != nil {
		if err := f.StatusFunc(ctx); err != nil {
			return svcctl.Status{}, err
		}
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.state == "" {
		return svcctl.Status{State: svcctl.StateStopped}, nil
	}
	return svcctl.Status{State: f.state, PID: f.pid, Detail: f.detail}, nil
}

// Running reports whether the service runs, asking no function field: Service.Running
// for the Controller suite, or what a test checks after the code under test ran.
func (f *Fake) Running() bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.state == svcctl.StateRunning
}

// Kill makes a running service die on its own: Status reports svcctl.StateFailed until
// the next Start (a crash while staging waits for it to be healthy).
func (f *Fake) Kill() {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.state == svcctl.StateRunning {
		f.state, f.detail, f.pid = svcctl.StateFailed, "killed", 0
	}
}

// Starts returns how many times Start started the service (no-ops and failures do not
// count).
func (f *Fake) Starts() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.starts
}

// Stops returns how many times Stop stopped the service (no-ops and failures do not
// count).
func (f *Fake) Stops() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.stops
}
