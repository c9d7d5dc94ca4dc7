package codesync

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"testing"
)

// testSource is the shared suite every Source implementation passes: make returns a source
// delivering a tree with a.txt = "a" and sub/b.txt = "b", and a source that does not exist.
func testSource(t *testing.T, make func(t *testing.T) (good, missing Source)) {
	t.Run("describe matches open", func(t *testing.T) {
		good, _ := make(t)
		rev, err := good.Describe(t.Context())
		if err != nil || rev.Source == "" {
			t.Fatalf("Describe = %+v, %v", rev, err)
		}
		tree, err := good.Open(t.Context())
		if err != nil {
			t.Fatalf("Open: %v", err)
		}
		if tree.Revision != rev {
			t.Errorf("Open revision %+v, Describe %+v", tree.Revision, rev)
		}
		for name, want := range map[string]string{"a.txt": "a", "sub/b.txt": "b"} {
			if b, err := os.ReadFile(filepath.Join(tree.Dir, name)); err != nil || string(b) != want {
				t.Errorf("%s = %q, %v", name, b, err)
			}
		}
		if tree.Close != nil {
			if err := tree.Close(); err != nil {
				t.Errorf("Close: %v", err)
			}
		}
	})
	t.Run("missing", func(t *testing.T) {
		_, missing := make(t)
		if _, err := missing.Describe(t.Context()); !errors.Is(err, ErrNoSource) {
			t.Errorf("Describe = %v, want ErrNoSource", err)
		}
		if _, err := missing.Open(t.Context()); !errors.Is(err, ErrNoSource) {
			t.Errorf("Open = %v, want ErrNoSource", err)
		}
	})
	t.Run("cancelled", func(t *testing.T) {
		good, _ := make(t)
		ctx, cancel := context.WithCancel(t.Context())
		cancel()
		if _, err := good.Describe(ctx); !errors.Is(err, context.Canceled) {
			t.Errorf("Describe = %v, want context.Canceled", err)
		}
		if _, err := good.Open(ctx); !errors.Is(err, context.Canceled) {
			t.Errorf("Open = %v, want context.Canceled", err)
		}
	})
}

var suiteFiles = map[string]string{"a.txt": "a", "sub/b.txt": "b"}

func TestSourceSuiteDir(t *testing.T) {
	testSource(t, func(t *testing.T) (Source, Source) {
		dir := t.TempDir()
		writeTree(t, dir, suiteFiles)
		return &DirSource{Path: dir}, &DirSource{Path: filepath.Join(dir, "missing")}
	})
}

func TestSourceSuiteGit(t *testing.T) {
	testSource(t, func(t *testing.T) (Source, Source) {
		g := newGitRepo(t)
		g.commit("files", suiteFiles)
		return &GitSource{Repo: g.dir, Ref: "main", TempDir: t.TempDir()},
			&GitSource{Repo: filepath.Join(g.dir, "missing"), Ref: "main"}
	})
}

func TestSourceSuiteGitURL(t *testing.T) {
	testSource(t, func(t *testing.T) (Source, Source) {
		g := newGitRepo(t)
		g.commit("files", suiteFiles)
		return &GitSource{Repo: "file://" + g.dir, Ref: "main", TempDir: t.TempDir()},
			&GitSource{Repo: "file://" + filepath.Join(g.dir, "missing"), Ref: "main", TempDir: t.TempDir()}
	})
}
