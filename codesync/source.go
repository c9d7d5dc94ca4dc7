package codesync

import (
	"archive/tar"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/restage/restage/internal/childenv"
	"github.com/restage/restage/internal/gitcred"
	"github.com/restage/restage/internal/redact"
)

var (
	_ Source = (*DirSource)(nil)
	_ Source = (*GitSource)(nil)
)

// DirSource delivers a local folder as it is (a build directory). Its Tree is the folder
// itself; nothing is copied until Build.
type DirSource struct {
	Path string // the folder; required
}

// NewDirSource returns a DirSource for path, which must be an existing folder.
func NewDirSource(path string) (*DirSource, error) {
	s := &DirSource{Path: path}
	if _, err := s.abs(); err != nil {
		return nil, err
	}
	return s, nil
}

func (s *DirSource) abs() (string, error) {
	if s.Path == "" {
		return "", fmt.Errorf("codesync: folder source: %w: empty path", ErrNoSource)
	}
	abs, err := filepath.Abs(s.Path)
	if err != nil {
		return "", fmt.Errorf("codesync: folder source %s: %w", s.Path, err)
	}
	if err := checkDir(abs); err != nil {
		return "", fmt.Errorf("codesync: folder source %s: %w", s.Path, err)
	}
	return abs, nil
}

// checkDir says why dir is not a usable folder: ErrNoSource or ErrNotDir.
func checkDir(dir string) error {
	fi, err := os.Stat(dir)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return fmt.Errorf("%w: %w", ErrNoSource, err)
	case err != nil:
		return err
	case !fi.IsDir():
		return ErrNotDir
	}
	return nil
}

// Describe checks the folder and returns its absolute path as the revision.
func (s *DirSource) Describe(ctx context.Context) (Revision, error) {
	if err := ctx.Err(); err != nil {
		return Revision{}, err
	}
	abs, err := s.abs()
	if err != nil {
		return Revision{}, err
	}
	return Revision{Source: abs}, nil
}

// Open returns the folder itself; its Close is nil.
func (s *DirSource) Open(ctx context.Context) (*Tree, error) {
	rev, err := s.Describe(ctx)
	if err != nil {
		return nil, err
	}
	return &Tree{Dir: rev.Source, Revision: rev}, nil
}

// GitSource delivers a git repository at a ref (branch, tag or commit), exported with the
// `git` program: `git archive` of the resolved commit, unpacked into a temporary folder
// that Tree.Close removes. A repository that is not a local folder (a URL) is first cloned
// bare into that temporary folder. Files get the commit's time as their modification time,
// so Build finds unchanged files by content (see Config.Compare). Files marked
// `export-ignore` in .gitattributes are left out, as with any `git archive`.
//
// Credentials in Repo (https://user:token@host/repo) are given to git through its
// environment (internal/gitcred), never on its command line, where any local user could
// read them, nor in the files of a clone; nothing else gets them: revisions (so release
// metadata, history and reports), errors (git's standard error and argv included) show
// Repo with them removed by internal/redact.
type GitSource struct {
	Repo    string // local path or URL; required
	Ref     string // branch, tag or commit; "": HEAD
	Git     string // the git program; "": "git" on PATH
	TempDir string // where exports are made; "": os.TempDir()
	// Timeout bounds each git command (ls-remote, clone, fetch, rev-parse, archive with its
	// unpacking); on expiry the command and the programs it started are killed and the
	// error wraps ErrTimeout. 0: DefaultGitTimeout.
	Timeout time.Duration
}

// DefaultGitTimeout bounds each git command of a GitSource whose Timeout is 0.
const DefaultGitTimeout = 10 * time.Minute

// gitWaitDelay is how long a git command's output is waited for once it was killed or
// has exited (a program it started may still hold its pipes).
const gitWaitDelay = 5 * time.Second

func (s *GitSource) timeout() time.Duration {
	if s.Timeout == 0 {
		return DefaultGitTimeout
	}
	return s.Timeout
}

func (s *GitSource) ref() string {
	if s.Ref == "" {
		return "HEAD"
	}
	return s.Ref
}

// errorf returns an error naming the repository (credentials removed) and the ref; its
// whole text, wrapped errors included, is redacted.
func (s *GitSource) errorf(format string, a ...any) error {
	err := fmt.Errorf("codesync: git %s at %s: "+format, append([]any{s.repoName(), s.ref()}, a...)...)
	return redact.Error(err, s.secrets()...)
}

