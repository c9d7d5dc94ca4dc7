package codesync

import (
	"archive/tar"
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/restage/restage/internal/gittest"
	"github.com/restage/restage/internal/testutil"
)

func TestDirSource(t *testing.T) {
	dir := t.TempDir()
	writeTree(t, dir, map[string]string{"a.txt": "a"})
	s := dirSource(t, dir)
	rev, err := s.Describe(t.Context())
	if err != nil || rev.Source != dir || rev.String() != dir {
		t.Fatalf("Describe = %+v, %v", rev, err)
	}
	tree, err := s.Open(t.Context())
	if err != nil || tree.Dir != dir || tree.Close != nil {
		t.Fatalf("Open = %+v, %v", tree, err)
	}
}

func TestDirSourceBadInput(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "file")
	writeTree(t, dir, map[string]string{"file": "x"})
	for _, tc := range []struct {
		path string
		want error
	}{
		{filepath.Join(dir, "missing"), ErrNoSource},
		{"", ErrNoSource},
		{file, ErrNotDir},
	} {
		if _, err := NewDirSource(tc.path); !errors.Is(err, tc.want) {
			t.Errorf("NewDirSource(%q) = %v, want %v", tc.path, err, tc.want)
		}
		s := &DirSource{Path: tc.path}
		if _, err := s.Describe(t.Context()); !errors.Is(err, tc.want) {
			t.Errorf("Describe(%q) = %v, want %v", tc.path, err, tc.want)
		}
		if _, err := s.Open(t.Context()); !errors.Is(err, tc.want) || !strings.Contains(err.Error(), tc.path) {
			t.Errorf("Open(%q) = %v, want %v naming the path", tc.path, err, tc.want)
		}
	}
	// A folder removed after the source was made: Build says so and builds nothing.
	gone := filepath.Join(dir, "gone")
	os.Mkdir(gone, 0o755)
	src := dirSource(t, gone)
	os.Remove(gone)
	s := newSyncer(t, "", nil)
	if _, err := s.Build(t.Context(), src); !errors.Is(err, ErrNoSource) {
		t.Fatalf("Build of a removed folder = %v, want ErrNoSource", err)
	}
	if list, _ := s.List(t.Context()); len(list) != 0 {
		t.Fatalf("releases after a failed build: %v", list)
	}
}

func TestGitSource(t *testing.T) {
	g := newGitRepo(t)
	c1 := g.commit("one", map[string]string{"app.txt": "v1", "lib/x.go": "package x", "link": "->app.txt"})
	os.Chmod(filepath.Join(g.dir, "lib"), 0o755)
	writeTree(t, g.dir, map[string]string{"run.sh": "#!/bin/sh\n"})
	os.Chmod(filepath.Join(g.dir, "run.sh"), 0o755)
	g.run("add", "run.sh")
	g.run("commit", "-q", "-m", "script")
	c2 := g.run("rev-parse", "HEAD")
	g.run("tag", "-a", "-m", "release 1", "v1")
	g.run("checkout", "-q", "-b", "feature")
	c3 := g.commit("feature", map[string]string{"app.txt": "feature", "new.txt": "new"})
	g.run("checkout", "-q", "main")

	for _, tc := range []struct {
		repo, ref, commit, app string
		exec                   bool
	}{
		{g.dir, "main", c2, "v1", true},
		{g.dir, "", c2, "v1", true},
		{g.dir, "feature", c3, "feature", true},
		{g.dir, "v1", c2, "v1", true},
		{g.dir, c1, c1, "v1", false},
		{g.dir, c1[:10], c1, "v1", false},
		{"file://" + g.dir, "feature", c3, "feature", true},
		{"file://" + g.dir, "v1", c2, "v1", true},
		{"file://" + g.dir, c1, c1, "v1", false},
	} {
		t.Run(tc.repo+"@"+tc.ref, func(t *testing.T) {
			src := &GitSource{Repo: tc.repo, Ref: tc.ref, TempDir: t.TempDir()}
			rev, err := src.Describe(t.Context())
			if err != nil {
				t.Fatalf("Describe: %v", err)
			}
			if rev.Commit != tc.commit || rev.Source != tc.repo {
				t.Errorf("Describe = %+v, want commit %s", rev, tc.commit)
			}
			tree, err := src.Open(t.Context())
			if err != nil {
				t.Fatalf("Open: %v", err)
			}
			if tree.Revision != rev {
				t.Errorf("Open revision %+v, Describe %+v", tree.Revision, rev)
			}
			b, err := os.ReadFile(filepath.Join(tree.Dir, "app.txt"))
			if err != nil || string(b) != tc.app {
				t.Errorf("app.txt = %q, %v; want %q", b, err, tc.app)
			}
			if target, err := os.Readlink(filepath.Join(tree.Dir, "link")); err != nil || target != "app.txt" {
				t.Errorf("link = %q, %v", target, err)
			}
			if _, err := os.Stat(filepath.Join(tree.Dir, ".git")); err == nil {
				t.Error(".git exported")
			}
			fi, err := os.Stat(filepath.Join(tree.Dir, "run.sh"))
			if tc.exec && (err != nil || fi.Mode().Perm() != 0o755) {
				t.Errorf("run.sh: %v %v, want mode 0755", fi, err)
			}
			if !tc.exec && err == nil {
				t.Error("run.sh exported at a commit without it")
			}
			if err := tree.Close(); err != nil {
				t.Fatal(err)
			}
			if _, err := os.Stat(tree.Dir); !os.IsNotExist(err) {
				t.Errorf("tree folder %s left after Close: %v", tree.Dir, err)
			}
		})
	}
}

