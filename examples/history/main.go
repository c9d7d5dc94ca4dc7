// Command history shows an environment's runs as one self-contained HTML page: a table
// of the runs and plots of the step durations, the downtime, the restore throughput
// per night and the slowest migrations (package staging/historypage).
//
//	history -config FILE -out PAGE.html   write the page of FILE's state_dir history
//	history -config FILE -serve ADDR      serve it on ADDR (host:port), rebuilt for
//	                                      each request, until interrupted
//
// The page loads nothing from anywhere: open it from disk, mail it, or serve it.
//
// Exit status: 0 done (or -serve interrupted); 1 failed; 2 usage or config error.
package main

import (
	"context"
	"fmt"
	"io"
	"net"

	"github.com/restage/restage/examples/internal/cli"
	"github.com/restage/restage/examples/internal/environment"
	"github.com/restage/restage/staging"
	"github.com/restage/restage/staging/historypage"
	"github.com/restage/restage/staging/train"
)

func main() { cli.Main("history", run, staging.ExitStatus) }

func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := cli.NewFlagSet("history", stderr, "-config FILE -out PAGE.html [-runs N]", "-config FILE -serve ADDR [-runs N]")
	config := fs.Config("the environment's TOML config `file` (the history is its state_dir's)")
	out := fs.String("out", "", "write the page to `file` (atomically)")
	serve := fs.String("serve", "", "serve the page on `addr` (host:port), rebuilt for each request")
	runs := fs.Int("runs", historypage.DefaultRuns, "show the newest `n` runs")
	if err := fs.Parse(args); err != nil {
		return err
	}
	switch {
	case (*out == "") == (*serve == ""):
		return fs.Usagef("give one of -out PAGE.html and -serve ADDR")
	case *runs < 1:
		return fs.Usagef("-runs %d: want at least 1", *runs)
	}
	// Any environment's history: a production config (role = "production", whose promotes
	// are in its history) loads as the train loads it.
	cfg, err := train.LoadEnvironment(*config, environment.Drivers())
	if err != nil {
		return err
	}
	page, err := historypage.New(historypage.Config{
		StateDir: cfg.StateDir,
		Options:  historypage.Options{Runs: *runs},
		Logger:   cli.Logger(stderr, false),
	})
	if err != nil {
		return err
	}
	if *out != "" {
		return page.WriteFile(*out)
	}
	l, err := net.Listen("tcp", *serve)
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "serving the history of %s on http://%s/\n", cfg.Environment, l.Addr())
	return page.Serve(ctx, l)
}
