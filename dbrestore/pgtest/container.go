package pgtest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/jackc/pgx/v5"
	"github.com/moby/moby/api/types/container"
	"github.com/moby/moby/client"
	"github.com/testcontainers/testcontainers-go"
	tcexec "github.com/testcontainers/testcontainers-go/exec"
	tclog "github.com/testcontainers/testcontainers-go/log"
	"github.com/testcontainers/testcontainers-go/network"
	"github.com/testcontainers/testcontainers-go/wait"
)

// Environment variables of the container support.
const (
	// RequireDockerEnv turns a skip for a missing Docker engine into a failure when "1".
	RequireDockerEnv = "RESTAGE_REQUIRE_DOCKER"
	// ImageEnv names the image StartContainer uses when ContainerOptions.Image is empty.
	ImageEnv = "RESTAGE_TEST_PG_IMAGE"
	// RyukDisabledEnv is testcontainers-go's switch for its reaper container; set it to
	// "true" on machines without an image registry (the reaper's image cannot be pulled).
	RyukDisabledEnv = "TESTCONTAINERS_RYUK_DISABLED"
)

// DefaultImage is the image used when neither ContainerOptions.Image nor RESTAGE_TEST_PG_IMAGE is set.
const DefaultImage = "postgres:15"

// ReadyLog is the line PostgreSQL logs when it accepts connections. The official image and
// restage's local image (.ci/pg-image) log it twice on a first start: once for the
// temporary server that initialises the cluster, once for the real one.
const ReadyLog = "database system is ready to accept connections"

// containerPort is where PostgreSQL listens inside the container.
const containerPort = 5432

// Labels put on every container StartContainer makes, so that those left by a killed test
// binary can be found and removed.
const (
	labelPgtest = "org.restage.pgtest"
	labelHost   = "org.restage.pgtest.host"
	labelPID    = "org.restage.pgtest.pid"
	labelPIDNS  = "org.restage.pgtest.pidns" // the PID namespace labelPID is in
)

// Errors of the container support.
var (
	// ErrNoDocker reports that no Docker engine answers.
	ErrNoDocker = errors.New("pgtest: no Docker engine")
	// ErrImageUnavailable reports an image that is neither present nor pullable.
	ErrImageUnavailable = errors.New("pgtest: image unavailable")
)

// ContainerOptions configure StartContainer. The zero value starts DefaultImage (or the
// image RESTAGE_TEST_PG_IMAGE names) with superuser "postgres" and a random password.
type ContainerOptions struct {
	// Image is a PostgreSQL image that honours POSTGRES_USER, POSTGRES_PASSWORD and
	// POSTGRES_DB like the official one; "": $RESTAGE_TEST_PG_IMAGE, else DefaultImage.
	// It is pulled when not present.
	Image string
	// User is the superuser's name; "": "postgres".
	User string
	// Password is the superuser's password; "": a random one.
	Password string
	// Database is created at start (POSTGRES_DB); "": the same as User.
	Database string
	// Network is a Docker network to join (see NewNetwork); "": the default bridge only.
	Network string
	// Aliases are the container's host names on Network; "": none besides its ID.
	Aliases []string
	// Args are extra arguments for the postgres server (e.g. "-c", "work_mem=64MB"),
	// after the defaults, which favour speed over durability (fsync=off and friends).
	Args []string
	// Env holds extra environment variables for the container (e.g. POSTGRES_INITDB_ARGS,
	// by default "--no-sync"); POSTGRES_USER, _PASSWORD and _DB come from the fields above.
	Env map[string]string
	// StartupTimeout bounds the wait for the server to accept connections; 0: 3m.
	StartupTimeout time.Duration
	// ReadyLogOccurrence is how many times ReadyLog must appear before the server is
	// taken as ready; 0: 2 (a fresh cluster, as both supported images log it twice).
	ReadyLogOccurrence int
	// Logf receives testcontainers-go's messages; nil: discarded.
	Logf func(format string, args ...any)
}

