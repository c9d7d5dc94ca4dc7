// Package svcctl stops and starts the staging service and tells when it is healthy.
//
// A Controller starts, stops and reports on the service: as a detached process with a
// pidfile (Process), through start/stop/status commands (Command), or through systemd
// (Systemd). A Docker container is controlled by the driver in svcctl/docker, a package
// of its own so that only programs that use it link the Docker Engine client. A Checker
// (the HTTP health probe, HTTPCheck) gates a start: StartHealthy starts the service and
// waits until it answers, so "started" means "serving".
//
//	svc, err := svcctl.NewProcess(svcctl.ProcessConfig{
//		Command: []string{"/srv/staging/current/bin/app", "-listen", ":8080"},
//		Pidfile: "/run/restage/app.pid", // log: /run/restage/app.pid.log
//	})
//	if err != nil {
//		return err
//	}
//	if err := svc.Stop(ctx); err != nil { // SIGTERM to the group, SIGKILL after 10s
//		return err
//	}
//	// ... swap the database and the release ...
//	health := svcctl.HTTPCheck{URL: "http://127.0.0.1:8080/+health", Timeout: time.Minute}
//	if err := svcctl.StartHealthy(ctx, svc, health); err != nil {
//		// errors.Is(err, svcctl.ErrExited): it died; svcctl.ErrUnhealthy: it never answered 2xx
//		return err
//	}
//
// Every implementation treats starting a running service and stopping a stopped one as
// success, and changes nothing when its context is already done. Failures of external
// programs are *CommandError with the tail of their output. Package svcctl/svctest holds
// the conformance suite every Controller (a third party's too) runs in its tests, and an
// in-memory Fake.
package svcctl
