package train

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/restage/restage/codesync"
	"github.com/restage/restage/internal/childenv"
	"github.com/restage/restage/internal/cmderr"
	"github.com/restage/restage/internal/gitcred"
	"github.com/restage/restage/internal/redact"
	"github.com/restage/restage/internal/runas"
	"github.com/restage/restage/internal/safefile"
	"github.com/restage/restage/notify"
	"github.com/restage/restage/staging"
)

// Errors callers test with errors.Is; a refused cut changed nothing.
var (
	// ErrBackwards: the staging branch has commits devel lacks (a fix merged into
	// staging and not into devel); moving it to devel's head would lose them.
	ErrBackwards = errors.New("the staging branch would move backwards")
	// ErrCheck: the configured check failed in devel's tree.
	ErrCheck = errors.New("devel's head fails the check")
	// ErrTagExists: the week's tag exists and names another commit.
	ErrTagExists = errors.New("the tag exists on another commit")
	// ErrNoBranch: the repository has no devel branch.
	ErrNoBranch = errors.New("no such branch")
)

// Options adjust a Train.
type Options struct {
	// Logger receives one line per step; nil: slog.Default().
	Logger *slog.Logger
	// Now is the clock (the tag's date); nil: time.Now.
	Now func() time.Time
	// Report, when set, also receives every cut's report as text.
	Report func(text string)
	// Git is the git program; "": "git" on PATH.
	Git string
}

// Train runs the release train's commands for one config. Create it with Open; Close
// it when done.
type Train struct {
	cfg      Config
	log      *slog.Logger
	now      func() time.Time
	notifier notify.Notifier
	report   func(string)
	git      string // the git program
	// checkCred is CheckUser's credential (nil: the train's), checkEnv its HOME, USER
	// and LOGNAME.
	checkCred *syscall.Credential
	checkEnv  []string
}

// Open validates cfg and wires the notifier of its [notify] section (each target spooled
// under state_dir).
func Open(cfg *Config, opts Options) (*Train, error) {
	c := *cfg
	if err := c.Validate(); err != nil {
		return nil, err
	}
	log := opts.Logger
	if log == nil {
		log = slog.Default()
	}
	t := &Train{cfg: c, log: log, now: opts.Now, report: opts.Report, git: opts.Git}
	if t.now == nil {
		t.now = time.Now
	}
	if c.CheckUser != "" {
		var err error
		if t.checkCred, t.checkEnv, err = runas.Lookup(c.CheckUser); err != nil {
			return nil, fmt.Errorf("%w: check_user: %w", staging.ErrConfig, err)
		}
	}
	// cuts.jsonl and the spool: a folder others control is refused before any cut.
	if c.StateDir != "" {
		if err := safefile.MkdirPrivate(c.StateDir); err != nil {
			return nil, fmt.Errorf("%w: state_dir: %w", staging.ErrConfig, err)
		}
	}
	d := c.Drivers
	if d == nil {
		d = staging.DefaultDrivers()
	}
	n, err := d.Notifier(c.Notify, staging.DriverEnv{Logger: log, Dir: c.dir, StateDir: c.StateDir})
	if err != nil {
		return nil, fmt.Errorf("notify: %w", err)
	}
	t.notifier = n
	return t, nil
}

// Close releases the notifier.
func (t *Train) Close() error {
	if c, ok := t.notifier.(interface{ Close() error }); ok {
		return c.Close()
	}
	return nil
}

// CutOptions are the per-call options of Cut.
type CutOptions struct {
	// RequestedBy names who asked for the cut, for the report.
	RequestedBy string
}

// maxListed bounds the commits a cut's report lists.
const maxListed = 500

