package codesync

import (
	"bytes"
	"fmt"
	"io/fs"
	"log/slog"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/restage/restage/internal/gittest"
)

// suiteFiles is a small tree: a file and one in a subfolder.
var suiteFiles = map[string]string{"a.txt": "a", "sub/b.txt": "b"}

// writeTree creates files under dir: "path": "content"; content "->target" makes a symlink.
func writeTree(tb testing.TB, dir string, files map[string]string) {
	tb.Helper()
	for name, content := range files {
		path := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			tb.Fatal(err)
		}
		if target, ok := strings.CutPrefix(content, "->"); ok {
			os.Remove(path)
			if err := os.Symlink(target, path); err != nil {
				tb.Fatal(err)
			}
			continue
		}
		if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
			tb.Fatal(err)
		}
	}
}

func testLogger(tb testing.TB) *slog.Logger {
	tb.Helper()
	return slog.New(slog.NewTextHandler(tbWriter{tb}, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

type tbWriter struct{ tb testing.TB }

func (w tbWriter) Write(p []byte) (int, error) {
	w.tb.Log(strings.TrimSpace(string(p)))
	return len(p), nil
}

// newSyncer returns a syncer over a fresh base folder (releases and current in it).
func newSyncer(tb testing.TB, base string, edit func(*Config)) *SymlinkSyncer {
	tb.Helper()
	if base == "" {
		base = tb.TempDir()
	}
	cfg := Config{
		Releases: filepath.Join(base, "releases"),
		Current:  filepath.Join(base, "current"),
		Exclude:  []string{".git"},
		Logger:   testLogger(tb),
	}
	if edit != nil {
		edit(&cfg)
	}
	s, err := New(cfg)
	if err != nil {
		tb.Fatalf("New: %v", err)
	}
	return s
}

func build(tb testing.TB, s *SymlinkSyncer, src Source) *Release {
	tb.Helper()
	r, err := s.Build(tb.Context(), src)
	if err != nil {
		tb.Fatalf("Build: %v", err)
	}
	return r
}

func dirSource(tb testing.TB, dir string) *DirSource {
	tb.Helper()
	s, err := NewDirSource(dir)
	if err != nil {
		tb.Fatal(err)
	}
	return s
}

// compareTrees fails unless want and got hold the same names, types, modes, contents,
// symlink targets and file modification times; skip lists names left out of got.
func compareTrees(tb testing.TB, want, got string, skip ...string) {
	tb.Helper()
	seen := map[string]bool{}
	filepath.WalkDir(want, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			tb.Fatal(err)
		}
		rel, _ := filepath.Rel(want, path)
		for _, s := range skip {
			if rel == s || filepath.Base(rel) == s {
				if d.IsDir() {
					return filepath.SkipDir
				}
				return nil
			}
		}
		seen[rel] = true
		wi, _ := os.Lstat(path)
		gi, err := os.Lstat(filepath.Join(got, rel))
		if err != nil {
			tb.Errorf("%s missing in copy: %v", rel, err)
			return nil
		}
		if wi.Mode() != gi.Mode() {
			tb.Errorf("%s: mode %v, want %v", rel, gi.Mode(), wi.Mode())
		}
		switch {
		case wi.Mode()&fs.ModeSymlink != 0:
			wt, _ := os.Readlink(path)
			gt, _ := os.Readlink(filepath.Join(got, rel))
			if wt != gt {
				tb.Errorf("%s: symlink to %q, want %q", rel, gt, wt)
			}
		case wi.Mode().IsRegular():
			wb, _ := os.ReadFile(path)
			gb, _ := os.ReadFile(filepath.Join(got, rel))
			if !bytes.Equal(wb, gb) {
				tb.Errorf("%s: content differs", rel)
			}
			if !wi.ModTime().Equal(gi.ModTime()) {
				tb.Errorf("%s: mtime %v, want %v", rel, gi.ModTime(), wi.ModTime())
			}
		}
		return nil
	})
	filepath.WalkDir(got, func(path string, d fs.DirEntry, err error) error {
		rel, _ := filepath.Rel(got, path)
		if !seen[rel] && rel != MetadataFile {
			tb.Errorf("%s: in copy only", rel)
		}
		return nil
	})
}

func inode(tb testing.TB, path string) uint64 {
	tb.Helper()
	fi, err := os.Lstat(path)
	if err != nil {
		tb.Fatal(err)
	}
	return fi.Sys().(*syscall.Stat_t).Ino
}

// fakeGit writes a shell script to use as GitSource.Git and returns its path.
func fakeGit(tb testing.TB, script string) string {
	tb.Helper()
	path := filepath.Join(tb.TempDir(), "git")
	if err := os.WriteFile(path, []byte("#!/bin/sh\n"+script+"\n"), 0o755); err != nil {
		tb.Fatal(err)
	}
	return path
}

// gitRepo is a git repository made in the test.
type gitRepo struct {
	tb  testing.TB
	dir string
}

func newGitRepo(tb testing.TB) *gitRepo {
	tb.Helper()
	if _, err := exec.LookPath("git"); err != nil {
		tb.Skip("git is not installed")
	}
	g := &gitRepo{tb: tb, dir: tb.TempDir()}
	g.run("init", "-q", "-b", "main")
	return g
}

func (g *gitRepo) run(args ...string) string {
	g.tb.Helper()
	return g.runStdin("", args...)
}

// runStdin runs git with stdin as its standard input.
func (g *gitRepo) runStdin(stdin string, args ...string) string {
	g.tb.Helper()
	cmd := exec.CommandContext(g.tb.Context(), "git", append([]string{"-C", g.dir}, args...)...)
	cmd.Stdin = strings.NewReader(stdin)
	cmd.Env = append(os.Environ(), "GIT_AUTHOR_NAME=t", "GIT_AUTHOR_EMAIL=t@example.org",
		"GIT_COMMITTER_NAME=t", "GIT_COMMITTER_EMAIL=t@example.org", "GIT_CONFIG_NOSYSTEM=1", "HOME="+g.dir)
	out, err := cmd.CombinedOutput()
	if err != nil {
		g.tb.Fatalf("git %v: %v\n%s", args, err, out)
	}
	return strings.TrimSpace(string(out))
}

// serveHTTP serves the repository over git's smart HTTP protocol (git http-backend as a
// CGI program) to clients that authenticate as user with password, and returns its URL
// with those credentials in it.
func (g *gitRepo) serveHTTP(user, password string) string {
	g.tb.Helper()
	u, err := url.Parse(gittest.ServeHTTP(g.tb, filepath.Dir(g.dir), user, password))
	if err != nil {
		g.tb.Fatal(err)
	}
	u.User = url.UserPassword(user, password)
	u.Path = "/" + filepath.Base(g.dir)
	return u.String()
}

// plumb makes a commit of a tree built with git's plumbing, whatever porcelain would
// refuse: entries are "mode name target", target being a blob's content (100644, 120000)
// or, for 040000, a tree made by plumb's entries given in trees[name]. It points
// refs/heads/branch at the commit.
func (g *gitRepo) plumb(branch string, entries []string, trees map[string][]string) string {
	g.tb.Helper()
	tree := g.mktree(entries, trees)
	commit := g.run("commit-tree", "-m", branch, tree)
	g.run("update-ref", "refs/heads/"+branch, commit)
	return commit
}

func (g *gitRepo) mktree(entries []string, trees map[string][]string) string {
	g.tb.Helper()
	var list strings.Builder
	for _, e := range entries {
		mode, rest, _ := strings.Cut(e, " ")
		name, target, _ := strings.Cut(rest, " ")
		var kind, id string
		if mode == "040000" {
			kind, id = "tree", g.mktree(trees[target], trees)
		} else {
			kind, id = "blob", g.runStdin(target, "hash-object", "-w", "--stdin")
		}
		fmt.Fprintf(&list, "%s %s %s\t%s\n", mode, kind, id, name)
	}
	return g.runStdin(list.String(), "mktree")
}

// committedRepo returns a repository whose branch main holds suiteFiles, and the path of
// the git program (for fakeGit scripts that end up running it).
func committedRepo(tb testing.TB) (*gitRepo, string) {
	tb.Helper()
	g := newGitRepo(tb) // skips without git
	g.commit("one", suiteFiles)
	realGit, err := exec.LookPath("git")
	if err != nil {
		tb.Fatal(err)
	}
	return g, realGit
}

// commit writes files and commits them; it returns the commit id.
func (g *gitRepo) commit(msg string, files map[string]string) string {
	g.tb.Helper()
	writeTree(g.tb, g.dir, files)
	g.run("add", "-A")
	g.run("commit", "-q", "-m", msg)
	return g.run("rev-parse", "HEAD")
}
