package docker

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"time"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/moby/moby/api/pkg/stdcopy"
	"github.com/moby/moby/api/types/container"
	"github.com/moby/moby/client"

	"github.com/restage/restage/internal/cmderr"
	"github.com/restage/restage/svcctl"
)

// Config configures a Docker controller.
type Config struct {
	// Container is the container's name or ID (required). It must exist: Docker starts
	// and stops it, it does not create it.
	Container string
	// StopTimeout is the grace between SIGTERM and SIGKILL; 0: 10s.
	StopTimeout time.Duration
	// StartWait is how long the container must stay up to count as started; 0: 1s.
	StartWait time.Duration
	// Client talks to the engine; nil: client.New(client.FromEnv) (DOCKER_HOST etc.),
	// closed by Close.
	Client *client.Client
	// Logger receives progress; nil: slog.Default().
	Logger *slog.Logger
}

// Container controls an existing container through the Docker Engine API.
type Container struct {
	cfg   Config
	cli   *client.Client
	owned bool
	log   *slog.Logger
}

var _ svcctl.Controller = (*Container)(nil)

// logKeyService is svcctl's log key for the service's name, so that all drivers' lines
// read alike.
const logKeyService = "service"

// logTailLines is how many lines of the container's output go into errors, as many as
// svcctl's other drivers quote.
const logTailLines = 20

// logTailBytes bounds the output quoted in errors.
const logTailBytes = 2048

// New returns a controller of the container cfg names. It does not contact the engine.
func New(cfg Config) (*Container, error) {
	if cfg.Container == "" {
		return nil, errors.New("svcctl: docker: Container is required")
	}
	if cfg.StopTimeout <= 0 {
		cfg.StopTimeout = 10 * time.Second
	}
	if cfg.StartWait <= 0 {
		cfg.StartWait = time.Second
	}
	log := cfg.Logger
	if log == nil {
		log = slog.Default()
	}
	d := &Container{cfg: cfg, cli: cfg.Client, log: log.With(logKeyService, cfg.Container)}
	if d.cli == nil {
		cli, err := client.New(client.FromEnv)
		if err != nil {
			return nil, fmt.Errorf("svcctl: docker: %w", err)
		}
		d.cli, d.owned = cli, true
	}
	return d, nil
}

// Close releases the engine client if New made it. Closing twice is not an error.
func (d *Container) Close() error {
	if d.owned {
		return d.cli.Close()
	}
	return nil
}

func (d *Container) inspect(ctx context.Context) (container.InspectResponse, error) {
	res, err := d.cli.ContainerInspect(ctx, d.cfg.Container, client.ContainerInspectOptions{})
	if err != nil {
		if cerrdefs.IsNotFound(err) {
			return container.InspectResponse{}, fmt.Errorf("svcctl: docker: container %s: %w: %w", d.cfg.Container, svcctl.ErrNotFound, err)
		}
		return container.InspectResponse{}, fmt.Errorf("svcctl: docker: inspecting %s: %w", d.cfg.Container, err)
	}
	return res.Container, nil
}

func stateOf(c container.InspectResponse) svcctl.Status {
	s := c.State
	if s == nil {
		return svcctl.Status{State: svcctl.StateStopped, Detail: "no state"}
	}
	switch {
	case s.Running && !s.Paused && !s.Restarting:
		return svcctl.Status{State: svcctl.StateRunning, PID: s.Pid}
	case s.Restarting:
		return svcctl.Status{State: svcctl.StateRunning, PID: s.Pid, Detail: "restarting"}
	case s.Paused:
		return svcctl.Status{State: svcctl.StateFailed, PID: s.Pid, Detail: "paused"}
	case s.Dead:
		return svcctl.Status{State: svcctl.StateFailed, Detail: "dead: " + s.Error}
	}
	detail := fmt.Sprintf("%s, exit code %d", s.Status, s.ExitCode)
	if s.OOMKilled {
		detail += ", OOM killed"
	}
	if s.Error != "" {
		detail += ": " + s.Error
	}
	return svcctl.Status{State: svcctl.StateStopped, Detail: detail}
}

// Status inspects the container: running (or restarting) is running; created and exited
// are stopped; paused and dead are failed. A missing container is an error wrapping
// svcctl.ErrNotFound.
func (d *Container) Status(ctx context.Context) (svcctl.Status, error) {
	c, err := d.inspect(ctx)
	if err != nil {
		return svcctl.Status{}, err
	}
	return stateOf(c), nil
}

