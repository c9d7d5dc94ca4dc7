package codesync

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

var sampleTree = map[string]string{
	"app.py":                         "print('hello')\n",
	"robots.txt":                     "User-agent: *\nAllow: /\n",
	"lib/util.py":                    "def f(): pass\n",
	"lib/deep/data.json":             `{"a": 1}`,
	"lib/alias.py":                   "->util.py",
	"static/logo":                    "->../lib/deep/data.json",
	".git/HEAD":                      "ref: refs/heads/main\n",
	"lib/.git":                       "gitdir: elsewhere\n",
	"build/tmp/junk.o":               "junk",
	"build/keep.txt":                 "kept",
	"lib/cache.pyc":                  "bytecode",
	"database/migrations/1_a.up.sql": "create table a (id int);",
}

func makeSource(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	writeTree(t, dir, sampleTree)
	os.Chmod(filepath.Join(dir, "app.py"), 0o750)
	os.Chmod(filepath.Join(dir, "lib/deep"), 0o700)
	old := time.Date(2020, 1, 2, 3, 4, 5, 600, time.UTC)
	os.Chtimes(filepath.Join(dir, "lib/util.py"), old, old)
	return dir
}

func TestBuildCopiesTree(t *testing.T) {
	src := makeSource(t)
	s := newSyncer(t, "", func(c *Config) { c.Exclude = []string{".git", "*.pyc", "build/tmp/"} })
	r := build(t, s, dirSource(t, src))
	if !idPattern.MatchString(r.ID) || r.Dir != filepath.Join(s.releases, r.ID) || r.State != StateBuilt {
		t.Fatalf("release %+v", r)
	}
	if r.Revision.Source != src || r.Files != 6 || r.Linked != 0 {
		t.Errorf("release %+v: want source %s, 6 files, none linked", r, src)
	}
	compareTrees(t, src, r.Dir, ".git", "cache.pyc", "build/tmp")
	// Metadata file beside the tree, readable back.
	b, err := os.ReadFile(filepath.Join(r.Dir, MetadataFile))
	if err != nil {
		t.Fatal(err)
	}
	var meta Release
	if err := json.Unmarshal(b, &meta); err != nil || meta.ID != r.ID || meta.State != StateBuilt || meta.Revision != r.Revision || meta.Files != 6 {
		t.Errorf("metadata %s: %+v %v", b, meta, err)
	}
	if entries, _ := os.ReadDir(s.releases); len(entries) != 1 {
		t.Errorf("releases folder holds %v", entries)
	}
	list, err := s.List(t.Context())
	if err != nil || len(list) != 1 || list[0].ID != r.ID {
		t.Fatalf("List = %v, %v", list, err)
	}
	if _, err := s.Current(t.Context()); !errors.Is(err, ErrNoRelease) {
		t.Errorf("Current before activation: %v", err)
	}

	// A source given as a symlink to the folder: the folder is copied.
	link := filepath.Join(t.TempDir(), "build")
	os.Symlink(src, link)
	r2 := build(t, s, dirSource(t, link))
	if fi, err := os.Lstat(r2.Dir); err != nil || !fi.IsDir() {
		t.Fatalf("release from a linked source: %v %v", fi, err)
	}
	compareTrees(t, src, r2.Dir, ".git", "cache.pyc", "build/tmp")
	if r2.Linked != 6 {
		t.Errorf("release from the same tree: %d linked, want 6", r2.Linked)
	}
}

