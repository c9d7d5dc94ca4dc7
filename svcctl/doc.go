// Package svcctl stops and starts the staging service and tells when it is healthy.
//
// A Controller starts, stops and reports on the service: as a detached process with a
// pidfile, through start/stop/status commands, through systemd, or as a Docker container.
// A Checker (the HTTP health probe) gates a start: StartHealthy starts the service and
// waits until it answers, so "started" means "serving".
package svcctl
