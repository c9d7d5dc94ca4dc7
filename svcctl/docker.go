package svcctl

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
)

// DockerConfig configures a Docker controller.
type DockerConfig struct {
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

// Docker controls an existing container through the Docker Engine API.
type Docker struct {
	cfg   DockerConfig
	cli   *client.Client
	owned bool
	log   *slog.Logger
}

var _ Controller = (*Docker)(nil)

// NewDocker returns a Docker controller. It does not contact the engine.
func NewDocker(cfg DockerConfig) (*Docker, error) {
	if cfg.Container == "" {
		return nil, errors.New("svcctl: docker: Container is required")
	}
	if cfg.StopTimeout <= 0 {
		cfg.StopTimeout = 10 * time.Second
	}
	if cfg.StartWait <= 0 {
		cfg.StartWait = time.Second
	}
	d := &Docker{cfg: cfg, cli: cfg.Client, log: loggerOr(cfg.Logger).With(logKeyService, cfg.Container)}
	if d.cli == nil {
		cli, err := client.New(client.FromEnv)
		if err != nil {
			return nil, fmt.Errorf("svcctl: docker: %w", err)
		}
		d.cli, d.owned = cli, true
	}
	return d, nil
}

// Close releases the engine client if NewDocker made it.
func (d *Docker) Close() error {
	if d.owned {
		return d.cli.Close()
	}
	return nil
}

func (d *Docker) inspect(ctx context.Context) (container.InspectResponse, error) {
	res, err := d.cli.ContainerInspect(ctx, d.cfg.Container, client.ContainerInspectOptions{})
	if err != nil {
		if cerrdefs.IsNotFound(err) {
			return container.InspectResponse{}, fmt.Errorf("svcctl: docker: container %s: %w: %w", d.cfg.Container, ErrNotFound, err)
		}
		return container.InspectResponse{}, fmt.Errorf("svcctl: docker: inspecting %s: %w", d.cfg.Container, err)
	}
	return res.Container, nil
}

func stateOf(c container.InspectResponse) Status {
	s := c.State
	if s == nil {
		return Status{State: StateStopped, Detail: "no state"}
	}
	switch {
	case s.Running && !s.Paused && !s.Restarting:
		return Status{State: StateRunning, PID: s.Pid}
	case s.Restarting:
		return Status{State: StateRunning, PID: s.Pid, Detail: "restarting"}
	case s.Paused:
		return Status{State: StateFailed, PID: s.Pid, Detail: "paused"}
	case s.Dead:
		return Status{State: StateFailed, Detail: "dead: " + s.Error}
	}
	detail := fmt.Sprintf("%s, exit code %d", s.Status, s.ExitCode)
	if s.OOMKilled {
		detail += ", OOM killed"
	}
	if s.Error != "" {
		detail += ": " + s.Error
	}
	return Status{State: StateStopped, Detail: detail}
}

// Status inspects the container: running (or restarting) is running; created and exited
// are stopped; paused and dead are failed. A missing container is an error wrapping
// ErrNotFound.
func (d *Docker) Status(ctx context.Context) (Status, error) {
	c, err := d.inspect(ctx)
	if err != nil {
		return Status{}, err
	}
	return stateOf(c), nil
}

// Start starts the container unless it runs, and returns once it has stayed up for
// StartWait; a container that exits sooner is an error wrapping ErrExited with the
// tail of its log.
func (d *Docker) Start(ctx context.Context) error {
	c, err := d.inspect(ctx)
	if err != nil {
		return err
	}
	if st := stateOf(c); st.State == StateRunning {
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
	// Watch it for StartWait.
	deadline := time.Now().Add(d.cfg.StartWait)
	for {
		c, err := d.inspect(ctx)
		if err != nil {
			return err
		}
		if st := stateOf(c); st.State != StateRunning {
			out, _ := d.LogTail(ctx)
			code := -1
			if c.State != nil {
				code = c.State.ExitCode
			}
			return fmt.Errorf("svcctl: docker: container %s stopped within %s of starting (%s): %w: %w",
				d.cfg.Container, d.cfg.StartWait, st.Detail, ErrExited,
				&CommandError{Args: append([]string{d.cfg.Container}, c.Args...), ExitCode: code, Stderr: out})
		}
		left := time.Until(deadline)
		if left <= 0 {
			break
		}
		t := time.NewTimer(min(left, 200*time.Millisecond))
		select {
		case <-ctx.Done():
			t.Stop()
			return fmt.Errorf("svcctl: docker: starting %s: %w", d.cfg.Container, ctx.Err())
		case <-t.C:
		}
	}
	d.log.Info("svcctl: container started")
	return nil
}

// Stop stops the container (SIGTERM, SIGKILL after StopTimeout) unless it is stopped.
func (d *Docker) Stop(ctx context.Context) error {
	c, err := d.inspect(ctx)
	if err != nil {
		return err
	}
	if st := stateOf(c); st.State == StateStopped {
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

// LogTail returns the last lines of the container's output.
func (d *Docker) LogTail(ctx context.Context) (string, error) {
	rc, err := d.cli.ContainerLogs(ctx, d.cfg.Container, client.ContainerLogsOptions{
		ShowStdout: true, ShowStderr: true, Tail: fmt.Sprint(tailLines),
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
		return tail(raw), nil
	}
	return tail(out.Bytes()), nil
}