// repoName is Repo with its credentials removed: what revisions, errors and logs show.
// Git gets remote().
func (s *GitSource) repoName() string {
	return s.redact(s.Repo)
}

// redact removes Repo's credentials, and any other secret redact knows, from text.
func (s *GitSource) redact(text string) string {
	return redact.String(text, s.secrets()...)
}

// secrets returns the credentials of Repo, for redaction (internal/gitcred).
func (s *GitSource) secrets() []string {
	return gitcred.Secrets(s.Repo)
}

// remote is Repo as git gets it: the URL without credentials (they go through git's
// environment, see command).
func (s *GitSource) remote() string {
	return gitcred.Parse(s.Repo).URL
}

// local says whether Repo is a folder on this machine (else it is handed to git as a URL).
func (s *GitSource) local() (bool, error) {
	if gitcred.IsURL(s.Repo) {
		return false, nil
	}
	if err := checkDir(s.Repo); err != nil {
		return false, s.errorf("%w", err)
	}
	return true, nil
}

func (s *GitSource) check() error {
	switch {
	case s.Repo == "":
		return fmt.Errorf("codesync: git source: %w: Repo is required", ErrConfig)
	case s.Timeout < 0:
		return fmt.Errorf("codesync: git source %q: %w: Timeout is negative", s.repoName(), ErrConfig)
	case strings.HasPrefix(s.ref(), "-"), strings.ContainsAny(s.ref(), " \t\n\x00"):
		return s.errorf("%w: bad ref", ErrNoRevision)
	case strings.HasPrefix(s.Repo, "-"):
		return fmt.Errorf("codesync: git source %q: %w: bad repository", s.repoName(), ErrConfig)
	}
	return nil
}

// Describe resolves Ref to a commit without exporting anything: `git rev-parse` in a
// local repository, `git ls-remote` for a URL (a full commit id is taken as it is).
func (s *GitSource) Describe(ctx context.Context) (Revision, error) {
	if err := s.check(); err != nil {
		return Revision{}, err
	}
	local, err := s.local()
	if err != nil {
		return Revision{}, err
	}
	if local {
		commit, err := s.resolve(ctx, s.Repo)
		if err != nil {
			return Revision{}, err
		}
		return s.revision(commit), nil
	}
	ref := s.ref()
	if isCommitID(ref) {
		return s.revision(strings.ToLower(ref)), nil
	}
	out, err := s.git(ctx, nil, "ls-remote", "--", s.remote(), ref, ref+"^{}")
	if err != nil {
		return Revision{}, s.remoteErr(err)
	}
	// Prefer a peeled tag, then an exact ref name, then a branch, then a tag.
	refs := map[string]string{}
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		if id, name, ok := strings.Cut(line, "\t"); ok {
			refs[name] = id
		}
	}
	for _, name := range []string{"refs/tags/" + ref + "^{}", ref, "refs/heads/" + ref, "refs/tags/" + ref} {
		if id, ok := refs[name]; ok {
			return s.revision(id), nil
		}
	}
	return Revision{}, s.errorf("%w", ErrNoRevision)
}

func (s *GitSource) revision(commit string) Revision {
	return Revision{Source: s.repoName(), Ref: s.ref(), Commit: commit}
}

func (s *GitSource) remoteErr(err error) error {
	var ce *CommandError
	if errors.As(err, &ce) && ce.ExitCode > 0 {
		msg := strings.ToLower(ce.Stderr)
		if strings.Contains(msg, "does not appear to be a git repository") || strings.Contains(msg, "not found") ||
			strings.Contains(msg, "does not exist") {
			return s.errorf("%w: %w", ErrNoSource, err)
		}
	}
	return s.errorf("%w", err)
}

// resolve turns the ref into a full commit id inside gitDir (a work tree or bare repository).
func (s *GitSource) resolve(ctx context.Context, gitDir string) (string, error) {
	out, err := s.git(ctx, nil, "-C", gitDir, "rev-parse", "--verify", "--quiet", "--end-of-options", s.ref()+"^{commit}")
	if err != nil {
		var ce *CommandError
		if errors.As(err, &ce) && ce.ExitCode == 1 {
			return "", s.errorf("%w", ErrNoRevision)
		}
		if errors.As(err, &ce) && strings.Contains(ce.Stderr, "not a git repository") {
			return "", s.errorf("%w: %w", ErrNoSource, err)
		}
		return "", s.errorf("%w", err)
	}
	return strings.TrimSpace(string(out)), nil
}

