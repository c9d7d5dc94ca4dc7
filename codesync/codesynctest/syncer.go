package codesynctest

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/restage/restage/codesync"
)

// Fixture tells Syncer how to make the syncers it checks.
type Fixture struct {
	// New returns a Syncer without releases whose Prune keeps Keep good releases and no
	// failed one. Required.
	New func(t *testing.T) codesync.Syncer
	// Keep is the number of good releases the syncers New makes keep; at least 1.
	Keep int
	// ReadFile reads the file name (slash-separated, relative to the release's root) of
	// release r of s. nil: the file at r.Dir/name.
	ReadFile func(s codesync.Syncer, r *codesync.Release, name string) ([]byte, error)
	// BreakActivate makes the next Activate of r by s fail part-way (for
	// SymlinkSyncer: after current moved), and returns what undoes that. nil: the
	// all-or-nothing check is left to the checks every syncer gets (an unknown release,
	// a done context).
	BreakActivate func(t *testing.T, s codesync.Syncer, r *codesync.Release) (undo func())
}

// Lister is what the suite uses, when a Syncer has it, to see which releases Build and
// Prune left (SymlinkSyncer and Fake have it). Without it the suite skips those checks.
type Lister interface {
	// List returns the complete releases, oldest first.
	List(ctx context.Context) ([]*codesync.Release, error)
}

// Syncer runs the conformance suite against the syncers f makes. Each promise is a
// subtest: build, build-fails, activate, activate-unknown, activate-fails, rollback,
// discard, prune, cancelled.
func Syncer(t *testing.T, f Fixture) {
	t.Helper()
	if f.New == nil || f.Keep < 1 {
		t.Fatal("codesynctest: Fixture.New and Fixture.Keep (at least 1) are required")
	}
	if f.ReadFile == nil {
		f.ReadFile = func(_ codesync.Syncer, r *codesync.Release, name string) ([]byte, error) {
			return os.ReadFile(filepath.Join(r.Dir, filepath.FromSlash(name)))
		}
	}
	sc := suite{f: f}
	t.Run("build", sc.build)
	t.Run("build-fails", sc.buildFails)
	t.Run("activate", sc.activate)
	t.Run("activate-unknown", sc.activateUnknown)
	t.Run("activate-fails", sc.activateFails)
	t.Run("rollback", sc.rollback)
	t.Run("discard", sc.discard)
	t.Run("prune", sc.prune)
	t.Run("cancelled", sc.cancelled)
}

type suite struct{ f Fixture }

// release is one Build of the suite: the release and the version its tree carries.
type release struct {
	*codesync.Release
	version int
}