// Cut makes devel's head the new staging branch: in a scratch clone it fetches devel
// and staging, refuses when staging's head is not an ancestor of devel's (ErrBackwards),
// runs the check in devel's tree (ErrCheck), then pushes, atomically and without force,
// the tag (the pattern at the current date) and the staging branch, both at devel's
// head. No other ref is written. The report names the commit staging had before and
// lists the commits that went from devel into staging; it is appended to the cuts'
// history and delivered under the train's topic. A refused cut changes nothing. A cut
// that succeeded but could not be appended to the history returns an error wrapping
// staging.ErrUnrecorded (ErrUndelivered, when its report was lost too).
func (t *Train) Cut(ctx context.Context, opts CutOptions) (*CutReport, error) {
	rep := &CutReport{ID: newID(t.now()), Started: t.now(), Repo: redact.String(t.cfg.Repo, gitcred.Secrets(t.cfg.Repo)...),
		Devel: t.cfg.Devel, Staging: t.cfg.Staging, RequestedBy: opts.RequestedBy}
	err := t.cut(ctx, rep)
	rep.Total = t.now().Sub(rep.Started)
	switch {
	case err == nil:
		rep.Outcome = OutcomeOK
	case errors.Is(err, ErrBackwards), errors.Is(err, ErrCheck), errors.Is(err, ErrTagExists), errors.Is(err, ErrNoBranch):
		rep.Outcome = OutcomeRefused
	default:
		rep.Outcome = OutcomeFailed
	}
	if err != nil {
		rep.Error = redact.String(err.Error(), gitcred.Secrets(t.cfg.Repo)...)
		t.log.Error("cut "+string(rep.Outcome), "err", rep.Error)
	} else {
		t.log.Info("cut done", "tag", rep.Tag, "commit", rep.Commit, "replaced", rep.Replaced, "commits", len(rep.Commits)+rep.MoreCommits)
	}
	herr := appendCut(t.cfg.StateDir, rep)
	if herr != nil {
		herr = fmt.Errorf("%s: %w", CutsFile, herr)
		t.log.Error("cut history not written", "err", herr)
		rep.Notes = append(rep.Notes, "this cut is not in the history: "+herr.Error())
	}
	if t.report != nil {
		t.report(rep.Text())
	}
	if derr := t.deliver(ctx, rep); derr != nil {
		if err == nil {
			err = fmt.Errorf("%w: %w", staging.ErrUndelivered, derr)
		} else {
			err = errors.Join(err, fmt.Errorf("report not delivered: %w", derr))
		}
	}
	if herr != nil {
		if err == nil {
			err = fmt.Errorf("%w: %w", staging.ErrUnrecorded, herr)
		} else {
			err = errors.Join(err, fmt.Errorf("cut history not written: %w", herr))
		}
	}
	return rep, err
}