func TestBuildHardLinksUnchangedFiles(t *testing.T) {
	src := makeSource(t)
	s := newSyncer(t, "", nil)
	r1 := build(t, s, dirSource(t, src))

	// Change one file's content, another's mode, and touch a third.
	writeTree(t, src, map[string]string{"app.py": "print('changed')\n", "new.txt": "new"})
	os.Chmod(filepath.Join(src, "app.py"), 0o750)
	os.Chmod(filepath.Join(src, "lib/deep/data.json"), 0o600)
	later := time.Now().Add(time.Hour)
	os.Chtimes(filepath.Join(src, "robots.txt"), later, later)

	r2 := build(t, s, dirSource(t, src))
	if r2.ID <= r1.ID {
		t.Fatalf("ids do not sort: %s then %s", r1.ID, r2.ID)
	}
	compareTrees(t, src, r2.Dir, ".git")
	same := func(rel string) bool {
		return inode(t, filepath.Join(r1.Dir, rel)) == inode(t, filepath.Join(r2.Dir, rel))
	}
	for _, rel := range []string{"lib/util.py", "build/keep.txt", "database/migrations/1_a.up.sql", "lib/cache.pyc", "build/tmp/junk.o"} {
		if !same(rel) {
			t.Errorf("%s unchanged but not hard-linked", rel)
		}
	}
	for _, rel := range []string{"app.py", "lib/deep/data.json", "robots.txt"} {
		if same(rel) {
			t.Errorf("%s changed but hard-linked", rel)
		}
	}
	if r2.Files != 9 || r2.Linked != 5 {
		t.Errorf("release 2: %d files, %d linked; want 9, 5", r2.Files, r2.Linked)
	}
	// The first release is intact.
	if b, _ := os.ReadFile(filepath.Join(r1.Dir, "app.py")); string(b) != sampleTree["app.py"] {
		t.Errorf("release 1 app.py = %q", b)
	}

	// NoHardLinks copies everything.
	s2 := newSyncer(t, filepath.Dir(s.releases), func(c *Config) { c.NoHardLinks = true })
	r3 := build(t, s2, dirSource(t, src))
	if r3.Linked != 0 || inode(t, filepath.Join(r3.Dir, "lib/util.py")) == inode(t, filepath.Join(r2.Dir, "lib/util.py")) {
		t.Errorf("NoHardLinks: %d linked", r3.Linked)
	}
	compareTrees(t, src, r3.Dir, ".git")
}

func TestBuildContentCompare(t *testing.T) {
	src := makeSource(t)
	s := newSyncer(t, "", func(c *Config) { c.Compare = CompareContent })
	r1 := build(t, s, dirSource(t, src))
	// Same bytes, new times (what a fresh checkout looks like): linked by content.
	later := time.Now().Add(time.Hour)
	os.Chtimes(filepath.Join(src, "lib/util.py"), later, later)
	writeTree(t, src, map[string]string{"build/keep.txt": "KEPT"}) // same size, other bytes
	r2 := build(t, s, dirSource(t, src))
	if inode(t, filepath.Join(r1.Dir, "lib/util.py")) != inode(t, filepath.Join(r2.Dir, "lib/util.py")) {
		t.Error("same content, other mtime: not linked")
	}
	if inode(t, filepath.Join(r1.Dir, "build/keep.txt")) == inode(t, filepath.Join(r2.Dir, "build/keep.txt")) {
		t.Error("other content of the same size: linked")
	}
	if b, _ := os.ReadFile(filepath.Join(r2.Dir, "build/keep.txt")); string(b) != "KEPT" {
		t.Errorf("keep.txt = %q", b)
	}
}

func TestBuildFromGitLinksByContent(t *testing.T) {
	g := newGitRepo(t)
	g.commit("one", map[string]string{"a.txt": "a", "b/c.txt": "c", "d.txt": "d"})
	s := newSyncer(t, "", nil)
	src := &GitSource{Repo: g.dir, Ref: "main", TempDir: t.TempDir()}
	r1 := build(t, s, src)
	// Commit times are whole seconds: make sure the second commit has another.
	time.Sleep(1100 * time.Millisecond)
	c2 := g.commit("two", map[string]string{"d.txt": "D2"})
	r2 := build(t, s, src)
	if r2.Revision.Commit != c2 || r2.Revision.Ref != "main" || r2.Files != 3 || r2.Linked != 2 {
		t.Errorf("release 2 %+v: want commit %s, 3 files, 2 linked", r2, c2)
	}
	if b, _ := os.ReadFile(filepath.Join(r2.Dir, "d.txt")); string(b) != "D2" {
		t.Errorf("d.txt = %q", b)
	}
	if b, _ := os.ReadFile(filepath.Join(r1.Dir, "d.txt")); string(b) != "d" {
		t.Errorf("release 1 d.txt = %q", b)
	}
	if left, _ := os.ReadDir(src.TempDir); len(left) != 0 {
		t.Errorf("git exports left: %v", left)
	}
}

