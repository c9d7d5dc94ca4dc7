package svcctl_test

import (
	"context"
	"errors"
	"fmt"
	"log"
	"net/http"
	"net/http/httptest"
	"time"

	"github.com/restage/restage/svcctl"
)

// A process service with a pidfile, stopped for the cutover and started again behind the
// health gate.
func ExampleStartHealthy() {
	ctx := context.Background()
	svc, err := svcctl.NewProcess(svcctl.ProcessConfig{
		Command:     []string{"/srv/staging/current/bin/app", "-listen", ":8080"},
		Pidfile:     "/run/restage/app.pid",
		StopTimeout: 30 * time.Second,
	})
	if err != nil {
		log.Fatal(err)
	}
	if err := svc.Stop(ctx); err != nil {
		log.Fatal(err)
	}
	// ... cutover ...
	err = svcctl.StartHealthy(ctx, svc, svcctl.HTTPCheck{URL: "http://127.0.0.1:8080/+health", Timeout: 60 * time.Second})
	switch {
	case errors.Is(err, svcctl.ErrExited):
		log.Fatalf("the service died: %v", err)
	case errors.Is(err, svcctl.ErrUnhealthy):
		log.Fatalf("the service never became healthy: %v", err)
	case err != nil:
		log.Fatal(err)
	}
}

func ExampleHTTPCheck() {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, "database is still starting up", http.StatusServiceUnavailable)
	}))
	defer srv.Close()

	check := svcctl.HTTPCheck{URL: srv.URL + "/+health", Timeout: 500 * time.Millisecond}
	err := check.Wait(context.Background())
	fmt.Println(errors.Is(err, svcctl.ErrUnhealthy))
	// Output: true
}
