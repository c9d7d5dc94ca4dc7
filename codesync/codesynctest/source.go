package codesynctest

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/restage/restage/codesync"
)

// SourceFixture tells Source how to make the sources it checks.
type SourceFixture struct {
	// New returns a Source delivering a tree that holds files (slash-separated path:
	// content). Required.
	New func(t *testing.T, files map[string]string) codesync.Source
	// Missing returns a Source whose tree does not exist (a missing folder or
	// repository). nil: the check is skipped.
	Missing func(t *testing.T) codesync.Source
}

// sourceFiles is the tree the Source suite asks for.
var sourceFiles = map[string]string{"a.txt": "a", "sub/b.txt": "b", "sub/deeper/c.txt": "c\n"}

// Source runs the conformance suite against the sources f makes. Each promise is a
// subtest: describe-matches-open, open-twice, missing, cancelled.
func Source(t *testing.T, f SourceFixture) {
	t.Helper()
	if f.New == nil {
		t.Fatal("codesynctest: SourceFixture.New is required")
	}
	t.Run("describe-matches-open", func(t *testing.T) {
		src := f.New(t, sourceFiles)
		rev, err := src.Describe(t.Context())
		if err != nil || rev.Source == "" {
			t.Fatalf("Describe = %+v, %v; want a revision naming the source", rev, err)
		}
		tree := open(t, src)
		if tree.Revision != rev {
			t.Errorf("Open's revision %+v, Describe's %+v", tree.Revision, rev)
		}
		requireTree(t, tree.Dir)
		closeTree(t, tree)
	})
	t.Run("open-twice", func(t *testing.T) {
		src := f.New(t, sourceFiles)
		a, b := open(t, src), open(t, src)
		if a.Revision != b.Revision {
			t.Errorf("two Opens: revisions %+v and %+v", a.Revision, b.Revision)
		}
		closeTree(t, a) // closing one leaves the other readable
		requireTree(t, b.Dir)
		closeTree(t, b)
	})
	t.Run("missing", func(t *testing.T) {
		if f.Missing == nil {
			t.Skip("no SourceFixture.Missing")
		}
		src := f.Missing(t)
		if _, err := src.Describe(t.Context()); !errors.Is(err, codesync.ErrNoSource) {
			t.Errorf("Describe = %v, want codesync.ErrNoSource", err)
		}
		if tree, err := src.Open(t.Context()); !errors.Is(err, codesync.ErrNoSource) {
			t.Errorf("Open = %+v, %v; want codesync.ErrNoSource", tree, err)
		}
	})
	t.Run("cancelled", func(t *testing.T) {
		src := f.New(t, sourceFiles)
		ctx, cancel := context.WithCancel(t.Context())
		cancel()
		if _, err := src.Describe(ctx); !errors.Is(err, context.Canceled) {
			t.Errorf("Describe = %v, want context.Canceled", err)
		}
		if tree, err := src.Open(ctx); !errors.Is(err, context.Canceled) {
			t.Errorf("Open = %+v, %v; want context.Canceled", tree, err)
		}
	})
}

func open(t *testing.T, src codesync.Source) *codesync.Tree {
	t.Helper()
	tree, err := src.Open(t.Context())
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	return tree
}

func closeTree(t *testing.T, tree *codesync.Tree) {
	t.Helper()
	if tree.Close != nil {
		if err := tree.Close(); err != nil {
			t.Errorf("Tree.Close: %v", err)
		}
	}
}

// requireTree fails unless dir holds sourceFiles, and no other file.
func requireTree(t *testing.T, dir string) {
	t.Helper()
	seen := 0
	err := filepath.WalkDir(dir, func(path string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		rel, err := filepath.Rel(dir, path)
		if err != nil {
			return err
		}
		want, ok := sourceFiles[filepath.ToSlash(rel)]
		if !ok {
			t.Errorf("tree holds %s, which the source does not", rel)
			return nil
		}
		seen++
		if b, err := os.ReadFile(path); err != nil || string(b) != want {
			t.Errorf("%s = %q, %v; want %q", rel, b, err, want)
		}
		return nil
	})
	if err != nil {
		t.Fatalf("reading the tree %s: %v", dir, err)
	}
	if seen != len(sourceFiles) {
		t.Errorf("tree %s holds %d of the %d files", dir, seen, len(sourceFiles))
	}
}