func TestBuildOverlayNeverCorruptsPreviousRelease(t *testing.T) {
	src := makeSource(t)
	base := t.TempDir()
	overlays := t.TempDir()
	robots := filepath.Join(overlays, "robots-staging.txt")
	writeTree(t, overlays, map[string]string{"robots-staging.txt": "User-agent: *\nDisallow: /\n", "banner.html": "STAGING"})
	// Release 1 without overlays; release 2 with them, over unchanged (linkable) files.
	plain := newSyncer(t, base, nil)
	r1 := build(t, plain, dirSource(t, src))
	s := newSyncer(t, base, func(c *Config) {
		c.Overlay = map[string]string{
			"robots.txt":             robots,
			"static/new/banner.html": filepath.Join(overlays, "banner.html"),
			"lib/util.py":            robots,
		}
	})
	r2 := build(t, s, dirSource(t, src))
	for rel, want := range map[string]string{
		"robots.txt": "User-agent: *\nDisallow: /\n", "static/new/banner.html": "STAGING", "lib/util.py": "User-agent: *\nDisallow: /\n",
	} {
		if b, err := os.ReadFile(filepath.Join(r2.Dir, rel)); err != nil || string(b) != want {
			t.Errorf("release 2 %s = %q, %v; want %q", rel, b, err, want)
		}
	}
	for _, rel := range []string{"robots.txt", "lib/util.py"} {
		if b, _ := os.ReadFile(filepath.Join(r1.Dir, rel)); string(b) != sampleTree[rel] {
			t.Errorf("previous release's %s corrupted: %q", rel, b)
		}
		if b, _ := os.ReadFile(filepath.Join(src, rel)); string(b) != sampleTree[rel] {
			t.Errorf("source %s changed: %q", rel, b)
		}
	}
	if r2.Files != 9 || r2.Linked != 6 {
		t.Errorf("release 2: %d files, %d linked; want 9, 6", r2.Files, r2.Linked)
	}
	// A third release links the overlaid file from the second only when unchanged.
	r3 := build(t, s, dirSource(t, src))
	if b, _ := os.ReadFile(filepath.Join(r3.Dir, "robots.txt")); !strings.Contains(string(b), "Disallow") {
		t.Errorf("release 3 robots.txt = %q", b)
	}
	if b, _ := os.ReadFile(filepath.Join(r2.Dir, "robots.txt")); !strings.Contains(string(b), "Disallow") {
		t.Errorf("release 2 robots.txt = %q", b)
	}

	// Bad overlays: missing file, path escaping the release, folder in the way.
	for _, ov := range []map[string]string{
		{"robots.txt": filepath.Join(overlays, "missing.txt")},
		{"../robots.txt": robots},
		{"/etc/robots.txt": robots},
		{"robots.txt": overlays},
	} {
		_, err := New(Config{Releases: filepath.Join(base, "releases"), Current: filepath.Join(base, "current"), Overlay: ov})
		if !errors.Is(err, ErrConfig) {
			t.Errorf("overlay %v: New = %v, want ErrConfig", ov, err)
		}
	}
	bad := newSyncer(t, base, func(c *Config) { c.Overlay = map[string]string{"lib": robots} })
	if _, err := bad.Build(t.Context(), dirSource(t, src)); err == nil || !strings.Contains(err.Error(), "folder") {
		t.Errorf("overlay over a folder: %v", err)
	}
	assertNoPartial(t, bad)
	viaLink := newSyncer(t, base, func(c *Config) { c.Overlay = map[string]string{"static/logo/x": robots} })
	if _, err := viaLink.Build(t.Context(), dirSource(t, src)); err == nil {
		t.Error("overlay through a symlink: no error")
	}
	assertNoPartial(t, viaLink)
}

func assertNoPartial(t *testing.T, s *SymlinkSyncer) {
	t.Helper()
	entries, _ := os.ReadDir(s.releases)
	for _, e := range entries {
		if !idPattern.MatchString(e.Name()) {
			t.Errorf("left in releases folder: %s", e.Name())
		}
	}
}

func TestBuildSymlinks(t *testing.T) {
	for _, target := range []string{"/etc/passwd", "../../outside", "deep/../../../x"} {
		src := makeSource(t)
		writeTree(t, src, map[string]string{"lib/bad": "->" + target})
		s := newSyncer(t, "", nil)
		_, err := s.Build(t.Context(), dirSource(t, src))
		if !errors.Is(err, ErrExternalSymlink) || !strings.Contains(err.Error(), "lib/bad") || !strings.Contains(err.Error(), target) {
			t.Errorf("symlink to %s: %v, want ErrExternalSymlink naming it", target, err)
		}
		assertNoPartial(t, s)
		if list, _ := s.List(t.Context()); len(list) != 0 {
			t.Errorf("release built: %v", list)
		}
		allowed := newSyncer(t, "", func(c *Config) { c.AllowExternalSymlinks = true })
		r := build(t, allowed, dirSource(t, src))
		if got, _ := os.Readlink(filepath.Join(r.Dir, "lib/bad")); got != target {
			t.Errorf("allowed symlink = %q, want %q", got, target)
		}
	}
	// An excluded external symlink is not looked at.
	src := makeSource(t)
	writeTree(t, src, map[string]string{".git/link": "->/etc"})
	build(t, newSyncer(t, "", nil), dirSource(t, src))
}