// Start starts the container unless it runs, and returns once it has stayed up for
// StartWait; a container that exits sooner is an error wrapping svcctl.ErrExited and a
// *svcctl.CommandError with its exit code and the tail of its log.
func (d *Container) Start(ctx context.Context) error {
	c, err := d.inspect(ctx)
	if err != nil {
		return err
	}
	if st := stateOf(c); st.State == svcctl.StateRunning {
		d.log.Info("svcctl: container already running")
		return nil
	}
	if c.State != nil && c.State.Paused {
		if _, err := d.cli.ContainerUnpause(ctx, d.cfg.Container, client.ContainerUnpauseOptions{}); err != nil {
			return fmt.Errorf("svcctl: docker: unpausing %s: %w", d.cfg.Container, err)
		}
	} else if _, err := d.cli.ContainerStart(ctx, d.cfg.Container, client.ContainerStartOptions{}); err != nil {
		return fmt.Errorf("svcctl: docker: starting %s: %w", d.cfg.Container, err)
	}
	if err := d.watch(ctx); err != nil {
		return err
	}
	d.log.Info("svcctl: container started")
	return nil
}

// watch inspects the container until it has run for StartWait, and fails as soon as it
// does not run.
func (d *Container) watch(ctx context.Context) error {
	deadline := time.Now().Add(d.cfg.StartWait)
	for {
		c, err := d.inspect(ctx)
		if err != nil {
			return err
		}
		if st := stateOf(c); st.State != svcctl.StateRunning {
			out, _ := d.LogTail(ctx)
			code := -1
			if c.State != nil {
				code = c.State.ExitCode
			}
			return fmt.Errorf("svcctl: docker: container %s stopped within %s of starting (%s): %w: %w",
				d.cfg.Container, d.cfg.StartWait, st.Detail, svcctl.ErrExited,
				&svcctl.CommandError{Args: append([]string{d.cfg.Container}, c.Args...), ExitCode: code, Stderr: out})
		}
		left := time.Until(deadline)
		if left <= 0 {
			return nil
		}
		t := time.NewTimer(min(left, 200*time.Millisecond))
		select {
		case <-ctx.Done():
			t.Stop()
			return fmt.Errorf("svcctl: docker: starting %s: %w", d.cfg.Container, ctx.Err())
		case <-t.C:
		}
	}
}

// Stop stops the container (SIGTERM, SIGKILL after StopTimeout) unless it is stopped.
func (d *Container) Stop(ctx context.Context) error {
	c, err := d.inspect(ctx)
	if err != nil {
		return err
	}
	if st := stateOf(c); st.State == svcctl.StateStopped {
		d.log.Info("svcctl: container not running")
		return nil
	}
	secs := int(math.Ceil(d.cfg.StopTimeout.Seconds()))
	if _, err := d.cli.ContainerStop(ctx, d.cfg.Container, client.ContainerStopOptions{Timeout: &secs}); err != nil {
		return fmt.Errorf("svcctl: docker: stopping %s: %w", d.cfg.Container, err)
	}
	d.log.Info("svcctl: container stopped")
	return nil
}

// LogTail returns the last lines of the container's output (svcctl.LogTailer, so that
// svcctl.StartHealthy quotes them).
func (d *Container) LogTail(ctx context.Context) (string, error) {
	rc, err := d.cli.ContainerLogs(ctx, d.cfg.Container, client.ContainerLogsOptions{
		ShowStdout: true, ShowStderr: true, Tail: fmt.Sprint(logTailLines),
	})
	if err != nil {
		return "", fmt.Errorf("svcctl: docker: logs of %s: %w", d.cfg.Container, err)
	}
	defer rc.Close()
	raw, err := io.ReadAll(io.LimitReader(rc, 1<<20))
	if err != nil {
		return "", err
	}
	var out bytes.Buffer
	if _, err := stdcopy.StdCopy(&out, &out, bytes.NewReader(raw)); err != nil {
		// A container with a TTY has a plain stream.
		return trimTail(raw), nil
	}
	return trimTail(out.Bytes()), nil
}

// trimTail trims b and keeps its last logTailBytes, from a line start. The engine already
// sent only the last logTailLines lines.
func trimTail(b []byte) string { return cmderr.Tail(b, logTailBytes, logTailLines) }
