package gitcred

import (
	"slices"
	"strings"
	"testing"
)

func TestParse(t *testing.T) {
	for _, tc := range []struct {
		repo, url, user, password string
		secrets                   []string
	}{
		{"https://deploy:s3cr%40t@git.example.org:8443/a/b.git", "https://git.example.org:8443/a/b.git", "deploy", "s3cr@t", []string{"s3cr@t"}},
		{"https://ghp_tokenvalue@git.example.org/r", "https://git.example.org/r", "ghp_tokenvalue", "", []string{"ghp_tokenvalue"}},
		{"http://git@host/r", "http://host/r", "git", "", nil},
		{"ssh://git:pw12345@host/r.git", "ssh://git@host/r.git", "", "", []string{"pw12345"}},
		{"ssh://git@host/r.git", "ssh://git@host/r.git", "", "", nil},
		{"git@host:r.git", "git@host:r.git", "", "", nil},
		{"/srv/git/app", "/srv/git/app", "", "", nil},
		{"https://host/r?x=a@b", "https://host/r?x=a@b", "", "", nil},
	} {
		r := Parse(tc.repo)
		if r.URL != tc.url || r.username != tc.user || r.password != tc.password || !slices.Equal(r.Secrets(), tc.secrets) {
			t.Errorf("Parse(%q) = %q user %q password %q secrets %q; want %q %q %q %q",
				tc.repo, r.URL, r.username, r.password, r.Secrets(), tc.url, tc.user, tc.password, tc.secrets)
		}
		env := strings.Join(r.Env(), "\n")
		if r.helped != (env != "") {
			t.Errorf("Parse(%q).Env() = %q", tc.repo, env)
		}
		if r.helped && !strings.Contains(env, "credential."+strings.SplitN(tc.url, "/", 4)[0]+"//"+strings.SplitN(tc.url, "/", 4)[2]+".helper") {
			t.Errorf("Parse(%q).Env() names no helper scoped to the host:\n%s", tc.repo, env)
		}
	}
}

func TestIsURL(t *testing.T) {
	for repo, want := range map[string]bool{
		"https://h/r": true, "git@host:r.git": true, "file:///srv/r": true,
		"/srv/git/r": false, "./r:x": false, "r": false,
	} {
		if IsURL(repo) != want {
			t.Errorf("IsURL(%q) = %v", repo, !want)
		}
	}
}