func TestBuildIDsSortAndLeftoversRemoved(t *testing.T) {
	src := makeSource(t)
	now := time.Date(2026, 11, 25, 20, 15, 0, 0, time.UTC)
	s := newSyncer(t, "", func(c *Config) { c.Now = func() time.Time { return now } })
	// A crashed run's leftovers.
	os.MkdirAll(filepath.Join(s.releases, "20261125T010000Z.partial/lib"), 0o755)
	os.MkdirAll(filepath.Join(s.releases, "20261124T010000Z.removing"), 0o555)
	os.WriteFile(filepath.Join(s.releases, "notes.txt"), []byte("mine"), 0o644)
	var ids []string
	for range 3 {
		ids = append(ids, build(t, s, dirSource(t, src)).ID)
	}
	now = now.Add(-time.Hour) // the clock goes back
	ids = append(ids, build(t, s, dirSource(t, src)).ID)
	now = now.Add(2 * time.Hour)
	ids = append(ids, build(t, s, dirSource(t, src)).ID)
	want := []string{"20261125T201500Z", "20261125T201500Z-001", "20261125T201500Z-002", "20261125T201500Z-003", "20261125T211500Z"}
	if !slices.Equal(ids, want) {
		t.Errorf("ids %v, want %v", ids, want)
	}
	entries, _ := os.ReadDir(s.releases)
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	if !slices.Equal(names, append(slices.Clone(want), "notes.txt")) {
		t.Errorf("releases folder holds %v", names)
	}
}

// cancelingSource opens the wrapped source, then cancels the build's context.
type cancelingSource struct {
	Source
	cancel context.CancelFunc
}

func (c cancelingSource) Open(ctx context.Context) (*Tree, error) {
	tree, err := c.Source.Open(ctx)
	c.cancel()
	return tree, err
}

func TestBuildCancelled(t *testing.T) {
	src := makeSource(t)
	s := newSyncer(t, "", nil)
	ctx, cancel := context.WithCancel(t.Context())
	_, err := s.Build(ctx, cancelingSource{dirSource(t, src), cancel})
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("Build = %v, want context.Canceled", err)
	}
	assertNoPartial(t, s)
	if list, _ := s.List(t.Context()); len(list) != 0 {
		t.Errorf("releases: %v", list)
	}
}

func TestNewBadInput(t *testing.T) {
	base := t.TempDir()
	cur := filepath.Join(base, "current")
	os.Mkdir(cur, 0o755)
	os.WriteFile(filepath.Join(cur, "precious"), []byte("x"), 0o644)
	_, err := New(Config{Releases: filepath.Join(base, "releases"), Current: cur})
	if !errors.Is(err, ErrCurrentNotLink) || !strings.Contains(err.Error(), cur) {
		t.Errorf("current a folder: %v", err)
	}
	if _, err := os.Stat(filepath.Join(cur, "precious")); err != nil {
		t.Errorf("current folder touched: %v", err)
	}
	file := filepath.Join(base, "file")
	os.WriteFile(file, nil, 0o644)
	if _, err := New(Config{Releases: filepath.Join(base, "releases"), Current: file}); !errors.Is(err, ErrCurrentNotLink) {
		t.Errorf("current a file: %v", err)
	}
	if _, err := New(Config{Releases: file, Current: filepath.Join(base, "c")}); !errors.Is(err, ErrNotDir) {
		t.Errorf("releases a file: %v", err)
	}
	for _, cfg := range []Config{
		{},
		{Releases: base},
		{Releases: base, Current: filepath.Join(base, "c"), Keep: -1},
		{Releases: base, Current: filepath.Join(base, "c"), Exclude: []string{"[x"}},
		{Releases: base, Current: filepath.Join(base, "c"), Compare: 7},
		{Releases: base, Current: filepath.Join(base, "c"), Overlay: map[string]string{MetadataFile: file}},
	} {
		if _, err := New(cfg); !errors.Is(err, ErrConfig) {
			t.Errorf("New(%+v) = %v, want ErrConfig", cfg, err)
		}
	}
}