// Open exports the commit Ref resolves to into a temporary folder.
func (s *GitSource) Open(ctx context.Context) (tree *Tree, err error) {
	if err := s.check(); err != nil {
		return nil, err
	}
	local, err := s.local()
	if err != nil {
		return nil, err
	}
	tmp, err := os.MkdirTemp(s.TempDir, "restage-git-")
	if err != nil {
		return nil, s.errorf("%w", err)
	}
	cleanup := func() error { return removeTree(tmp) }
	defer func() {
		if err != nil {
			cleanup()
		}
	}()
	gitDir := s.Repo
	if !local {
		gitDir = filepath.Join(tmp, "repo.git")
		if err := s.fetch(ctx, gitDir); err != nil {
			return nil, err
		}
	}
	commit, err := s.resolve(ctx, gitDir)
	if err != nil {
		return nil, err
	}
	dir := filepath.Join(tmp, "tree")
	if err := os.Mkdir(dir, 0o755); err != nil {
		return nil, s.errorf("%w", err)
	}
	if err := s.export(ctx, gitDir, commit, dir); err != nil {
		return nil, err
	}
	if !local {
		if err := removeTree(gitDir); err != nil {
			return nil, s.errorf("%w", err)
		}
	}
	return &Tree{Dir: dir, Revision: s.revision(commit), Close: cleanup}, nil
}

// fetch copies what Ref needs of a remote repository into the bare repository gitDir:
// only the tip of a branch or tag (a shallow clone), the commit alone when the server lets
// us fetch it by id, else the whole repository.
func (s *GitSource) fetch(ctx context.Context, gitDir string) error {
	ref := s.ref()
	if !isCommitID(ref) {
		args := []string{"clone", "--bare", "--quiet", "--depth=1"}
		if ref != "HEAD" {
			args = append(args, "--branch="+ref)
		}
		_, err := s.git(ctx, nil, append(args, "--", s.remote(), gitDir)...)
		var ce *CommandError
		if errors.As(err, &ce) && strings.Contains(ce.Stderr, "not found in upstream") {
			return s.errorf("%w (a remote ref must be a branch, a tag or a full commit id)", ErrNoRevision)
		}
		if err != nil {
			return s.remoteErr(err)
		}
		return nil
	}
	if _, err := s.git(ctx, nil, "init", "--bare", "--quiet", gitDir); err != nil {
		return s.errorf("%w", err)
	}
	_, err := s.git(ctx, nil, "-C", gitDir, "fetch", "--quiet", "--depth=1", "--", s.remote(), ref)
	if err == nil {
		return nil
	}
	if ctx.Err() != nil || errors.Is(err, ErrTimeout) {
		return s.errorf("%w", err) // not worth a whole clone
	}
	if err := removeTree(gitDir); err != nil {
		return s.errorf("%w", err)
	}
	if _, err := s.git(ctx, nil, "clone", "--bare", "--quiet", "--", s.remote(), gitDir); err != nil {
		return s.remoteErr(err)
	}
	return nil
}

// export runs `git archive` and unpacks its tar stream into dir, both within Timeout.
func (s *GitSource) export(ctx context.Context, gitDir, commit, dir string) error {
	args := []string{"-c", "tar.umask=0022", "-C", gitDir, "archive", "--format=tar", commit}
	cmd, cmdCtx, cancel := s.command(ctx, args)
	defer cancel()
	var stderr tailBuffer
	cmd.Stderr = &stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		return s.errorf("%w", err)
	}
	if err := cmd.Start(); err != nil {
		return s.errorf("%w", s.commandError(args, err, ""))
	}
	archived, untarErr := untar(cmdCtx, out, dir)
	if untarErr == nil && archived != commit {
		untarErr = fmt.Errorf("the stream is no archive of commit %s (its header names %q)", commit, archived)
	}
	if untarErr != nil {
		cancel()
		io.Copy(io.Discard, out)
	}
	waitErr := cmd.Wait()
	switch {
	case ctx.Err() != nil:
		return s.errorf("%w", ctx.Err())
	case errors.Is(context.Cause(cmdCtx), ErrTimeout):
		return s.errorf("git archive: %w (killed)", context.Cause(cmdCtx))
	case untarErr != nil:
		return s.errorf("unpacking git archive: %w", untarErr)
	case waitErr != nil:
		return s.errorf("%w", s.commandError(args, waitErr, stderr.String()))
	}
	return nil
}