// ContainerInfo describes the container of a server started by StartContainer.
type ContainerInfo struct {
	ID      string   // Docker container ID
	Image   string   // the image it runs
	Network string   // the network joined (ContainerOptions.Network), if any
	Aliases []string // its host names on Network
	IP      string   // its address on Network, or on the default bridge without one

	ctr testcontainers.Container
}

// Exec runs cmd (argv, no shell) in the container and returns its exit code and combined output.
func (c *ContainerInfo) Exec(ctx context.Context, cmd ...string) (int, string, error) {
	if c.ctr == nil {
		return 0, "", errors.New("pgtest: Exec on a container that StartContainer did not start")
	}
	code, r, err := c.ctr.Exec(ctx, cmd, tcexec.Multiplexed())
	if err != nil {
		return code, "", fmt.Errorf("pgtest: exec in container %.12s: %w", c.ID, err)
	}
	out, err := io.ReadAll(r)
	return code, string(out), err
}

// Addr returns host:port at which other containers on the same network reach the server:
// its first alias, else its IP.
func (c *ContainerInfo) Addr() string {
	host := c.IP
	if len(c.Aliases) > 0 {
		host = c.Aliases[0]
	}
	return net.JoinHostPort(host, strconv.Itoa(containerPort))
}

// InternalDSN returns the DSN of database as seen from another container on the server's
// network; the server's Host and Port are its address as seen from this process.
func (s *Server) InternalDSN(database string) string {
	if s.Container == nil {
		return s.DSN(database)
	}
	host, _, _ := net.SplitHostPort(s.Container.Addr())
	in := &Server{Host: host, Port: containerPort, User: s.User, Password: s.Password}
	return in.DSN(database)
}

func (o ContainerOptions) withDefaults() ContainerOptions {
	if o.Image == "" {
		o.Image = os.Getenv(ImageEnv)
	}
	if o.Image == "" {
		o.Image = DefaultImage
	}
	if o.User == "" {
		o.User = "postgres"
	}
	if o.Password == "" {
		b := make([]byte, 12)
		_, _ = rand.Read(b)
		o.Password = hex.EncodeToString(b)
	}
	if o.Database == "" {
		o.Database = o.User
	}
	if o.StartupTimeout <= 0 {
		o.StartupTimeout = 3 * time.Minute
	}
	if o.ReadyLogOccurrence <= 0 {
		o.ReadyLogOccurrence = 2
	}
	return o
}

func (o ContainerOptions) validate() error {
	if len(o.Aliases) > 0 && o.Network == "" {
		return errors.New("pgtest: ContainerOptions.Aliases need a Network")
	}
	for k := range o.Env {
		if k == "" || strings.ContainsAny(k, "=\x00") {
			return fmt.Errorf("pgtest: ContainerOptions.Env: bad variable name %q", k)
		}
		switch k {
		case "POSTGRES_USER", "POSTGRES_PASSWORD", "POSTGRES_DB":
			return fmt.Errorf("pgtest: ContainerOptions.Env: set %s through User, Password or Database", k)
		}
	}
	return nil
}

// logfLogger is testcontainers-go's logger made of a Printf-like function.
type logfLogger func(format string, args ...any)

// Printf logs through the function.
func (l logfLogger) Printf(format string, args ...any) { l(format, args...) }

func tcLogger(logf func(string, ...any)) tclog.Logger {
	if logf == nil {
		return tclog.NewNoopLogger()
	}
	return logfLogger(logf)
}

// DockerAvailable reports whether a Docker engine answers (the result of the first call
// is kept for the life of the process). The error wraps ErrNoDocker.
func DockerAvailable() error { return dockerCheck() }