func TestNewCrossFilesystem(t *testing.T) {
	disk := t.TempDir()
	shm, err := os.MkdirTemp("/dev/shm", "codesync-test-")
	if err != nil {
		t.Skipf("no /dev/shm: %v", err)
	}
	t.Cleanup(func() { os.RemoveAll(shm) })
	var a, b syscall.Stat_t
	syscall.Stat(disk, &a)
	syscall.Stat(shm, &b)
	if a.Dev == b.Dev {
		t.Skipf("%s and %s are on the same filesystem", disk, shm)
	}
	_, err = New(Config{Releases: filepath.Join(shm, "releases"), Current: filepath.Join(disk, "www", "current")})
	if !errors.Is(err, ErrCrossFilesystem) {
		t.Errorf("releases on tmpfs, current on disk: %v", err)
	}
	if _, err := New(Config{Releases: filepath.Join(shm, "r"), Current: filepath.Join(shm, "a", "b", "current")}); err != nil {
		t.Errorf("both on tmpfs: %v", err)
	}
}

// TestBuildNoSpace fills a 1 MiB tmpfs: the .partial folder is removed and nothing is
// activated.
func TestBuildNoSpace(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("mounting a small tmpfs needs root")
	}
	mnt := t.TempDir()
	if out, err := exec.CommandContext(t.Context(), "mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", mnt).CombinedOutput(); err != nil {
		t.Skipf("cannot mount a tmpfs: %v %s", err, out)
	}
	t.Cleanup(func() {
		if out, err := exec.Command("umount", mnt).CombinedOutput(); err != nil {
			t.Errorf("umount %s: %v %s", mnt, err, out)
		}
	})
	s := newSyncer(t, mnt, nil)
	small := makeSource(t)
	r1 := build(t, s, dirSource(t, small))
	if _, err := s.Activate(t.Context(), r1); err != nil {
		t.Fatal(err)
	}
	big := makeSource(t)
	blob := make([]byte, 3<<20)
	os.WriteFile(filepath.Join(big, "lib", "blob.bin"), blob, 0o644)
	_, err := s.Build(t.Context(), dirSource(t, big))
	if !errors.Is(err, syscall.ENOSPC) {
		t.Fatalf("Build on a full disk = %v, want ENOSPC", err)
	}
	assertNoPartial(t, s)
	list, _ := s.List(t.Context())
	if len(list) != 1 || list[0].ID != r1.ID || list[0].State != StateActive {
		t.Errorf("releases after ENOSPC: %v", list)
	}
	if cur, err := s.Current(t.Context()); err != nil || cur.ID != r1.ID {
		t.Errorf("current after ENOSPC: %v, %v", cur, err)
	}
	// With the space back, the next build works.
	os.Remove(filepath.Join(big, "lib", "blob.bin"))
	build(t, s, dirSource(t, big))
}

