package staging_test

import (
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/restage/restage/staging"
	"github.com/restage/restage/staging/stagingtest"
)

// A branch's migrations run as [database] restore_dsn's login when it is set, never as
// the admin DSN's superuser: a hostile migration that drops the schema role (SET ROLE
// NONE) and makes its role a superuser fails, leaving experimental as it was, while a
// branch whose migrations only use the role's rights deploys. A superuser restore_dsn is
// refused before anything stops.
func TestDeployMigrationsRunAsTheRestoreLogin(t *testing.T) {
	w := newWorld(t, stagingtest.Options{Experimental: true})
	w.Staging.Exec(t, "postgres", "CREATE ROLE bugs_owner LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE")
	login, err := url.Parse(w.Staging.DSN("postgres"))
	if err != nil {
		t.Fatal(err)
	}
	login.User = url.User("bugs_owner")
	for _, path := range []string{w.ConfigPath, w.Exp.ConfigPath} {
		editConfig(t, path, `migrations = "migrations"`, "migrations = \"migrations\"\nrole = \"bugs_owner\"")
		editConfig(t, path, "[database]\n", "[database]\nrestore_dsn = \""+login.String()+"\"\n")
	}
	repo := gitRepo(t, w)
	git := func(args ...string) {
		t.Helper()
		cmd := exec.Command("git", append([]string{"-C", repo, "-c", "user.name=Mallory", "-c", "user.email=m@example.org"}, args...)...)
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("git %v: %v\n%s", args, err, out)
		}
	}
	git("checkout", "-q", "-b", "evil", "main")
	evil := "CREATE TABLE bug_tag (bug int, tag text);\nSET ROLE NONE;\nALTER ROLE bugs_owner SUPERUSER;\n"
	if err := os.WriteFile(filepath.Join(repo, "migrations", "6_bug_tag.up.sql"), []byte(evil), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(repo, "migrations", "6_bug_tag.down.sql"), []byte("DROP TABLE bug_tag;\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	git("add", "-A")
	git("commit", "-q", "-m", "tags, and a little more")
	git("checkout", "-q", "main")
	mustRun(t, w)

	rep, err := deploy(t, w, repo, "main", staging.DeployOptions{RefreshDB: true})
	if err != nil {
		t.Fatalf("deploy of main: %v\n%s", err, rep.Text())
	}
	super := func() string {
		return w.Staging.QueryString(t, "postgres", "SELECT rolsuper::text FROM pg_roles WHERE rolname = 'bugs_owner'")
	}
	before := expSnapshot(t, w)
	rep, err = deploy(t, w, repo, "evil", staging.DeployOptions{})
	if s := super(); s != "false" {
		t.Fatalf("the branch's migration made its role a superuser (rolsuper %s; deploy err %v)", s, err)
	}
	if err == nil || rep.FailedStep != "schema" {
		t.Fatalf("the hostile migration: err %v, step %q", err, rep.FailedStep)
	}
	if after := expSnapshot(t, w); after != before {
		t.Errorf("experimental changed:\n%s\n---\n%s", before, after)
	}

	rep, err = deploy(t, w, repo, "feature", staging.DeployOptions{})
	if err != nil {
		t.Fatalf("deploy of feature as the restore login: %v\n%s", err, rep.Text())
	}
	if owner := w.Staging.QueryString(t, w.Exp.DB, "SELECT tableowner FROM pg_tables WHERE tablename = 'bug_tag'"); owner != "bugs_owner" {
		t.Errorf("bug_tag belongs to %s", owner)
	}

	editConfig(t, w.Exp.ConfigPath, "bugs_owner@", "postgres@")
	before = expSnapshot(t, w)
	rep, err = deploy(t, w, repo, "broken", staging.DeployOptions{})
	if err == nil || !strings.Contains(rep.Error, "a superuser") || rep.FailedStep == "schema" || rep.Downtime != 0 {
		t.Fatalf("a superuser restore login: err %v, step %q, downtime %s", err, rep.FailedStep, rep.Downtime)
	}
	if after := expSnapshot(t, w); after != before {
		t.Errorf("experimental changed:\n%s\n---\n%s", before, after)
	}
}
