package docker_test

import (
	"context"
	"errors"
	"log"
	"time"

	"github.com/restage/restage/svcctl"
	"github.com/restage/restage/svcctl/docker"
)

// The staging service as an existing container, stopped for the cutover and started
// again behind the health gate.
func ExampleNew() {
	ctx := context.Background()
	svc, err := docker.New(docker.Config{Container: "staging-app", StopTimeout: 30 * time.Second})
	if err != nil {
		log.Fatal(err)
	}
	defer svc.Close()
	if err := svc.Stop(ctx); err != nil {
		log.Fatal(err)
	}
	// ... cutover ...
	err = svcctl.StartHealthy(ctx, svc, svcctl.HTTPCheck{URL: "http://127.0.0.1:8080/+health"})
	if errors.Is(err, svcctl.ErrExited) {
		log.Fatalf("the container stopped: %v", err) // with the tail of its log
	}
	if err != nil {
		log.Fatal(err)
	}
}