func TestActivateAndRollback(t *testing.T) {
	src := makeSource(t)
	s := newSyncer(t, "", nil)
	ctx := t.Context()
	if _, err := s.Rollback(ctx); !errors.Is(err, ErrNoRelease) {
		t.Errorf("Rollback with nothing active: %v", err)
	}
	r1 := build(t, s, dirSource(t, src))
	// A crashed switch left its temporary symlink.
	os.Symlink("nowhere", filepath.Join(filepath.Dir(s.current), ".current.restage-0123456789ab"))
	prev, err := s.Activate(ctx, r1)
	if err != nil || prev != nil {
		t.Fatalf("Activate(r1) = %v, %v", prev, err)
	}
	assertCurrent(t, s, r1)
	r2 := build(t, s, dirSource(t, src))
	prev, err = s.Activate(ctx, r2)
	if err != nil || prev == nil || prev.ID != r1.ID {
		t.Fatalf("Activate(r2) = %v, %v; want previous %s", prev, err, r1.ID)
	}
	assertCurrent(t, s, r2)
	assertStates(t, s, map[string]State{r1.ID: StateBuilt, r2.ID: StateActive})
	if entries, _ := os.ReadDir(filepath.Dir(s.current)); len(entries) != 2 {
		t.Errorf("temporary symlinks left: %v", entries)
	}
	// r3 built but never activated (a run that failed before the cutover), not discarded.
	r3 := build(t, s, dirSource(t, src))
	r4 := build(t, s, dirSource(t, src))
	if _, err := s.Activate(ctx, r4); err != nil {
		t.Fatal(err)
	}
	// Rollback prefers r2 (was live) over r3 (never was).
	back, err := s.Rollback(ctx)
	if err != nil || back == nil || back.ID != r2.ID {
		t.Fatalf("Rollback = %v, %v; want %s", back, err, r2.ID)
	}
	assertCurrent(t, s, r2)
	assertStates(t, s, map[string]State{r1.ID: StateBuilt, r2.ID: StateActive, r3.ID: StateBuilt, r4.ID: StateFailed})
	back, err = s.Rollback(ctx)
	if err != nil || back == nil || back.ID != r1.ID {
		t.Fatalf("second Rollback = %v, %v; want %s", back, err, r1.ID)
	}
	// Nothing before r1: current is removed.
	back, err = s.Rollback(ctx)
	if err != nil || back != nil {
		t.Fatalf("last Rollback = %v, %v; want nil, nil", back, err)
	}
	if _, err := os.Lstat(s.current); !os.IsNotExist(err) {
		t.Errorf("current after rolling back the first release: %v", err)
	}
	assertStates(t, s, map[string]State{r1.ID: StateFailed, r2.ID: StateFailed, r3.ID: StateBuilt, r4.ID: StateFailed})

	// Activating something that is not a release of ours.
	if _, err := s.Activate(ctx, &Release{ID: "x"}); !errors.Is(err, ErrNoRelease) {
		t.Errorf("Activate(bogus) = %v", err)
	}
	if _, err := s.Activate(ctx, nil); !errors.Is(err, ErrNoRelease) {
		t.Errorf("Activate(nil) = %v", err)
	}
}

func TestActivateRefusesRealDirectory(t *testing.T) {
	src := makeSource(t)
	s := newSyncer(t, "", nil)
	r := build(t, s, dirSource(t, src))
	// Someone replaced the symlink by a folder after New.
	os.Mkdir(s.current, 0o755)
	os.WriteFile(filepath.Join(s.current, "precious"), []byte("x"), 0o644)
	if _, err := s.Activate(t.Context(), r); !errors.Is(err, ErrCurrentNotLink) {
		t.Errorf("Activate over a folder: %v", err)
	}
	if _, err := os.Stat(filepath.Join(s.current, "precious")); err != nil {
		t.Errorf("folder touched: %v", err)
	}
	if entries, _ := os.ReadDir(filepath.Dir(s.current)); len(entries) != 2 {
		t.Errorf("leftovers beside current: %v", entries)
	}
}

func TestDiscardAndPrune(t *testing.T) {
	src := makeSource(t)
	s := newSyncer(t, "", func(c *Config) { c.Keep = 2 })
	ctx := t.Context()
	var rs []*Release
	for range 6 {
		rs = append(rs, build(t, s, dirSource(t, src)))
	}
	// r0 live, then r1 live, r2 discarded, r3 live and rolled back (to r1), r4 and r5 built.
	s.Activate(ctx, rs[0])
	s.Activate(ctx, rs[1])
	if err := s.Discard(ctx, rs[2]); err != nil || rs[2].State != StateFailed {
		t.Fatalf("Discard = %v, state %s", err, rs[2].State)
	}
	s.Activate(ctx, rs[3])
	// Discarding the release current points at rolls it back first (to r1).
	if err := s.Discard(ctx, rs[3]); err != nil || rs[3].State != StateFailed {
		t.Fatalf("Discard of the active release = %v, state %s", err, rs[3].State)
	}
	assertCurrent(t, s, rs[1])
	assertStates(t, s, map[string]State{rs[0].ID: StateBuilt, rs[1].ID: StateActive, rs[2].ID: StateFailed,
		rs[3].ID: StateFailed, rs[4].ID: StateBuilt, rs[5].ID: StateBuilt})
	if err := s.Prune(ctx); err != nil {
		t.Fatal(err)
	}
	// Good ones, newest first: r5, r4 (kept: 2), r1 (active: kept anyway), r0 removed;
	// failed ones removed.
	assertStates(t, s, map[string]State{rs[1].ID: StateActive, rs[4].ID: StateBuilt, rs[5].ID: StateBuilt})
	assertNoPartial(t, s)
	assertCurrent(t, s, rs[1])

	// Failed releases never count: with Keep 1 and KeepFailed 1, the newest good one and
	// the active one stay even when newer releases failed.
	s1 := newSyncer(t, filepath.Dir(s.releases), func(c *Config) { c.Keep = 1; c.KeepFailed = 1 })
	r6 := build(t, s1, dirSource(t, src))
	r7 := build(t, s1, dirSource(t, src))
	s1.Discard(ctx, r6)
	s1.Discard(ctx, r7)
	if err := s1.Prune(ctx); err != nil {
		t.Fatal(err)
	}
	assertStates(t, s, map[string]State{rs[1].ID: StateActive, rs[5].ID: StateBuilt, r7.ID: StateFailed})
}

