// Package docker is the svcctl driver for a service that runs as a Docker container:
// Container starts, stops and reports on an existing container through the Docker
// Engine API, and implements svcctl.Controller and svcctl.LogTailer.
//
// It is a package of its own because the Engine client brings dozens of packages
// (moby, containerd, OpenTelemetry); a program that controls its service through
// systemd or a pidfile imports svcctl alone and links none of them.
//
//	svc, err := docker.New(docker.Config{Container: "staging-app", StopTimeout: 30 * time.Second})
//	if err != nil {
//		return err
//	}
//	defer svc.Close()
//	if err := svc.Stop(ctx); err != nil { // SIGTERM, SIGKILL after 30s
//		return err
//	}
//	// ... swap the database and the release ...
//	health := svcctl.HTTPCheck{URL: "http://127.0.0.1:8080/+health", Timeout: time.Minute}
//	if err := svcctl.StartHealthy(ctx, svc, health); err != nil {
//		// errors.Is(err, svcctl.ErrExited): the container stopped, with the tail of its log
//		return err
//	}
//
// The container must exist (docker create, compose, a unit that creates it): the
// controller neither creates nor removes containers, nor pulls images.
package docker
