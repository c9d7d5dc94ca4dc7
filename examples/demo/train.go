package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"time"

	"github.com/restage/restage/staging"
	"github.com/restage/restage/staging/stagingtest"
	"github.com/restage/restage/staging/train"
)

// demoTrain shows the weekly release train on a throwaway world: a bare git repository
// whose devel branch is at patch 5 and staging branch at production's patch 3,
// production's first release (a promote with nothing to migrate), the cut (devel
// becomes the staging branch, tagged), staging rebuilt at once (cut -now: the
// migrations timed on a copy of production), the promote (migrations in place on
// production, every row kept) and the status of both environments.
func demoTrain(ctx context.Context, keep bool, stdout io.Writer, log *slog.Logger) error {
	start := time.Now()
	fmt.Fprintln(stdout, "== setting up: production and staging PostgreSQL, bug tracker data, a backup, a git repository, an SMTP server")
	w, done, err := newWorld(ctx, "restage-demo-train-", keep, stdout, stagingtest.Options{Logger: log})
	if err != nil {
		return err
	}
	defer done()
	tr, err := w.AddTrain(ctx, []string{"test", "-d", "migrations"})
	if err != nil {
		return fmt.Errorf("setting up: %w", err)
	}
	defer tr.Close()
	fmt.Fprintf(stdout, "   %s: devel at patch %d, staging at patch %d (production's level)\n   configs: %s, %s, %s\n\n",
		tr.Repo, stagingtest.CodePatch, stagingtest.ProductionPatch, tr.ConfigPath, tr.Prod.ConfigPath, w.ConfigPath)

	promote := func(title string) error {
		fmt.Fprintf(stdout, "== %s: train promote -config %s\n", title, tr.Prod.ConfigPath)
		c, err := staging.LoadProduction(tr.Prod.ConfigPath, nil)
		if err != nil {
			return err
		}
		rb, err := staging.OpenProduction(c, staging.OpenOptions{Logger: log})
		if err != nil {
			return err
		}
		defer rb.Close()
		rep, err := rb.Promote(ctx, staging.PromoteOptions{RequestedBy: "demo"})
		if rep != nil {
			fmt.Fprintf(stdout, "%s\n", rep.Text())
		}
		return err
	}
	if err := promote("production's first release (the staging branch at patch 3)"); err != nil {
		return err
	}
	count := func() string {
		return row(ctx, w.Production.DSN(w.ProdDB), "SELECT (SELECT count(*) FROM person) || ' people, ' || (SELECT count(*) FROM bug) || ' bugs, ' || (SELECT count(*) FROM comment) || ' comments'")
	}
	before := count()

	c, err := train.Load(tr.ConfigPath)
	if err != nil {
		return err
	}
	t, err := train.Open(c, train.Options{Logger: log})
	if err != nil {
		return err
	}
	defer t.Close()
	fmt.Fprintf(stdout, "== Monday: train cut -config %s -now\n", tr.ConfigPath)
	cut, err := t.Cut(ctx, train.CutOptions{RequestedBy: "demo"})
	if cut != nil {
		fmt.Fprintf(stdout, "%s\n", cut.Text())
	}
	if err != nil {
		return err
	}
	reps, err := t.RebuildStaging(ctx, staging.OpenOptions{Logger: log})
	for _, r := range reps {
		fmt.Fprintf(stdout, "%s\n", r.Text())
	}
	if err != nil {
		return err
	}
	if err := promote("the next Monday (staging's migrations timed, under the limit)"); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "production's rows: before the promote %s; after %s\n\n", before, count())
	fmt.Fprintf(stdout, "== train status -config %s\n", tr.ConfigPath)
	st, err := t.Status(ctx)
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "%s\n== GET / on production\n%s\n", st.Text(), indent(get(ctx, tr.Prod.AppURL+"/")))
	fmt.Fprintf(stdout, "== mail received: %d reports\n", len(w.Mail.Mails()))
	fmt.Fprintf(stdout, "== demo finished in %s\n", time.Since(start).Round(100*time.Millisecond))
	return nil
}
