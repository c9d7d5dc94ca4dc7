package train_test

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/restage/restage/staging"
)

// A migration pushed to the staging branch after staging's nightly ran it, under the same
// version and name but with other statements, is refused by the promote's preflight:
// staging's history records the SHA-256 of each file it ran, and production runs only
// those files. Once a nightly has run the new file, it may go.
func TestPromoteRefusesAMigrationStagingRanOtherwise(t *testing.T) {
	w, tr := newTrainWorld(t)
	ctx := ctxT(t)
	mustPromote(t, tr.Prod.ConfigPath) // production at patch 3
	git(t, ctx, tr, "push", "-q", tr.Repo, tr.Patch5+":refs/heads/staging")
	rebuild(t, w.ConfigPath) // staging runs 4 and 5
	before := counts(t, w.Production, w.ProdDB)

	heat := filepath.Join(tr.Work, "migrations", "5_bug_heat.up.sql")
	sql, err := os.ReadFile(heat)
	if err != nil {
		t.Fatal(err)
	}
	git(t, ctx, tr, "checkout", "-q", "-B", "late", tr.Patch5)
	late := commit(t, ctx, tr, "5 again, with a little more", map[string]string{heat: string(sql) + "\nDELETE FROM comment;\n"})
	git(t, ctx, tr, "push", "-q", tr.Repo, late+":refs/heads/staging")

	rep, err := promote(t, tr.Prod.ConfigPath)
	if !errors.Is(err, staging.ErrPreflight) || !strings.Contains(err.Error(), "5_bug_heat is not the file staging ran") {
		t.Errorf("promote of a migration staging ran otherwise: %v\n%s", err, text(rep))
	}
	if v := patchLevel(t, w.Production, w.ProdDB); v != 3 {
		t.Errorf("production at patch %d", v)
	}
	if after := counts(t, w.Production, w.ProdDB); fmt.Sprint(after) != fmt.Sprint(before) {
		t.Errorf("production's rows changed: %v, then %v", before, after)
	}

	rebuild(t, w.ConfigPath) // staging runs the new 5
	if rep, err := promote(t, tr.Prod.ConfigPath); err != nil || rep.Schema.To != 5 {
		t.Fatalf("promote after staging ran it: %v\n%s", err, text(rep))
	}
}

// Production only runs code staging has run: a commit pushed to the staging branch after
// staging's newest successful rebuild (code only, no migration) refuses the promote, by
// commit, until staging's nightly has run it.
func TestPromoteRefusesACommitStagingDidNotRun(t *testing.T) {
	w, tr := newTrainWorld(t)
	ctx := ctxT(t)
	mustPromote(t, tr.Prod.ConfigPath)
	rebuild(t, w.ConfigPath)
	git(t, ctx, tr, "checkout", "-q", "-B", "late", tr.Patch3)
	late := commit(t, ctx, tr, "a late change", map[string]string{filepath.Join(tr.Work, "late.txt"): "untested\n"})
	git(t, ctx, tr, "push", "-q", tr.Repo, late+":refs/heads/staging")

	rep, err := promote(t, tr.Prod.ConfigPath)
	if !errors.Is(err, staging.ErrPreflight) || !strings.Contains(err.Error(), "the release is commit "+late) {
		t.Fatalf("promote of a commit staging did not run: %v\n%s", err, text(rep))
	}
	rebuild(t, w.ConfigPath)
	if rep, err := promote(t, tr.Prod.ConfigPath); err != nil {
		t.Fatalf("promote after staging ran it: %v\n%s", err, text(rep))
	}
}
