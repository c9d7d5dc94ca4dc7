package codesynctest

import (
	"bytes"
	"context"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"time"

	"github.com/restage/restage/codesync"
)

// Fake is an in-memory codesync.Syncer for tests: Build reads the source's regular files
// into memory (symlinks and special files are left out), and `current` is a release ID.
// A release's Dir is empty; ReadFile reads its files. Activate changes nothing when it
// fails, Rollback, Discard and Prune follow SymlinkSyncer's rules (failed releases count
// for nothing and are pruned first; none is kept for inspection). Set the fields before
// the Fake is used or between calls, never during one. The zero value is ready to use;
// a Fake is safe for concurrent use.
type Fake struct {
	Keep int              // good releases Prune keeps; 0: 3
	Now  func() time.Time // the clock for Created and Activated; nil: time.Now
	// BuildFunc, when set, is called by Build with the opened tree before it is read;
	// its error fails Build, and nothing is built.
	BuildFunc func(ctx context.Context, tree *codesync.Tree) error
	// ActivateFunc, when set, is called by Activate with the release to activate before
	// anything changes; its error fails Activate, and nothing changes.
	ActivateFunc func(ctx context.Context, r *codesync.Release) error

	mu       sync.Mutex
	releases []*fakeRelease // oldest first
	current  string         // ID of the active release; "": none
	seq      int
}

// fakeRelease is a release of a Fake: its metadata and its files.
type fakeRelease struct {
	codesync.Release
	files map[string][]byte // slash-separated path: content
}

var (
	_ codesync.Syncer = (*Fake)(nil)
	_ Lister          = (*Fake)(nil)
)

func (f *Fake) now() time.Time {
	if f.Now != nil {
		return f.Now()
	}
	return time.Now()
}

