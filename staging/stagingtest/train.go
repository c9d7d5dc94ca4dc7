package stagingtest

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
)

// Train is a World's release train (AddTrain): a bare git repository of the bug
// tracker with devel and staging branches, staging's config building from the staging
// branch, a production environment (production.toml, role production, on the
// production server) and the train's config (train.toml).
type Train struct {
	Repo       string // the bare repository
	Work       string // a clone of it, for commits
	ConfigPath string // train.toml
	StateDir   string // the train's state folder
	Prod       *Env   // production: its config, releases, service
	// Patch3, Patch4 and Patch5 are the commits: staging's branch starts at Patch3
	// (production's level), devel at Patch5.
	Patch3, Patch4, Patch5 string
}

// AddTrain makes the world's release train: the repository (devel at patch 5, staging
// at patch 3, the patch level production is at), staging.toml rewritten to build from
// the staging branch, production.toml and train.toml. check is train.toml's check
// (nil: none). Production's service is not running until the first promote.
func (w *World) AddTrain(ctx context.Context, check []string) (*Train, error) {
	t := &Train{Repo: filepath.Join(w.Dir, "git", "bugs.git"), Work: filepath.Join(w.Dir, "git", "work"),
		ConfigPath: filepath.Join(w.Dir, "train.toml"), StateDir: filepath.Join(w.Dir, "train", "state")}
	if err := os.MkdirAll(filepath.Dir(t.Repo), 0o755); err != nil {
		return nil, err
	}
	if _, err := Git(ctx, "", "init", "-q", "--bare", t.Repo); err != nil {
		return nil, err
	}
	if _, err := Git(ctx, "", "init", "-q", t.Work); err != nil {
		return nil, err
	}
	if err := copyTree(w.Source, t.Work); err != nil {
		return nil, err
	}
	// Patch 3 first: the migrations production has.
	var held [][2]string
	for _, m := range migrations[ProductionPatch:CodePatch] {
		for _, name := range []string{m.name, strings.Replace(m.name, ".up.", ".down.", 1)} {
			p := filepath.Join(t.Work, "migrations", name)
			data, err := os.ReadFile(p)
			if err != nil {
				return nil, err
			}
			held = append(held, [2]string{p, string(data)})
			if err := os.Remove(p); err != nil {
				return nil, err
			}
		}
	}
	var err error
	if t.Patch3, err = t.Commit(ctx, "the bug tracker at patch 3", nil); err != nil {
		return nil, err
	}
	if t.Patch4, err = t.Commit(ctx, "bug importance (patch 4)", map[string]string{held[0][0]: held[0][1], held[1][0]: held[1][1]}); err != nil {
		return nil, err
	}
	if t.Patch5, err = t.Commit(ctx, "bug heat (patch 5)", map[string]string{held[2][0]: held[2][1], held[3][0]: held[3][1]}); err != nil {
		return nil, err
	}
	if _, err := Git(ctx, t.Work, "push", "-q", t.Repo, t.Patch3+":refs/heads/staging", t.Patch5+":refs/heads/devel"); err != nil {
		return nil, err
	}

	// Staging builds from the staging branch.
	cfg, err := os.ReadFile(w.ConfigPath)
	if err != nil {
		return nil, err
	}
	const src = `source   = "build/bugs"`
	if !strings.Contains(string(cfg), src) {
		return nil, errors.New("stagingtest: staging.toml has no [code] source to replace")
	}
	cfg = []byte(strings.Replace(string(cfg), src, "git      = \"git/bugs.git\"\nref      = \"staging\"", 1))
	if err := os.WriteFile(w.ConfigPath, cfg, 0o644); err != nil {
		return nil, err
	}
	if err := w.writeProduction(t); err != nil {
		return nil, err
	}
	text := fmt.Sprintf(`# The release train (made by stagingtest).
repo         = "git/bugs.git"
devel        = "devel"
staging      = "staging"
tag          = "staging-%%Y-W%%V"
check        = %s
environments = ["production.toml", "staging.toml"]
state_dir    = "train/state"

`, tomlList(check)) + w.notifySection("", "train@example.org", "release-managers@example.org")
	return t, os.WriteFile(t.ConfigPath, []byte(text), 0o644)
}

