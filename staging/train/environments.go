package train

import (
	"context"
	"errors"
	"fmt"
	"os"

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
// than the next night). It returns their reports and their errors joined; with no
// staging environment listed, an error wrapping staging.ErrConfig.
func (t *Train) RebuildStaging(ctx context.Context, opts staging.OpenOptions) ([]*staging.Report, error) {
	var reps []*staging.Report
	var errs []error
	for _, path := range t.cfg.Environments {
		c, err := LoadEnvironment(path, t.cfg.Drivers)
		if err != nil {
			return reps, err
		}
		if c.Role != "" && c.Role != staging.RoleStaging {
			continue
		}
		rb, err := staging.Open(c, opts)
		if err != nil {
			return reps, err
		}
		rep, err := rb.Run(ctx)
		rb.Close()
		if rep != nil {
			reps = append(reps, rep)
		}
		errs = append(errs, err)
	}
	if len(reps) == 0 && len(errs) == 0 {
		return nil, fmt.Errorf("%w: environments lists no config with role %q to rebuild", staging.ErrConfig, staging.RoleStaging)
	}
	return reps, errors.Join(errs...)
}
