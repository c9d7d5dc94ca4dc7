package docker_test

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/moby/moby/api/types/container"
	"github.com/moby/moby/api/types/network"
	"github.com/moby/moby/client"

	"github.com/restage/restage/internal/testutil"
	"github.com/restage/restage/svcctl"
	"github.com/restage/restage/svcctl/docker"
	"github.com/restage/restage/svcctl/svctest"
)

// The Docker tests use the real engine and an image built here, with no registry: the
// static binary of testdata/httpd in an image FROM scratch, tagged with a hash of its
// source so it is built once and reused.
const dockerImageRepo = "restage-svcctl-httpd"

type dockerFixture struct {
	cli   *client.Client
	image string
}

var (
	dockerImageMu sync.Mutex
	dockerImage   string
)

// newDockerFixture connects to the engine (skipping without one, failing if
// RESTAGE_REQUIRE_DOCKER=1) and makes sure the test image exists.
func newDockerFixture(t *testing.T) *dockerFixture {
	t.Helper()
	skip := func(format string, args ...any) {
		t.Helper()
		if os.Getenv("RESTAGE_REQUIRE_DOCKER") == "1" {
			t.Fatalf("RESTAGE_REQUIRE_DOCKER=1 but: "+format, args...)
		}
		t.Skipf("no Docker engine (set RESTAGE_REQUIRE_DOCKER=1 to fail instead): "+format, args...)
	}
	cli, err := client.New(client.FromEnv)
	if err != nil {
		skip("%v", err)
	}
	t.Cleanup(func() { cli.Close() })
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	defer cancel()
	if _, err := cli.Ping(ctx, client.PingOptions{NegotiateAPIVersion: true}); err != nil {
		skip("%v", err)
	}
	return &dockerFixture{cli: cli, image: ensureDockerImage(t, cli)}
}

// ensureDockerImage returns the test image's tag, building the image unless the engine
// has it.
func ensureDockerImage(t *testing.T, cli *client.Client) string {
	t.Helper()
	dockerImageMu.Lock()
	defer dockerImageMu.Unlock()
	if dockerImage != "" {
		return dockerImage
	}
	src, err := os.ReadFile(filepath.Join("testdata", "httpd", "main.go"))
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(src)
	tag := dockerImageRepo + ":" + hex.EncodeToString(sum[:6])
	if _, err := cli.ImageInspect(t.Context(), tag); err == nil {
		dockerImage = tag
		return tag
	} else if !cerrdefs.IsNotFound(err) {
		t.Fatalf("inspecting image %s: %v", tag, err)
	}
	buildDockerImage(t, cli, tag)
	removeOldDockerImages(t, cli, tag)
	dockerImage = tag
	return tag
}

