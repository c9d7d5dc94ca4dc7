package codesync

import (
	"io/fs"
	"path/filepath"
	"sync"
	"testing"

	"github.com/restage/restage/progress"
)

func TestBuildReportsBytesOfTheRelease(t *testing.T) {
	src := makeSource(t)
	s := newSyncer(t, "", func(c *Config) { c.Exclude = []string{".git", "*.pyc", "build/tmp/"} })
	var (
		mu     sync.Mutex
		events [][2]int64
	)
	ctx := progress.With(t.Context(), func(done, total int64) {
		mu.Lock()
		events = append(events, [2]int64{done, total})
		mu.Unlock()
	})
	r, err := s.Build(ctx, dirSource(t, src))
	if err != nil {
		t.Fatal(err)
	}
	want := releaseBytes(t, r.Dir)
	if len(events) == 0 || events[len(events)-1] != [2]int64{want, want} {
		t.Fatalf("events %v, want the last at %d of %d bytes", events, want, want)
	}
	// A second build links everything from the first: its progress counts the same.
	events = nil
	if _, err := s.Build(ctx, dirSource(t, src)); err != nil {
		t.Fatal(err)
	}
	if len(events) == 0 || events[len(events)-1] != [2]int64{want, want} {
		t.Fatalf("linked build: events %v, want the last at %d of %d bytes", events, want, want)
	}
}

// releaseBytes adds up the sizes of the regular files of a built release, its
// metadata file left out.
func releaseBytes(t *testing.T, dir string) int64 {
	t.Helper()
	var total int64
	err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil || !d.Type().IsRegular() || filepath.Base(path) == MetadataFile {
			return err
		}
		info, err := d.Info()
		total += info.Size()
		return err
	})
	if err != nil || total == 0 {
		t.Fatalf("release %s: %d bytes, %v", dir, total, err)
	}
	return total
}