func TestGitSourceBadInput(t *testing.T) {
	g := newGitRepo(t)
	g.commit("one", map[string]string{"a": "a"})
	notRepo := t.TempDir()
	file := filepath.Join(notRepo, "f")
	os.WriteFile(file, nil, 0o644)
	for _, tc := range []struct {
		repo, ref string
		want      error
	}{
		{g.dir, "nosuchbranch", ErrNoRevision},
		{g.dir, "0123456789012345678901234567890123456789", ErrNoRevision},
		{"file://" + g.dir, "nosuchbranch", ErrNoRevision},
		{filepath.Join(notRepo, "missing"), "main", ErrNoSource},
		{notRepo, "main", ErrNoSource},
		{file, "main", ErrNotDir},
		{"file://" + filepath.Join(notRepo, "missing"), "main", ErrNoSource},
		{g.dir, "--upload-pack=evil", ErrNoRevision},
		{"file://" + g.dir, "abcdef0", ErrNoRevision}, // remote refs: no short ids
	} {
		tmp := t.TempDir()
		src := &GitSource{Repo: tc.repo, Ref: tc.ref, TempDir: tmp}
		for _, op := range []string{"Describe", "Open"} {
			var err error
			if op == "Describe" {
				_, err = src.Describe(t.Context())
			} else {
				_, err = src.Open(t.Context())
			}
			if !errors.Is(err, tc.want) {
				t.Errorf("%s(%s@%s) = %v, want %v", op, tc.repo, tc.ref, err, tc.want)
				continue
			}
			if !strings.Contains(err.Error(), tc.repo) || !strings.Contains(err.Error(), tc.ref) {
				t.Errorf("%s error %q does not name repo and ref", op, err)
			}
		}
		if left, _ := os.ReadDir(tmp); len(left) != 0 {
			t.Errorf("%s@%s: Open left %v behind", tc.repo, tc.ref, left)
		}
	}
	// A remote full commit id that does not exist is found out by Open.
	src := &GitSource{Repo: "file://" + g.dir, Ref: strings.Repeat("ab", 20), TempDir: t.TempDir()}
	if _, err := src.Open(t.Context()); !errors.Is(err, ErrNoRevision) {
		t.Errorf("Open of a missing remote commit = %v", err)
	}
	if _, err := (&GitSource{}).Describe(t.Context()); !errors.Is(err, ErrConfig) {
		t.Errorf("empty GitSource: %v", err)
	}
}

