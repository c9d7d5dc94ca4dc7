// Package dockerservice is the [service] type "docker" for staging's config: the staging
// service is an existing container, started and stopped through the Docker Engine API.
// It is a package of its own so that only programs that need it link the Docker client;
// such a program registers it with one line:
//
//	d := staging.DefaultDrivers()
//	d.Services["docker"] = dockerservice.Keys
//	cfg, err := staging.LoadEnvironmentWith("/etc/restage/staging.toml", d)
package dockerservice