// buildDockerImage builds testdata/httpd statically and an image FROM scratch holding it.
func buildDockerImage(t *testing.T, cli *client.Client, tag string) {
	t.Helper()
	ctx := t.Context()
	bin := filepath.Join(t.TempDir(), "httpd")
	build := exec.CommandContext(ctx, "go", "build", "-trimpath", "-ldflags=-s -w", "-o", bin, "./testdata/httpd")
	build.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("building the test service: %v\n%s", err, out)
	}
	exe, err := os.ReadFile(bin)
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, f := range []struct {
		name string
		mode int64
		data []byte
	}{
		{"Dockerfile", 0o644, []byte("FROM scratch\nCOPY httpd /httpd\nEXPOSE 8080\nENTRYPOINT [\"/httpd\"]\n")},
		{"httpd", 0o755, exe},
	} {
		if err := tw.WriteHeader(&tar.Header{Name: f.name, Mode: f.mode, Size: int64(len(f.data))}); err != nil {
			t.Fatal(err)
		}
		if _, err := tw.Write(f.data); err != nil {
			t.Fatal(err)
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	res, err := cli.ImageBuild(ctx, &buf, client.ImageBuildOptions{Tags: []string{tag}, Remove: true, ForceRemove: true})
	if err != nil {
		t.Fatalf("building image %s: %v", tag, err)
	}
	defer res.Body.Close()
	dec := json.NewDecoder(res.Body)
	for {
		var msg struct {
			Stream      string
			Error       string
			ErrorDetail struct{ Message string }
		}
		if err := dec.Decode(&msg); errors.Is(err, io.EOF) {
			break
		} else if err != nil {
			t.Fatalf("building image %s: %v", tag, err)
		}
		if msg.Error != "" {
			t.Fatalf("building image %s: %s", tag, msg.Error)
		}
	}
	if _, err := cli.ImageInspect(ctx, tag); err != nil {
		t.Fatalf("image %s missing after build: %v", tag, err)
	}
}

// removeOldDockerImages removes the test images built from an older testdata/httpd: they
// are of no more use.
func removeOldDockerImages(t *testing.T, cli *client.Client, keep string) {
	t.Helper()
	old, err := cli.ImageList(t.Context(), client.ImageListOptions{Filters: make(client.Filters).Add("reference", dockerImageRepo)})
	if err != nil {
		t.Logf("listing old test images: %v", err)
		return
	}
	for _, im := range old.Items {
		for _, ref := range im.RepoTags {
			if ref != keep && strings.HasPrefix(ref, dockerImageRepo+":") {
				if _, err := cli.ImageRemove(t.Context(), ref, client.ImageRemoveOptions{}); err != nil {
					t.Logf("removing old test image %s: %v", ref, err)
				}
			}
		}
	}
}

// createContainer creates (not starts) a container of the test image with args, port 8080
// published on a free loopback port, removed at the end of the test. It returns the
// container's name and the published address.
func (dk *dockerFixture) createContainer(t *testing.T, args ...string) (name, addr string) {
	t.Helper()
	addr = testutil.FreeAddr(t)
	host, port, _ := net.SplitHostPort(addr)
	name = "restage-svcctl-test-" + strings.ToLower(rand.Text()[:10])
	p := network.MustParsePort("8080/tcp")
	_, err := dk.cli.ContainerCreate(t.Context(), client.ContainerCreateOptions{
		Name:   name,
		Config: &container.Config{Image: dk.image, Cmd: args, ExposedPorts: network.PortSet{p: {}}},
		HostConfig: &container.HostConfig{PortBindings: network.PortMap{
			p: {{HostIP: netip.MustParseAddr(host), HostPort: port}},
		}},
	})
	if err != nil {
		t.Fatalf("creating container: %v", err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.WithoutCancel(t.Context()), time.Minute)
		defer cancel()
		if _, err := dk.cli.ContainerRemove(ctx, name, client.ContainerRemoveOptions{Force: true}); err != nil {
			t.Errorf("removing container %s: %v", name, err)
		}
	})
	return name, addr
}

// newContainer creates a container of the test image with args and returns a controller
// of it (closed at the end of the test; with its own engine client unless cfg has one),
// the container's name and the address of its port 8080.
func (dk *dockerFixture) newContainer(t *testing.T, cfg docker.Config, args ...string) (d *docker.Container, name, addr string) {
	t.Helper()
	name, addr = dk.createContainer(t, args...)
	cfg.Container = name
	var err error
	d, err = docker.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := d.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return d, name, addr
}

func TestControllerSuite(t *testing.T) {
	t.Parallel()
	dk := newDockerFixture(t)
	service := func(t *testing.T, args ...string) svctest.Service {
		d, name, addr := dk.newContainer(t, docker.Config{StartWait: 300 * time.Millisecond, StopTimeout: 5 * time.Second}, args...)
		url := "http://" + addr + "/health"
		return svctest.Service{
			Controller: d,
			Running:    svctest.HTTPProbe(url),
			Kill: func(t *testing.T) {
				if _, err := dk.cli.ContainerKill(t.Context(), name, client.ContainerKillOptions{Signal: "KILL"}); err != nil {
					t.Fatalf("docker kill %s: %v", name, err)
				}
			},
			Health: svcctl.HTTPCheck{URL: url, Timeout: time.Minute},
		}
	}
	svctest.Controller(t, svctest.Fixture{
		New:     func(t *testing.T) svctest.Service { return service(t, "-listen", ":8080") },
		Exiting: func(t *testing.T) svctest.Service { return service(t, "-exit") },
		PID:     true,
	})
}