var dockerCheck = sync.OnceValue(func() (err error) {
	defer func() {
		if r := recover(); r != nil { // testcontainers-go panics when it finds no Docker host
			err = fmt.Errorf("%w: %v", ErrNoDocker, r)
		}
	}()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if h := os.Getenv("DOCKER_HOST"); h != "" {
		// testcontainers-go would fall back to the default socket when DOCKER_HOST does
		// not answer; like the docker CLI, take DOCKER_HOST as the one engine to use.
		cli, err := client.New(client.FromEnv)
		if err != nil {
			return fmt.Errorf("%w: DOCKER_HOST=%s: %v", ErrNoDocker, h, err)
		}
		defer cli.Close()
		if _, err := cli.Ping(ctx, client.PingOptions{}); err != nil {
			return fmt.Errorf("%w: DOCKER_HOST=%s: %v", ErrNoDocker, h, err)
		}
	}
	p, err := testcontainers.NewDockerProvider(testcontainers.WithLogger(tclog.NewNoopLogger()))
	if err != nil {
		return fmt.Errorf("%w: %v", ErrNoDocker, err)
	}
	defer p.Close()
	if err := p.Health(ctx); err != nil {
		return fmt.Errorf("%w: %v", ErrNoDocker, err)
	}
	return nil
})

// reaperError marks a failure of testcontainers-go's reaper (Ryuk) as an environment
// problem: its image cannot be pulled where there is no registry.
func reaperError(err error) error {
	if err == nil {
		return nil
	}
	msg := strings.ToLower(err.Error())
	if os.Getenv(RyukDisabledEnv) == "true" || !(strings.Contains(msg, "reaper") || strings.Contains(msg, "ryuk") || strings.Contains(msg, "registry")) {
		return err
	}
	return fmt.Errorf("%w: testcontainers-go's reaper (Ryuk) did not start (without an image registry set %s=true): %v",
		ErrImageUnavailable, RyukDisabledEnv, err)
}

// skipOrFail ends the test for err: a skip when the error is the environment's (no engine,
// no image) and RESTAGE_REQUIRE_DOCKER is not 1, else a failure.
func skipOrFail(tb testing.TB, err error) {
	tb.Helper()
	if (errors.Is(err, ErrNoDocker) || errors.Is(err, ErrImageUnavailable)) && os.Getenv(RequireDockerEnv) != "1" {
		tb.Skipf("%v; set %s=1 to make this a failure", err, RequireDockerEnv)
	}
	if os.Getenv(RequireDockerEnv) == "1" && errors.Is(err, ErrNoDocker) {
		tb.Fatalf("%v (%s=1)", err, RequireDockerEnv)
	}
	tb.Fatal(err)
}

// RequireDocker skips the test when no Docker engine answers, or fails it when
// RESTAGE_REQUIRE_DOCKER=1.
func RequireDocker(tb testing.TB) {
	tb.Helper()
	if err := DockerAvailable(); err != nil {
		skipOrFail(tb, err)
	}
}

// StartContainer starts PostgreSQL in a Docker container with testcontainers-go and
// returns it once it accepts connections on its mapped port. The caller must Stop it
// (which removes the container). The server's Host and Port are the mapped address;
// Container describes the container and its place on opts.Network.
func StartContainer(ctx context.Context, opts ContainerOptions) (*Server, error) {
	opts = opts.withDefaults()
	if err := opts.validate(); err != nil {
		return nil, err
	}
	if err := DockerAvailable(); err != nil {
		return nil, err
	}
	logger := tcLogger(opts.Logf)
	p, err := testcontainers.NewDockerProvider(testcontainers.WithLogger(logger))
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrNoDocker, err)
	}
	defer p.Close()
	removeOrphans(ctx, p.Client(), logger)
	if err := ensureImage(ctx, p.Client(), opts.Image, logger); err != nil {
		return nil, err
	}

	c, err := testcontainers.GenericContainer(ctx, testcontainers.GenericContainerRequest{
		ContainerRequest: containerRequest(opts),
		Started:          true,
		Logger:           logger,
	})
	terminate := func() error {
		if c == nil {
			return nil
		}
		tctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Minute)
		defer cancel()
		return c.Terminate(tctx)
	}
	if err != nil {
		msg := containerLogTail(ctx, c)
		_ = terminate()
		if rerr := reaperError(err); rerr != err {
			return nil, rerr
		}
		return nil, fmt.Errorf("pgtest: start %s: %w%s", opts.Image, err, msg)
	}
	s, err := describe(ctx, c, opts)
	if err != nil {
		_ = terminate()
		return nil, err
	}
	s.stop = terminate
	if err := waitConnect(ctx, s, opts.StartupTimeout, nil); err != nil {
		msg := containerLogTail(ctx, c)
		_ = terminate()
		return nil, fmt.Errorf("pgtest: %s in container %.12s: %w%s", opts.Image, s.Container.ID, err, msg)
	}
	return s, nil
}

