package codesync

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"github.com/restage/restage/internal/atomicfile"
)

// MetadataFile is the name of the metadata file in the root of every release.
const MetadataFile = ".restage-release.json"

// Log keys.
const (
	logRelease = "release"
	logPath    = "path"
	logSource  = "source"
	logFiles   = "files"
	logLinked  = "linked"
	logElapsed = "elapsed"
	logTarget  = "target"
)

// Compare says how Build decides that a file is unchanged since the previous release, so
// that it is hard-linked instead of copied.
type Compare int

// Comparisons.
const (
	// CompareAuto compares by stat (CompareStat) for trees whose modification times are
	// the files' own (folders), and by content (CompareContent) for git exports, whose
	// times are the commit's.
	CompareAuto Compare = iota
	// CompareStat: same size, mode, owner and modification time (rsync's quick check).
	CompareStat
	// CompareContent: same size, mode and owner, and the same modification time or the
	// same bytes. A file linked on equal bytes keeps the previous release's time.
	CompareContent
)

// Config configures a SymlinkSyncer. Zero values are the documented defaults.
type Config struct {
	Releases string // folder holding releases/<id>; required; created by Build
	Current  string // the symlink pointing at the active release; required
	Keep     int    // good (not failed) releases Prune keeps; 0: 3
	// KeepFailed is how many of the newest failed releases Prune leaves for inspection;
	// 0: none (failed releases never count towards Keep).
	KeepFailed int
	// Exclude lists patterns of paths left out of releases (filepath.Match syntax). A
	// pattern without "/" matches a name at any depth (".git", "*.pyc"); one with "/"
	// matches the path from the tree's root ("build/tmp"). A trailing "/" matches folders
	// only. The metadata file is always left out.
	Exclude []string
	// Overlay maps release-relative paths to files installed over the release's own
	// (staging's robots.txt). Each is written as a new file, never into a linked one.
	Overlay map[string]string
	// AllowExternalSymlinks lets symlinks pointing outside the tree (or absolute) through;
	// by default Build refuses them with ErrExternalSymlink, also one whose target reads
	// as inside but leads out once the tree's other symlinks are followed.
	AllowExternalSymlinks bool
	// NoHardLinks copies every file, instead of hard-linking files unchanged since the
	// previous release. Linked files share their inode with older releases: a program that
	// writes into its own code tree in place would change them too.
	NoHardLinks bool
	Compare     Compare // how unchanged files are found; CompareAuto by default
	// Workers is the number of files copied at once; 0: 4.
	Workers int
	// Sync flushes the release to disk before it is renamed into place, so a power loss
	// cannot leave a complete-looking release with empty files: syncfs(2) of its
	// filesystem on Linux, an fsync of each of its files and folders elsewhere. Off by
	// default: the next rebuild replaces such a release anyway.
	Sync   bool
	Logger *slog.Logger     // nil: slog.Default()
	Now    func() time.Time // the clock for release ids; nil: time.Now
}

// SymlinkSyncer keeps releases in Config.Releases and points the Config.Current symlink
// at the active one. Its methods must not be called concurrently for the same folders
// (the Rebuilder holds the environment lock).
type SymlinkSyncer struct {
	cfg      Config
	releases string // absolute
	current  string // absolute
	exclude  []pattern
	log      *slog.Logger
}

var _ Syncer = (*SymlinkSyncer)(nil)

type pattern struct {
	glob    string
	path    bool // matches the whole relative path
	dirOnly bool
}

