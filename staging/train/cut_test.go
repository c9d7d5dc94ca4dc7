package train_test

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/restage/restage/internal/gittest"
	"github.com/restage/restage/staging"
	"github.com/restage/restage/staging/train"
)

// repo is a bare repository with devel and staging branches, and a work tree that
// pushes to it.
type repo struct {
	t    *testing.T
	bare string
	work string
}

func newRepo(t *testing.T) *repo {
	t.Helper()
	if _, err := exec.LookPath("git"); err != nil {
		t.Skip("no git")
	}
	dir := t.TempDir()
	r := &repo{t: t, bare: filepath.Join(dir, "bugs.git"), work: filepath.Join(dir, "work")}
	gitIn(t, dir, "init", "-q", "--bare", "-b", "devel", r.bare)
	gitIn(t, dir, "clone", "-q", r.bare, r.work)
	r.commit("migrations/1_person.up.sql", "CREATE TABLE person (id int);\n", "person")
	r.git("push", "-q", "origin", "HEAD:refs/heads/devel", "HEAD:refs/heads/staging")
	return r
}

func gitIn(t *testing.T, dir string, args ...string) string {
	t.Helper()
	cmd := exec.Command("git", append([]string{"-c", "user.name=Dev", "-c", "user.email=dev@example.org", "-c", "init.defaultBranch=devel"}, args...)...)
	cmd.Dir = dir
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("git %v: %v\n%s", args, err, out)
	}
	return strings.TrimSpace(string(out))
}

func (r *repo) git(args ...string) string { r.t.Helper(); return gitIn(r.t, r.work, args...) }

// commit writes name and commits it on the work tree's branch; it returns the commit.
func (r *repo) commit(name, text, msg string) string {
	r.t.Helper()
	p := filepath.Join(r.work, name)
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		r.t.Fatal(err)
	}
	if err := os.WriteFile(p, []byte(text), 0o755); err != nil {
		r.t.Fatal(err)
	}
	r.git("add", "-A")
	r.git("commit", "-q", "-m", msg)
	return r.git("rev-parse", "HEAD")
}

// on checks out branch (as in the bare repository) in the work tree.
func (r *repo) on(branch string) {
	r.t.Helper()
	r.git("fetch", "-q", "origin")
	r.git("checkout", "-q", "-B", branch, "origin/"+branch)
}

// ref returns the bare repository's ref, or "".
func (r *repo) ref(name string) string {
	r.t.Helper()
	out, err := exec.Command("git", "-C", r.bare, "rev-parse", "-q", "--verify", name+"^{commit}").Output()
	if err != nil {
		return ""
	}
	return strings.TrimSpace(string(out))
}

func (r *repo) refs() string {
	r.t.Helper()
	return gitIn(r.t, r.bare, "for-each-ref", "--format=%(refname) %(objectname)")
}

var monday = time.Date(2026, 11, 30, 9, 0, 0, 0, time.UTC) // ISO week 2026-W49

