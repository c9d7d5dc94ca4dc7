package train_test

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/restage/restage/staging"
	"github.com/restage/restage/staging/stagingtest"
)

// writeStagingHistory gives staging's history one run that applied migrations 4 and 5
// in a second each: the timings the promote's preflight reads.
func writeStagingHistory(t *testing.T, dir string) {
	t.Helper()
	rep := staging.Report{ID: "20261130T002500Z-000000000000", Environment: "staging", Kind: "rebuild",
		Outcome: staging.OutcomeOK, Started: time.Now().Add(-time.Hour),
		Schema: &staging.SchemaInfo{From: 3, To: 5, Migrations: []staging.MigrationTime{
			{Version: 4, Name: "bug_importance", Duration: time.Second}, {Version: 5, Name: "bug_heat", Duration: time.Second}}}}
	line, err := rep.MarshalJSON()
	if err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, staging.HistoryFile), append(line, '\n'), 0o600); err != nil {
		t.Fatal(err)
	}
}

// A connection of another user refuses the promote; a release whose health gate fails
// is replaced by the previous one (rolled back when no migration ran); after migrations
// ran in place, the report says the schema is ahead of the restored code.
func TestPromoteRefusalsAndFailedHealthGate(t *testing.T) {
	w, tr := newTrainWorld(t)
	ctx := ctxT(t)
	prodDB := w.ProdDB
	mustPromote(t, tr.Prod.ConfigPath)
	first := currentRelease(t, tr.Prod.Current)
	before := counts(t, w.Production, prodDB)

	data, err := os.ReadFile(tr.Prod.ConfigPath)
	if err != nil {
		t.Fatal(err)
	}
	quick := filepath.Join(w.Dir, "production-quick.toml")
	cfgText := strings.Replace(string(data), `health_timeout = "30s"`, `health_timeout = "3s"`, 1)
	cfgText = strings.Replace(cfgText, `staging_state_dir   = "state"`, `staging_state_dir   = "fake-staging-state"`, 1)
	if err := os.WriteFile(quick, []byte(cfgText), 0o644); err != nil {
		t.Fatal(err)
	}
	writeStagingHistory(t, filepath.Join(w.Dir, "fake-staging-state"))

	// Another user's connection: refused, nothing changed.
	w.Production.Exec(t, "postgres", "CREATE ROLE alice LOGIN")
	dsn := strings.Replace(w.Production.DSN(prodDB), "://"+w.Production.User+"@", "://alice@", 1)
	dsn = strings.Replace(dsn, "://"+w.Production.User+":"+w.Production.Password+"@", "://alice@", 1)
	alice, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	rep, err := promote(t, quick)
	alice.Close(ctx)
	if !errors.Is(err, staging.ErrPreflight) || !strings.Contains(err.Error(), `connection(s) of user "alice"`) {
		t.Fatalf("promote with alice connected: %v\n%s", err, text(rep))
	}
	if currentRelease(t, tr.Prod.Current) != first || patchLevel(t, w.Production, prodDB) != 3 {
		t.Fatal("a refused promote changed production")
	}

	// A broken release, nothing to migrate: rolled back, production healthy on the release before.
	git(t, ctx, tr, "checkout", "-q", "-B", "broken3", tr.Patch3)
	broken3 := commit(t, ctx, tr, "a release that never gets healthy", map[string]string{stagingtest.FailHealthFile: "x\n"})
	git(t, ctx, tr, "push", "-q", tr.Repo, broken3+":refs/heads/staging")
	rep, err = promote(t, quick)
	if !errors.Is(err, staging.ErrRolledBack) || rep.Outcome != staging.OutcomeRolledBack || !strings.Contains(rep.State, "no migration ran") {
		t.Fatalf("a broken release without migrations: %v\n%s", err, text(rep))
	}
	if got := get(t, tr.Prod.AppURL+"/+health"); currentRelease(t, tr.Prod.Current) != first || !strings.Contains(got, "200 OK") {
		t.Fatalf("production after the rollback: release %s, health %s", currentRelease(t, tr.Prod.Current), got)
	}

	// A broken release with migrations: they ran in place; the previous release is put
	// back, and the report says the schema is ahead of it and what to decide.
	git(t, ctx, tr, "checkout", "-q", "-B", "broken5", tr.Patch5)
	broken5 := commit(t, ctx, tr, "patch 5, never healthy", map[string]string{stagingtest.FailHealthFile: "x\n"})
	git(t, ctx, tr, "push", "-q", "--force", tr.Repo, broken5+":refs/heads/staging")
	rep, err = promote(t, quick)
	t.Logf("the failed promote:\n%s", text(rep))
	if err == nil || rep.Outcome != staging.OutcomeBroken || !strings.Contains(rep.State, "THE SCHEMA IS AHEAD OF THE RESTORED CODE") ||
		!strings.Contains(rep.State, "went from patch level 3 to 5") || !strings.Contains(rep.State, "operator must decide") {
		t.Fatalf("a broken release after migrations: %v\n%s", err, text(rep))
	}
	if currentRelease(t, tr.Prod.Current) != first || patchLevel(t, w.Production, prodDB) != 5 {
		t.Errorf("production: release %s (want %s back), patch level %d", currentRelease(t, tr.Prod.Current), first, patchLevel(t, w.Production, prodDB))
	}
	if rep.Downtime <= 0 {
		t.Error("no outage measured")
	}
	after := counts(t, w.Production, prodDB)
	for table, n := range before {
		if after[table] != n {
			t.Errorf("production's %s: %d rows, now %d", table, n, after[table])
		}
	}
	if got := databases(t, w.Production); got != "bugs_prod postgres" {
		t.Errorf("production's databases: %s", got)
	}
}