// New validates cfg and returns a SymlinkSyncer. It refuses a Current that exists and is
// not a symlink (ErrCurrentNotLink; it is left alone), a releases folder on another
// filesystem than Current's folder (ErrCrossFilesystem), bad exclude patterns and missing
// overlay files (ErrConfig). It creates nothing.
func New(cfg Config) (*SymlinkSyncer, error) {
	if cfg.Releases == "" || cfg.Current == "" {
		return nil, fmt.Errorf("codesync: %w: Releases and Current are required", ErrConfig)
	}
	switch {
	case cfg.Keep < 0:
		return nil, fmt.Errorf("codesync: %w: Keep is negative", ErrConfig)
	case cfg.KeepFailed < 0:
		return nil, fmt.Errorf("codesync: %w: KeepFailed is negative", ErrConfig)
	case cfg.Workers < 0:
		return nil, fmt.Errorf("codesync: %w: Workers is negative", ErrConfig)
	case cfg.Compare < CompareAuto || cfg.Compare > CompareContent:
		return nil, fmt.Errorf("codesync: %w: unknown Compare %d", ErrConfig, cfg.Compare)
	}
	if cfg.Keep == 0 {
		cfg.Keep = 3
	}
	if cfg.Workers == 0 {
		cfg.Workers = 4
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	s := &SymlinkSyncer{cfg: cfg, log: cfg.Logger}
	if s.log == nil {
		s.log = slog.Default()
	}
	var err error
	if s.releases, err = filepath.Abs(cfg.Releases); err != nil {
		return nil, fmt.Errorf("codesync: releases folder %s: %w", cfg.Releases, err)
	}
	if s.current, err = filepath.Abs(cfg.Current); err != nil {
		return nil, fmt.Errorf("codesync: current %s: %w", cfg.Current, err)
	}
	if s.current == s.releases || strings.HasPrefix(s.current, s.releases+string(filepath.Separator)) {
		return nil, fmt.Errorf("codesync: %w: current %s is inside the releases folder %s", ErrConfig, s.current, s.releases)
	}
	if err := s.checkCurrent(); err != nil {
		return nil, err
	}
	if fi, err := os.Stat(s.releases); err == nil && !fi.IsDir() {
		return nil, fmt.Errorf("codesync: releases folder %s: %w", s.releases, ErrNotDir)
	}
	if err := s.sameFilesystem(); err != nil {
		return nil, err
	}
	if s.exclude, err = compileExcludes(cfg.Exclude); err != nil {
		return nil, err
	}
	if s.cfg.Overlay, err = checkOverlays(cfg.Overlay); err != nil {
		return nil, err
	}
	return s, nil
}

// sameFilesystem refuses a releases folder on another filesystem than current's folder
// (ErrCrossFilesystem): current could not be switched to a release with a rename.
func (s *SymlinkSyncer) sameFilesystem() error {
	relDev, err := deviceOf(s.releases)
	if err != nil {
		return fmt.Errorf("codesync: releases folder %s: %w", s.releases, err)
	}
	curDev, err := deviceOf(filepath.Dir(s.current))
	if err != nil {
		return fmt.Errorf("codesync: folder of current %s: %w", s.current, err)
	}
	if relDev != curDev {
		return fmt.Errorf("codesync: %w: %s and %s", ErrCrossFilesystem, s.releases, filepath.Dir(s.current))
	}
	return nil
}

// compileExcludes parses Config.Exclude (ErrConfig for a bad pattern).
func compileExcludes(exclude []string) ([]pattern, error) {
	var out []pattern
	for _, p := range exclude {
		pat := pattern{glob: strings.TrimPrefix(p, "/")}
		if strings.HasSuffix(pat.glob, "/") {
			pat.glob, pat.dirOnly = strings.TrimRight(pat.glob, "/"), true
		}
		pat.path = strings.Contains(pat.glob, "/") || strings.HasPrefix(p, "/")
		if _, err := filepath.Match(pat.glob, ""); err != nil || pat.glob == "" {
			return nil, fmt.Errorf("codesync: %w: exclude pattern %q: bad pattern", ErrConfig, p)
		}
		out = append(out, pat)
	}
	return out, nil
}

// checkOverlays checks Config.Overlay (clean release paths, existing regular files) and
// returns it with the files' absolute paths (ErrConfig otherwise).
func checkOverlays(overlay map[string]string) (map[string]string, error) {
	out := make(map[string]string, len(overlay))
	for rel, file := range overlay {
		if !filepath.IsLocal(rel) || filepath.Clean(rel) != rel || rel == MetadataFile {
			return nil, fmt.Errorf("codesync: %w: overlay path %q must be a clean path inside the release", ErrConfig, rel)
		}
		fi, err := os.Stat(file)
		if err != nil {
			return nil, fmt.Errorf("codesync: %w: overlay for %s: %w", ErrConfig, rel, err)
		}
		if !fi.Mode().IsRegular() {
			return nil, fmt.Errorf("codesync: %w: overlay for %s: %s is not a regular file", ErrConfig, rel, file)
		}
		if out[rel], err = filepath.Abs(file); err != nil {
			return nil, fmt.Errorf("codesync: %w: overlay for %s: %w", ErrConfig, rel, err)
		}
	}
	return out, nil
}

// checkCurrent refuses a Current that exists and is not a symlink.
func (s *SymlinkSyncer) checkCurrent() error {
	fi, err := os.Lstat(s.current)
	if err == nil && fi.Mode()&fs.ModeSymlink == 0 {
		return fmt.Errorf("codesync: %s: %w (refusing to replace it)", s.current, ErrCurrentNotLink)
	}
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("codesync: current %s: %w", s.current, err)
	}
	return nil
}

