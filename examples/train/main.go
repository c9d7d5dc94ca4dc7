// Command train runs the weekly release train: devel's head becomes the new staging
// branch (cut), the staging branch goes to production (promote), and status says where
// every environment stands.
//
//	train cut -config train.toml [-now] [-v]
//	train promote -config production.toml [-v]
//	train status -config train.toml [-json]
//
// cut tags devel's head (the config's tag pattern, staging-%Y-W%V by default) and moves
// the staging branch to it, refusing to move it backwards or past a failing check; its
// report goes out under the topic release-train. -now rebuilds the staging environments
// listed in the config at once instead of at the next nightly; their configs are checked
// before the cut, and a bad one stops it (exit 2, nothing cut). promote takes a config
// whose role is "production": it releases the staging branch's head, runs the pending
// migrations in place on the live database after a preflight, restarts the service and
// checks its health; it never restores, copies or renames a database.
//
// Exit status, as nightly's: 0 done; 1 failed or refused (nothing changed, or put back;
// the report says which); 2 usage or config error; 3 another run holds the lock; 4 done
// but the report could be neither delivered nor spooled.
package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"

	"github.com/restage/restage/examples/internal/cli"
	"github.com/restage/restage/examples/internal/environment"
	"github.com/restage/restage/examples/internal/progressview"
	"github.com/restage/restage/staging"
	"github.com/restage/restage/staging/train"
)

func main() { cli.Main("train", run, staging.ExitStatus) }

var synopsis = []string{
	"cut -config train.toml [-now] [-v]",
	"promote -config production.toml [-v]",
	"status -config train.toml [-json]",
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	top := cli.NewFlagSet("train", stderr, synopsis...)
	if len(args) == 0 {
		return top.Usagef("a command is required: cut, promote or status")
	}
	switch args[0] {
	case "-h", "-help", "--help", "help":
		top.PrintHelp()
		return cli.ErrHelp
	case "cut":
		return cut(ctx, args[1:], stdout, stderr)
	case "promote":
		return promote(ctx, args[1:], stdout, stderr)
	case "status":
		return status(ctx, args[1:], stdout, stderr)
	}
	return top.Usagef("unknown command %q: want cut, promote or status", args[0])
}

func cut(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := cli.NewFlagSet("train", stderr, synopsis[0])
	config := fs.Config("the train's TOML config `file`")
	now := fs.Bool("now", false, "rebuild the staging environments at once after the cut")
	verbose := fs.Bool("v", false, "debug logging")
	if err := fs.Parse(args); err != nil {
		return err
	}
	log := cli.Logger(stderr, *verbose)
	t, err := openTrain(*config, log)
	if err != nil {
		return err
	}
	defer t.Close()
	if *now {
		// The environments' configs are checked before anything runs (a bad one would
		// otherwise fail -now after the cut had moved the staging branch).
		if err := t.CheckStaging(); err != nil {
			return fmt.Errorf("nothing cut: %w", err)
		}
	}
	rep, err := t.Cut(ctx, train.CutOptions{RequestedBy: cli.Requester()})
	if rep != nil {
		fmt.Fprint(stdout, rep.Text())
	}
	if err != nil || !*now {
		return err
	}
	reps, err := t.RebuildStaging(ctx, staging.OpenOptions{Logger: log, Observer: progressview.New(stderr, log, 0)})
	for _, r := range reps {
		fmt.Fprintf(stdout, "\n%s", r.Text())
	}
	return err
}

func promote(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := cli.NewFlagSet("train", stderr, synopsis[1])
	config := fs.Config("production's TOML config `file` (role = \"production\")")
	verbose := fs.Bool("v", false, "debug logging")
	if err := fs.Parse(args); err != nil {
		return err
	}
	c, err := staging.LoadProduction(*config, environment.Drivers())
	if err != nil {
		return err
	}
	log := cli.Logger(stderr, *verbose)
	rb, err := staging.OpenProduction(c, staging.OpenOptions{Logger: log, Observer: progressview.New(stderr, log, 0)})
	if err != nil {
		return err
	}
	defer rb.Close()
	rep, err := rb.Promote(ctx, staging.PromoteOptions{RequestedBy: cli.Requester()})
	if rep != nil {
		fmt.Fprint(stdout, rep.Text())
	}
	return err
}

func status(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := cli.NewFlagSet("train", stderr, synopsis[2])
	config := fs.Config("the train's TOML config `file`")
	asJSON := fs.Bool("json", false, "print JSON")
	if err := fs.Parse(args); err != nil {
		return err
	}
	t, err := openTrain(*config, cli.Logger(stderr, false))
	if err != nil {
		return err
	}
	defer t.Close()
	st, err := t.Status(ctx)
	if err != nil {
		return err
	}
	if *asJSON {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(st)
	}
	fmt.Fprint(stdout, st.Text())
	return nil
}

// openTrain loads the train's config at path, with the binaries' drivers for the
// staging environments it lists, and opens the train.
func openTrain(path string, log *slog.Logger) (*train.Train, error) {
	c, err := train.LoadWith(path, environment.Drivers())
	if err != nil {
		return nil, err
	}
	return train.Open(c, train.Options{Logger: log})
}
