package staging_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/otiai10/copy"

	"github.com/restage/restage/codesync"
	"github.com/restage/restage/schema"
	"github.com/restage/restage/staging"
	"github.com/restage/restage/staging/stagingtest"
)

// gitRepo makes a real git repository from the world's code tree (branch main) with a
// branch "feature" holding one more migration and a branch "broken" whose extra
// migration fails.
func gitRepo(t *testing.T, w *stagingtest.World) string {
	t.Helper()
	repo := filepath.Join(w.Dir, "git", "bugs")
	if err := copy.Copy(w.Source, repo, copy.Options{Skip: func(_ os.FileInfo, src, _ string) (bool, error) {
		return filepath.Base(src) == ".git", nil
	}}); err != nil {
		t.Fatal(err)
	}
	git := func(args ...string) {
		t.Helper()
		cmd := exec.Command("git", append([]string{"-C", repo, "-c", "user.name=Dev", "-c", "user.email=dev@example.org"}, args...)...)
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("git %v: %v\n%s", args, err, out)
		}
	}
	write := func(name, text string) {
		t.Helper()
		if err := os.WriteFile(filepath.Join(repo, name), []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	git("init", "-q", "-b", "main")
	git("add", "-A")
	git("commit", "-q", "-m", "the bug tracker")
	git("checkout", "-q", "-b", "feature")
	write("migrations/6_bug_tag.up.sql", "CREATE TABLE bug_tag (bug int REFERENCES bug, tag text);\n")
	write("migrations/6_bug_tag.down.sql", "DROP TABLE bug_tag;\n")
	git("add", "-A")
	git("commit", "-q", "-m", "tags")
	git("checkout", "-q", "-b", "broken")
	write("migrations/7_bad.up.sql", "ALTER TABLE bug ADD COLUMN x int;\nALTER TABLE nosuchtable ADD COLUMN y int;\n")
	write("migrations/7_bad.down.sql", "ALTER TABLE bug DROP COLUMN x;\n")
	git("add", "-A")
	git("commit", "-q", "-m", "broken")
	git("checkout", "-q", "main")
	return repo
}

func openEnv(t *testing.T, path string, src codesync.Source) *staging.Rebuilder {
	t.Helper()
	c, err := staging.LoadEnvironment(path)
	if err != nil {
		t.Fatal(err)
	}
	rb, err := staging.Open(c, staging.OpenOptions{Source: src, Logger: discard()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { rb.Close() })
	return rb
}

func deploy(t *testing.T, w *stagingtest.World, repo, ref string, opts staging.DeployOptions) (*staging.Report, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	return openEnv(t, w.Exp.ConfigPath, &codesync.GitSource{Repo: repo, Ref: ref}).Deploy(ctx, opts)
}

func expSnapshot(t *testing.T, w *stagingtest.World) string {
	t.Helper()
	current, _ := os.Readlink(w.Exp.Current)
	return fmt.Sprintf("live %s\ncurrent %s\nhealth %s", w.Staging.QueryString(t, w.Exp.DB, fingerprint),
		filepath.Base(current), get(t, w.Exp.AppURL+"/+health"))
}

func TestExperimentalDeploysBranchOnNightlyClone(t *testing.T) {
	w := newWorld(t, stagingtest.Options{Experimental: true})
	repo := gitRepo(t, w)
	mustRun(t, w) // the nightly leaves bugs_experimental_next, a copy of the fresh restore
	if got := w.Staging.QueryString(t, "bugs_experimental_next", "SELECT version::text FROM schema_migrations"); got != fmt.Sprint(stagingtest.ProductionPatch) {
		t.Fatalf("the clone is at %s, want production's %d (made before staging's schema step)", got, stagingtest.ProductionPatch)
	}

	rep, err := deploy(t, w, repo, "feature", staging.DeployOptions{RefreshDB: true, RequestedBy: "alice"})
	if err != nil {
		t.Fatalf("deploy: %v\n%s", err, rep.Text())
	}
	if v := w.Staging.QueryString(t, w.Exp.DB, "SELECT version::text FROM schema_migrations"); v != "6" {
		t.Errorf("experimental at %s, want 6", v)
	}
	if v := w.Staging.QueryString(t, w.StagingDB, "SELECT version::text FROM schema_migrations"); v != fmt.Sprint(stagingtest.CodePatch) {
		t.Errorf("staging at %s, want %d", v, stagingtest.CodePatch)
	}
	if n := w.Staging.QueryString(t, w.StagingDB, "SELECT count(*)::text FROM pg_tables WHERE tablename = 'bug_tag'"); n != "0" {
		t.Error("the branch's migration reached staging")
	}
	for _, url := range []string{w.AppURL, w.Exp.AppURL} {
		if h := get(t, url+"/+health"); !strings.HasPrefix(h, "200 ok") {
			t.Errorf("%s: %s", url, h)
		}
	}
	text := rep.Text()
	for _, want := range []string{"requested by: alice", "@feature", "schema:      3 -> 6"} {
		if !strings.Contains(text, want) {
			t.Errorf("report lacks %q:\n%s", want, text)
		}
	}
	mails := w.Mail.Mails()
	if len(mails) != 2 || !strings.Contains(subject(t, string(mails[0].Data)), "[staging-rebuild]") ||
		!strings.Contains(subject(t, string(mails[1].Data)), "[experimental-deploy] experimental deploy of") {
		t.Fatalf("reports: %d mails", len(mails))
	}

	t.Run("failing migration leaves experimental as it was", func(t *testing.T) {
		before := expSnapshot(t, w)
		rep, err := deploy(t, w, repo, "broken", staging.DeployOptions{})
		if !errors.Is(err, schema.ErrMigrationFailed) || rep.FailedStep != "schema" {
			t.Fatalf("err %v step %q", err, rep.FailedStep)
		}
		if !strings.Contains(err.Error(), "7_bad.up.sql") {
			t.Errorf("error does not name the migration: %v", err)
		}
		if after := expSnapshot(t, w); after != before {
			t.Fatalf("experimental changed:\n%s\n---\n%s", before, after)
		}
	})

	t.Run("branch behind the database is refused", func(t *testing.T) {
		before := expSnapshot(t, w)
		_, err := deploy(t, w, repo, "main", staging.DeployOptions{})
		if !errors.Is(err, schema.ErrAhead) || !strings.Contains(err.Error(), "is at 6") {
			t.Fatalf("err = %v", err)
		}
		if expSnapshot(t, w) != before {
			t.Fatal("experimental changed")
		}
	})

	t.Run("staging rebuild and experimental deploy at once", func(t *testing.T) {
		var wg sync.WaitGroup
		var stagingErr, expErr error
		var stagingRep, expRep *staging.Report
		wg.Add(2)
		go func() { defer wg.Done(); stagingRep, stagingErr = run(t, w) }()
		go func() {
			defer wg.Done()
			expRep, expErr = deploy(t, w, repo, "feature", staging.DeployOptions{})
		}()
		wg.Wait()
		if stagingErr != nil || expErr != nil {
			t.Fatalf("staging: %v\nexperimental: %v\n%s\n%s", stagingErr, expErr, stagingRep.Text(), expRep.Text())
		}
		if v := w.Staging.QueryString(t, w.Exp.DB, "SELECT version::text FROM schema_migrations"); v != "6" {
			t.Errorf("experimental at %s", v)
		}
		if v := w.Staging.QueryString(t, w.StagingDB, "SELECT version::text FROM schema_migrations"); v != "5" {
			t.Errorf("staging at %s", v)
		}
	})
}
