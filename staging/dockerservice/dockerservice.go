package dockerservice

import (
	"github.com/restage/restage/staging"
	"github.com/restage/restage/svcctl"
	"github.com/restage/restage/svcctl/docker"
)

// Keys returns new keys of [service] type "docker".
func Keys() staging.ServiceKeys { return &Config{} }

// Config is [service] type "docker".
type Config struct {
	Container   string           `toml:"container"`    // name or id of the existing container
	StopTimeout staging.Duration `toml:"stop_timeout"` // grace before the engine kills it; "": 10s
	StartWait   staging.Duration `toml:"start_wait"`   // how long it must stay up to count as started; "": 1s
}

// Check implements staging.ServiceKeys.
func (c *Config) Check() []string {
	if c.Container == "" {
		return []string{"missing required key service.container"}
	}
	return nil
}

// Open implements staging.ServiceKeys: a docker.Container controller, with its own
// engine client (DOCKER_HOST etc.).
func (c *Config) Open(env staging.DriverEnv) (svcctl.Controller, error) {
	return docker.New(docker.Config{Container: c.Container, StopTimeout: c.StopTimeout.Duration,
		StartWait: c.StartWait.Duration, Logger: env.Logger})
}
