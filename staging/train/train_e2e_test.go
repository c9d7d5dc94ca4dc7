package train_test

import (
	"context"
	"errors"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/restage/restage/dbrestore"
	"github.com/restage/restage/dbrestore/pgtest"
	"github.com/restage/restage/staging"
	"github.com/restage/restage/staging/stagingtest"
	"github.com/restage/restage/staging/train"
)

// newTrainWorld is a test world (production and staging servers, a backup, the SMTP
// server) with its release train: devel at patch 5, staging and production at patch 3.
func newTrainWorld(t *testing.T) (*stagingtest.World, *stagingtest.Train) {
	t.Helper()
	w := stagingtest.Start(t, stagingtest.Options{People: 500, Bugs: 3000})
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	tr, err := w.AddTrain(ctx, []string{"test", "!", "-e", "BROKEN"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(tr.Close)
	return w, tr
}

func ctxT(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	t.Cleanup(cancel)
	return ctx
}

func loadTrain(t *testing.T, path string) *train.Config {
	t.Helper()
	c, err := train.Load(path)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func promote(t *testing.T, path string) (*staging.Report, error) {
	t.Helper()
	rb := openProduction(t, path)
	defer rb.Close()
	return rb.Promote(ctxT(t), staging.PromoteOptions{RequestedBy: "tester"})
}

func mustPromote(t *testing.T, path string) *staging.Report {
	t.Helper()
	rep, err := promote(t, path)
	if err != nil {
		t.Fatalf("promote: %v\n%s", err, text(rep))
	}
	return rep
}

func text(rep *staging.Report) string {
	if rep == nil {
		return "(no report)"
	}
	return rep.Text()
}

func rebuild(t *testing.T, path string) *staging.Report {
	t.Helper()
	rb := openStaging(t, path)
	defer rb.Close()
	rep, err := rb.Run(ctxT(t))
	if err != nil {
		t.Fatalf("rebuild: %v\n%s", err, text(rep))
	}
	return rep
}

func get(t *testing.T, url string) string {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp.Status + " " + string(body)
}

// counts returns the row counts of the bug tracker's tables in database on srv.
func counts(t *testing.T, srv *pgtest.Server, database string) map[string]int64 {
	t.Helper()
	out := map[string]int64{}
	for _, table := range []string{"person", "bug", "comment", "session"} {
		out[table] = srv.QueryInt(t, database, "SELECT count(*) FROM "+table)
	}
	return out
}

func patchLevel(t *testing.T, srv *pgtest.Server, database string) int64 {
	t.Helper()
	return srv.QueryInt(t, database, "SELECT version FROM schema_migrations")
}

func databases(t *testing.T, srv *pgtest.Server) string {
	t.Helper()
	conn := srv.Connect(t, "postgres")
	rows, err := conn.Query(context.Background(), "SELECT datname FROM pg_database WHERE NOT datistemplate ORDER BY 1")
	if err != nil {
		t.Fatal(err)
	}
	names, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		t.Fatal(err)
	}
	return strings.Join(names, " ")
}

func currentRelease(t *testing.T, current string) string {
	t.Helper()
	target, err := os.Readlink(current)
	if err != nil {
		t.Fatal(err)
	}
	return filepath.Base(target)
}

// The week of the train, on real servers: production gets its first release; a cut
// refused by the check, then made; a fix merged into staging; a cut refused as moving
// staging backwards; staging's nightly deploys the staging head; two preflight
// refusals that change nothing; the promote with migrations in place; the status.
func TestTrainWeek(t *testing.T) {
	w, tr := newTrainWorld(t)
	ctx := ctxT(t)
	prodDB := w.ProdDB

	// Production's first release: the staging branch at patch 3, nothing to migrate.
	rep := mustPromote(t, tr.Prod.ConfigPath)
	if rep.Kind != "promote" || rep.Schema == nil || rep.Schema.From != 3 || rep.Schema.To != 3 || rep.Release.Revision == "" {
		t.Fatalf("first promote:\n%s", rep.Text())
	}
	if got := get(t, tr.Prod.AppURL+"/+health"); !strings.Contains(got, "patch=3") {
		t.Fatalf("production's health: %s", got)
	}
	before := counts(t, w.Production, prodDB)

	// The check refuses a broken devel; nothing moves.
	broken := commit(t, ctx, tr, "break devel", map[string]string{"BROKEN": "x\n"})
	git(t, ctx, tr, "push", "-q", tr.Repo, broken+":refs/heads/devel")
	if rep, err := cut(t, loadTrain(t, tr.ConfigPath)); !errors.Is(err, train.ErrCheck) || rep.Outcome != train.OutcomeRefused {
		t.Fatalf("cut of a broken devel: %v, outcome %s\n%s", err, rep.Outcome, rep.Text())
	}
	if tr.Ref(ctx, "staging") != tr.Patch3 || tr.Ref(ctx, "refs/tags/staging-2026-W49") != "" {
		t.Fatal("a refused cut moved staging or tagged")
	}
	git(t, ctx, tr, "push", "-q", "--force", tr.Repo, tr.Patch5+":refs/heads/devel")
	git(t, ctx, tr, "reset", "-q", "--hard", tr.Patch5)

	// The cut: staging and the week's tag at devel's head, the report mailed under its topic.
	mailsBefore := len(w.Mail.Mails())
	cutRep, err := cut(t, loadTrain(t, tr.ConfigPath))
	if err != nil {
		t.Fatalf("cut: %v\n%s", err, cutRep.Text())
	}
	if tr.Ref(ctx, "staging") != tr.Patch5 || tr.Ref(ctx, "refs/tags/staging-2026-W49") != tr.Patch5 || cutRep.Replaced != tr.Patch3 {
		t.Fatalf("after the cut: staging %s, tag %s\n%s", tr.Ref(ctx, "staging"), tr.Ref(ctx, "refs/tags/staging-2026-W49"), cutRep.Text())
	}
	if len(cutRep.Commits) != 2 {
		t.Errorf("the cut lists %d commits, want 2 (patches 4 and 5)\n%s", len(cutRep.Commits), cutRep.Text())
	}
	mails := w.Mail.Mails()
	if len(mails) != mailsBefore+1 || !strings.Contains(string(mails[len(mails)-1].Data), "release-train") {
		t.Errorf("no mail under release-train: %d mails", len(mails)-mailsBefore)
	}

	// A fix merged into staging during the week; devel lacks it, so a cut would move
	// staging backwards: refused.
	git(t, ctx, tr, "checkout", "-q", "-b", "fix", tr.Patch5)
	fix := commit(t, ctx, tr, "a fix merged into staging", map[string]string{"FIX.txt": "fixed\n"})
	git(t, ctx, tr, "push", "-q", tr.Repo, fix+":refs/heads/staging")
	if _, err := cut(t, loadTrain(t, tr.ConfigPath)); !errors.Is(err, train.ErrBackwards) {
		t.Fatalf("cut with a fix only on staging: %v", err)
	}
	if tr.Ref(ctx, "staging") != fix {
		t.Fatal("a refused cut moved staging")
	}

	// The next nightly deploys the staging head, fix included, migrating a copy of production.
	rep = rebuild(t, w.ConfigPath)
	if !strings.Contains(rep.Release.Revision, fix) {
		t.Errorf("staging's rebuild built %s, want the staging head %s", rep.Release.Revision, fix)
	}
	if _, err := os.Stat(filepath.Join(w.Current, "FIX.txt")); err != nil {
		t.Errorf("the fix is not on staging: %v", err)
	}
	if rep.Schema == nil || len(rep.Schema.Migrations) != 2 {
		t.Fatalf("staging's rebuild ran no migrations:\n%s", rep.Text())
	}

	// Preflight: a transaction held open on production refuses the promote; nothing changes.
	release := currentRelease(t, tr.Prod.Current)
	conn := w.Production.Connect(t, prodDB)
	tx, err := conn.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tx.Exec(ctx, "SELECT count(*) FROM bug"); err != nil {
		t.Fatal(err)
	}
	time.Sleep(6 * time.Second) // over the config's max_transaction_age of 5s
	rep, err = promote(t, tr.Prod.ConfigPath)
	t.Logf("the refused promote:\n%s", text(rep))
	if !errors.Is(err, staging.ErrPreflight) || !strings.Contains(err.Error(), "transaction has been open") {
		t.Fatalf("promote with an old transaction open: %v\n%s", err, text(rep))
	}
	_ = tx.Rollback(ctx)
	unchanged := func(what string) {
		t.Helper()
		if got := currentRelease(t, tr.Prod.Current); got != release {
			t.Errorf("%s: production's release changed to %s", what, got)
		}
		if v := patchLevel(t, w.Production, prodDB); v != 3 {
			t.Errorf("%s: production's patch level is %d", what, v)
		}
		if got := get(t, tr.Prod.AppURL+"/+health"); !strings.Contains(got, "patch=3") || !strings.Contains(got, release) {
			t.Errorf("%s: production's health: %s", what, got)
		}
	}
	unchanged("old transaction")
	if rep.Downtime != 0 || rep.Outcome != staging.OutcomeFailed || !strings.Contains(rep.State, "untouched") {
		t.Errorf("a refused promote's report:\n%s", rep.Text())
	}

	// Preflight: a migration that staging ran slower than the limit.
	slow := filepath.Join(w.Dir, "production-slow.toml")
	data, err := os.ReadFile(tr.Prod.ConfigPath)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(slow, []byte(strings.Replace(string(data), `max_migration_time  = "15s"`, `max_migration_time  = "1ns"`, 1)), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := promote(t, slow); !errors.Is(err, staging.ErrPreflight) || !strings.Contains(err.Error(), "4_bug_importance took") {
		t.Fatalf("promote of migrations staging ran too slowly: %v", err)
	}
	unchanged("slow migration")

	// The promote: the staging head on production, migrations in place, every row kept.
	rep = mustPromote(t, tr.Prod.ConfigPath)
	t.Logf("the promote:\n%s", rep.Text())
	if rep.Schema.From != 3 || rep.Schema.To != 5 || len(rep.Schema.Migrations) != 2 {
		t.Errorf("promote's schema: %+v", rep.Schema)
	}
	if rep.Downtime <= 0 || !strings.Contains(rep.State, "outage") {
		t.Errorf("promote's outage not measured:\n%s", rep.Text())
	}
	after := counts(t, w.Production, prodDB)
	for table, n := range before {
		if after[table] != n {
			t.Errorf("production's %s: %d rows before the promote, %d after", table, n, after[table])
		}
	}
	if v := patchLevel(t, w.Production, prodDB); v != 5 {
		t.Errorf("production's patch level: %d", v)
	}
	newRelease := currentRelease(t, tr.Prod.Current)
	if got := get(t, tr.Prod.AppURL+"/"); newRelease == release || !strings.Contains(got, "release "+newRelease) {
		t.Errorf("production answers %q, want release %s", got, newRelease)
	}
	if _, err := os.Stat(filepath.Join(tr.Prod.Current, "FIX.txt")); err != nil {
		t.Errorf("the staging head's fix is not on production: %v", err)
	}
	if got := databases(t, w.Production); got != "bugs_prod postgres" {
		t.Errorf("production's databases after the promote: %s", got)
	}
	hist, err := staging.History(tr.Prod.StateDir)
	if err != nil || len(hist) != 4 || hist[3].Kind != "promote" || hist[3].Outcome != staging.OutcomeOK {
		t.Errorf("production's history: %d runs, %v", len(hist), err)
	}

	// Status: where each environment stands.
	tt := openTrain(t, loadTrain(t, tr.ConfigPath))
	st, err := tt.Status(ctx)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("status:\n%s", st.Text())
	if st.StagingHead != fix || st.DevelHead != tr.Patch5 || st.DevelNotOnStaging == nil || *st.DevelNotOnStaging != 0 ||
		st.StagingNotOnProduction == nil || *st.StagingNotOnProduction != 0 {
		t.Errorf("status:\n%s", st.Text())
	}
	if st.LastCut == nil || st.LastCut.Outcome != train.OutcomeRefused || st.LastCut.Tag != "staging-2026-W49" {
		t.Errorf("status's last cut (the refused backwards one): %+v", st.LastCut)
	}
	if len(st.Environments) != 2 {
		t.Fatalf("status lists %d environments:\n%s", len(st.Environments), st.Text())
	}
	prod, stg := st.Environments[0], st.Environments[1]
	if prod.Role != "production" || prod.Commit != fix || prod.Ref != "staging" || prod.Schema == nil || *prod.Schema != 5 ||
		prod.LastRun == nil || prod.LastRun.Kind != "promote" || prod.LastRun.Outcome != staging.OutcomeOK || len(prod.Problems) > 0 {
		t.Errorf("production's status: %+v\n%s", prod, st.Text())
	}
	if stg.Role != "staging" || stg.Commit != fix || stg.Schema == nil || *stg.Schema != 5 ||
		stg.LastRun == nil || stg.LastRun.Kind != "rebuild" || len(stg.Problems) > 0 {
		t.Errorf("staging's status: %+v\n%s", stg, st.Text())
	}
	// The week's tag names devel's head, not the fix: production's commit has no tag.
	if len(prod.Tags) != 0 {
		t.Errorf("production's tags: %v", prod.Tags)
	}

	// Devel takes the fix; the next cut moves staging on and -now rebuilds staging at once.
	git(t, ctx, tr, "checkout", "-q", "-B", "devel", tr.Patch5)
	git(t, ctx, tr, "merge", "-q", "--no-edit", "fix")
	next := commit(t, ctx, tr, "more work on devel", map[string]string{"NEXT.txt": "next\n"})
	git(t, ctx, tr, "push", "-q", tr.Repo, next+":refs/heads/devel")
	c := loadTrain(t, tr.ConfigPath)
	c.Tag = "staging-%Y-W%V-2"
	if rep, err := cut(t, c); err != nil {
		t.Fatalf("second cut: %v\n%s", err, rep.Text())
	}
	reps, err := openTrain(t, c).RebuildStaging(ctx, staging.OpenOptions{Logger: discard()})
	if err != nil || len(reps) != 1 || !strings.Contains(reps[0].Release.Revision, next) {
		t.Fatalf("cut -now: %v %v", err, reps)
	}
	if _, err := os.Stat(filepath.Join(w.Current, "NEXT.txt")); err != nil {
		t.Errorf("staging does not run devel's new head: %v", err)
	}
}

// Production is a role: a staging config never promotes, a production config never
// rebuilds, deploys or dry-runs, and a staging config pointed at the production server
// is refused by the guard before anything changes.
func TestRolesAreKeptApart(t *testing.T) {
	w, tr := newTrainWorld(t)
	ctx := ctxT(t)
	before := counts(t, w.Production, w.ProdDB)

	// A promote config whose role is staging: refused as a config error (exit 2).
	if _, err := staging.LoadProduction(w.ConfigPath, nil); !errors.Is(err, staging.ErrConfig) || !strings.Contains(err.Error(), `role "staging"`) {
		t.Errorf("LoadProduction(staging.toml): %v", err)
	}
	rb := openStaging(t, w.ConfigPath)
	_, err := rb.Promote(ctx, staging.PromoteOptions{})
	rb.Close()
	if !errors.Is(err, staging.ErrRole) || staging.ExitStatus(err) != staging.ExitUsage {
		t.Errorf("a staging Rebuilder promoted: %v", err)
	}
	// A production config never loads for nightly or experimental.
	if _, err := staging.LoadEnvironment(tr.Prod.ConfigPath); !errors.Is(err, staging.ErrConfig) || !strings.Contains(err.Error(), "production") {
		t.Errorf("LoadEnvironment(production.toml): %v", err)
	}
	// A production Rebuilder refuses every flow but the promote.
	rb = openProduction(t, tr.Prod.ConfigPath)
	defer rb.Close()
	for name, flow := range map[string]func() (*staging.Report, error){
		"rebuild": func() (*staging.Report, error) { return rb.Run(ctx) },
		"deploy":  func() (*staging.Report, error) { return rb.Deploy(ctx, staging.DeployOptions{}) },
		"dry run": func() (*staging.Report, error) { return rb.Plan(ctx) },
	} {
		if _, err := flow(); !errors.Is(err, dbrestore.ErrProduction) || staging.ExitStatus(err) != staging.ExitUsage {
			t.Errorf("a production %s: %v", name, err)
		}
	}
	// A rebuild config pointed at the production server: the guard refuses it.
	data, err := os.ReadFile(w.ConfigPath)
	if err != nil {
		t.Fatal(err)
	}
	atProd := filepath.Join(w.Dir, "staging-at-production.toml")
	cfgText := strings.Replace(string(data), w.Staging.AdminDSN(), w.Production.AdminDSN(), 1)
	cfgText = strings.Replace(cfgText, `name         = "bugs_staging"`, `name         = "bugs_prod"`, 1)
	cfgText = strings.Replace(cfgText, `protect      = ["bugs_prod", `, `protect      = [`, 1)
	if err := os.WriteFile(atProd, []byte(cfgText), 0o644); err != nil {
		t.Fatal(err)
	}
	srb := openStaging(t, atProd)
	defer srb.Close()
	rep, err := srb.Run(ctx)
	if !errors.Is(err, dbrestore.ErrProduction) {
		t.Fatalf("a rebuild of the production server: %v\n%s", err, text(rep))
	}
	if got := databases(t, w.Production); got != "bugs_prod postgres" {
		t.Errorf("production's databases: %s", got)
	}
	after := counts(t, w.Production, w.ProdDB)
	for table, n := range before {
		if after[table] != n {
			t.Errorf("production's %s: %d rows, now %d", table, n, after[table])
		}
	}
}

// openStaging opens the Rebuilder of the staging (or experimental) config at path; the
// caller closes it.
func openStaging(t *testing.T, path string) *staging.Rebuilder {
	t.Helper()
	return openRebuilder(t, path, staging.LoadEnvironmentWith, staging.Open)
}

// openProduction opens the Rebuilder of the production config at path; the caller
// closes it.
func openProduction(t *testing.T, path string) *staging.Rebuilder {
	t.Helper()
	return openRebuilder(t, path, staging.LoadProduction, staging.OpenProduction)
}

func openRebuilder(t *testing.T, path string,
	load func(string, *staging.Drivers) (*staging.EnvironmentConfig, error),
	open func(*staging.EnvironmentConfig, staging.OpenOptions) (*staging.Rebuilder, error),
) *staging.Rebuilder {
	t.Helper()
	c, err := load(path, nil)
	if err != nil {
		t.Fatal(err)
	}
	rb, err := open(c, staging.OpenOptions{Logger: discard()})
	if err != nil {
		t.Fatal(err)
	}
	return rb
}