// deviceOf returns the device of path, or of its nearest existing ancestor.
func deviceOf(path string) (uint64, error) {
	for {
		var st unix.Stat_t
		err := unix.Stat(path, &st)
		if err == nil {
			return uint64(st.Dev), nil
		}
		if !errors.Is(err, unix.ENOENT) {
			return 0, err
		}
		parent := filepath.Dir(path)
		if parent == path {
			return 0, err
		}
		path = parent
	}
}

var idPattern = regexp.MustCompile(`^[0-9]{8}T[0-9]{6}Z(-[0-9]{3,})?$`)

const idLayout = "20060102T150405Z"

// nextID returns an id from now that sorts after last.
func nextID(now time.Time, last string) string {
	id := now.UTC().Format(idLayout)
	if id > last {
		return id
	}
	base, suffix, _ := strings.Cut(last, "-")
	n, _ := strconv.Atoi(suffix)
	return fmt.Sprintf("%s-%03d", base, n+1)
}

// List returns the complete releases, oldest first. The release `current` points at is
// reported active whatever its metadata says.
func (s *SymlinkSyncer) List(ctx context.Context) ([]*Release, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	entries, err := os.ReadDir(s.releases)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("codesync: releases folder: %w", err)
	}
	activeID, _ := s.currentID()
	var list []*Release
	for _, e := range entries {
		if !e.IsDir() || !idPattern.MatchString(e.Name()) {
			continue
		}
		r, err := s.read(e.Name())
		if err != nil {
			s.log.Warn("codesync: ignoring release without readable metadata", logRelease, e.Name(), "err", err)
			continue
		}
		switch {
		case r.ID == activeID:
			r.State = StateActive
		case r.State == StateActive:
			r.State = StateBuilt // a crash between the switch and the metadata update
		}
		list = append(list, r)
	}
	slices.SortFunc(list, func(a, b *Release) int { return strings.Compare(a.ID, b.ID) })
	return list, nil
}

// Current returns the release `current` points at, or ErrNoRelease.
func (s *SymlinkSyncer) Current(ctx context.Context) (*Release, error) {
	list, err := s.List(ctx)
	if err != nil {
		return nil, err
	}
	for _, r := range list {
		if r.State == StateActive {
			return r, nil
		}
	}
	return nil, fmt.Errorf("codesync: %s: %w", s.current, ErrNoRelease)
}

// currentID returns the id of the release current points at ("" when none of ours).
func (s *SymlinkSyncer) currentID() (string, error) {
	target, err := os.Readlink(s.current)
	if err != nil {
		return "", err
	}
	if !filepath.IsAbs(target) {
		target = filepath.Join(filepath.Dir(s.current), target)
	}
	target = filepath.Clean(target)
	if filepath.Dir(target) != s.releases || !idPattern.MatchString(filepath.Base(target)) {
		return "", nil
	}
	return filepath.Base(target), nil
}

func (s *SymlinkSyncer) read(id string) (*Release, error) {
	b, err := os.ReadFile(filepath.Join(s.releases, id, MetadataFile))
	if err != nil {
		return nil, err
	}
	var r Release
	if err := json.Unmarshal(b, &r); err != nil {
		return nil, fmt.Errorf("%s: %w", MetadataFile, err)
	}
	if r.ID != id {
		return nil, fmt.Errorf("%s names release %q", MetadataFile, r.ID)
	}
	r.Dir = filepath.Join(s.releases, id)
	return &r, nil
}