// TestGitSourceRefusesUnsafeTrees builds trees no checkout can hold with git's plumbing
// (a symlink and a folder of the same name, a name twice) and checks that Build refuses
// them with ErrUnsafeTree and that nothing is written outside the export.
func TestGitSourceRefusesUnsafeTrees(t *testing.T) {
	g := newGitRepo(t)
	for _, tc := range []struct {
		name    string
		entries []string
		trees   map[string][]string
		says    string
	}{
		{"symlink out, then folder", []string{"120000 a {outside}", "040000 a sub"},
			map[string][]string{"sub": {"100644 x pwned", "100755 run.sh pwned"}}, `"a" appears twice (a symlink, then a folder)`},
		{"relative symlink out, then folder", []string{"100644 app.txt v1", "120000 a {up}", "040000 a sub"},
			map[string][]string{"sub": {"040000 deep sub2"}, "sub2": {"100644 x pwned"}}, `"a" appears twice`},
		{"symlink in the tree, then folder", []string{"120000 a b", "040000 a sub", "040000 b sub"},
			map[string][]string{"sub": {"100644 x pwned"}}, `"a" appears twice`},
		{"file twice", []string{"100644 f one", "120000 f {outside}"}, nil, `"f" appears twice (a file, then a symlink)`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			outside := t.TempDir()
			if err := os.Chmod(outside, 0o700); err != nil {
				t.Fatal(err)
			}
			up := strings.Repeat("../", 40) + strings.TrimPrefix(outside, "/")
			var entries []string
			for _, e := range tc.entries {
				entries = append(entries, strings.NewReplacer("{outside}", outside, "{up}", up).Replace(e))
			}
			g.plumb("evil", entries, tc.trees)
			s := newSyncer(t, "", nil)
			tmp := t.TempDir()
			_, err := s.Build(t.Context(), &GitSource{Repo: g.dir, Ref: "evil", TempDir: tmp})
			if !errors.Is(err, ErrUnsafeTree) || !strings.Contains(err.Error(), tc.says) {
				t.Errorf("Build = %v; want ErrUnsafeTree saying %s", err, tc.says)
			}
			if left, _ := os.ReadDir(outside); len(left) != 0 {
				t.Errorf("written outside the export: %v", left)
			}
			if fi, err := os.Stat(outside); err != nil || fi.Mode().Perm() != 0o700 {
				t.Errorf("folder outside the export changed: %v, %v", fi.Mode(), err)
			}
			if left, _ := os.ReadDir(tmp); len(left) != 0 {
				t.Errorf("export left behind: %v", left)
			}
			if list, _ := s.List(t.Context()); len(list) != 0 {
				t.Errorf("releases built from an unsafe tree: %v", list)
			}
		})
	}
}

// TestUntarRefusesUnsafeEntries feeds untar streams git does not write but a crafted
// archive could: entries under a symlink or a file without a folder entry between,
// names that are not clean.
func TestUntarRefusesUnsafeEntries(t *testing.T) {
	type entry struct {
		name, link string
		dir        bool
	}
	for _, tc := range []struct {
		name    string
		entries []entry
		says    string
	}{
		{"under a symlink out", []entry{{name: "a", link: "{outside}"}, {name: "a/x"}}, `"a/x" is under "a", which is a symlink`},
		{"deep under a symlink out", []entry{{name: "a", link: "{outside}"}, {name: "a/b/x"}}, `"a/b/x" is under "a", which is a symlink`},
		{"under a symlink in", []entry{{name: "d", dir: true}, {name: "a", link: "d"}, {name: "a/x"}}, `is under "a", which is a symlink`},
		{"under a file", []entry{{name: "f"}, {name: "f/x"}}, `"f/x" is under "f", which is a file`},
		{"not clean", []entry{{name: "d", dir: true}, {name: "d/../x"}}, `unsafe path "d/../x"`},
		{"leaving", []entry{{name: "../x"}}, `unsafe path "../x"`},
		{"absolute", []entry{{name: "{outside}/x"}}, `unsafe path`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			outside := t.TempDir()
			var buf bytes.Buffer
			tw := tar.NewWriter(&buf)
			for _, e := range tc.entries {
				e.name = strings.ReplaceAll(e.name, "{outside}", outside)
				e.link = strings.ReplaceAll(e.link, "{outside}", outside)
				h := &tar.Header{Name: e.name, Mode: 0o644, Typeflag: tar.TypeReg, Size: 6}
				switch {
				case e.dir:
					h.Typeflag, h.Name, h.Mode, h.Size = tar.TypeDir, e.name+"/", 0o755, 0
				case e.link != "":
					h.Typeflag, h.Linkname, h.Size = tar.TypeSymlink, e.link, 0
				}
				if err := tw.WriteHeader(h); err != nil {
					t.Fatal(err)
				}
				if h.Size > 0 {
					tw.Write([]byte("pwned\n"))
				}
			}
			tw.Close()
			dir := t.TempDir()
			_, err := untar(t.Context(), &buf, dir)
			if !errors.Is(err, ErrUnsafeTree) || !strings.Contains(err.Error(), tc.says) {
				t.Errorf("untar = %v; want ErrUnsafeTree saying %s", err, tc.says)
			}
			if left, _ := os.ReadDir(outside); len(left) != 0 {
				t.Errorf("written outside: %v", left)
			}
			if _, err := os.Stat(filepath.Join(dir, "d", "x")); err == nil {
				t.Error("d/x written through the in-tree symlink")
			}
		})
	}
}