// untar unpacks a git archive stream (folders, files, symlinks) into dir. It writes
// through an os.Root of dir, so nothing lands outside dir whatever the stream holds, and
// it refuses, with ErrUnsafeTree, what a well-formed tree never has but a crafted one can
// (git mktree accepts it): a name that is not clean, a name that appears twice (a symlink
// "a" and a folder "a"), and an entry under a symlink or a file of the stream ("a/x"
// after the symlink "a"). It returns the commit id git archive records in the stream's
// global header (empty if none: an empty stream is no archive).
func untar(ctx context.Context, r io.Reader, dir string) (commit string, err error) {
	root, err := os.OpenRoot(dir)
	if err != nil {
		return "", err
	}
	defer root.Close()
	u := &unpacker{root: root, made: map[string]byte{}}
	tr := tar.NewReader(r)
	for {
		if err := ctx.Err(); err != nil {
			return "", err
		}
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return "", err
		}
		if h.Typeflag == tar.TypeXGlobalHeader {
			commit = h.PAXRecords["comment"]
			continue
		}
		if err := u.entry(h, tr); err != nil {
			return "", err
		}
	}
	return commit, u.finishDirs()
}

// implicitDir is the type flag unpacker records for a parent folder it made for an
// entry before (or without) the folder's own entry.
const implicitDir byte = 0xff

// unpacker writes the entries of one tar stream through root.
type unpacker struct {
	root *os.Root
	made map[string]byte // name: the type flag of the entry that made it
	dirs []dirAttr       // folders' modes and times, set once everything is in them
}

// dirAttr is a folder entry's mode and time.
type dirAttr struct {
	name string
	mode fs.FileMode
	t    time.Time
}

// entry writes one entry (a folder, a file or a symlink; others are skipped) after
// checking that its name is clean and new, and making its missing parents.
func (u *unpacker) entry(h *tar.Header, r io.Reader) error {
	name := filepath.FromSlash(strings.TrimSuffix(h.Name, "/"))
	if name == "" || name == "." || !filepath.IsLocal(name) || filepath.Clean(name) != name {
		return fmt.Errorf("%w: unsafe path %q", ErrUnsafeTree, h.Name)
	}
	switch h.Typeflag {
	case tar.TypeDir, tar.TypeReg, tar.TypeSymlink:
	default:
		return nil // submodules and other entries git does not export as files
	}
	if flag, dup := u.made[name]; dup && !(flag == implicitDir && h.Typeflag == tar.TypeDir) {
		return fmt.Errorf("%w: %q appears twice (%s, then %s)", ErrUnsafeTree, filepath.ToSlash(name), kind(flag), kind(h.Typeflag))
	}
	if err := u.parents(name); err != nil {
		return err
	}
	mode := fs.FileMode(h.Mode).Perm()
	switch h.Typeflag {
	case tar.TypeDir:
		if _, implicit := u.made[name]; !implicit { // the check above: made only as a parent
			if err := u.root.Mkdir(name, 0o755); err != nil {
				return err
			}
		}
		u.dirs = append(u.dirs, dirAttr{name, mode, h.ModTime})
	case tar.TypeReg:
		if err := u.file(name, mode, h.ModTime, r); err != nil {
			return err
		}
	case tar.TypeSymlink:
		if err := u.root.Symlink(h.Linkname, name); err != nil {
			return err
		}
	}
	u.made[name] = h.Typeflag
	return nil
}

// parents makes the missing parent folders of name, outermost first, and refuses a
// parent that the stream made as a symlink or a file.
func (u *unpacker) parents(name string) error {
	var parents []string
	for p := filepath.Dir(name); p != "."; p = filepath.Dir(p) {
		parents = append(parents, p)
	}
	for _, p := range slices.Backward(parents) {
		flag, ok := u.made[p]
		switch {
		case !ok:
			if err := u.root.Mkdir(p, 0o755); err != nil {
				return err
			}
			u.made[p] = implicitDir
		case flag != tar.TypeDir && flag != implicitDir:
			return fmt.Errorf("%w: %q is under %q, which is %s", ErrUnsafeTree, filepath.ToSlash(name), filepath.ToSlash(p), kind(flag))
		}
	}
	return nil
}

// file writes a new regular file with its content from r, its mode and its time.
func (u *unpacker) file(name string, mode fs.FileMode, t time.Time, r io.Reader) error {
	f, err := u.root.OpenFile(name, os.O_WRONLY|os.O_CREATE|os.O_EXCL, mode)
	if err != nil {
		return err
	}
	_, err = io.Copy(f, r)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return err
	}
	return u.root.Chtimes(name, t, t)
}