// tree writes the tree of version n into a new folder: version.txt holds n, sub/b.txt
// is the same in every version. Modification times differ between versions, so that a
// syncer comparing by stat sees the change.
func tree(t *testing.T, n int) string {
	t.Helper()
	dir := t.TempDir()
	mtime := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC).Add(time.Duration(n) * time.Hour)
	for name, content := range map[string]string{"version.txt": fmt.Sprint(n), "sub/b.txt": "b"} {
		path := filepath.Join(dir, filepath.FromSlash(name))
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.Chtimes(path, mtime, mtime); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

// builds builds n releases, versions 1 to n, oldest first.
func builds(t *testing.T, s codesync.Syncer, n int) []release {
	t.Helper()
	var out []release
	for v := 1; v <= n; v++ {
		r, err := s.Build(t.Context(), &codesync.DirSource{Path: tree(t, v)})
		if err != nil {
			t.Fatalf("Build of version %d: %v", v, err)
		}
		out = append(out, release{r, v})
	}
	return out
}

// requireCurrent fails unless Current returns want, active, with want's tree.
func (sc suite) requireCurrent(t *testing.T, s codesync.Syncer, want release) {
	t.Helper()
	cur, err := s.Current(t.Context())
	if err != nil {
		t.Fatalf("Current: %v; want release %s (version %d)", err, want.ID, want.version)
	}
	if cur.ID != want.ID || cur.State != codesync.StateActive {
		t.Fatalf("Current = %s (%s); want %s (version %d), active", cur.ID, cur.State, want.ID, want.version)
	}
	b, err := sc.f.ReadFile(s, cur, "version.txt")
	if err != nil || string(b) != fmt.Sprint(want.version) {
		t.Errorf("current release's version.txt = %q, %v; want %d", b, err, want.version)
	}
}

// requireNoCurrent fails unless Current says there is no active release.
func requireNoCurrent(t *testing.T, s codesync.Syncer) {
	t.Helper()
	if cur, err := s.Current(t.Context()); !errors.Is(err, codesync.ErrNoRelease) {
		t.Fatalf("Current = %+v, %v; want codesync.ErrNoRelease", cur, err)
	}
}

// requireReleases fails unless List (when s has it) holds exactly want, with these states.
func requireReleases(t *testing.T, s codesync.Syncer, want map[string]codesync.State) {
	t.Helper()
	l, ok := s.(Lister)
	if !ok {
		return
	}
	list, err := l.List(t.Context())
	if err != nil {
		t.Fatalf("List: %v", err)
	}
	got := map[string]codesync.State{}
	for _, r := range list {
		got[r.ID] = r.State
	}
	if len(got) != len(want) {
		t.Fatalf("releases %v, want %v", got, want)
	}
	for id, st := range want {
		if got[id] != st {
			t.Fatalf("releases %v, want %v", got, want)
		}
	}
}

func activate(t *testing.T, s codesync.Syncer, r release) *codesync.Release {
	t.Helper()
	prev, err := s.Activate(t.Context(), r.Release)
	if err != nil {
		t.Fatalf("Activate(%s): %v", r.ID, err)
	}
	return prev
}

func (sc suite) build(t *testing.T) {
	s := sc.f.New(t)
	dir := tree(t, 1)
	src := &codesync.DirSource{Path: dir}
	rev, err := src.Describe(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	r, err := s.Build(t.Context(), src)
	if err != nil {
		t.Fatalf("Build: %v", err)
	}
	if r.ID == "" || r.State != codesync.StateBuilt || r.Revision != rev || r.Files != 2 || r.Created.IsZero() {
		t.Errorf("Build = %+v; want an ID, state built, revision %+v, 2 files, a creation time", r, rev)
	}
	for name, want := range map[string]string{"version.txt": "1", "sub/b.txt": "b"} {
		if b, err := sc.f.ReadFile(s, r, name); err != nil || string(b) != want {
			t.Errorf("release's %s = %q, %v; want %q", name, b, err, want)
		}
	}
	requireNoCurrent(t, s) // built, not active
	r2, err := s.Build(t.Context(), src)
	if err != nil {
		t.Fatalf("second Build: %v", err)
	}
	if r2.ID <= r.ID {
		t.Errorf("release IDs %q then %q do not sort by creation", r.ID, r2.ID)
	}
	requireReleases(t, s, map[string]codesync.State{r.ID: codesync.StateBuilt, r2.ID: codesync.StateBuilt})
}

func (sc suite) buildFails(t *testing.T) {
	s := sc.f.New(t)
	if _, err := s.Build(t.Context(), nil); err == nil {
		t.Error("Build(nil source) succeeded")
	}
	missing := &codesync.DirSource{Path: filepath.Join(t.TempDir(), "missing")}
	if _, err := s.Build(t.Context(), missing); !errors.Is(err, codesync.ErrNoSource) {
		t.Errorf("Build of a missing folder = %v, want codesync.ErrNoSource", err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	if _, err := s.Build(ctx, &codesync.DirSource{Path: tree(t, 1)}); !errors.Is(err, context.Canceled) {
		t.Errorf("Build with a cancelled context = %v, want context.Canceled", err)
	}
	requireReleases(t, s, nil)
	requireNoCurrent(t, s)
	builds(t, s, 1) // the failures left nothing in the way
}

func (sc suite) activate(t *testing.T) {
	s := sc.f.New(t)
	rs := builds(t, s, 2)
	if prev := activate(t, s, rs[0]); prev != nil {
		t.Errorf("first Activate returned previous %+v, want nil", prev)
	}
	sc.requireCurrent(t, s, rs[0])
	prev := activate(t, s, rs[1])
	if prev == nil || prev.ID != rs[0].ID {
		t.Fatalf("Activate returned previous %+v, want %s", prev, rs[0].ID)
	}
	if prev.State != codesync.StateBuilt {
		t.Errorf("previous release's state %s, want built", prev.State)
	}
	sc.requireCurrent(t, s, rs[1])
	requireReleases(t, s, map[string]codesync.State{rs[0].ID: codesync.StateBuilt, rs[1].ID: codesync.StateActive})
	activate(t, s, rs[0]) // back again: any built release can be activated
	sc.requireCurrent(t, s, rs[0])
}

func (sc suite) activateUnknown(t *testing.T) {
	s := sc.f.New(t)
	rs := builds(t, s, 1)
	for _, r := range []*codesync.Release{nil, {ID: "20000101T000000Z"}, {ID: "not-a-release"}} {
		if _, err := s.Activate(t.Context(), r); !errors.Is(err, codesync.ErrNoRelease) {
			t.Errorf("Activate(%+v) = %v, want codesync.ErrNoRelease", r, err)
		}
	}
	requireNoCurrent(t, s)
	activate(t, s, rs[0])
	if _, err := s.Activate(t.Context(), &codesync.Release{ID: "not-a-release"}); !errors.Is(err, codesync.ErrNoRelease) {
		t.Errorf("Activate(unknown) = %v, want codesync.ErrNoRelease", err)
	}
	sc.requireCurrent(t, s, rs[0])
}

func (sc suite) activateFails(t *testing.T) {
	if sc.f.BreakActivate == nil {
		t.Skip("no Fixture.BreakActivate")
	}
	s := sc.f.New(t)
	rs := builds(t, s, 3)
	activate(t, s, rs[0])
	undo := sc.f.BreakActivate(t, s, rs[1].Release)
	if prev, err := s.Activate(t.Context(), rs[1].Release); err == nil {
		t.Fatalf("broken Activate succeeded (previous %+v)", prev)
	}
	sc.requireCurrent(t, s, rs[0]) // all or nothing
	undo()
	// The caller's recovery: discard what could not go live; current stays.
	if err := s.Discard(t.Context(), rs[1].Release); err != nil {
		t.Fatalf("Discard after a failed Activate: %v", err)
	}
	sc.requireCurrent(t, s, rs[0])
	activate(t, s, rs[2])
	sc.requireCurrent(t, s, rs[2])

	// A first activation that fails leaves no current at all.
	s = sc.f.New(t)
	rs = builds(t, s, 1)
	undo = sc.f.BreakActivate(t, s, rs[0].Release)
	if _, err := s.Activate(t.Context(), rs[0].Release); err == nil {
		t.Fatal("broken first Activate succeeded")
	}
	requireNoCurrent(t, s)
	undo()
	activate(t, s, rs[0])
	sc.requireCurrent(t, s, rs[0])
}

func (sc suite) rollback(t *testing.T) {
	s := sc.f.New(t)
	if _, err := s.Rollback(t.Context()); !errors.Is(err, codesync.ErrNoRelease) {
		t.Errorf("Rollback with nothing active = %v, want codesync.ErrNoRelease", err)
	}
	rs := builds(t, s, 3)
	activate(t, s, rs[0])
	// rs[1] is built and never activated (a run that failed before its cutover).
	activate(t, s, rs[2])
	back, err := s.Rollback(t.Context())
	if err != nil || back == nil || back.ID != rs[0].ID {
		t.Fatalf("Rollback = %+v, %v; want %s, the newest release that was live before (not %s, never live)",
			back, err, rs[0].ID, rs[1].ID)
	}
	sc.requireCurrent(t, s, rs[0])
	requireReleases(t, s, map[string]codesync.State{rs[0].ID: codesync.StateActive,
		rs[1].ID: codesync.StateBuilt, rs[2].ID: codesync.StateFailed})
	// Nothing good before rs[0]: current goes away.
	back, err = s.Rollback(t.Context())
	if err != nil || back != nil {
		t.Fatalf("Rollback of the oldest release = %+v, %v; want nil, nil", back, err)
	}
	requireNoCurrent(t, s)
	requireReleases(t, s, map[string]codesync.State{rs[0].ID: codesync.StateFailed,
		rs[1].ID: codesync.StateBuilt, rs[2].ID: codesync.StateFailed})
}

func (sc suite) discard(t *testing.T) {
	s := sc.f.New(t)
	rs := builds(t, s, 4)
	if err := s.Discard(t.Context(), nil); !errors.Is(err, codesync.ErrNoRelease) {
		t.Errorf("Discard(nil) = %v, want codesync.ErrNoRelease", err)
	}
	activate(t, s, rs[0])
	if err := s.Discard(t.Context(), rs[1].Release); err != nil {
		t.Fatalf("Discard: %v", err)
	}
	if rs[1].State != codesync.StateFailed {
		t.Errorf("discarded release's state %s, want failed", rs[1].State)
	}
	sc.requireCurrent(t, s, rs[0])
	// Discarding the release current points at rolls it back first.
	activate(t, s, rs[2])
	if err := s.Discard(t.Context(), rs[2].Release); err != nil {
		t.Fatalf("Discard of the active release: %v", err)
	}
	sc.requireCurrent(t, s, rs[0])
	// A discarded release is no rollback target.
	activate(t, s, rs[3])
	if back, err := s.Rollback(t.Context()); err != nil || back == nil || back.ID != rs[0].ID {
		t.Fatalf("Rollback = %+v, %v; want %s (past the failed ones)", back, err, rs[0].ID)
	}
	requireReleases(t, s, map[string]codesync.State{rs[0].ID: codesync.StateActive,
		rs[1].ID: codesync.StateFailed, rs[2].ID: codesync.StateFailed, rs[3].ID: codesync.StateFailed})
}

func (sc suite) prune(t *testing.T) {
	s := sc.f.New(t)
	if _, ok := s.(Lister); !ok {
		t.Skipf("%T has no List method", s)
	}
	k := sc.f.Keep
	rs := builds(t, s, k+3)
	activate(t, s, rs[0]) // the oldest is live
	if err := s.Discard(t.Context(), rs[1].Release); err != nil {
		t.Fatal(err)
	}
	if err := s.Prune(t.Context()); err != nil {
		t.Fatalf("Prune: %v", err)
	}
	// Kept: the active one and the k newest good ones; gone: the failed one and the good
	// one beyond k.
	want := map[string]codesync.State{rs[0].ID: codesync.StateActive}
	for _, r := range rs[3:] {
		want[r.ID] = codesync.StateBuilt
	}
	requireReleases(t, s, want)
	sc.requireCurrent(t, s, rs[0])
	for _, r := range rs[1:3] {
		if _, err := s.Activate(t.Context(), r.Release); !errors.Is(err, codesync.ErrNoRelease) {
			t.Errorf("Activate of pruned release %s = %v, want codesync.ErrNoRelease", r.ID, err)
		}
	}

	// Newer releases that all failed never push out the newest good one.
	failed := builds(t, s, k+1)
	for _, r := range failed {
		if err := s.Discard(t.Context(), r.Release); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.Prune(t.Context()); err != nil {
		t.Fatalf("Prune: %v", err)
	}
	requireReleases(t, s, want)
}

func (sc suite) cancelled(t *testing.T) {
	s := sc.f.New(t)
	rs := builds(t, s, 2)
	activate(t, s, rs[0])
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	calls := map[string]func() error{
		"Activate": func() error { _, err := s.Activate(ctx, rs[1].Release); return err },
		"Current":  func() error { _, err := s.Current(ctx); return err },
		"Rollback": func() error { _, err := s.Rollback(ctx); return err },
		"Discard":  func() error { return s.Discard(ctx, rs[1].Release) },
		"Prune":    func() error { return s.Prune(ctx) },
	}
	for _, name := range slices.Sorted(maps.Keys(calls)) {
		if err := calls[name](); !errors.Is(err, context.Canceled) {
			t.Errorf("%s with a cancelled context = %v, want context.Canceled", name, err)
		}
	}
	sc.requireCurrent(t, s, rs[0])
	requireReleases(t, s, map[string]codesync.State{rs[0].ID: codesync.StateActive, rs[1].ID: codesync.StateBuilt})
}