func TestExitsAtOnce(t *testing.T) {
	t.Parallel()
	dk := newDockerFixture(t)
	d, name, _ := dk.newContainer(t, docker.Config{StartWait: 10 * time.Second, Client: dk.cli}, "-exit")
	err := d.Start(t.Context())
	requireError(t, err, svcctl.ErrExited, name, "exit code 3", "fatal: cannot open config")
	var cerr *svcctl.CommandError
	if !errors.As(err, &cerr) || cerr.ExitCode != 3 {
		t.Fatalf("want a *svcctl.CommandError with exit code 3, got %#v", err)
	}
	if st, err := d.Status(t.Context()); err != nil || st.State != svcctl.StateStopped {
		t.Fatalf("Status after the failed start: %+v, %v", st, err)
	}
}

func TestNotFound(t *testing.T) {
	t.Parallel()
	dk := newDockerFixture(t)
	const name = "restage-svcctl-no-such-container"
	d, err := docker.New(docker.Config{Container: name, Client: dk.cli})
	if err != nil {
		t.Fatal(err)
	}
	for what, f := range map[string]func(context.Context) error{
		"Start": d.Start, "Stop": d.Stop,
		"Status": func(ctx context.Context) error { _, err := d.Status(ctx); return err },
	} {
		t.Log(what)
		requireError(t, f(t.Context()), svcctl.ErrNotFound, name)
	}
}

func TestStartHealthyUnhealthy(t *testing.T) {
	t.Parallel()
	dk := newDockerFixture(t)
	d, _, addr := dk.newContainer(t, docker.Config{StopTimeout: 5 * time.Second}, "-listen", ":8080")
	if err := d.Start(t.Context()); err != nil {
		t.Fatal(err)
	}
	// So that the last answer is surely the 503.
	if err := (svcctl.HTTPCheck{URL: "http://" + addr + "/health", Timeout: time.Minute}).Wait(t.Context()); err != nil {
		t.Fatal(err)
	}
	err := svcctl.StartHealthy(t.Context(), d, svcctl.HTTPCheck{URL: "http://" + addr + "/fail", Timeout: 2 * time.Second})
	requireError(t, err, svcctl.ErrUnhealthy, "503", "database is still starting up")
	if st, err := d.Status(t.Context()); err != nil || st.State != svcctl.StateRunning {
		t.Fatalf("Status after StartHealthy failed: %+v, %v; want it left running for the caller", st, err)
	}
	if err := d.Stop(t.Context()); err != nil {
		t.Fatal(err)
	}
	if st, err := d.Status(t.Context()); err != nil || st.State != svcctl.StateStopped {
		t.Fatalf("Status after Stop: %+v, %v", st, err)
	}
	out, err := d.LogTail(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out, "got terminated exiting") {
		t.Fatalf("container was not stopped with SIGTERM; log:\n%s", out)
	}
}

func TestConfig(t *testing.T) {
	if _, err := docker.New(docker.Config{}); err == nil || !strings.Contains(err.Error(), "Container is required") {
		t.Fatalf("New without a container: %v", err)
	}
}

// requireError fails unless err wraps target and its message holds every part.
func requireError(t testing.TB, err, target error, parts ...string) {
	t.Helper()
	if !errors.Is(err, target) {
		t.Fatalf("error %v does not wrap %v", err, target)
	}
	for _, p := range parts {
		if !strings.Contains(err.Error(), p) {
			t.Fatalf("error %v does not contain %q", err, p)
		}
	}
}
