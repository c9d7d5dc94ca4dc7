package svcctl

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
	ctx := t.Context()
	if _, err := cli.ImageInspect(ctx, tag); err == nil {
		dockerImage = tag
		return tag
	} else if !cerrdefs.IsNotFound(err) {
		t.Fatalf("inspecting image %s: %v", tag, err)
	}

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
	// Images built from an older testdata/httpd are of no more use.
	if old, err := cli.ImageList(ctx, client.ImageListOptions{Filters: make(client.Filters).Add("reference", dockerImageRepo)}); err == nil {
		for _, im := range old.Items {
			for _, ref := range im.RepoTags {
				if ref != tag && strings.HasPrefix(ref, dockerImageRepo+":") {
					if _, err := cli.ImageRemove(ctx, ref, client.ImageRemoveOptions{}); err != nil {
						t.Logf("removing old test image %s: %v", ref, err)
					}
				}
			}
		}
	}
	dockerImage = tag
	return tag
}

// createContainer creates (not starts) a container of the test image with args, port 8080
// published on a free loopback port, removed at the end of the test. It returns the
// container's name and the published address.
func (dk *dockerFixture) createContainer(t *testing.T, args ...string) (name, addr string) {
	t.Helper()
	addr = freeAddr(t)
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

func TestDockerExitsAtOnce(t *testing.T) {
	t.Parallel()
	dk := newDockerFixture(t)
	name, _ := dk.createContainer(t, "-exit")
	d, err := NewDocker(DockerConfig{Container: name, Client: dk.cli, StartWait: 10 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	err = d.Start(t.Context())
	requireIs(t, err, ErrExited)
	requireErrorContains(t, err, name, "exit code 3", "fatal: cannot open config")
	var cerr *CommandError
	if !errors.As(err, &cerr) || cerr.ExitCode != 3 {
		t.Fatalf("want a *CommandError with exit code 3, got %#v", err)
	}
	requireState(t, d, StateStopped)
}

func TestDockerNotFound(t *testing.T) {
	t.Parallel()
	dk := newDockerFixture(t)
	d, err := NewDocker(DockerConfig{Container: "restage-svcctl-no-such-container", Client: dk.cli})
	if err != nil {
		t.Fatal(err)
	}
	for name, f := range map[string]func(context.Context) error{
		"Start": d.Start, "Stop": d.Stop,
		"Status": func(ctx context.Context) error { _, err := d.Status(ctx); return err },
	} {
		err := f(t.Context())
		requireIs(t, err, ErrNotFound)
		if !strings.Contains(err.Error(), "restage-svcctl-no-such-container") {
			t.Fatalf("%s: error does not name the container: %v", name, err)
		}
	}
}

func TestDockerStartHealthyUnhealthy(t *testing.T) {
	t.Parallel()
	dk := newDockerFixture(t)
	name, addr := dk.createContainer(t, "-listen", ":8080")
	d, err := NewDocker(DockerConfig{Container: name, Client: dk.cli, StopTimeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	if err := d.Start(t.Context()); err != nil {
		t.Fatal(err)
	}
	requireServing(t, "http://"+addr+"/health") // so the last answer is surely the 503
	err = StartHealthy(t.Context(), d, HTTPCheck{URL: "http://" + addr + "/fail", Timeout: 2 * time.Second})
	requireIs(t, err, ErrUnhealthy)
	requireErrorContains(t, err, "503", "database is still starting up")
	requireState(t, d, StateRunning) // left for the caller to stop or roll back
	if err := d.Stop(t.Context()); err != nil {
		t.Fatal(err)
	}
	requireState(t, d, StateStopped)
	out, err := d.LogTail(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out, "got terminated exiting") {
		t.Fatalf("container was not stopped with SIGTERM; log:\n%s", out)
	}
}