// TestGitSourceRedactsCredentials builds from a repository served over HTTP that wants
// the credentials of its URL: they reach git (the clone works) and nothing else.
func TestGitSourceRedactsCredentials(t *testing.T) {
	const token = "ghp_T0kenS3cretValue42"
	g := newGitRepo(t)
	g.commit("one", map[string]string{"app.py": "print(1)\n"})
	repo := g.serveHTTP("deploy", token)
	var logs bytes.Buffer
	s := newSyncer(t, "", func(c *Config) { c.Logger = slog.New(slog.NewTextHandler(&logs, nil)) })
	noToken := func(what, text string) {
		t.Helper()
		if strings.Contains(text, token) || strings.Contains(text, "T0kenS3cret") {
			t.Errorf("%s holds the token: %s", what, text)
		}
	}

	src := &GitSource{Repo: repo, Ref: "main", TempDir: t.TempDir()}
	rev, err := src.Describe(t.Context())
	if err != nil {
		t.Fatalf("Describe: %v", err)
	}
	noToken("Describe's revision", rev.String())
	if !strings.Contains(rev.Source, "127.0.0.1") || !strings.Contains(rev.Source, "deploy:") {
		t.Errorf("revision source %q does not name the repository", rev.Source)
	}
	r, err := s.Build(t.Context(), src)
	if err != nil {
		t.Fatalf("Build: %v", err)
	}
	noToken("the release's revision", r.Revision.String())
	if r.Revision != rev {
		t.Errorf("Build revision %+v, Describe %+v", r.Revision, rev)
	}
	meta, err := os.ReadFile(filepath.Join(r.Dir, MetadataFile))
	if err != nil {
		t.Fatal(err)
	}
	noToken(MetadataFile, string(meta))
	if _, err := s.Activate(t.Context(), r); err != nil {
		t.Fatal(err)
	}
	if list, err := s.List(t.Context()); err != nil || len(list) != 1 {
		t.Fatalf("List = %v, %v", list, err)
	} else {
		noToken("List's revision", list[0].Revision.String())
	}

	// Errors: a missing ref (git's own message), a refused login, an unreachable server.
	wrongPassword := strings.Replace(repo, token, token+"x", 1)
	unreachable := "http://deploy:" + token + "@127.0.0.1:1/repo"
	for _, bad := range []*GitSource{
		{Repo: repo, Ref: "nosuchbranch"},
		{Repo: repo, Ref: strings.Repeat("ab", 20)},
		{Repo: wrongPassword, Ref: "main"},
		{Repo: unreachable, Ref: "main"},
		{Repo: "https://" + token + "@127.0.0.1:1/repo", Ref: "main"},
		// A git that echoes its arguments, token included, on its standard error.
		{Repo: repo, Ref: "main", Git: fakeGit(t, `echo "fatal: cannot reach $* (password ${*##*deploy:})" >&2; exit 128`)},
	} {
		bad.TempDir = t.TempDir()
		_, derr := bad.Describe(t.Context())
		_, oerr := bad.Open(t.Context())
		_, berr := s.Build(t.Context(), bad)
		for _, err := range []error{derr, oerr, berr} {
			if err == nil {
				if bad.Ref != strings.Repeat("ab", 20) || err != derr { // Describe takes a remote commit id as it is
					t.Errorf("%s@%s: no error", bad.redact(bad.Repo), bad.Ref)
				}
				continue
			}
			noToken("error", err.Error())
			var ce *CommandError
			if errors.As(err, &ce) {
				noToken("CommandError", fmt.Sprint(ce.Args, ce.Stderr))
			}
		}
	}
	noToken("the log", logs.String())
	if !strings.Contains(logs.String(), "127.0.0.1") {
		t.Errorf("the log never names the repository:\n%s", logs.String())
	}
}

