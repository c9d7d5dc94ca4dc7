package train

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"

	"github.com/BurntSushi/toml"

	"github.com/restage/restage/staging"
)

// LoadEnvironment loads an environment's config by its role: a production config with
// staging.LoadProduction, the others with staging.LoadEnvironmentWith.
func LoadEnvironment(path string, drivers *staging.Drivers) (*staging.EnvironmentConfig, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", staging.ErrConfig, err)
	}
	var peek struct {
		Role string `toml:"role"`
	}
	if _, err := toml.Decode(string(data), &peek); err != nil {
		return nil, fmt.Errorf("%w: %s: %w", staging.ErrConfig, path, err)
	}
	if peek.Role == staging.RoleProduction {
		return staging.LoadProduction(path, drivers)
	}
	return staging.LoadEnvironmentWith(path, drivers)
}

// OpenEnvironment wires a Rebuilder for a config LoadEnvironment read.
func OpenEnvironment(c *staging.EnvironmentConfig, opts staging.OpenOptions) (*staging.Rebuilder, error) {
	if c.Role == staging.RoleProduction {
		return staging.OpenProduction(c, opts)
	}
	return staging.Open(c, opts)
}

// RebuildStaging rebuilds, one after the other, every environment of the train's
// environments whose role is staging (cut -now: the new staging branch at once rather
// than the next night). Every config is loaded and checked first (a staging one must
// name its backups, [backup] dir and database, or stanza): when any is bad,
// nothing is rebuilt and the error (wrapping staging.ErrConfig) names each bad config
// and what is wrong with it. It returns the reports and the runs' errors joined (an
// environment that cannot be opened is named and the others still run); with no
// staging environment listed, an error wrapping staging.ErrConfig.
func (t *Train) RebuildStaging(ctx context.Context, opts staging.OpenOptions) ([]*staging.Report, error) {
	todo, err := t.stagingConfigs()
	if err != nil {
		return nil, err
	}
	var reps []*staging.Report
	var errs []error
	for _, e := range todo {
		rb, err := staging.Open(e.c, opts)
		if err != nil {
			errs = append(errs, naming(e.path, err))
			continue
		}
		rep, err := rb.Run(ctx)
		rb.Close()
		if rep != nil {
			reps = append(reps, rep)
		}
		errs = append(errs, err)
	}
	return reps, errors.Join(errs...)
}

// CheckStaging loads and checks every config of the train's environments as
// RebuildStaging does, and runs nothing: cut -now calls it before the cut, so that a bad
// config (an error wrapping staging.ErrConfig naming each bad one) changes nothing.
func (t *Train) CheckStaging() error {
	_, err := t.stagingConfigs()
	return err
}

// stagingEnv is a config of role staging of the train's environments, and its path.
type stagingEnv struct {
	path string
	c    *staging.EnvironmentConfig
}

// stagingConfigs loads every config of the train's environments and returns those of
// role staging, or an error naming each bad config (or saying none is of role staging).
func (t *Train) stagingConfigs() ([]stagingEnv, error) {
	var todo []stagingEnv
	var bad []error
	for _, path := range t.cfg.Environments {
		c, err := LoadEnvironment(path, t.cfg.Drivers)
		if err != nil {
			bad = append(bad, naming(path, err))
			continue
		}
		if c.Role == "" || c.Role == staging.RoleStaging {
			// A rebuild needs the backups: a config without them is bad now, not after
			// the rebuilds before it ran.
			if err := c.RequireBackups(); err != nil {
				bad = append(bad, naming(path, err))
				continue
			}
			todo = append(todo, stagingEnv{path, c})
		}
	}
	if len(bad) > 0 {
		return nil, fmt.Errorf("%d of the %d environments' configs are bad, nothing rebuilt:\n%w", len(bad), len(t.cfg.Environments), errors.Join(bad...))
	}
	if len(todo) == 0 {
		return nil, fmt.Errorf("%w: environments lists no config with role %q to rebuild", staging.ErrConfig, staging.RoleStaging)
	}
	return todo, nil
}

// naming returns err, prefixed with the config file path unless its text names it.
func naming(path string, err error) error {
	if strings.Contains(err.Error(), path) {
		return err
	}
	return fmt.Errorf("%s: %w", path, err)
}
