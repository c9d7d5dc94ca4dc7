package svcctl

import (
	"context"
	"errors"

	"github.com/restage/restage/internal/cmderr"
	"github.com/restage/restage/internal/runas"
)

// State is what a controller knows of its service.
type State string

// Service states.
const (
	StateRunning State = "running"
	StateStopped State = "stopped"
	StateFailed  State = "failed" // the service manager reports a failure
)

// Status is a service's state with details.
type Status struct {
	State  State
	PID    int    // main process, when known
	Detail string // e.g. a unit's failure reason, a stale pidfile
}

// Controller starts and stops the staging service. Given a ctx that is already done,
// Start and Stop return an error wrapping ctx.Err() and change nothing. The conformance
// suite svcctl/svctest.Controller checks an implementation keeps this contract.
type Controller interface {
	// Start starts the service and returns once it is started (not necessarily healthy).
	// Starting a running service is not an error.
	Start(ctx context.Context) error
	// Stop stops the service and returns once it has stopped. Stopping a stopped service
	// is not an error.
	Stop(ctx context.Context) error
	// Status reports the service's state.
	Status(ctx context.Context) (Status, error)
}

// Checker tells whether the service is healthy.
type Checker interface {
	// Wait returns nil once the service answers healthy, or an error naming what it last saw.
	Wait(ctx context.Context) error
}

// PortServer is implemented by controllers that can tell whether the sockets listening
// on a local TCP port are the service's own (the process type, on Linux). StartHealthy
// asks it once the health URL answered, so that another program listening on that port
// (a copy of the service that outlived its stop, anything else) does not pass for it.
type PortServer interface {
	// ServesPort returns nil when every socket listening on port is held by one of the
	// service's processes, an error wrapping ErrUnhealthy naming the others when one is
	// not, and one wrapping errors.ErrUnsupported when it cannot tell.
	ServesPort(ctx context.Context, port int) error
}

// Errors callers test with errors.Is.
var (
	ErrExited    = errors.New("service exited")
	ErrUnhealthy = errors.New("service not healthy")
	ErrNotFound  = errors.New("service not found")
	// ErrUser: the user a service is to run as is unknown, or switching to it needs root.
	ErrUser = runas.ErrUser
)

// CommandError is a failed external program (a start/stop command, systemctl, a
// container's main process): its argv, exit status (-1: not started, killed by a signal
// or timed out) and the tail of its output. It is the one command-failure type restage's
// packages share, so that errors.As with any of their names finds it.
type CommandError = cmderr.Error
