// Package gitcred keeps the credentials of a repository URL (https://user:token@host/repo)
// off git's command line and out of its files: git gets the URL without them, and the
// credentials reach it through its environment (readable by the owner only, where argv
// in /proc/<pid>/cmdline is readable by every local user), answered by a credential
// helper that git's config, set by environment variables, names for that URL's host
// alone. It also names the credentials for redaction (internal/redact), and says which
// repositories are URLs.
//
//	r := gitcred.Parse(repo)
//	cmd := exec.CommandContext(ctx, "git", "ls-remote", "--", r.URL)
//	cmd.Env = append(env, r.Env()...)
//	... redact.String(text, r.Secrets()...)
package gitcred

import (
	"fmt"
	"net/url"
	"strings"
)

// The variables that carry the credentials to the helper.
const (
	EnvUsername = "RESTAGE_GIT_USERNAME"
	EnvPassword = "RESTAGE_GIT_PASSWORD"
)

// helper is the credential helper git runs (through its shell, with the action as $1):
// for "get" it answers with the credentials of the environment; "store" and "erase" are
// ignored, so nothing is written anywhere. The values are never part of the script.
const helper = `!f() { cat >/dev/null; test "$1" = get || exit 0; printf 'username=%s\npassword=%s\n' "$` +
	EnvUsername + `" "$` + EnvPassword + `"; }; f`

// Remote is a repository as git is to be given it.
type Remote struct {
	// URL is the repository without credentials: what git's argv (and a clone's
	// remote.origin.url) gets. A local path or a URL without credentials is as given.
	URL string

	username, password string
	helped             bool   // the credentials go through the helper
	scope              string // scheme://host[:port]: the helper answers for it alone
	secrets            []string
}

// Parse splits repo into the URL git gets and its credentials. For the schemes git
// reaches through its curl helper (http, https, ftp, ftps), the whole user part is
// removed from the URL and given by Env; for other schemes (ssh://user:pw@host, which
// git cannot use a password of) the password is removed and the user kept.
func Parse(repo string) Remote {
	r := Remote{URL: repo}
	i := strings.Index(repo, "://")
	if i <= 0 {
		return r
	}
	scheme, rest := repo[:i], repo[i+3:]
	end := strings.IndexAny(rest, "/?#")
	if end < 0 {
		end = len(rest)
	}
	at := strings.LastIndex(rest[:end], "@")
	if at < 0 {
		return r
	}
	userinfo, host := rest[:at], rest[at+1:end]
	user, pass, hasPass := strings.Cut(userinfo, ":")
	user, pass = unescape(user), unescape(pass)
	switch strings.ToLower(scheme) {
	case "http", "https", "ftp", "ftps":
		r.URL = scheme + "://" + rest[at+1:]
		r.username, r.password, r.helped = user, pass, true
		r.scope = scheme + "://" + host
		if pass == "" && len(user) >= 8 {
			r.secrets = []string{user} // a token alone in the user part
		}
	default:
		if !hasPass {
			return r
		}
		r.URL = scheme + "://" + rest[:strings.Index(rest, ":")] + rest[at:]
	}
	if pass != "" {
		r.secrets = []string{pass}
	}
	return r
}

// unescape decodes a URL's user part (%40 is "@"); a bad escape is kept as written.
func unescape(s string) string {
	if u, err := url.PathUnescape(s); err == nil {
		return u
	}
	return s
}

// Env returns what git's environment needs for the credentials (nil when there are
// none): a config, through GIT_CONFIG_COUNT/KEY/VALUE, that clears the credential
// helpers configured elsewhere (so that none of them stores the credentials) and names
// the helper above for the URL's scheme, host and port alone (a redirect to another
// host gets nothing), and the credentials in the variables it reads. Append it to the
// child's environment after anything else.
func (r Remote) Env() []string {
	if !r.helped {
		return nil
	}
	return []string{
		"GIT_CONFIG_COUNT=2",
		"GIT_CONFIG_KEY_0=credential.helper", "GIT_CONFIG_VALUE_0=",
		fmt.Sprintf("GIT_CONFIG_KEY_1=credential.%s.helper", r.scope), "GIT_CONFIG_VALUE_1=" + helper,
		EnvUsername + "=" + r.username, EnvPassword + "=" + r.password,
	}
}

// Secrets returns the credentials to remove from text (internal/redact): a password, or
// an http(s) user part long enough to be a token (a short name like "git" or "deploy" is
// not hunted down in other text; redact removes URLs' user parts anyway).
func (r Remote) Secrets() []string { return r.secrets }

// Secrets returns Parse(repo).Secrets().
func Secrets(repo string) []string { return Parse(repo).Secrets() }

// IsURL says whether repo is handed to git as a URL (scheme://, or scp-like host:path)
// rather than a local path.
func IsURL(repo string) bool {
	if strings.Contains(repo, "://") {
		return true
	}
	i := strings.Index(repo, ":")
	return i > 0 && !strings.Contains(repo[:i], "/")
}
