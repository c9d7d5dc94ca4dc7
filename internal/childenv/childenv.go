// Package childenv builds the environment of the programs restage starts (pg_restore,
// git, the staging service, cron jobs). A child never inherits restage's whole
// environment, which may hold secrets (the SMTP password named by password_env,
// PGPASSWORD, tokens: safety rule 10): it gets the few variables a program needs to run,
// those of its kind (libpq's or git's non-secret settings), and what the caller names.
package childenv

import (
	"os"
	"strings"
)

// basic are passed on to every child: where programs are, the user, the locale.
var basic = []string{"PATH", "HOME", "USER", "LOGNAME", "LANG", "LANGUAGE", "TZ", "TMPDIR"}

// LibPQ are libpq's settings that hold no secret (PGPASSWORD and PGPASSFILE's contents
// are not among them; the caller passes the password it means to).
var LibPQ = []string{"PGPASSFILE", "PGSERVICEFILE", "PGSYSCONFDIR", "PGSSLMODE", "PGSSLROOTCERT",
	"PGSSLCERT", "PGSSLKEY", "PGSSLCRL", "PGSSLNEGOTIATION", "PGGSSENCMODE", "PGTZ",
	"PGCONNECT_TIMEOUT", "PGTARGETSESSIONATTRS"}

// Git are what git needs to reach a remote: the ssh agent, a configured ssh command, and
// proxies.
var Git = []string{"SSH_AUTH_SOCK", "GIT_SSH", "GIT_SSH_COMMAND", "http_proxy", "https_proxy",
	"no_proxy", "HTTP_PROXY", "HTTPS_PROXY", "NO_PROXY"}

// Env returns the basic variables and the LC_* ones of this process's environment, then
// those named by pass (e.g. LibPQ), then extra ("KEY=value", appended as given: later
// entries win, as with exec.Cmd.Env).
func Env(pass []string, extra ...string) []string {
	var env []string
	for _, kv := range os.Environ() {
		k, _, _ := strings.Cut(kv, "=")
		if strings.HasPrefix(k, "LC_") {
			env = append(env, kv)
		}
	}
	for _, names := range [][]string{basic, pass} {
		for _, k := range names {
			if v, ok := os.LookupEnv(k); ok {
				env = append(env, k+"="+v)
			}
		}
	}
	return append(env, extra...)
}
