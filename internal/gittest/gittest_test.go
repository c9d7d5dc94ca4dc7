package gittest

import (
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// TestServeHTTP: a clone with the right password works, with a wrong one it fails.
func TestServeHTTP(t *testing.T) {
	root := t.TempDir()
	repo := filepath.Join(root, "app.git")
	git := func(args ...string) error {
		cmd := exec.Command("git", args...)
		cmd.Env = append(os.Environ(), "GIT_TERMINAL_PROMPT=0")
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Logf("git %s: %v\n%s", strings.Join(args, " "), err, out)
		}
		return err
	}
	if _, err := exec.LookPath("git"); err != nil {
		t.Skip("no git")
	}
	if err := git("init", "-q", "--bare", repo); err != nil {
		t.Fatal(err)
	}
	base, err := url.Parse(ServeHTTP(t, root, "dev", "s3cret"))
	if err != nil {
		t.Fatal(err)
	}
	base.Path = "/app.git"
	for _, tc := range []struct {
		password string
		ok       bool
	}{{"s3cret", true}, {"wrong", false}} {
		u := *base
		u.User = url.UserPassword("dev", tc.password)
		dest := filepath.Join(t.TempDir(), "clone")
		if err := git("-c", "credential.helper=", "clone", "-q", u.String(), dest); (err == nil) != tc.ok {
			t.Errorf("clone with password %q: %v, want success %v", tc.password, err, tc.ok)
		}
	}
}
