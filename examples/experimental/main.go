// Command experimental deploys a branch to the experimental environment: code, schema
// and restart, on the database cloned from the night's restore when one is waiting.
//
//	experimental -config FILE [-source DIR | -git REPO -ref REF] [-refresh-db] [-v]
//
// Without -source or -git, the config's [code] source is deployed. Exit status: 0
// deployed; 1 failed (experimental left or put back as it was); 2 usage or config
// error; 3 another run holds the lock.
package main

import (
	"context"
	"fmt"
	"io"

	"github.com/restage/restage/codesync"
	"github.com/restage/restage/examples/internal/cli"
	"github.com/restage/restage/examples/internal/environment"
	"github.com/restage/restage/examples/internal/progressview"
	"github.com/restage/restage/staging"
)

func main() { cli.Main("experimental", run, staging.ExitStatus) }

func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := cli.NewFlagSet("experimental", stderr, "-config FILE [-source DIR | -git REPO -ref REF] [-refresh-db] [-v]")
	config := fs.Config("the experimental environment's TOML config `file`")
	source := fs.String("source", "", "deploy this code `folder`")
	repo := fs.String("git", "", "deploy from this git `repository` (path or URL) ...")
	ref := fs.String("ref", "", "... at this `ref` (branch, tag or commit)")
	refresh := fs.Bool("refresh-db", false, "require the nightly's waiting clone and swap it in")
	verbose := fs.Bool("v", false, "debug logging")
	if err := fs.Parse(args); err != nil {
		return err
	}
	switch {
	case *source != "" && *repo != "":
		return fs.Usagef("-source and -git are exclusive")
	case *repo != "" && *ref == "":
		return fs.Usagef("-git REPO needs -ref REF")
	case *ref != "" && *repo == "":
		return fs.Usagef("-ref needs -git REPO")
	}
	cfg, err := environment.Load(*config)
	if err != nil {
		return err
	}
	if cfg.Role == staging.RoleStaging {
		// A branch deployed onto staging would bypass the release train: staging runs
		// what the nightly rebuilds.
		return fmt.Errorf("%w: %s: role %q: experimental deploys to an environment with role %q (or none); staging is rebuilt by nightly",
			staging.ErrConfig, *config, cfg.Role, staging.RoleExperimental)
	}
	var src codesync.Source
	switch {
	case *source != "":
		if src, err = codesync.NewDirSource(*source); err != nil {
			return fs.Usagef("-source: %w", err)
		}
	case *repo != "":
		src = &codesync.GitSource{Repo: *repo, Ref: *ref, Timeout: cfg.Code.GitTimeout.Duration}
	}
	log := cli.Logger(stderr, *verbose)
	rb, err := staging.Open(cfg, staging.OpenOptions{Source: src, Logger: log, Observer: progressview.New(stderr, log, 0)})
	if err != nil {
		return err
	}
	defer rb.Close()
	rep, err := rb.Deploy(ctx, staging.DeployOptions{RefreshDB: *refresh, RequestedBy: cli.Requester()})
	if rep != nil {
		fmt.Fprint(stdout, rep.Text())
	}
	return err
}