// containerRequest is the container StartContainer asks for: opts.Image run as a
// throwaway server (no fsync), labelled with this process so that a later run removes
// it once the process is gone, ready when it logged ReadyLog and listens.
func containerRequest(opts ContainerOptions) testcontainers.ContainerRequest {
	env := map[string]string{
		"POSTGRES_USER":     opts.User,
		"POSTGRES_PASSWORD": opts.Password,
		"POSTGRES_DB":       opts.Database,
		// A throwaway cluster: skip initdb's fsync of the new cluster.
		"POSTGRES_INITDB_ARGS": "--no-sync",
	}
	for k, v := range opts.Env {
		env[k] = v
	}
	host, _ := os.Hostname()
	args := []string{"-c", "fsync=off", "-c", "synchronous_commit=off", "-c", "full_page_writes=off",
		"-c", "max_connections=100", "-c", "max_wal_size=2GB"}
	args = append(args, opts.Args...)
	port := strconv.Itoa(containerPort) + "/tcp"
	req := testcontainers.ContainerRequest{
		Image:        opts.Image,
		Env:          env,
		Cmd:          args,
		ExposedPorts: []string{port},
		Labels: map[string]string{
			labelPgtest: "1",
			labelHost:   host,
			labelPID:    strconv.Itoa(os.Getpid()),
			labelPIDNS:  pidNamespace(),
		},
		ConfigModifier: func(c *container.Config) {
			c.StopSignal = "SIGINT" // PostgreSQL's fast shutdown
		},
		WaitingFor: wait.ForAll(
			wait.ForLog(ReadyLog).WithOccurrence(opts.ReadyLogOccurrence),
			// The check from this process is reachableHost's and waitConnect's: testcontainers-go's
			// guess of the Docker host's address is wrong where the engine runs in this very container.
			wait.ForListeningPort(port).SkipExternalCheck(),
		).WithDeadline(opts.StartupTimeout),
	}
	if opts.Network != "" {
		req.Networks = []string{opts.Network}
		if len(opts.Aliases) > 0 {
			req.NetworkAliases = map[string][]string{opts.Network: opts.Aliases}
		}
	}
	return req
}

// describe fills a Server from the running container.
func describe(ctx context.Context, c testcontainers.Container, opts ContainerOptions) (*Server, error) {
	tcHost, err := c.Host(ctx)
	if err != nil {
		return nil, fmt.Errorf("pgtest: container host: %w", err)
	}
	mapped, err := c.MappedPort(ctx, strconv.Itoa(containerPort)+"/tcp")
	if err != nil {
		return nil, fmt.Errorf("pgtest: container port: %w", err)
	}
	host, err := reachableHost(ctx, tcHost, int(mapped.Num()), opts.StartupTimeout)
	if err != nil {
		return nil, err
	}
	info := &ContainerInfo{ID: c.GetContainerID(), Image: opts.Image, Network: opts.Network, Aliases: opts.Aliases, ctr: c}
	insp, err := c.Inspect(ctx)
	if err != nil {
		return nil, fmt.Errorf("pgtest: inspect container: %w", err)
	}
	if insp.NetworkSettings != nil {
		for name, ep := range insp.NetworkSettings.Networks {
			if ep == nil || !ep.IPAddress.IsValid() {
				continue
			}
			if opts.Network == "" || name == opts.Network {
				info.IP = ep.IPAddress.String()
				break
			}
		}
	}
	return &Server{
		Host:      host,
		Port:      int(mapped.Num()),
		User:      opts.User,
		Password:  opts.Password,
		Container: info,
	}, nil
}

