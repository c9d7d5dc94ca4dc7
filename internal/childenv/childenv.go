// Package childenv builds the environment of the programs restage starts (pg_restore,
// git, the staging service, cron jobs). A child never inherits restage's whole
// environment, which may hold secrets (the SMTP password named by password_env,
// PGPASSWORD, tokens: safety rule 10): it gets the few variables a program needs to run,
// those of its kind (libpq's or git's non-secret settings), and what the caller names.
package childenv

import (
	"os"
	"slices"
	"strings"
)

// basic are passed on to every child: where programs are, the user, the locale.
var basic = []string{"PATH", "HOME", "USER", "LOGNAME", "LANG", "LANGUAGE", "TZ", "TMPDIR"}

// LibPQ are libpq's settings that hold no secret (PGPASSWORD, PGSSLPASSWORD and
// PGPASSFILE's contents are not among them; the caller passes the password it means to).
var LibPQ = []string{"PGPASSFILE", "PGSERVICEFILE", "PGSYSCONFDIR", "PGSSLMODE", "PGSSLROOTCERT",
	"PGSSLCERT", "PGSSLKEY", "PGSSLCRL", "PGSSLCERTMODE", "PGSSLSNI", "PGSSLNEGOTIATION", "PGGSSENCMODE",
	"PGTZ", "PGCONNECT_TIMEOUT", "PGTARGETSESSIONATTRS", "PGMINPROTOCOLVERSION", "PGMAXPROTOCOLVERSION"}

// LibPQTarget are libpq's variables that say which server, user and database a
// connection reaches (and how it introduces itself) when the DSN does not say. pgx reads
// them too, so a child that connects with the same DSN as a pgx connection of this
// process must see them: otherwise pg_restore could reach another server than the one
// the production guard checked through pgx, which would be worse than a failure. None
// holds a secret. Pass it together with LibPQ: Env(slices.Concat(LibPQ, LibPQTarget)).
//
// The variables that choose the server but that pgx ignores are never passed, for the
// same reason: PGHOSTADDR (libpq connects to that address instead of the DSN's host, so
// pg_restore or pg_dump would reach the server at PGHOSTADDR while pgx, and the guard,
// reached the DSN's host) and PGLOAD_BALANCE_HOSTS (libpq would try a multi-host DSN's
// hosts in random order, pgx in the order given). See Unreached.
var LibPQTarget = []string{"PGHOST", "PGPORT", "PGUSER", "PGDATABASE", "PGSERVICE",
	"PGAPPNAME", "PGOPTIONS", "PGCLIENTENCODING", "PGREQUIRESSL", "PGSSLCOMPRESSION", "PGKRBSRVNAME",
	"PGREQUIREAUTH", "PGCHANNELBINDING", "PGSSLMINPROTOCOLVERSION", "PGSSLMAXPROTOCOLVERSION"}

// Unreached are libpq's variables that choose which server a connection reaches and
// that pgx does not read: a child that saw them could connect elsewhere than the pgx
// connection that checked the server. No child gets them, whatever a caller passes.
var Unreached = []string{"PGHOSTADDR", "PGLOAD_BALANCE_HOSTS"}

// Git are what git needs to reach a remote: the ssh agent, a configured ssh command, and
// proxies.
var Git = []string{"SSH_AUTH_SOCK", "GIT_SSH", "GIT_SSH_COMMAND", "http_proxy", "https_proxy",
	"no_proxy", "HTTP_PROXY", "HTTPS_PROXY", "NO_PROXY"}

// Env returns the basic variables and the LC_* ones of this process's environment, then
// those named by pass (e.g. LibPQ) except Unreached, then extra ("KEY=value", appended
// as given: later entries win, as with exec.Cmd.Env).
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
			if slices.Contains(Unreached, k) {
				continue
			}
			if v, ok := os.LookupEnv(k); ok {
				env = append(env, k+"="+v)
			}
		}
	}
	return append(env, extra...)
}