// writeMetadata replaces the metadata file of r in dir (r.Dir, or the .partial folder
// while building), atomically and durably: a crash leaves the old state or the new one.
func writeMetadata(dir string, r *Release) error {
	b, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return err
	}
	return atomicfile.WriteFile(filepath.Join(dir, MetadataFile), append(b, '\n'), 0o644)
}

// release checks that r is one of ours and returns its current metadata.
func (s *SymlinkSyncer) release(r *Release) (*Release, error) {
	if r == nil || !idPattern.MatchString(r.ID) {
		return nil, fmt.Errorf("codesync: %w: not a release of %s", ErrNoRelease, s.releases)
	}
	got, err := s.read(r.ID)
	if err != nil {
		return nil, fmt.Errorf("codesync: release %s: %w: %w", r.ID, ErrNoRelease, err)
	}
	return got, nil
}

func (s *SymlinkSyncer) setState(r *Release, state State, activated time.Time) error {
	r.State = state
	if !activated.IsZero() {
		r.Activated = activated
	}
	if err := writeMetadata(r.Dir, r); err != nil {
		return fmt.Errorf("codesync: release %s: recording state %s: %w", r.ID, state, err)
	}
	return nil
}

// Activate points `current` at r atomically: a new symlink under a temporary name in
// current's folder is renamed over it, the folder is synced, the link is read back, and
// the metadata of both releases is updated. It returns the release current pointed at
// before (nil when none), now marked built.
//
// Activate is all or nothing: when any step fails after current moved (the sync, the
// read-back, a metadata write), it puts current back to exactly what it was (the previous
// target, or no current at all) before returning the error, which says so. Should that
// fail too, the error says current still points at r (Discard or Rollback puts it back).
func (s *SymlinkSyncer) Activate(ctx context.Context, r *Release) (*Release, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	r, err := s.release(r)
	if err != nil {
		return nil, err
	}
	list, err := s.List(ctx)
	if err != nil {
		return nil, err
	}
	var previous *Release
	for _, x := range list {
		if x.State == StateActive {
			previous = x
		}
	}
	oldTarget, err := os.Readlink(s.current)
	hadCurrent := err == nil
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		if cerr := s.checkCurrent(); cerr != nil {
			return nil, cerr
		}
		return nil, fmt.Errorf("codesync: current %s: %w", s.current, err)
	}
	if previous == nil && hadCurrent {
		s.log.Warn("codesync: current pointed at no release of ours", logPath, s.current, logTarget, oldTarget)
	}
	moved, err := s.point(r.Dir)
	if err == nil && previous != nil && previous.ID != r.ID {
		err = s.setState(previous, StateBuilt, time.Time{})
	}
	if err == nil {
		err = s.setState(r, StateActive, s.cfg.Now())
	}
	if err != nil {
		if !moved {
			return nil, err
		}
		return nil, s.undoActivate(r, previous, oldTarget, hadCurrent, err)
	}
	s.log.Info("codesync: activated release", logRelease, r.ID, logTarget, s.current)
	return previous, nil
}

// undoActivate puts current back to oldTarget (or removes it when there was none) after
// Activate failed with cause once current had moved to r, and returns the error to report.
func (s *SymlinkSyncer) undoActivate(r, previous *Release, oldTarget string, hadCurrent bool, cause error) error {
	var err error
	if hadCurrent {
		_, err = s.point(oldTarget)
	} else {
		err = s.removeCurrent()
	}
	if err != nil {
		s.log.Error("codesync: activation failed and current could not be put back", logRelease, r.ID, logTarget, s.current, "err", err)
		return fmt.Errorf("codesync: activating release %s: %w; putting current back failed too, so %s still points at it (Discard or Rollback puts it back): %w",
			r.ID, cause, s.current, err)
	}
	// The metadata follows current again (List reports the release current points at
	// active whatever its metadata says, so a failure here changes nothing that matters).
	if previous != nil && previous.ID != r.ID {
		if err := s.setState(previous, StateActive, time.Time{}); err != nil {
			s.log.Warn("codesync: activation undone, but the previous release's metadata still says built", logRelease, previous.ID, "err", err)
		}
	}
	if r.State == StateActive {
		if err := s.setState(r, StateBuilt, time.Time{}); err != nil {
			s.log.Warn("codesync: activation undone, but the release's metadata still says active", logRelease, r.ID, "err", err)
		}
	}
	if !hadCurrent {
		s.log.Warn("codesync: activation failed; current removed again", logRelease, r.ID, logTarget, s.current, "err", cause)
		return fmt.Errorf("codesync: activating release %s: %w (activation undone: %s removed again, as it was)", r.ID, cause, s.current)
	}
	s.log.Warn("codesync: activation failed; current put back", logRelease, r.ID, logTarget, oldTarget, "err", cause)
	return fmt.Errorf("codesync: activating release %s: %w (activation undone: %s points at %s again)", r.ID, cause, s.current, oldTarget)
}