// reachableHost returns the address at which this process reaches the mapped port:
// testcontainers-go's (TESTCONTAINERS_HOST_OVERRIDE, the daemon's host, or, inside a
// container, a gateway), else the loopback address, for an engine running in this very
// container (Docker in Docker), where testcontainers-go's gateway guess is wrong.
func reachableHost(ctx context.Context, tcHost string, port int, timeout time.Duration) (string, error) {
	cands := []string{tcHost}
	if tcHost == "localhost" {
		cands = []string{"127.0.0.1"} // the mapped port listens on IPv4; avoid trying ::1 first
	} else if _, set := os.LookupEnv("TESTCONTAINERS_HOST_OVERRIDE"); !set {
		cands = append(cands, "127.0.0.1")
	}
	deadline := time.Now().Add(timeout)
	var d net.Dialer
	for {
		var errs []error
		for _, h := range cands {
			dctx, cancel := context.WithTimeout(ctx, 2*time.Second)
			conn, err := d.DialContext(dctx, "tcp", net.JoinHostPort(h, strconv.Itoa(port)))
			cancel()
			if err == nil {
				conn.Close()
				return h, nil
			}
			errs = append(errs, err)
		}
		if ctx.Err() != nil || time.Now().After(deadline) {
			return "", fmt.Errorf("pgtest: mapped port %d unreachable: %w", port, errors.Join(errs...))
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// waitConnect polls until the server accepts a connection from this process, or timeout
// passes, or exited (nil for none: a container's exit ends its wait) receives the
// server process's exit (errExited).
func waitConnect(ctx context.Context, s *Server, timeout time.Duration, exited <-chan error) error {
	deadline := time.Now().Add(timeout)
	for {
		cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		conn, err := pgx.Connect(cctx, s.AdminDSN())
		cancel()
		if err == nil {
			return conn.Close(ctx)
		}
		select {
		case werr := <-exited:
			return fmt.Errorf("%w: %v", errExited, werr)
		default:
		}
		if ctx.Err() != nil || time.Now().After(deadline) {
			return fmt.Errorf("no connection within %v: %w", timeout, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// ensureImage pulls image once when it is not present; the error wraps ErrImageUnavailable.
func ensureImage(ctx context.Context, cli client.APIClient, image string, logger tclog.Logger) error {
	if _, err := cli.ImageInspect(ctx, image); err == nil {
		return nil
	} else if !cerrdefs.IsNotFound(err) {
		return fmt.Errorf("pgtest: inspect image %s: %w", image, err)
	}
	logger.Printf("pgtest: pulling %s", image)
	pctx, cancel := context.WithTimeout(ctx, 10*time.Minute)
	defer cancel()
	resp, err := cli.ImagePull(pctx, image, client.ImagePullOptions{})
	if err == nil {
		err = resp.Wait(pctx)
		resp.Close()
	}
	if err != nil {
		return fmt.Errorf("%w: %s is not present and pulling it failed: %v (build a local one with .ci/pg-image and name it in %s)",
			ErrImageUnavailable, image, err, ImageEnv)
	}
	return nil
}

// containerLogTail returns the end of the container's log, for error messages.
func containerLogTail(ctx context.Context, c testcontainers.Container) string {
	if c == nil {
		return ""
	}
	lctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer cancel()
	rc, err := c.Logs(lctx)
	if err != nil {
		return ""
	}
	defer rc.Close()
	var b strings.Builder
	buf := make([]byte, 32<<10)
	for {
		n, err := rc.Read(buf)
		b.Write(buf[:n])
		if err != nil {
			break
		}
	}
	out := b.String()
	if len(out) > 4000 {
		out = out[len(out)-4000:]
	}
	if strings.TrimSpace(out) == "" {
		return ""
	}
	return "\ncontainer log (tail):\n" + out
}

// removeOrphans removes containers this package started from test processes of this host
// that no longer run (killed before they could stop them; there is no reaper without Ryuk).
func removeOrphans(ctx context.Context, cli client.APIClient, logger tclog.Logger) {
	host, _ := os.Hostname()
	f := make(client.Filters).Add("label", labelPgtest+"=1", labelHost+"="+host, labelPIDNS+"="+pidNamespace())
	list, err := cli.ContainerList(ctx, client.ContainerListOptions{All: true, Filters: f})
	if err != nil {
		return
	}
	for _, c := range list.Items {
		pid, err := strconv.Atoi(c.Labels[labelPID])
		if err != nil || pid <= 0 || processAlive(pid) {
			continue
		}
		logger.Printf("pgtest: removing container %.12s left by dead test process %d", c.ID, pid)
		_, _ = cli.ContainerRemove(ctx, c.ID, client.ContainerRemoveOptions{Force: true, RemoveVolumes: true})
	}
}

// pidNamespace names this process's PID namespace, so that only processes of the same
// namespace are taken for dead.
func pidNamespace() string {
	ns, err := os.Readlink("/proc/self/ns/pid")
	if err != nil {
		return "unknown"
	}
	return ns
}

func processAlive(pid int) bool {
	err := syscall.Kill(pid, 0)
	return err == nil || errors.Is(err, syscall.EPERM)
}

// Network is a Docker network for containers that must reach each other by name.
type Network struct {
	Name string // what containers name to join it (ContainerOptions.Network)
	nw   *testcontainers.DockerNetwork
}

// Remove removes the network; its containers must be stopped first.
func (n *Network) Remove(ctx context.Context) error { return n.nw.Remove(ctx) }

// NewNetwork creates a bridge network with a unique name. The caller must Remove it.
func NewNetwork(ctx context.Context) (*Network, error) {
	if err := DockerAvailable(); err != nil {
		return nil, err
	}
	nw, err := network.New(ctx)
	if err != nil {
		if rerr := reaperError(err); rerr != err {
			return nil, rerr
		}
		return nil, fmt.Errorf("pgtest: create network: %w", err)
	}
	return &Network{Name: nw.Name, nw: nw}, nil
}

// ContainerNetwork creates a Docker network for the test, removed when it ends, and
// returns its name for ContainerOptions.Network. It skips or fails like Container.
func ContainerNetwork(tb testing.TB) string {
	tb.Helper()
	RequireDocker(tb)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	n, err := NewNetwork(ctx)
	if err != nil {
		skipOrFail(tb, err)
	}
	tb.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		if err := n.Remove(ctx); err != nil {
			tb.Errorf("pgtest: remove network %s: %v", n.Name, err)
		}
	})
	return n.Name
}

// Container starts PostgreSQL in a container for the test and stops and removes it when
// the test ends. Without a Docker engine, or when the image is neither present nor
// pullable, the test is skipped with the reason; RESTAGE_REQUIRE_DOCKER=1 makes both a
// failure.
func Container(tb testing.TB, opts ContainerOptions) *Server {
	tb.Helper()
	RequireDocker(tb)
	if opts.Logf == nil {
		opts.Logf = tb.Logf
	}
	timeout := opts.StartupTimeout
	if timeout <= 0 {
		timeout = 3 * time.Minute
	}
	ctx, cancel := context.WithTimeout(context.Background(), timeout+12*time.Minute) // + a pull
	defer cancel()
	s, err := StartContainer(ctx, opts)
	if err != nil {
		skipOrFail(tb, err)
	}
	tb.Cleanup(func() {
		if err := s.Stop(); err != nil {
			tb.Errorf("pgtest: stop container %.12s: %v", s.Container.ID, err)
		}
	})
	return s
}

// startContainerIfAvailable is startFor's fallback where there are no local binaries: a
// container when a Docker engine answers, else nil, nil (so the caller skips), or an error
// when RESTAGE_REQUIRE_DOCKER=1.
func startContainerIfAvailable(tb testing.TB) (*Server, error) {
	tb.Helper()
	if err := DockerAvailable(); err != nil {
		if os.Getenv(RequireDockerEnv) == "1" {
			return nil, fmt.Errorf("no local PostgreSQL binaries and %v (%s=1)", err, RequireDockerEnv)
		}
		tb.Logf("pgtest: no local PostgreSQL binaries, and no container either: %v", err)
		return nil, nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Minute)
	defer cancel()
	s, err := StartContainer(ctx, ContainerOptions{})
	if err != nil {
		return nil, fmt.Errorf("no local PostgreSQL binaries; container: %w", err)
	}
	return s, nil
}
