// Package environment loads an environment's TOML config as every installed binary
// (nightly, experimental, history) does: with staging's built-in drivers and the docker
// service type (staging/dockerservice, linked only by the programs that import this
// package), so that one config works with each of them.
package environment

import (
	"github.com/restage/restage/staging"
	"github.com/restage/restage/staging/dockerservice"
)

// Drivers returns staging.DefaultDrivers with the docker service type registered.
func Drivers() *staging.Drivers {
	d := staging.DefaultDrivers()
	d.Services["docker"] = dockerservice.Keys
	return d
}

// Load reads and validates the config at path with Drivers.
func Load(path string) (*staging.EnvironmentConfig, error) {
	return staging.LoadEnvironmentWith(path, Drivers())
}