// point switches current to target. moved says whether current changed (it may have
// even when err is not nil: the folder's sync or the read-back failed).
func (s *SymlinkSyncer) point(target string) (moved bool, err error) {
	if err := s.checkCurrent(); err != nil {
		return false, err
	}
	dir := filepath.Dir(s.current)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return false, fmt.Errorf("codesync: folder of current: %w", err)
	}
	prefix := "." + filepath.Base(s.current) + ".restage-"
	if stale, _ := filepath.Glob(filepath.Join(dir, globEscape(prefix)+"*")); len(stale) > 0 {
		for _, p := range stale { // a crashed switch's temporary symlink
			if fi, err := os.Lstat(p); err == nil && fi.Mode()&fs.ModeSymlink != 0 {
				os.Remove(p)
			}
		}
	}
	tmp := filepath.Join(dir, prefix+randomSuffix())
	if err := os.Symlink(target, tmp); err != nil {
		return false, fmt.Errorf("codesync: switching %s: %w", s.current, err)
	}
	if err := os.Rename(tmp, s.current); err != nil {
		os.Remove(tmp)
		return false, fmt.Errorf("codesync: switching %s: %w", s.current, err)
	}
	if err := atomicfile.SyncDir(dir); err != nil {
		return true, fmt.Errorf("codesync: switching %s: sync folder: %w", s.current, err)
	}
	got, err := os.Readlink(s.current)
	if err != nil || got != target {
		return true, fmt.Errorf("codesync: switching %s: reads back as %q (%v), want %q", s.current, got, err, target)
	}
	return true, nil
}

// removeCurrent removes the current symlink (never anything else) and syncs its folder.
func (s *SymlinkSyncer) removeCurrent() error {
	if err := s.checkCurrent(); err != nil {
		return err
	}
	if err := os.Remove(s.current); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("codesync: removing %s: %w", s.current, err)
	}
	if err := atomicfile.SyncDir(filepath.Dir(s.current)); err != nil {
		return fmt.Errorf("codesync: removing %s: sync folder: %w", s.current, err)
	}
	return nil
}

// globEscape quotes the glob metacharacters of s.
func globEscape(s string) string {
	var b strings.Builder
	for _, c := range s {
		if strings.ContainsRune(`*?[\\`, c) {
			b.WriteByte('\\')
		}
		b.WriteRune(c)
	}
	return b.String()
}