// Build opens src and keeps a copy of its regular files as a new release, built.
func (f *Fake) Build(ctx context.Context, src codesync.Source) (*codesync.Release, error) {
	if src == nil {
		return nil, fmt.Errorf("codesynctest: fake build: %w: nil source", codesync.ErrConfig)
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	tree, err := src.Open(ctx)
	if err != nil {
		return nil, err
	}
	if tree.Close != nil {
		defer tree.Close()
	}
	if f.BuildFunc != nil {
		if err := f.BuildFunc(ctx, tree); err != nil {
			return nil, err
		}
	}
	files, err := readFiles(ctx, tree.Dir)
	if err != nil {
		return nil, fmt.Errorf("codesynctest: fake build from %s: %w", tree.Revision, err)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.seq++
	r := &fakeRelease{files: files, Release: codesync.Release{
		ID: fmt.Sprintf("fake-%06d", f.seq), Revision: tree.Revision, Created: f.now().UTC(),
		State: codesync.StateBuilt, Files: len(files),
	}}
	f.releases = append(f.releases, r)
	return r.copy(), nil
}

// readFiles returns the regular files under dir, stopping when ctx ends.
func readFiles(ctx context.Context, dir string) (map[string][]byte, error) {
	files := map[string][]byte{}
	err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		if !d.Type().IsRegular() {
			return nil
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(dir, path)
		if err != nil {
			return err
		}
		files[filepath.ToSlash(rel)] = b
		return nil
	})
	return files, err
}

// Activate makes r the active release and returns the one active before (nil when
// none), now built. An unknown release is codesync.ErrNoRelease.
func (f *Fake) Activate(ctx context.Context, r *codesync.Release) (*codesync.Release, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if _, err := f.lookup(r); err != nil {
		return nil, err
	}
	if f.ActivateFunc != nil {
		if err := f.ActivateFunc(ctx, r); err != nil {
			return nil, err
		}
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	next, err := f.find(r)
	if err != nil {
		return nil, err
	}
	var previous *codesync.Release
	if cur, ok := f.byID(f.current); ok {
		if cur != next {
			cur.State = codesync.StateBuilt
		}
		previous = cur.copy()
	}
	f.point(next)
	return previous, nil
}

// point makes r the active release; the caller holds f.mu.
func (f *Fake) point(r *fakeRelease) {
	f.current = r.ID
	r.State = codesync.StateActive
	r.Activated = f.now().UTC()
}

// Current returns the active release, or an error wrapping codesync.ErrNoRelease.
func (f *Fake) Current(ctx context.Context) (*codesync.Release, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	cur, ok := f.byID(f.current)
	if !ok {
		return nil, fmt.Errorf("codesynctest: fake: %w active", codesync.ErrNoRelease)
	}
	return cur.copy(), nil
}

// List returns the releases, oldest first.
func (f *Fake) List(ctx context.Context) ([]*codesync.Release, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	out := make([]*codesync.Release, len(f.releases))
	for i, r := range f.releases {
		out[i] = r.copy()
	}
	return out, nil
}

// Rollback marks the active release failed and makes the newest good release before
// it active, one that has been active before rather than one only built; it returns
// that release, or nil (and no release is active) when there is none.
func (f *Fake) Rollback(ctx context.Context) (*codesync.Release, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.rollback()
}

// rollback is Rollback; the caller holds f.mu.
func (f *Fake) rollback() (*codesync.Release, error) {
	i := slices.IndexFunc(f.releases, func(r *fakeRelease) bool { return r.ID == f.current })
	if i < 0 {
		return nil, fmt.Errorf("codesynctest: fake rollback: %w active", codesync.ErrNoRelease)
	}
	f.releases[i].State = codesync.StateFailed
	f.current = ""
	earlier := slices.Clone(f.releases[:i])
	slices.Reverse(earlier) // newest first
	earlier = slices.DeleteFunc(earlier, func(r *fakeRelease) bool { return r.State == codesync.StateFailed })
	if len(earlier) == 0 {
		return nil, nil
	}
	target := earlier[0]
	if j := slices.IndexFunc(earlier, func(r *fakeRelease) bool { return !r.Activated.IsZero() }); j >= 0 {
		target = earlier[j]
	}
	f.point(target)
	return target.copy(), nil
}

// Discard marks r failed (rolling it back first when it is active) and sets r.State.
func (f *Fake) Discard(ctx context.Context, r *codesync.Release) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	got, err := f.find(r)
	if err != nil {
		return err
	}
	if got.ID == f.current {
		if _, err := f.rollback(); err != nil {
			return err
		}
	}
	got.State = codesync.StateFailed
	r.State = codesync.StateFailed
	return nil
}

// Prune drops the failed releases and the good ones beyond the Keep newest, never the
// active one.
func (f *Fake) Prune(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	keep := f.Keep
	if keep == 0 {
		keep = 3
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	good := 0
	kept := make([]*fakeRelease, 0, len(f.releases))
	for _, r := range slices.Backward(f.releases) {
		switch {
		case r.State == codesync.StateFailed:
			continue
		case r.State == codesync.StateActive:
		case good >= keep:
			continue
		}
		good++
		kept = append(kept, r)
	}
	slices.Reverse(kept)
	f.releases = kept
	return nil
}

// ReadFile returns the content of the file name (slash-separated) of release r.
func (f *Fake) ReadFile(r *codesync.Release, name string) ([]byte, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	got, err := f.find(r)
	if err != nil {
		return nil, err
	}
	b, ok := got.files[name]
	if !ok {
		return nil, fmt.Errorf("codesynctest: fake release %s: %s: %w", got.ID, name, fs.ErrNotExist)
	}
	return bytes.Clone(b), nil
}

// lookup is find under f.mu.
func (f *Fake) lookup(r *codesync.Release) (*fakeRelease, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.find(r)
}

// find returns the release r names, or an error wrapping codesync.ErrNoRelease; the
// caller holds f.mu.
func (f *Fake) find(r *codesync.Release) (*fakeRelease, error) {
	if r == nil {
		return nil, fmt.Errorf("codesynctest: fake: %w: nil release", codesync.ErrNoRelease)
	}
	got, ok := f.byID(r.ID)
	if !ok {
		return nil, fmt.Errorf("codesynctest: fake: release %q: %w", r.ID, codesync.ErrNoRelease)
	}
	return got, nil
}

// byID returns the release with id; the caller holds f.mu.
func (f *Fake) byID(id string) (*fakeRelease, bool) {
	if id == "" {
		return nil, false
	}
	i := slices.IndexFunc(f.releases, func(r *fakeRelease) bool { return r.ID == id })
	if i < 0 {
		return nil, false
	}
	return f.releases[i], true
}

// copy returns the release's metadata, for callers to keep.
func (r *fakeRelease) copy() *codesync.Release {
	c := r.Release
	return &c
}