// TestCurrentNeverAbsentOrDangling reads current in a loop while releases are activated
// over and over: it must always be a symlink to an existing release.
func TestCurrentNeverAbsentOrDangling(t *testing.T) {
	src := makeSource(t)
	s := newSyncer(t, "", nil)
	ctx := t.Context()
	rs := []*Release{build(t, s, dirSource(t, src)), build(t, s, dirSource(t, src))}
	if _, err := s.Activate(ctx, rs[0]); err != nil {
		t.Fatal(err)
	}
	stop := make(chan struct{})
	bad := make(chan error, 1)
	var reads atomic.Int64
	go func() {
		defer close(bad)
		for {
			select {
			case <-stop:
				return
			default:
			}
			reads.Add(1)
			target, err := os.Readlink(s.current)
			if err == nil {
				_, err = os.Stat(target)
			}
			if err != nil {
				bad <- err
				return
			}
		}
	}()
	deadline := time.Now().Add(2 * time.Second)
	var n int
	for n = 0; n < 100 && time.Now().Before(deadline); n++ {
		if _, err := s.Activate(ctx, rs[(n+1)%2]); err != nil {
			close(stop)
			t.Fatalf("Activate #%d: %v", n, err)
		}
		if len(bad) > 0 {
			break
		}
	}
	close(stop)
	if err, ok := <-bad; ok && err != nil {
		t.Fatalf("current was absent or dangling during activation %d (after %d reads): %v", n, reads.Load(), err)
	}
	t.Logf("%d activations, %d reads", n, reads.Load())
	if reads.Load() < int64(n) {
		t.Errorf("only %d reads during %d activations: the test saw too little", reads.Load(), n)
	}
}

// failMetadataWrites makes every metadata write into release r fail (a folder that is
// not empty where atomicfile.WriteFile puts its temporary file: it can neither remove nor
// replace it, not even as root); the returned func undoes it.
func failMetadataWrites(t testing.TB, r *Release) func() {
	t.Helper()
	block := filepath.Join(r.Dir, MetadataFile+".new")
	if err := os.MkdirAll(filepath.Join(block, "in-the-way"), 0o755); err != nil {
		t.Fatal(err)
	}
	return func() { os.RemoveAll(block) }
}

// TestActivateIsAllOrNothing adds to the conformance suite's activate-fails (current
// stays where it was) what SymlinkSyncer says about it and the metadata it leaves, for a
// failing metadata write of the new release, of the previous one, and of a first
// activation.
func TestActivateIsAllOrNothing(t *testing.T) {
	src := makeSource(t)
	for _, tc := range []struct {
		name          string
		first         bool // no release was active before
		blockPrevious bool // the previous release's metadata fails, not the new one's
	}{
		{"new release's metadata fails", false, false},
		{"previous release's metadata fails", false, true},
		{"first activation", true, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := newSyncer(t, "", nil)
			var r1 *Release
			if !tc.first {
				r1 = build(t, s, dirSource(t, src))
				if _, err := s.Activate(t.Context(), r1); err != nil {
					t.Fatal(err)
				}
			}
			r2 := build(t, s, dirSource(t, src))
			blocked := r2
			if tc.blockPrevious {
				blocked = r1
			}
			unblock := failMetadataWrites(t, blocked)
			prev, err := s.Activate(t.Context(), r2)
			unblock()
			if err == nil || prev != nil {
				t.Fatalf("Activate with unwritable metadata = %v, %v; want an error", prev, err)
			}
			says := s.current + " removed again"
			if r1 != nil {
				says = s.current + " points at " + r1.Dir + " again"
			}
			if !strings.Contains(err.Error(), "activation undone: "+says) {
				t.Errorf("error %q does not say %q", err, says)
			}
			if r1 == nil {
				if _, err := os.Lstat(s.current); !os.IsNotExist(err) {
					t.Errorf("current after a failed first activation: %v; want it absent as before", err)
				}
				assertStates(t, s, map[string]State{r2.ID: StateBuilt})
				return
			}
			assertCurrent(t, s, r1)
			assertStates(t, s, map[string]State{r1.ID: StateActive, r2.ID: StateBuilt})
		})
	}
}