func randomSuffix() string {
	var b [6]byte
	rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// Rollback marks the active release failed and points `current` at the newest good
// release before it, preferring one that has been active before over one that was only
// built. With no such release it removes `current` and returns nil, nil. With no active
// release it returns ErrNoRelease.
func (s *SymlinkSyncer) Rollback(ctx context.Context) (*Release, error) {
	list, err := s.List(ctx)
	if err != nil {
		return nil, err
	}
	i := slices.IndexFunc(list, func(r *Release) bool { return r.State == StateActive })
	if i < 0 {
		return nil, fmt.Errorf("codesync: rollback of %s: %w active", s.current, ErrNoRelease)
	}
	active := list[i]
	var target *Release
	for j := i - 1; j >= 0; j-- {
		r := list[j]
		if r.State == StateFailed {
			continue
		}
		if !r.Activated.IsZero() {
			target = r
			break
		}
		if target == nil {
			target = r
		}
	}
	if target != nil {
		if _, err := s.point(target.Dir); err != nil {
			return nil, err
		}
	} else if err := s.removeCurrent(); err != nil {
		return nil, fmt.Errorf("codesync: rollback: %w", err)
	}
	if err := s.setState(active, StateFailed, time.Time{}); err != nil {
		return nil, err
	}
	if target == nil {
		s.log.Warn("codesync: rolled back; no earlier good release, removed current", logRelease, active.ID, logTarget, s.current)
		return nil, nil
	}
	if err := s.setState(target, StateActive, s.cfg.Now()); err != nil {
		return nil, err
	}
	s.log.Info("codesync: rolled back", "from", active.ID, "to", target.ID)
	return target, nil
}

// Discard marks a release failed, so Prune removes it first. It is meant for a release
// that never went live; should `current` point at r all the same (an Activate whose undo
// failed too), Discard first rolls it back as Rollback does, so that a caller's recovery
// (discard what it built) never leaves current on the discarded release.
func (s *SymlinkSyncer) Discard(ctx context.Context, r *Release) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	got, err := s.release(r)
	if err != nil {
		return err
	}
	if id, _ := s.currentID(); id == got.ID {
		s.log.Warn("codesync: discarding the release current points at; rolling it back", logRelease, got.ID, logTarget, s.current)
		if _, err := s.Rollback(ctx); err != nil {
			return fmt.Errorf("codesync: discarding release %s, which current points at: %w", got.ID, err)
		}
		r.State = StateFailed
		return nil
	}
	if err := s.setState(got, StateFailed, time.Time{}); err != nil {
		return err
	}
	r.State = StateFailed
	return nil
}

// Prune removes failed releases (but the KeepFailed newest) and good releases beyond the
// Keep newest, never the active release nor the newest good one. A release is renamed to
// <id>.removing before it is deleted, so a crash never leaves a half-deleted release that
// looks complete.
func (s *SymlinkSyncer) Prune(ctx context.Context) error {
	list, err := s.List(ctx)
	if err != nil {
		return err
	}
	var remove []*Release
	good, failed := 0, 0
	for i := len(list) - 1; i >= 0; i-- {
		r := list[i]
		switch {
		case r.State == StateActive:
			good++ // counted, never removed
		case r.State == StateFailed:
			failed++
			if failed > s.cfg.KeepFailed {
				remove = append(remove, r)
			}
		default:
			good++
			if good > s.cfg.Keep {
				remove = append(remove, r)
			}
		}
	}
	// Failed ones first, then oldest first.
	slices.SortStableFunc(remove, func(a, b *Release) int {
		if (a.State == StateFailed) != (b.State == StateFailed) {
			if a.State == StateFailed {
				return -1
			}
			return 1
		}
		return strings.Compare(a.ID, b.ID)
	})
	for _, r := range remove {
		if err := ctx.Err(); err != nil {
			return err
		}
		if err := s.remove(r.ID); err != nil {
			return err
		}
		s.log.Info("codesync: pruned release", logRelease, r.ID, "state", r.State)
	}
	return nil
}

func (s *SymlinkSyncer) remove(id string) error {
	dir := filepath.Join(s.releases, id)
	gone := dir + ".removing"
	if err := os.Rename(dir, gone); err != nil {
		return fmt.Errorf("codesync: removing release %s: %w", id, err)
	}
	if err := removeTree(gone); err != nil {
		return fmt.Errorf("codesync: removing release %s: %w", id, err)
	}
	return nil
}

// removeTree removes dir, making read-only folders in it writable when needed.
func removeTree(dir string) error {
	err := os.RemoveAll(dir)
	if err == nil || !errors.Is(err, fs.ErrPermission) {
		return err
	}
	filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err == nil && d.IsDir() {
			os.Chmod(path, 0o700)
		}
		return nil
	})
	return os.RemoveAll(dir)
}

// removeLeftovers removes .partial and .removing folders of crashed runs.
func (s *SymlinkSyncer) removeLeftovers() error {
	entries, err := os.ReadDir(s.releases)
	if err != nil {
		return err
	}
	for _, e := range entries {
		name := e.Name()
		base, ok := strings.CutSuffix(name, ".partial")
		if !ok {
			base, ok = strings.CutSuffix(name, ".removing")
		}
		if !ok || !idPattern.MatchString(base) {
			continue
		}
		s.log.Warn("codesync: removing leftover of a crashed run", logPath, filepath.Join(s.releases, name))
		if err := removeTree(filepath.Join(s.releases, name)); err != nil {
			return err
		}
	}
	return nil
}
