package codesync

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/otiai10/copy"

	"github.com/restage/restage/internal/atomicfile"
	"github.com/restage/restage/progress"
)

// Build copies src into releases/<id>.partial, hard-linking files unchanged since the
// newest existing release (unless Config.NoHardLinks), installs the overlays, writes the
// metadata file and renames the folder to releases/<id>. Symlinks are copied as symlinks
// (one pointing outside the tree, by its name or once the tree's other symlinks are
// followed, is refused with ErrExternalSymlink unless allowed);
// permissions and modification times are kept, owners too when running as root. On any
// failure (including a full disk and a cancelled ctx) the .partial folder is removed and
// nothing else changes. Leftover .partial folders of crashed runs are removed first.
func (s *SymlinkSyncer) Build(ctx context.Context, src Source) (_ *Release, err error) {
	if src == nil {
		return nil, fmt.Errorf("codesync: build: %w: nil source", ErrConfig)
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	start := time.Now()
	if err := os.MkdirAll(s.releases, 0o755); err != nil {
		return nil, fmt.Errorf("codesync: releases folder: %w", err)
	}
	if err := s.removeLeftovers(); err != nil {
		return nil, fmt.Errorf("codesync: removing leftovers: %w", err)
	}
	tree, srcDir, err := s.openTree(ctx, src)
	if err != nil {
		return nil, err
	}
	defer s.closeTree(tree)
	r, prev, err := s.newRelease(ctx, tree.Revision)
	if err != nil {
		return nil, err
	}
	partial := r.Dir + ".partial"
	defer func() {
		if err != nil {
			if rerr := removeTree(partial); rerr != nil {
				s.log.Error("codesync: removing failed build", logPath, partial, "err", rerr)
			}
		}
	}()
	s.log.Info("codesync: building release", logRelease, r.ID, logSource, tree.Revision.String(), "link_from", filepath.Base(prev))
	c := s.newCopier(srcDir, prev, tree.Revision)
	if err := c.run(ctx, partial); err != nil {
		return nil, fmt.Errorf("codesync: building release %s from %s: %w", r.ID, tree.Revision, err)
	}
	if err := c.installOverlays(partial); err != nil {
		return nil, fmt.Errorf("codesync: release %s: %w", r.ID, err)
	}
	r.Files, r.Linked = int(c.files.Load()), int(c.linked.Load())
	if err := s.complete(ctx, partial, r); err != nil {
		return nil, err
	}
	s.log.Info("codesync: built release", logRelease, r.ID, logFiles, r.Files, logLinked, r.Linked,
		logElapsed, time.Since(start).Round(time.Millisecond))
	return r, nil
}

// openTree opens src and returns its tree and the real path of its folder (a link to
// the folder is resolved: the folder is copied, not the link).
func (s *SymlinkSyncer) openTree(ctx context.Context, src Source) (_ *Tree, dir string, err error) {
	tree, err := src.Open(ctx)
	if err != nil {
		return nil, "", err
	}
	defer func() {
		if err != nil {
			s.closeTree(tree)
		}
	}()
	if err := checkDir(tree.Dir); err != nil {
		return nil, "", fmt.Errorf("codesync: source %s: %w", tree.Revision, err)
	}
	dir, err = filepath.Abs(tree.Dir)
	if err == nil {
		dir, err = filepath.EvalSymlinks(dir)
	}
	if err != nil {
		return nil, "", fmt.Errorf("codesync: source %s: %w", tree.Revision, err)
	}
	return tree, dir, nil
}

// closeTree releases a source's tree, logging a failure (the release is built by then,
// or failed for another reason).
func (s *SymlinkSyncer) closeTree(tree *Tree) {
	if tree.Close == nil {
		return
	}
	if err := tree.Close(); err != nil {
		s.log.Warn("codesync: closing source tree", logPath, tree.Dir, "err", err)
	}
}

// newRelease returns the release to build from rev, with an ID after every release's
// (those with unreadable metadata too), and the folder of the newest complete release to
// hard-link from ("" when there is none).
func (s *SymlinkSyncer) newRelease(ctx context.Context, rev Revision) (*Release, string, error) {
	list, err := s.List(ctx)
	if err != nil {
		return nil, "", err
	}
	last, prev := "", ""
	if len(list) > 0 {
		last, prev = list[len(list)-1].ID, list[len(list)-1].Dir
	}
	if entries, err := os.ReadDir(s.releases); err == nil {
		for _, e := range entries {
			if idPattern.MatchString(e.Name()) && e.Name() > last {
				last = e.Name()
			}
		}
	}
	created := s.cfg.Now().UTC()
	id := nextID(created, last)
	return &Release{ID: id, Dir: filepath.Join(s.releases, id), Revision: rev, Created: created, State: StateBuilt}, prev, nil
}

// newCopier returns the copier of a tree at srcDir that links unchanged files from the
// release folder prev (unless Config.NoHardLinks) and compares files as Config.Compare
// says: CompareAuto is by content for a tree with a commit (its times are the commit's).
func (s *SymlinkSyncer) newCopier(srcDir, prev string, rev Revision) *copier {
	c := &copier{s: s, src: srcDir, prev: prev, compare: s.cfg.Compare, root: os.Geteuid() == 0}
	if s.cfg.NoHardLinks {
		c.prev = ""
	}
	if c.compare == CompareAuto {
		c.compare = CompareStat
		if rev.Commit != "" {
			c.compare = CompareContent
		}
	}
	return c
}

// complete writes r's metadata into the built tree at partial, flushes it when
// Config.Sync says so, and renames it to r.Dir: the release is then complete.
func (s *SymlinkSyncer) complete(ctx context.Context, partial string, r *Release) error {
	if err := writeMetadata(partial, r); err != nil {
		return fmt.Errorf("codesync: release %s: metadata: %w", r.ID, err)
	}
	if s.cfg.Sync {
		if err := syncFS(partial); err != nil {
			return fmt.Errorf("codesync: release %s: sync: %w", r.ID, err)
		}
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("codesync: building release %s: %w", r.ID, err)
	}
	if err := os.Rename(partial, r.Dir); err != nil {
		return fmt.Errorf("codesync: release %s: %w", r.ID, err)
	}
	if err := atomicfile.SyncDir(s.releases); err != nil {
		return fmt.Errorf("codesync: release %s: sync releases folder: %w", r.ID, err)
	}
	return nil
}

// copier copies one tree with otiai10/copy; its Skip hook excludes, checks symlinks and
// hard-links unchanged files from the previous release.
type copier struct {
	s       *SymlinkSyncer
	src     string // absolute source root
	prev    string // previous release to link from; "": copy everything
	compare Compare
	root    bool
	tree    *os.Root // the source tree, where symlinks are followed to check them
	ctx     context.Context
	files   atomic.Int64
	linked  atomic.Int64
	pc      *progress.Counter // bytes of the files linked or copied; nil: not counted
}

func (c *copier) run(ctx context.Context, dest string) error {
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	c.ctx = ctx
	tree, err := os.OpenRoot(c.src)
	if err != nil {
		return err
	}
	defer tree.Close()
	c.tree = tree
	if progress.From(ctx) != nil {
		c.pc = progress.NewCounter(ctx, c.size())
	}
	opt := copy.Options{
		OnSymlink:     func(string) copy.SymlinkAction { return copy.Shallow },
		Skip:          c.skip,
		PreserveTimes: true,
		PreserveOwner: c.root,
		OnError: func(_, _ string, err error) error {
			if err != nil {
				cancel(err)
			}
			return err
		},
	}
	if w := c.s.cfg.Workers; w > 1 {
		opt.NumOfWorkers = int64(w)
	}
	err = copy.Copy(c.src, dest, opt)
	// Another worker may see the cancellation and return before the worker whose error
	// caused it (ENOSPC, a refused symlink): report the cause, not "context canceled".
	if cause := context.Cause(ctx); err != nil && errors.Is(err, context.Canceled) && cause != nil {
		return cause
	}
	return err
}

func (c *copier) skip(info os.FileInfo, src, dest string) (bool, error) {
	if c.ctx.Err() != nil {
		return false, context.Cause(c.ctx)
	}
	rel := src[len(c.src)+1:]
	mode := info.Mode()
	if rel == MetadataFile || c.s.excluded(rel, mode.IsDir()) {
		return true, nil
	}
	switch {
	case mode.IsDir():
		return false, nil
	case mode&fs.ModeSymlink != 0:
		if c.s.cfg.AllowExternalSymlinks {
			return false, nil
		}
		target, err := os.Readlink(src)
		if err != nil {
			return false, err
		}
		if filepath.IsAbs(target) || !filepath.IsLocal(filepath.Join(filepath.Dir(rel), target)) {
			return false, fmt.Errorf("%w: %s -> %s", ErrExternalSymlink, rel, target)
		}
		// Read as names, the target stays inside; followed, it may not: "a/b -> .." then
		// "a/c -> b/.." leads to the tree's parent. The tree's own Root follows the links
		// as the kernel will and refuses any that leave it; a link that leads nowhere
		// (missing, under a file, a loop) leaves nothing.
		if _, err := c.tree.Stat(rel); err != nil && !errors.Is(err, fs.ErrNotExist) &&
			!errors.Is(err, syscall.ENOTDIR) && !errors.Is(err, syscall.ELOOP) {
			return false, fmt.Errorf("%w: %s -> %s, followed through the tree's symlinks: %w", ErrExternalSymlink, rel, target, err)
		}
		return false, nil
	case !mode.IsRegular():
		c.s.log.Warn("codesync: skipping special file", logPath, rel, "mode", mode.String())
		return true, nil
	}
	c.files.Add(1)
	c.pc.Add(info.Size())
	if c.prev == "" {
		return false, nil
	}
	old := filepath.Join(c.prev, rel)
	same, err := c.unchanged(info, src, old)
	if err != nil || !same {
		return false, nil // copy it
	}
	if err := os.Link(old, dest); err != nil {
		if errors.Is(err, syscall.ENOSPC) || errors.Is(err, syscall.EDQUOT) {
			return false, err
		}
		return false, nil // too many links, not permitted, ...: copy it
	}
	c.linked.Add(1)
	return true, nil
}

// size returns the bytes of the regular files the copy will link or copy, for its
// progress (a walk of the tree's metadata; 0 when it cannot be walked).
func (c *copier) size() int64 {
	var total int64
	_ = filepath.WalkDir(c.src, func(path string, d fs.DirEntry, err error) error {
		if err != nil || path == c.src {
			return nil
		}
		rel := path[len(c.src)+1:]
		if rel == MetadataFile || c.s.excluded(rel, d.IsDir()) {
			if d.IsDir() {
				return filepath.SkipDir
			}
			return nil
		}
		if d.Type().IsRegular() {
			if info, err := d.Info(); err == nil {
				total += info.Size()
			}
		}
		return nil
	})
	return total
}

// unchanged says whether old (in the previous release) can stand for src.
func (c *copier) unchanged(info os.FileInfo, src, old string) (bool, error) {
	ofi, err := os.Lstat(old)
	if err != nil {
		return false, err
	}
	if ofi.Size() != info.Size() || ofi.Mode() != info.Mode() {
		return false, nil
	}
	if c.root && !sameOwner(info, ofi) {
		return false, nil
	}
	if ofi.ModTime().Equal(info.ModTime()) {
		return true, nil
	}
	if c.compare != CompareContent {
		return false, nil
	}
	return sameContent(src, old)
}

// sameOwner says whether a and b have the same owner and group (false when either
// does not say).
func sameOwner(a, b os.FileInfo) bool {
	sa, ok := a.Sys().(*syscall.Stat_t)
	if !ok {
		return false
	}
	sb, ok := b.Sys().(*syscall.Stat_t)
	return ok && sa.Uid == sb.Uid && sa.Gid == sb.Gid
}

func sameContent(a, b string) (bool, error) {
	fa, err := os.Open(a)
	if err != nil {
		return false, err
	}
	defer fa.Close()
	fb, err := os.Open(b)
	if err != nil {
		return false, err
	}
	defer fb.Close()
	ba, bb := make([]byte, 64<<10), make([]byte, 64<<10)
	for {
		na, erra := io.ReadFull(fa, ba)
		nb, errb := io.ReadFull(fb, bb)
		if na != nb || !bytes.Equal(ba[:na], bb[:nb]) {
			return false, nil
		}
		if erra == io.EOF || erra == io.ErrUnexpectedEOF {
			return errb == io.EOF || errb == io.ErrUnexpectedEOF, nil
		}
		if erra != nil {
			return false, erra
		}
		if errb != nil {
			return false, errb
		}
	}
}

// installOverlays installs Config.Overlay into the tree at root, keeping the counts of
// files and linked files right.
func (c *copier) installOverlays(root string) error {
	for _, rel := range slices.Sorted(maps.Keys(c.s.cfg.Overlay)) {
		added, unlinked, err := installOverlay(root, rel, c.s.cfg.Overlay[rel])
		if err != nil {
			return fmt.Errorf("overlay %s: %w", rel, err)
		}
		if added {
			c.files.Add(1)
		}
		if unlinked {
			c.linked.Add(-1)
		}
	}
	return nil
}

// excluded says whether the tree-relative path rel matches an exclude pattern.
func (s *SymlinkSyncer) excluded(rel string, dir bool) bool {
	for _, p := range s.exclude {
		if p.dirOnly && !dir {
			continue
		}
		name := rel
		if !p.path {
			name = filepath.Base(rel)
		}
		if ok, _ := filepath.Match(p.glob, name); ok {
			return true
		}
	}
	return false
}

// installOverlay writes file's content as a new file at root/rel, renamed over what is
// there (so a hard-linked inode shared with older releases is never written to). It
// reports whether the file was added rather than replaced, and whether it replaced a
// linked file.
func installOverlay(root, rel, file string) (added, unlinked bool, err error) {
	dir := root
	parts := strings.Split(filepath.Dir(rel), string(filepath.Separator))
	for _, p := range parts {
		if p == "." {
			continue
		}
		dir = filepath.Join(dir, p)
		fi, err := os.Lstat(dir)
		switch {
		case errors.Is(err, fs.ErrNotExist):
			if err := os.Mkdir(dir, 0o755); err != nil {
				return false, false, err
			}
		case err != nil:
			return false, false, err
		case !fi.IsDir():
			return false, false, fmt.Errorf("%s is not a folder in the release", dir[len(root)+1:])
		}
	}
	dest := filepath.Join(root, rel)
	fi, err := os.Lstat(dest)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		added = true
	case err != nil:
		return false, false, err
	case fi.IsDir():
		return false, false, fmt.Errorf("%s is a folder in the release", rel)
	default:
		if st, ok := fi.Sys().(*syscall.Stat_t); ok && fi.Mode().IsRegular() && st.Nlink > 1 {
			unlinked = true
		}
	}
	in, err := os.Open(file)
	if err != nil {
		return false, false, err
	}
	defer in.Close()
	ifi, err := in.Stat()
	if err != nil {
		return false, false, err
	}
	tmp := dest + ".restage-overlay"
	out, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return false, false, err
	}
	_, err = io.Copy(out, in)
	if cerr := out.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Chmod(tmp, ifi.Mode().Perm())
	}
	if err == nil {
		err = os.Chtimes(tmp, ifi.ModTime(), ifi.ModTime())
	}
	if err == nil {
		err = os.Rename(tmp, dest)
	}
	if err != nil {
		os.Remove(tmp)
		return false, false, err
	}
	return added, unlinked, nil
}
