package codesync_test

import (
	"log/slog"
	"path/filepath"
	"testing"

	"github.com/restage/restage/codesync"
	"github.com/restage/restage/codesync/codesynctest"
)

func TestSymlinkSyncerConformance(t *testing.T) {
	codesynctest.Syncer(t, codesynctest.Fixture{
		Keep: 2,
		New: func(t *testing.T) codesync.Syncer {
			base := t.TempDir()
			s, err := codesync.New(codesync.Config{
				Releases: filepath.Join(base, "releases"),
				Current:  filepath.Join(base, "current"),
				Keep:     2,
				Logger:   slog.New(slog.DiscardHandler),
			})
			if err != nil {
				t.Fatal(err)
			}
			return s
		},
		// The metadata write that fails comes after current moved: Activate must put it back.
		BreakActivate: func(t *testing.T, _ codesync.Syncer, r *codesync.Release) func() {
			return codesync.BlockMetadataWritesForTest(t, r)
		},
	})
}

func TestDirSourceConformance(t *testing.T) {
	codesynctest.Source(t, codesynctest.SourceFixture{
		New: func(t *testing.T, files map[string]string) codesync.Source {
			return &codesync.DirSource{Path: codesync.WriteTreeForTest(t, files)}
		},
		Missing: func(t *testing.T) codesync.Source {
			return &codesync.DirSource{Path: filepath.Join(t.TempDir(), "missing")}
		},
	})
}

func TestGitSourceConformance(t *testing.T) {
	for _, scheme := range []string{"", "file://"} {
		t.Run("repo="+scheme+"path", func(t *testing.T) {
			codesynctest.Source(t, codesynctest.SourceFixture{
				New: func(t *testing.T, files map[string]string) codesync.Source {
					repo := codesync.GitRepoForTest(t, files)
					return &codesync.GitSource{Repo: scheme + repo, Ref: "main", TempDir: t.TempDir()}
				},
				Missing: func(t *testing.T) codesync.Source {
					return &codesync.GitSource{Repo: scheme + filepath.Join(t.TempDir(), "missing"), Ref: "main",
						TempDir: t.TempDir()}
				},
			})
		})
	}
}