func (t *Train) cut(ctx context.Context, rep *CutReport) error {
	tag, err := ExpandTag(t.cfg.Tag, t.now())
	if err != nil {
		return fmt.Errorf("%w: tag: %w", staging.ErrConfig, err)
	}
	rep.Tag = tag
	work, err := os.MkdirTemp("", "restage-cut-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(work)
	g := t.newGit(work)
	if _, err := g.run(ctx, "init", "-q", "--bare"); err != nil {
		return err
	}
	// Fetch the two branches and the tag into the scratch clone under names of its own.
	devRef, stRef, tagRef := "refs/heads/"+t.cfg.Devel, "refs/heads/"+t.cfg.Staging, "refs/tags/"+tag
	remote, err := t.lsRemote(ctx, g, devRef, stRef, tagRef, tagRef+"^{}") // ^{}: an annotated tag's commit
	if err != nil {
		return err
	}
	devel, ok := remote[devRef]
	if !ok {
		return fmt.Errorf("%w: %s has no branch %s", ErrNoBranch, rep.Repo, t.cfg.Devel)
	}
	old := remote[stRef]
	rep.Commit, rep.Replaced = devel, old
	specs := []string{"+" + devRef + ":refs/cut/devel"}
	if old != "" {
		specs = append(specs, "+"+stRef+":refs/cut/staging")
	}
	if _, err := g.run(ctx, append([]string{"fetch", "-q", "--no-tags", "--", g.remote()}, specs...)...); err != nil {
		return err
	}
	if has := remote[tagRef]; has != "" {
		// Peeled: an annotated tag names a tag object; compare the commit it points at.
		if peeled := remote[tagRef+"^{}"]; peeled != "" {
			has = peeled
		}
		if has != devel {
			return fmt.Errorf("%w: %s names %s, devel's head is %s; set tag to another pattern or remove the tag", ErrTagExists, tag, short(has), short(devel))
		}
		rep.Notes = append(rep.Notes, "the tag "+tag+" already names devel's head")
	}
	if old != "" {
		if _, err := g.run(ctx, "merge-base", "--is-ancestor", old, devel); err != nil {
			var ce *cmderr.Error
			if errors.As(err, &ce) && ce.ExitCode == 1 {
				extra, _ := g.run(ctx, "log", "--format=%h %s", old, "^"+devel, "--max-count=20")
				return fmt.Errorf("%w: %s has commits that %s lacks (merge them into %s first):\n%s", ErrBackwards, t.cfg.Staging, t.cfg.Devel, t.cfg.Devel, extra)
			}
			return err
		}
	}
	if err := t.listCommits(ctx, g, rep, old, devel); err != nil {
		return err
	}
	if len(t.cfg.Check) > 0 {
		if err := t.check(ctx, work, devel, rep); err != nil {
			return err
		}
	}
	if old == devel {
		rep.Notes = append(rep.Notes, t.cfg.Staging+" is already at "+t.cfg.Devel+"'s head")
	}
	// One atomic push, no force: the server refuses a staging update that is not a
	// fast-forward (someone pushed meanwhile) and a tag that exists elsewhere.
	// A tag that already names devel's head (a re-run; lightweight or annotated) is left
	// as it is: pushing it again is refused for an annotated one.
	refspecs := []string{devel + ":" + stRef}
	if remote[tagRef] == "" {
		refspecs = append(refspecs, devel+":"+tagRef)
	}
	_, err = g.run(ctx, append([]string{"push", "-q", "--atomic", "--no-verify", "--", g.remote()}, refspecs...)...)
	return err
}

// lsRemote returns the repository's refs among names (and peeled tags) by name.
func (t *Train) lsRemote(ctx context.Context, g *git, names ...string) (map[string]string, error) {
	out, err := g.run(ctx, append([]string{"ls-remote", "--", g.remote()}, names...)...)
	if err != nil {
		return nil, err
	}
	refs := map[string]string{}
	for _, l := range strings.Split(out, "\n") {
		if id, name, ok := strings.Cut(l, "\t"); ok {
			refs[name] = id
		}
	}
	return refs, nil
}

// listCommits lists the commits of devel that are not on staging (old; "": the first
// cut, which lists devel's newest).
func (t *Train) listCommits(ctx context.Context, g *git, rep *CutReport, old, devel string) error {
	args := []string{"log", "--format=%H%x00%an%x00%aI%x00%s", "--max-count=" + fmt.Sprint(maxListed+1), devel}
	countArgs := []string{"rev-list", "--count", devel}
	if old != "" {
		args = append(args, "^"+old)
		countArgs = append(countArgs, "^"+old)
	}
	out, err := g.run(ctx, append(args, "--")...)
	if err != nil {
		return err
	}
	for _, l := range strings.Split(out, "\n") {
		f := strings.Split(l, "\x00")
		if len(f) != 4 {
			continue
		}
		when, _ := time.Parse(time.RFC3339, f[2])
		rep.Commits = append(rep.Commits, Commit{ID: f[0], Author: f[1], Time: when, Subject: f[3]})
	}
	if len(rep.Commits) > maxListed {
		rep.Commits = rep.Commits[:maxListed]
		n, err := g.run(ctx, countArgs...)
		if err != nil {
			return err
		}
		var total int
		fmt.Sscan(n, &total)
		rep.MoreCommits = total - maxListed
	}
	return nil
}

// check runs the configured check in devel's tree (exported from the scratch clone).
func (t *Train) check(ctx context.Context, work, commit string, rep *CutReport) error {
	src := &codesync.GitSource{Repo: work, Ref: commit, Git: t.git, Timeout: t.cfg.GitTimeout.Duration}
	tree, err := src.Open(ctx)
	if err != nil {
		return err
	}
	if tree.Close != nil {
		defer tree.Close()
	}
	if t.checkCred != nil {
		if err := handOver(tree.Dir, t.checkCred); err != nil {
			return fmt.Errorf("giving devel's tree to check_user %s: %w", t.cfg.CheckUser, err)
		}
	}
	res := &CheckResult{Command: t.cfg.Check}
	rep.Check = res
	start := time.Now()
	cctx, cancel := context.WithTimeout(ctx, t.cfg.CheckTimeout.Duration)
	defer cancel()
	cmd := exec.CommandContext(cctx, t.cfg.Check[0], t.cfg.Check[1:]...)
	cmd.Dir = tree.Dir
	cmd.Env = childenv.Env(nil, append(slices.Clip(t.checkEnv), "RESTAGE_CUT_COMMIT="+commit)...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true, Credential: t.checkCred}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	cmd.WaitDelay = 5 * time.Second
	out, err := cmd.CombinedOutput()
	res.Duration = time.Since(start)
	res.Output = redact.String(tail(string(out), 4000))
	if err != nil {
		if cctx.Err() != nil && ctx.Err() == nil {
			err = fmt.Errorf("timed out after %s (check_timeout): %w", t.cfg.CheckTimeout.Duration, err)
		}
		res.Error = err.Error()
		return fmt.Errorf("%w: %s: %v", ErrCheck, strings.Join(t.cfg.Check, " "), err)
	}
	return nil
}

// handOver gives the exported tree dir to cred's user, for a check that builds in it:
// every entry chowned (symlinks themselves), and its parent, the export's private
// folder, opened to be passed through (0711), not listed.
func handOver(dir string, cred *syscall.Credential) error {
	err := filepath.WalkDir(dir, func(path string, _ fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		return os.Lchown(path, int(cred.Uid), int(cred.Gid))
	})
	if err != nil {
		return err
	}
	return os.Chmod(filepath.Dir(dir), 0o711)
}

// deliver sends the report under the train's topic; a report a target cannot take is
// spooled for the next command (not an error).
func (t *Train) deliver(ctx context.Context, rep *CutReport) error {
	if t.notifier == nil {
		return nil
	}
	status := notify.StatusOK
	if rep.Outcome != OutcomeOK {
		status = notify.StatusFailed
	}
	nctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), notifyTimeout(t.cfg.Notify))
	defer cancel()
	if f, ok := t.notifier.(notify.Flusher); ok {
		_ = f.Flush(nctx)
	}
	err := t.notifier.Notify(nctx, &notify.Message{ID: rep.ID, Environment: "release-train", Topic: t.cfg.Notify.Topic,
		Status: status, Subject: rep.Subject(), Body: rep.Text(), Time: rep.Started})
	if errors.Is(err, notify.ErrSpooled) {
		t.log.Warn("report not delivered; spooled for the next run", "err", redact.String(err.Error()))
		return nil
	}
	return err
}

func notifyTimeout(n staging.NotifyConfig) time.Duration {
	if n.Timeout.Duration > 0 {
		return n.Timeout.Duration
	}
	return staging.DefaultNotifyTimeout
}

func newID(now time.Time) string {
	b := make([]byte, 6)
	_, _ = rand.Read(b)
	return now.UTC().Format("20060102T150405Z") + "-" + hex.EncodeToString(b)
}

// short abbreviates a commit id.
func short(id string) string {
	if len(id) > 12 {
		return id[:12]
	}
	return id
}

// quiet is the logger of the parts status opens: warnings only.
func (t *Train) quiet() *slog.Logger {
	return slog.New(slog.NewTextHandler(io.Discard, nil))
}