func assertCurrent(t *testing.T, s *SymlinkSyncer, want *Release) {
	t.Helper()
	target, err := os.Readlink(s.current)
	if err != nil || target != want.Dir {
		t.Errorf("current -> %q, %v; want %s", target, err, want.Dir)
	}
	cur, err := s.Current(t.Context())
	if err != nil || cur.ID != want.ID || cur.State != StateActive {
		t.Errorf("Current = %+v, %v; want %s", cur, err, want.ID)
	}
	if b, err := os.ReadFile(filepath.Join(s.current, "app.py")); err != nil || len(b) == 0 {
		t.Errorf("reading through current: %v", err)
	}
}

func assertStates(t *testing.T, s *SymlinkSyncer, want map[string]State) {
	t.Helper()
	list, err := s.List(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]State{}
	for _, r := range list {
		got[r.ID] = r.State
		if m, err := s.read(r.ID); err != nil || (m.State != r.State) {
			t.Errorf("%s: metadata %+v (%v), listed %s", r.ID, m, err, r.State)
		}
	}
	if len(got) != len(want) {
		t.Errorf("releases %v, want %v", got, want)
		return
	}
	for id, st := range want {
		if got[id] != st {
			t.Errorf("releases %v, want %v", got, want)
			return
		}
	}
}

// TestBuildSync: with Config.Sync the release is flushed before it is renamed into
// place (syncfs on Linux; elsewhere atomicfile.SyncTree, tested there).
func TestBuildSync(t *testing.T) {
	src := makeSource(t)
	s := newSyncer(t, "", func(c *Config) { c.Sync = true })
	r := build(t, s, dirSource(t, src))
	compareTrees(t, src, r.Dir, ".git")
}

// A symlink whose target reads as a path inside the tree but leads out of it once the
// tree's other symlinks are followed ("x/b -> ..", then "x/up -> b/..": the tree's
// parent; a chain of them reaches "/") is refused as ErrExternalSymlink, from a git
// branch (as a developer pushes it) and from a folder; links that stay inside, missing
// targets and loops still build.
func TestBuildRefusesSymlinksLeavingThroughOthers(t *testing.T) {
	escape := map[string]string{"a.txt": "a", "x/b": "->.."}
	prev := "b"
	for i := range 12 {
		name := fmt.Sprintf("up%d", i)
		escape["x/"+name] = "->" + prev + "/.."
		prev = name
	}
	escape["x/root"] = "->" + prev // "/" once followed
	g := newGitRepo(t)
	writeTree(t, g.dir, escape)
	g.run("add", "-A")
	g.run("commit", "-q", "-m", "escape")
	for name, src := range map[string]Source{"git": &GitSource{Repo: g.dir, Ref: "main"}, "folder": dirSource(t, g.dir)} {
		s := newSyncer(t, "", nil)
		r, err := s.Build(t.Context(), src)
		if !errors.Is(err, ErrExternalSymlink) || !strings.Contains(err.Error(), "escapes") {
			var leaked string
			if r != nil {
				b, _ := os.ReadFile(filepath.Join(r.Dir, "x/root/etc/hostname"))
				leaked = string(b)
			}
			t.Errorf("%s: %v, want ErrExternalSymlink (x/root/etc/hostname in the release reads %q)", name, err, leaked)
		}
		assertNoPartial(t, s)
	}

	inside := newGitRepo(t)
	writeTree(t, inside.dir, map[string]string{"a.txt": "a", "x/b": "->..", "x/a": "->b/a.txt",
		"x/gone": "->missing/..", "x/loop1": "->loop2", "x/loop2": "->loop1", "x/under": "->../a.txt/y"})
	inside.run("add", "-A")
	inside.run("commit", "-q", "-m", "inside")
	r := build(t, newSyncer(t, "", nil), &GitSource{Repo: inside.dir, Ref: "main"})
	if b, err := os.ReadFile(filepath.Join(r.Dir, "x/a")); err != nil || string(b) != "a" {
		t.Errorf("x/a in the release: %q, %v", b, err)
	}
}
