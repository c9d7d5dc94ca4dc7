package pgtest

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"testing"
	"time"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/moby/moby/client"
	"github.com/testcontainers/testcontainers-go"
	tclog "github.com/testcontainers/testcontainers-go/log"
)

// The fallback startFor uses without local binaries starts a working container server.
func TestContainerFallbackStartsAServer(t *testing.T) {
	RequireDocker(t)
	s, err := startContainerFallback(t)
	if err != nil {
		skipOrFail(t, err)
	}
	if s == nil {
		t.Fatal("fallback returned no server although a Docker engine answers")
	}
	t.Cleanup(func() { _ = s.Stop() })
	if s.Container == nil || s.Container.ID == "" || s.Dir != "" {
		t.Fatalf("not a container server: %+v", s)
	}
	db := s.Database(t)
	s.Exec(t, db, "CREATE TABLE x AS SELECT 7 AS v")
	if v := s.QueryInt(t, db, "SELECT v FROM x"); v != 7 {
		t.Fatalf("v = %d, want 7", v)
	}
	if s.SystemIdentifier(t) == 0 {
		t.Fatal("system_identifier 0")
	}
}

// A container left by a test process that died is removed by the next start; one whose
// process lives, or whose process is in another PID namespace, is left alone.
func TestStartContainerRemovesOrphans(t *testing.T) {
	RequireDocker(t)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	dead := exec.Command("true")
	if err := dead.Run(); err != nil {
		t.Fatal(err)
	}
	host, _ := os.Hostname()
	image := os.Getenv(ImageEnv)
	if image == "" {
		image = DefaultImage
	}
	cli, err := testcontainers.NewDockerClientWithOpts(ctx)
	if err != nil {
		skipOrFail(t, fmt.Errorf("%w: %v", ErrNoDocker, err))
	}
	defer cli.Close()
	// The containers below are created from the image as it is: one that is neither
	// present nor pullable (no registry) is the machine's limit, not a failure.
	if err := ensureImage(ctx, cli, image, tclog.NewNoopLogger()); err != nil {
		skipOrFail(t, err)
	}
	create := func(pid int, pidns string) testcontainers.Container {
		t.Helper()
		c, err := testcontainers.GenericContainer(ctx, testcontainers.GenericContainerRequest{
			ContainerRequest: testcontainers.ContainerRequest{
				Image:  image,
				Labels: map[string]string{labelPgtest: "1", labelHost: host, labelPID: strconv.Itoa(pid), labelPIDNS: pidns},
			},
			Logger: tclog.NewNoopLogger(),
		})
		if err != nil {
			skipOrFail(t, reaperError(err))
		}
		t.Cleanup(func() { _ = c.Terminate(context.Background()) })
		return c
	}
	orphan, alive := create(dead.Process.Pid, pidNamespace()), create(os.Getpid(), pidNamespace())
	elsewhere := create(dead.Process.Pid, "pid:[1]") // same pid, another namespace: not ours to judge

	srv := Container(t, ContainerOptions{})
	if srv.Container.ID == orphan.GetContainerID() {
		t.Fatal("the new container has the orphan's ID")
	}
	if _, err := cli.ContainerInspect(ctx, orphan.GetContainerID(), client.ContainerInspectOptions{}); !cerrdefs.IsNotFound(err) {
		t.Fatalf("orphan container of dead process %d: inspect gave %v, want not found", dead.Process.Pid, err)
	}
	if _, err := cli.ContainerInspect(ctx, alive.GetContainerID(), client.ContainerInspectOptions{}); err != nil {
		t.Fatalf("container of this live process was removed: %v", err)
	}
	if _, err := cli.ContainerInspect(ctx, elsewhere.GetContainerID(), client.ContainerInspectOptions{}); err != nil {
		t.Fatalf("container of another PID namespace was removed: %v", err)
	}
}
