// Package gittest serves git repositories over git's smart HTTP protocol for tests (git
// http-backend run as a CGI program), behind basic authentication: the remote a token
// in a URL is checked against.
package gittest

import (
	"net/http"
	"net/http/cgi"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// ServeHTTP serves the repositories under root to clients that authenticate as user
// with password, and returns the server's URL; a repository is at URL/<its folder
// name>. The server is closed when the test ends; without git, t is skipped.
func ServeHTTP(t testing.TB, root, user, password string) string {
	t.Helper()
	gitPath, err := exec.LookPath("git")
	if err != nil {
		t.Skip("no git")
	}
	backend := &cgi.Handler{Path: gitPath, Args: []string{"http-backend"},
		Env: []string{"GIT_PROJECT_ROOT=" + root, "GIT_HTTP_EXPORT_ALL=1"}, Stderr: logWriter{t}}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if u, p, ok := r.BasicAuth(); !ok || u != user || p != password {
			w.Header().Set("WWW-Authenticate", `Basic realm="git"`)
			http.Error(w, "authentication required", http.StatusUnauthorized)
			return
		}
		backend.ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)
	return srv.URL
}

// logWriter sends git http-backend's messages to the test log.
type logWriter struct{ t testing.TB }

func (w logWriter) Write(p []byte) (int, error) {
	w.t.Log(string(p))
	return len(p), nil
}

// Spy returns a git program that runs the real git and records, for every run, its
// argv and, once git is done, the files under dir that hold secret. The returned check
// fails t when no git ran, when an argv held secret (any local user reads argv in
// /proc/<pid>/cmdline) or when a file under dir did. secret must not hold a quote.
func Spy(t testing.TB, dir, secret string) (git string, check func()) {
	t.Helper()
	realGit, err := exec.LookPath("git")
	if err != nil {
		t.Skip("no git")
	}
	if strings.ContainsAny(secret, "'\n") || secret == "" {
		t.Fatalf("gittest.Spy: unusable secret %q", secret)
	}
	bin, rec := t.TempDir(), t.TempDir()
	git = filepath.Join(bin, "git")
	script := "#!/bin/sh\n" +
		"f=$(mktemp '" + rec + "/argv.XXXXXX') && printf '%s\\n' \"$@\" > \"$f\"\n" +
		"'" + realGit + "' \"$@\"\nrc=$?\n" +
		"grep -rlF -e '" + secret + "' '" + dir + "' >> '" + rec + "/files' 2>/dev/null\n" +
		"exit $rc\n"
	if err := os.WriteFile(git, []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	check = func() {
		t.Helper()
		runs, _ := filepath.Glob(filepath.Join(rec, "argv.*"))
		if len(runs) == 0 {
			t.Error("the git spy never ran")
		}
		for _, run := range runs {
			argv, err := os.ReadFile(run)
			if err != nil {
				t.Fatal(err)
			}
			if strings.Contains(string(argv), secret) {
				t.Errorf("git ran with the secret on its command line: %q", strings.Split(strings.TrimSpace(string(argv)), "\n"))
			}
		}
		if files, _ := os.ReadFile(filepath.Join(rec, "files")); len(files) > 0 {
			t.Errorf("files under %s hold the secret:\n%s", dir, files)
		}
	}
	return git, check
}