func (w *World) writeProduction(t *Train) error {
	e, command, err := w.newEnv("production", w.ProdDB, w.Production)
	if err != nil {
		return err
	}
	text := fmt.Sprintf(`# Production (made by stagingtest): the train's promote deploys the staging branch
# here, with migrations in place; nothing is ever restored, copied or renamed.
environment = "production"
role        = "production"
lock_file   = "production/run/production.lock"
state_dir   = "production/state"

[database]
admin_dsn = %q
name      = %q

[code]
git      = "git/bugs.git"
ref      = "staging"
releases = "production/releases"
current  = "production/current"
keep     = 3

[schema]
migrations = "migrations"

`, w.Production.AdminDSN(), e.DB) +
		serviceSection(command, "production/run/app.pid", e.AppURL) + fmt.Sprintf(`
[preflight]
max_transaction_age = "5s"
max_replication_lag = "60s"
system_users        = [%q]
max_migration_time  = "15s"
staging_state_dir   = "state"

`, w.Production.User) +
		w.notifySection("production-promote", "production@example.org", "release-managers@example.org")
	t.Prod = e
	return os.WriteFile(e.ConfigPath, []byte(text), 0o644)
}

// Commit writes files (path: content; "" content removes the file) into the train's
// work tree and commits every change there; it returns the commit.
func (t *Train) Commit(ctx context.Context, msg string, files map[string]string) (string, error) {
	for p, text := range files {
		if !filepath.IsAbs(p) {
			p = filepath.Join(t.Work, p)
		}
		if text == "" {
			if err := os.Remove(p); err != nil {
				return "", err
			}
			continue
		}
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			return "", err
		}
		if err := os.WriteFile(p, []byte(text), 0o644); err != nil {
			return "", err
		}
	}
	if _, err := Git(ctx, t.Work, "add", "-A"); err != nil {
		return "", err
	}
	if _, err := Git(ctx, t.Work, "commit", "-q", "--allow-empty", "-m", msg); err != nil {
		return "", err
	}
	return Git(ctx, t.Work, "rev-parse", "HEAD")
}

// Ref returns the bare repository's ref (a branch, tag or commit) as a commit id, or "".
func (t *Train) Ref(ctx context.Context, name string) string {
	id, err := Git(ctx, t.Repo, "rev-parse", "-q", "--verify", name+"^{commit}")
	if err != nil {
		return ""
	}
	return id
}

// Git runs git (with a committer identity) in dir and returns its trimmed output.
func Git(ctx context.Context, dir string, args ...string) (string, error) {
	cmd := exec.CommandContext(ctx, "git", append([]string{"-c", "user.name=Dev", "-c", "user.email=dev@example.org",
		"-c", "init.defaultBranch=devel"}, args...)...)
	cmd.Dir = dir
	out, err := cmd.CombinedOutput()
	if err != nil {
		return "", fmt.Errorf("git %s: %w\n%s", strings.Join(args, " "), err, out)
	}
	return strings.TrimSpace(string(out)), nil
}

// copyTree copies the files of from into to, leaving out .git.
func copyTree(from, to string) error {
	return filepath.WalkDir(from, func(p string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(from, p)
		if d.Name() == ".git" {
			return filepath.SkipDir
		}
		if d.IsDir() {
			return os.MkdirAll(filepath.Join(to, rel), 0o755)
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		return copyFile(p, filepath.Join(to, rel), info.Mode().Perm())
	})
}

// Close stops production's service.
func (t *Train) Close() {
	if t.Prod != nil {
		stopPidfile(t.Prod.Pidfile)
	}
}
