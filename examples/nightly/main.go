// Command nightly rebuilds a staging environment from the newest production backup.
//
//	nightly -config FILE [-dry-run [-mask-rules]] [-v]   rebuild the environment FILE describes
//	nightly -demo [-keep] [-v]             run the demo program (examples/demo)
//
// -dry-run -mask-rules prints only a starter [mask] section for the backup a rebuild
// would take: a suggested rule for each column that needs a decision and has none.
//
// -demo runs a whole rebuild on throwaway local servers. That needs the test harness,
// which nightly does not link: it runs the demo program instead, a "demo" executable
// beside nightly's own or on PATH, else, inside a restage checkout with go on PATH,
// the one built from ./examples/demo.
//
// Exit status: 0 rebuilt; 1 failed (staging left or put back as it was, report
// delivered or spooled); 2 usage or config error; 3 another rebuild holds the lock.
// With -demo, the demo's exit status.
package main

import (
	"context"
	"fmt"
	"io"
	"os"

	"github.com/restage/restage/examples/internal/cli"
	"github.com/restage/restage/examples/internal/environment"
	"github.com/restage/restage/examples/internal/progressview"
	"github.com/restage/restage/staging"
)

func main() { cli.Main("nightly", run, staging.ExitStatus) }

func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := cli.NewFlagSet("nightly", stderr, "-config FILE [-dry-run [-mask-rules]] [-v]", "-demo [-keep] [-v]")
	config := fs.String("config", "", "the environment's TOML config `file`")
	dryRun := fs.Bool("dry-run", false, "say which backup, release and migrations a rebuild would use; change nothing")
	maskRules := fs.Bool("mask-rules", false, "with -dry-run: print starter [mask] rules for the columns of the backup that lack one")
	demo := fs.Bool("demo", false, "run the demo program: a whole rebuild on throwaway local servers")
	keep := fs.Bool("keep", false, "with -demo: keep the demo's folder")
	verbose := fs.Bool("v", false, "debug logging")
	if err := fs.Parse(args); err != nil {
		return err
	}
	switch {
	case *demo && (*config != "" || *dryRun):
		return fs.Usagef("-demo takes neither -config nor -dry-run")
	case *demo:
		self, err := os.Executable()
		if err != nil {
			return err
		}
		wd, err := os.Getwd()
		if err != nil {
			return err
		}
		var demoArgs []string
		if *keep {
			demoArgs = append(demoArgs, "-keep")
		}
		if *verbose {
			demoArgs = append(demoArgs, "-v")
		}
		return demoLauncher{Self: self, Dir: wd}.Run(ctx, demoArgs, stdout, stderr)
	case *keep:
		return fs.Usagef("-keep goes with -demo")
	case *maskRules && !*dryRun:
		return fs.Usagef("-mask-rules goes with -dry-run")
	case *config == "":
		return fs.Usagef("-config FILE or -demo is required")
	}
	log := cli.Logger(stderr, *verbose)
	cfg, err := environment.Load(*config)
	if err != nil {
		return err
	}
	if err := cfg.RequireBackups(); err != nil {
		return err
	}
	rb, err := staging.Open(cfg, staging.OpenOptions{Logger: log, Observer: progressview.New(stderr, log, 0)})
	if err != nil {
		return err
	}
	defer rb.Close()
	if *maskRules {
		rules, err := rb.MaskRules(ctx)
		if err != nil {
			return err
		}
		fmt.Fprint(stdout, rules)
		return nil
	}
	var rep *staging.Report
	if *dryRun {
		rep, err = rb.Plan(ctx)
	} else {
		rep, err = rb.Run(ctx)
	}
	if rep != nil {
		fmt.Fprint(stdout, rep.Text())
	}
	return err
}