func openTrain(t *testing.T, c *train.Config) *train.Train {
	t.Helper()
	tr, err := train.Open(c, train.Options{Now: func() time.Time { return monday }, Logger: discard()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { tr.Close() })
	return tr
}

func cut(t *testing.T, c *train.Config) (*train.CutReport, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	return openTrain(t, c).Cut(ctx, train.CutOptions{RequestedBy: "tester"})
}

func TestCutMovesStagingAndTags(t *testing.T) {
	r := newRepo(t)
	old := r.ref("staging")
	r.on("devel")
	b := r.commit("migrations/2_bug.up.sql", "CREATE TABLE bug (id int);\n", "bugs")
	c := r.commit("migrations/3_comment.up.sql", "CREATE TABLE comment (id int);\n", "comments")
	r.git("push", "-q", "origin", "devel")
	before := r.refs()

	state := t.TempDir()
	rep, err := cut(t, &train.Config{Repo: r.bare, StateDir: state})
	if err != nil {
		t.Fatalf("cut: %v\n%s", err, rep.Text())
	}
	if got := r.ref("staging"); got != c {
		t.Errorf("staging is at %s, want devel's head %s", got, c)
	}
	if got := r.ref("refs/tags/staging-2026-W49"); got != c {
		t.Errorf("tag staging-2026-W49 at %q, want %s", got, c)
	}
	if rep.Replaced != old || rep.Commit != c || rep.Outcome != train.OutcomeOK {
		t.Errorf("report: replaced %s commit %s outcome %s; want %s %s ok", rep.Replaced, rep.Commit, rep.Outcome, old, c)
	}
	if len(rep.Commits) != 2 || rep.Commits[0].ID != c || rep.Commits[1].ID != b || rep.Commits[1].Subject != "bugs" {
		t.Errorf("commits listed: %+v, want %s and %s", rep.Commits, c, b)
	}
	text := rep.Text()
	for _, want := range []string{"(was " + old + ")", "2 commits went from devel into staging", "comments (Dev)", "requested by: tester"} {
		if !strings.Contains(text, want) {
			t.Errorf("report lacks %q:\n%s", want, text)
		}
	}
	// Only the tag and staging changed.
	after := r.refs()
	for _, l := range strings.Split(before, "\n") {
		if !strings.HasPrefix(l, "refs/heads/staging ") && !strings.Contains(after, l) {
			t.Errorf("ref %q changed; refs now:\n%s", l, after)
		}
	}
	if n := len(strings.Split(after, "\n")); n != len(strings.Split(before, "\n"))+1 {
		t.Errorf("refs before:\n%s\nafter:\n%s", before, after)
	}
	data, err := os.ReadFile(filepath.Join(state, train.CutsFile))
	if err != nil || !strings.Contains(string(data), c) {
		t.Errorf("cuts history: %v %s", err, data)
	}

	// Again the same week: devel unchanged, nothing moves; the tag names the same commit,
	// here as an annotated tag (made by hand), which a push would be refused to replace.
	gitIn(t, r.bare, "-c", "user.name=ops", "-c", "user.email=ops@example.invalid",
		"tag", "-f", "-a", "-m", "by hand", "staging-2026-W49", c)
	rep, err = cut(t, &train.Config{Repo: r.bare})
	if err != nil || len(rep.Commits) != 0 {
		t.Fatalf("second cut: %v\n%s", err, rep.Text())
	}
	// The next commit of devel the same week: the tag names another commit; refused.
	r.commit("README", "readme\n", "readme")
	r.git("push", "-q", "origin", "devel")
	rep, err = cut(t, &train.Config{Repo: r.bare})
	if !errors.Is(err, train.ErrTagExists) || rep.Outcome != train.OutcomeRefused {
		t.Fatalf("cut with the tag on another commit: %v", err)
	}
	if got := r.ref("staging"); got != c {
		t.Errorf("a refused cut moved staging to %s", got)
	}
}

func TestCutRefusesBackwards(t *testing.T) {
	r := newRepo(t)
	r.on("staging")
	fix := r.commit("FIX", "fixed\n", "a fix merged into staging")
	r.git("push", "-q", "origin", "staging")
	r.on("devel")
	r.commit("migrations/2_bug.up.sql", "CREATE TABLE bug (id int);\n", "bugs")
	r.git("push", "-q", "origin", "devel")
	before := r.refs()

	rep, err := cut(t, &train.Config{Repo: r.bare})
	if !errors.Is(err, train.ErrBackwards) {
		t.Fatalf("cut with staging ahead: %v", err)
	}
	if rep.Outcome != train.OutcomeRefused || !strings.Contains(rep.Error, "a fix merged into staging") {
		t.Errorf("report: %s", rep.Text())
	}
	// The subject is the error's first line, without the colon that introduces the commits.
	if sub := rep.Subject(); !strings.HasSuffix(sub, "(merge them into devel first)") {
		t.Errorf("subject %q", sub)
	}
	if after := r.refs(); after != before || r.ref("staging") != fix {
		t.Errorf("a refused cut changed refs:\nbefore %s\nafter %s", before, after)
	}
	// Once devel has the fix, the cut goes through.
	r.git("merge", "-q", "--no-edit", "origin/staging")
	r.git("push", "-q", "origin", "devel")
	if _, err := cut(t, &train.Config{Repo: r.bare}); err != nil {
		t.Fatal(err)
	}
	if r.ref("staging") != r.ref("devel") {
		t.Error("staging did not move to devel")
	}
}

func TestCutRefusesFailingCheck(t *testing.T) {
	r := newRepo(t)
	r.on("devel")
	r.commit("check", "#!/bin/sh\necho checking $RESTAGE_CUT_COMMIT\nif test -e BROKEN; then echo devel is broken; exit 1; fi\n", "check")
	r.git("push", "-q", "origin", "devel")
	c := &train.Config{Repo: r.bare, Check: []string{"./check"}}
	if rep, err := cut(t, c); err != nil {
		t.Fatalf("a passing check: %v\n%s", err, rep.Text())
	}
	good := r.ref("staging")
	r.commit("BROKEN", "x\n", "break it")
	r.git("push", "-q", "origin", "devel")
	before := r.refs()
	rep, err := cut(t, &train.Config{Repo: r.bare, Check: []string{"./check"}, Tag: "staging-%Y-%m-%d-b"})
	if !errors.Is(err, train.ErrCheck) {
		t.Fatalf("a failing check: %v", err)
	}
	// The check is told the commit it checks.
	if !strings.Contains(rep.Text(), "devel is broken") || !strings.Contains(rep.Text(), "checking "+r.ref("devel")) {
		t.Errorf("the report lacks the check's output, or the commit in RESTAGE_CUT_COMMIT:\n%s", rep.Text())
	}
	if r.refs() != before || r.ref("staging") != good {
		t.Error("a refused cut changed refs")
	}
}

func TestCutOverHTTPKeepsTheTokenSecret(t *testing.T) {
	r := newRepo(t)
	const token = "s3cr3t-t0ken-abcdef"
	url := gittest.ServeHTTP(t, filepath.Dir(r.bare), "x-token", token)
	gitIn(t, r.bare, "config", "http.receivepack", "true")
	r.on("devel")
	want := r.commit("migrations/2_bug.up.sql", "CREATE TABLE bug (id int);\n", "bugs")
	r.git("push", "-q", "origin", "devel")
	remote := strings.Replace(url, "://", "://x-token:"+token+"@", 1) + "/bugs.git"
	// Git runs through a spy: the token never on its command line, never in a file of
	// the scratch repositories (made under TMPDIR), for the cut (its check too) and status.
	scratch := t.TempDir()
	t.Setenv("TMPDIR", scratch)
	spy, check := gittest.Spy(t, scratch, token)
	cfg := &train.Config{Repo: remote, Check: []string{"true"}}
	tr, err := train.Open(cfg, train.Options{Now: func() time.Time { return monday }, Logger: discard(), Git: spy})
	if err != nil {
		t.Fatal(err)
	}
	defer tr.Close()
	rep, err := tr.Cut(t.Context(), train.CutOptions{RequestedBy: "tester"})
	if err != nil {
		t.Fatalf("cut over HTTP: %v\n%s", err, rep.Text())
	}
	if st, err := tr.Status(t.Context()); err != nil || st.StagingHead != want || len(st.Problems) > 0 {
		t.Errorf("status over HTTP: %+v, %v", st, err)
	}
	check()
	if r.ref("staging") != want || r.ref("refs/tags/staging-2026-W49") != want {
		t.Error("staging or the tag not moved over HTTP")
	}
	if strings.Contains(rep.Text(), token) {
		t.Errorf("the report shows the token:\n%s", rep.Text())
	}
	// A wrong token: failed, the token named nowhere.
	bad := strings.Replace(url, "://", "://x-token:wrong-t0ken-xyz@", 1) + "/bugs.git"
	rep, err = cut(t, &train.Config{Repo: bad})
	if err == nil || strings.Contains(err.Error(), "wrong-t0ken-xyz") || strings.Contains(rep.Text(), "wrong-t0ken-xyz") {
		t.Errorf("a cut with a bad token: %v\n%s", err, rep.Text())
	}
}

func TestExpandTag(t *testing.T) {
	for _, tc := range []struct {
		pattern string
		t       time.Time
		want    string
	}{
		{train.DefaultTag, monday, "staging-2026-W49"},
		// Monday 29 December 2025 is in ISO week 1 of 2026.
		{train.DefaultTag, time.Date(2025, 12, 29, 9, 0, 0, 0, time.UTC), "staging-2026-W01"},
		{"s-%Y%m%d-%%", time.Date(2025, 12, 29, 9, 0, 0, 0, time.UTC), "s-20251229-%"},
	} {
		got, err := train.ExpandTag(tc.pattern, tc.t)
		if err != nil || got != tc.want {
			t.Errorf("ExpandTag(%q, %s) = %q, %v; want %q", tc.pattern, tc.t, got, err, tc.want)
		}
	}
	if _, err := train.ExpandTag("x-%H", monday); err == nil {
		t.Error("%H expanded")
	}
}

func TestLoadIsStrict(t *testing.T) {
	dir := t.TempDir()
	write := func(text string) string {
		p := filepath.Join(dir, "train.toml")
		if err := os.WriteFile(p, []byte(text), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	c, err := train.Load(write("repo = \"git/bugs.git\"\nenvironments = [\"staging.toml\"]\n"))
	if err != nil {
		t.Fatal(err)
	}
	if c.Repo != filepath.Join(dir, "git/bugs.git") || c.Environments[0] != filepath.Join(dir, "staging.toml") ||
		c.Devel != "devel" || c.Staging != "staging" || c.Tag != train.DefaultTag || c.Notify.Topic != "release-train" {
		t.Errorf("defaults and paths: %+v", c)
	}
	for text, want := range map[string]string{
		"repo = \"r\"\nbranch = \"x\"\n":                     "unknown key branch",
		"devel = \"d\"\n":                                    "missing required key repo",
		"repo = \"r\"\ntag = \"x-%H\"\n":                     "tag:",
		"repo = \"r\"\ncheck_timeout = \"soon\"\n":           "check_timeout",
		"repo = \"r\"\n[notify]\nstdout = true\n":            "missing required key state_dir",
		"repo = \"r\"\ndevel = \"a b\"\n":                    "devel \"a b\"",
		"repo = \"r\"\n[notify.email]\nsmtp = \"h:25\"\n":    "state_dir",
		"repo = \"r\"\nstaging = \"devel\"\n":                "both",
		"repo = \"r\"\nenvironments = \"production.toml\"\n": "environments",
	} {
		_, err := train.Load(write(text))
		if !errors.Is(err, staging.ErrConfig) || !strings.Contains(err.Error(), want) {
			t.Errorf("%q: %v; want a config error naming %q", text, err, want)
		}
	}
}

// cut -now checks every environment's config before it rebuilds any: each bad one is
// named with what is wrong, and nothing runs.
func TestRebuildStagingNamesEveryBadConfig(t *testing.T) {
	dir := t.TempDir()
	write := func(name, text string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(text), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	unknown := write("unknown.toml", "environment = \"staging\"\nbogus_key = 1\n")
	duration := write("duration.toml", "environment = \"staging\"\n[backup]\nwait = \"soon\"\n")
	missing := filepath.Join(dir, "missing.toml")
	// A config of role staging (by default) that names no backups: valid for a deploy,
	// bad for a rebuild (experimental's, without its role).
	noBackups := write("nobackups.toml", `environment = "experimental"
lock_file = "/run/restage/experimental.lock"
state_dir = "/var/lib/restage/experimental"
[database]
admin_dsn = "postgres://postgres@db/postgres"
name = "app_experimental"
production_ids = ["12"]
[code]
source = "/srv/src"
releases = "/srv/releases"
current = "/srv/current"
[schema]
migrations = "migrations"
[service]
type = "systemd"
unit = "app.service"
`)
	c := &train.Config{Repo: t.TempDir(), Environments: []string{unknown, missing, duration, noBackups}}
	reps, err := openTrain(t, c).RebuildStaging(context.Background(), staging.OpenOptions{Logger: discard()})
	if !errors.Is(err, staging.ErrConfig) || len(reps) != 0 {
		t.Fatalf("RebuildStaging = %v, %v; want a config error and no run", reps, err)
	}
	for _, want := range []string{"4 of the 4 environments' configs are bad", unknown + ": unknown key bogus_key", missing, duration, "soon",
		noBackups + ": ", "backup.dir"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("the error does not say %q:\n%v", want, err)
		}
	}
}

// A cut that moved staging but cannot append to cuts.jsonl says so: an error of its own
// (exit status 5) and a note in its report.
func TestCutHistoryNotWrittenIsSurfaced(t *testing.T) {
	r := newRepo(t)
	r.on("devel")
	want := r.commit("migrations/2_bug.up.sql", "CREATE TABLE bug (id int);\n", "bugs")
	r.git("push", "-q", "origin", "devel")
	state := t.TempDir()
	if err := os.Mkdir(filepath.Join(state, train.CutsFile), 0o700); err != nil {
		t.Fatal(err)
	}
	rep, err := cut(t, &train.Config{Repo: r.bare, StateDir: state})
	if !errors.Is(err, staging.ErrUnrecorded) || staging.ExitStatus(err) != staging.ExitUnrecorded || rep.Outcome != train.OutcomeOK ||
		!strings.Contains(err.Error(), train.CutsFile) {
		t.Fatalf("a cut whose history cannot be written: %v (exit %d)\n%s", err, staging.ExitStatus(err), rep.Text())
	}
	if !strings.Contains(rep.Text(), "this cut is not in the history") {
		t.Errorf("the report does not say so:\n%s", rep.Text())
	}
	if r.ref("staging") != want {
		t.Error("staging did not move")
	}
}

// An experimental config without [code] source or git (README: its deploys name their
// code) is a valid environment of the train: status says where it stands, as for the
// others (it reported only "missing required key code.source").
func TestStatusOfAnExperimentalWithoutSource(t *testing.T) {
	dir := t.TempDir()
	state := filepath.Join(dir, "state")
	if err := os.MkdirAll(state, 0o700); err != nil {
		t.Fatal(err)
	}
	line := `{"v":2,"id":"20261130T101500Z-1","environment":"experimental","kind":"deploy","outcome":"ok","started":"2026-11-30T10:15:00Z","total_seconds":3}` + "\n"
	if err := os.WriteFile(filepath.Join(state, "history.jsonl"), []byte(line), 0o600); err != nil {
		t.Fatal(err)
	}
	exp := filepath.Join(dir, "experimental.toml")
	if err := os.WriteFile(exp, []byte(`environment = "experimental"
role        = "experimental"
lock_file   = "run/experimental.lock"
state_dir   = "state"
[database]
admin_dsn      = "postgres://postgres@127.0.0.1:1/postgres?connect_timeout=1"
name           = "app_experimental"
production_ids = ["12"]
[code]
releases = "releases"
current  = "current"
[schema]
migrations = "migrations"
[service]
type = "systemd"
unit = "app-experimental.service"
`), 0o600); err != nil {
		t.Fatal(err)
	}
	st, err := openTrain(t, &train.Config{Repo: t.TempDir(), Environments: []string{exp}}).Status(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if len(st.Environments) != 1 {
		t.Fatalf("status lists %d environments:\n%s", len(st.Environments), st.Text())
	}
	e := st.Environments[0]
	if e.Role != staging.RoleExperimental || e.LastRun == nil || e.LastRun.Kind != "deploy" {
		t.Errorf("experimental's status: %+v\n%s", e, st.Text())
	}
	for _, p := range e.Problems {
		if strings.Contains(p, "code.source") {
			t.Errorf("a problem with the config: %s", p)
		}
	}
}

// A state_dir other users may write to is refused when the train opens (a config
// error), not after the cut was pushed: cuts.jsonl and the spool sit there, and
// another user could plant reports to be mailed in the train's name.
func TestOpenRefusesAStateDirOthersMayWrite(t *testing.T) {
	state := filepath.Join(t.TempDir(), "train")
	if err := os.Mkdir(state, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(state, 0o777); err != nil {
		t.Fatal(err)
	}
	_, err := train.Open(&train.Config{Repo: "/srv/git/bugs", StateDir: state}, train.Options{Logger: discard()})
	if !errors.Is(err, staging.ErrConfig) || !strings.Contains(err.Error(), "state_dir: ") || !strings.Contains(err.Error(), "lets other users write to it") {
		t.Fatalf("Open with a state_dir of mode 0777: %v, want a config error naming state_dir", err)
	}
}