// finishDirs sets the folders' modes and times, innermost first: a folder's time is its
// last change.
func (u *unpacker) finishDirs() error {
	for _, d := range slices.Backward(u.dirs) {
		if err := u.root.Chmod(d.name, d.mode); err != nil {
			return err
		}
		if err := u.root.Chtimes(d.name, d.t, d.t); err != nil {
			return err
		}
	}
	return nil
}

// kind names what an entry of type flag is, for errors.
func kind(flag byte) string {
	switch flag {
	case tar.TypeDir, implicitDir:
		return "a folder"
	case tar.TypeSymlink:
		return "a symlink"
	}
	return "a file"
}

func (s *GitSource) program() string {
	if s.Git == "" {
		return "git"
	}
	return s.Git
}

// command returns the git program with args, bounded by Timeout through the returned
// context. It runs in a session of its own, so that killing its process group on expiry
// (or cancellation) also kills what it started (remote helpers, ssh), and so that nothing
// it starts waits on a terminal.
func (s *GitSource) command(ctx context.Context, args []string) (*exec.Cmd, context.Context, context.CancelFunc) {
	d := s.timeout()
	ctx, cancel := context.WithTimeoutCause(ctx, d, fmt.Errorf("%w after %s", ErrTimeout, d))
	cmd := exec.CommandContext(ctx, s.program(), args...)
	cmd.Env = append(gitEnv(), gitcred.Parse(s.Repo).Env()...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	cmd.Cancel = func() error {
		if err := syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL); err != nil && !errors.Is(err, syscall.ESRCH) {
			return err
		}
		return nil
	}
	cmd.WaitDelay = gitWaitDelay
	return cmd, ctx, cancel
}

// git runs the git program and returns its standard output. When ctx is done it returns
// ctx's error; when Timeout expires, an error wrapping ErrTimeout and the *CommandError.
func (s *GitSource) git(ctx context.Context, stdin io.Reader, args ...string) ([]byte, error) {
	cmd, cmdCtx, cancel := s.command(ctx, args)
	defer cancel()
	var stdout bytes.Buffer
	var stderr tailBuffer
	cmd.Stdin = stdin
	cmd.Stdout = &stdout
	cmd.Stderr = &stderr
	err := cmd.Run()
	if errors.Is(err, exec.ErrWaitDelay) && cmdCtx.Err() == nil {
		err = nil // git succeeded; something it started kept its pipes open
	}
	if err != nil {
		if ctxErr := ctx.Err(); ctxErr != nil {
			return nil, ctxErr
		}
		ce := s.commandError(args, err, stderr.String())
		if cause := context.Cause(cmdCtx); errors.Is(cause, ErrTimeout) {
			return nil, fmt.Errorf("%w (killed): %w", cause, ce)
		}
		return nil, ce
	}
	return stdout.Bytes(), nil
}

// gitEnv is git's environment before Repo's credentials (command adds those): the basics
// and what git needs to reach a remote (childenv.Git), never this process's secrets
// (safety rule 10), and no asking for credentials on a terminal or through an askpass
// program.
func gitEnv() []string {
	return childenv.Env(childenv.Git, "GIT_TERMINAL_PROMPT=0", "GIT_ASKPASS=", "SSH_ASKPASS=")
}

// commandError describes git run with args failing with err, having written stderr;
// Repo's credentials are removed from its argv and its standard error (git may echo the
// URL), so that callers that unwrap it see no secret either.
func (s *GitSource) commandError(args []string, err error, stderr string) *CommandError {
	code := -1
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		code = ee.ExitCode()
	}
	if code < 0 {
		stderr = strings.TrimSpace(err.Error() + " " + stderr)
	}
	argv := []string{s.program()}
	for _, a := range args {
		argv = append(argv, s.redact(a))
	}
	return &CommandError{Args: argv, ExitCode: code, Stderr: s.redact(stderr)}
}

func isCommitID(s string) bool {
	if len(s) != 40 && len(s) != 64 {
		return false
	}
	for _, c := range s {
		if !strings.ContainsRune("0123456789abcdefABCDEF", c) {
			return false
		}
	}
	return true
}

// tailBuffer keeps the last 8 KiB written to it.
type tailBuffer struct{ b []byte }

// Write keeps p's bytes, dropping the oldest beyond 8 KiB.
func (t *tailBuffer) Write(p []byte) (int, error) {
	const max = 8 << 10
	t.b = append(t.b, p...)
	if len(t.b) > max {
		t.b = append(t.b[:0], t.b[len(t.b)-max:]...)
	}
	return len(p), nil
}

// String returns the bytes kept.
func (t *tailBuffer) String() string { return string(t.b) }