// TestGitGetsNoSecrets runs GitSource with a git that records its environment before it
// becomes the real git: a secret of this process must not reach it.
func TestGitGetsNoSecrets(t *testing.T) {
	g, realGit := committedRepo(t)
	record := t.TempDir()
	spy := fakeGit(t, `env > "`+record+`/env.$$"; exec "`+realGit+`" "$@"`)
	testutil.SetSecrets(t)
	t.Setenv("GIT_ASKPASS", "/bin/echo")
	for _, repo := range []string{g.dir, "file://" + g.dir} {
		src := &GitSource{Repo: repo, Ref: "main", Git: spy, TempDir: t.TempDir()}
		if _, err := src.Describe(t.Context()); err != nil {
			t.Fatalf("Describe(%s): %v", repo, err)
		}
		tree, err := src.Open(t.Context())
		if err != nil {
			t.Fatalf("Open(%s): %v", repo, err)
		}
		tree.Close()
	}
	files, _ := filepath.Glob(filepath.Join(record, "env.*"))
	if len(files) < 5 { // rev-parse, archive; ls-remote, clone, rev-parse, archive
		t.Fatalf("git ran %d times, want at least 5", len(files))
	}
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		env := strings.Split(string(b), "\n")
		if strings.Contains(string(b), testutil.Secret) {
			t.Errorf("a secret reached git (%s):\n%s", f, b)
		}
		for _, want := range []string{"GIT_TERMINAL_PROMPT=0", "GIT_ASKPASS=", "PATH=" + os.Getenv("PATH")} {
			if !slices.Contains(env, want) {
				t.Errorf("git's environment lacks %s (%s):\n%s", want, f, b)
			}
		}
	}
}

// TestGitSourceTimeout points GitSource at a remote that never answers (git's ext::
// transport running a shell that records its pid and sleeps): each git command is killed
// after Timeout, with the programs it started, and the error says so.
func TestGitSourceTimeout(t *testing.T) {
	if _, err := exec.LookPath("git"); err != nil {
		t.Skip("git is not installed")
	}
	home := t.TempDir()
	if err := os.WriteFile(filepath.Join(home, ".gitconfig"), []byte("[protocol \"ext\"]\n\tallow = always\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	t.Setenv("HOME", home) // git's environment keeps HOME: its config allows ext::
	// A broken bound must fail fast, not hang: the remote gives up after 3 s on its own,
	// and the whole test is bounded.
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	defer cancel()
	const bound = 300 * time.Millisecond
	for _, tc := range []struct{ op, ref string }{
		{"Describe", "main"},
		{"Open", "main"},
		{"Open", strings.Repeat("ab", 20)}, // init + fetch of a commit id; no clone after a timeout
	} {
		t.Run(tc.op+"@"+tc.ref[:4], func(t *testing.T) {
			pids := filepath.Join(t.TempDir(), "pids")
			src := &GitSource{
				Repo:    "ext::sh -c echo% $$% >>" + pids + ";% exec% sleep% 3",
				Ref:     tc.ref,
				TempDir: t.TempDir(),
				Timeout: bound,
			}
			start := time.Now()
			var err error
			if tc.op == "Describe" {
				_, err = src.Describe(ctx)
			} else {
				_, err = src.Open(ctx)
			}
			elapsed := time.Since(start)
			if !errors.Is(err, ErrTimeout) || !strings.Contains(err.Error(), "timed out after 300ms") {
				t.Errorf("%s = %v; want ErrTimeout saying it timed out after %s", tc.op, err, bound)
			}
			if elapsed > 2*time.Second {
				t.Errorf("%s took %s with a %s bound", tc.op, elapsed, bound)
			}
			b, rerr := os.ReadFile(pids)
			if rerr != nil {
				t.Fatalf("the remote never ran: %v", rerr)
			}
			lines := strings.Fields(string(b))
			if len(lines) != 1 {
				t.Errorf("the remote was started %d times, want once", len(lines))
			}
			for _, pid := range lines {
				waitGone(t, pid)
			}
			if left, _ := os.ReadDir(src.TempDir); len(left) != 0 {
				t.Errorf("Open left %v behind", left)
			}
		})
	}
	t.Run("archive", func(t *testing.T) {
		// A local repository whose `git archive` hangs (a git that sleeps instead).
		g, realGit := committedRepo(t)
		slowArchive := fakeGit(t, `case " $* " in *" archive "*) exec sleep 3;; esac; exec "`+realGit+`" "$@"`)
		src := &GitSource{Repo: g.dir, Git: slowArchive, TempDir: t.TempDir(), Timeout: bound}
		start := time.Now()
		_, err := src.Open(ctx)
		if !errors.Is(err, ErrTimeout) || !strings.Contains(err.Error(), "git archive: timed out after 300ms") {
			t.Errorf("Open = %v; want ErrTimeout saying git archive timed out after %s", err, bound)
		}
		if elapsed := time.Since(start); elapsed > 2*time.Second {
			t.Errorf("Open took %s with a %s bound", elapsed, bound)
		}
		if left, _ := os.ReadDir(src.TempDir); len(left) != 0 {
			t.Errorf("Open left %v behind", left)
		}
	})
	if ctx.Err() != nil {
		t.Fatal("the test's own bound expired")
	}
	if _, err := (&GitSource{Repo: home, Timeout: -1}).Describe(ctx); !errors.Is(err, ErrConfig) {
		t.Errorf("negative Timeout: %v, want ErrConfig", err)
	}
}

// waitGone fails unless process pid is gone (or a zombie) within a second.
func waitGone(t *testing.T, pid string) {
	t.Helper()
	for range 100 {
		b, err := os.ReadFile("/proc/" + pid + "/stat")
		if err != nil {
			return
		}
		if _, after, ok := strings.Cut(string(b), ") "); ok && strings.HasPrefix(after, "Z") {
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Errorf("process %s, started by git, still runs after git was killed", pid)
}

// TestGitSourceRefusesEmptyArchive: a git archive that exits 0 without writing an archive
// of the commit (a broken or wrapped git) must not become an empty release.
func TestGitSourceRefusesEmptyArchive(t *testing.T) {
	g, realGit := committedRepo(t)
	silent := fakeGit(t, `case " $* " in *" archive "*) exit 0;; esac; exec "`+realGit+`" "$@"`)
	s := newSyncer(t, "", nil)
	_, err := s.Build(t.Context(), &GitSource{Repo: g.dir, Git: silent, TempDir: t.TempDir()})
	if err == nil || !strings.Contains(err.Error(), "no archive of commit") {
		t.Errorf("Build from an empty archive = %v; want an error", err)
	}
	if list, _ := s.List(t.Context()); len(list) != 0 {
		t.Errorf("releases built from an empty archive: %v", list)
	}
}

// TestGitSourceKeepsCredentialsOffArgv: the credentials of a URL reach git through its
// environment only: no git runs with them in its argv (which any local user can read),
// no file of the temporary repository holds them, and a credential helper the user
// configured (one that stores what it is given) never sees them.
func TestGitSourceKeepsCredentialsOffArgv(t *testing.T) {
	const token = "ghp_ArgvT0kenValue4242"
	g := newGitRepo(t)
	first := g.commit("one", map[string]string{"app.py": "print(1)\n"})
	g.commit("two", map[string]string{"app.py": "print(2)\n"})
	withPassword := g.serveHTTP("deploy", token)
	tokenOnly := strings.Replace(g.serveHTTP(token, ""), token+":@", token+"@", 1)
	home := t.TempDir()
	if err := os.WriteFile(filepath.Join(home, ".gitconfig"), []byte("[credential]\n\thelper = store\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv("HOME", home)
	for _, tc := range []struct{ repo, ref string }{
		{withPassword, "main"}, // ls-remote, then a shallow clone
		{withPassword, first},  // fetch by commit id, else a whole clone
		{tokenOnly, "main"},    // the token as the user, no password
	} {
		tmp := t.TempDir()
		spy, check := gittest.Spy(t, tmp, token)
		src := &GitSource{Repo: tc.repo, Ref: tc.ref, Git: spy, TempDir: tmp}
		if _, err := src.Describe(t.Context()); err != nil {
			t.Fatalf("Describe(%s): %v", src.repoName(), err)
		}
		tree, err := src.Open(t.Context())
		if err != nil {
			t.Fatalf("Open(%s at %s): %v", src.repoName(), tc.ref, err)
		}
		if b, err := os.ReadFile(filepath.Join(tree.Dir, "app.py")); err != nil || len(b) == 0 {
			t.Errorf("the tree of %s lacks app.py: %v", tc.ref, err)
		}
		check()
		if err := tree.Close(); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := os.Stat(filepath.Join(home, ".git-credentials")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the user's credential helper stored the credentials (%v)", err)
	}
}
