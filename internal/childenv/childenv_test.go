package childenv

import (
	"slices"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/restage/restage/internal/testutil"
)

func TestEnvPassesOnlyWhatIsNamed(t *testing.T) {
	testutil.SetSecrets(t)
	t.Setenv("PGSSLMODE", "require")
	t.Setenv("LC_TIME", "C")
	t.Setenv("PATH", "/usr/bin")
	env := Env(LibPQ, "APP=1", "PATH=/opt/bin")
	for _, kv := range env {
		if strings.Contains(kv, testutil.Secret) {
			t.Errorf("a secret reached the child: %s", kv)
		}
	}
	for _, want := range []string{"PGSSLMODE=require", "LC_TIME=C", "PATH=/usr/bin", "APP=1"} {
		if !slices.Contains(env, want) {
			t.Errorf("env lacks %s: %q", want, env)
		}
	}
	if env[len(env)-1] != "PATH=/opt/bin" {
		t.Errorf("extra entries must come last (later wins): %q", env)
	}
	if slices.Contains(Env(nil), "PGSSLMODE=require") {
		t.Error("libpq's settings reached a child that did not ask for them")
	}
}

// pgxReads are the variables pgx reads when a DSN leaves a setting out (pgconn's
// parseEnvSettings, pgx v5.12), less the two that hold secrets (PGPASSWORD,
// PGSSLPASSWORD). A client program started beside a pgx connection must see each, or it
// connects elsewhere, or otherwise, than the connection that checked the server.
var pgxReads = []string{"PGHOST", "PGPORT", "PGDATABASE", "PGUSER", "PGPASSFILE", "PGAPPNAME",
	"PGCONNECT_TIMEOUT", "PGSSLMODE", "PGSSLKEY", "PGSSLCERT", "PGSSLCERTMODE", "PGSSLSNI",
	"PGSSLROOTCERT", "PGSSLNEGOTIATION", "PGTARGETSESSIONATTRS", "PGSERVICE", "PGSERVICEFILE",
	"PGTZ", "PGOPTIONS", "PGMINPROTOCOLVERSION", "PGMAXPROTOCOLVERSION", "PGCHANNELBINDING",
	"PGREQUIREAUTH"}

func TestLibPQTargetReachesTheChild(t *testing.T) {
	for _, k := range pgxReads {
		t.Setenv(k, "v-"+k)
	}
	testutil.SetSecrets(t)
	env := Env(slices.Concat(LibPQ, LibPQTarget))
	for _, k := range pgxReads {
		if !slices.Contains(env, k+"=v-"+k) {
			t.Errorf("%s (read by pgx) does not reach the child: %q", k, env)
		}
	}
	for _, kv := range env {
		if strings.Contains(kv, testutil.Secret) {
			t.Errorf("a secret reached the child: %s", kv)
		}
	}
	// The target is its own list: a child that only gets libpq's settings is not told
	// which server to reach.
	for _, k := range []string{"PGHOST", "PGPORT", "PGUSER", "PGDATABASE", "PGSERVICE"} {
		if !slices.Contains(LibPQTarget, k) || slices.Contains(LibPQ, k) {
			t.Errorf("%s belongs in LibPQTarget (and only there)", k)
		}
	}
	for _, k := range LibPQ {
		if slices.Contains(LibPQTarget, k) {
			t.Errorf("%s is in both LibPQ and LibPQTarget", k)
		}
	}
}

// TestNoChildReachesAnotherServerThanPgx sets libpq's variables that choose the server
// to production's address and checks that a child gets only those pgx reads too: pgx
// ignores PGHOSTADDR and PGLOAD_BALANCE_HOSTS, so pg_restore given PGHOSTADDR would
// connect to it while the guard's pgx connection reached the DSN's host.
func TestNoChildReachesAnotherServerThanPgx(t *testing.T) {
	const dsn = "host=staging-db,staging-db2 port=5432 dbname=postgres user=postgres"
	base, err := pgconn.ParseConfig(dsn)
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range map[string]string{"PGHOSTADDR": "192.0.2.1", "PGLOAD_BALANCE_HOSTS": "random"} {
		t.Run(k, func(t *testing.T) {
			t.Setenv(k, v)
			got, err := pgconn.ParseConfig(dsn)
			if err != nil {
				t.Fatal(err)
			}
			// The premise: pgx does not read it (if a pgx upgrade does, the child may get it).
			if got.Host != base.Host || got.Port != base.Port || len(got.Fallbacks) != len(base.Fallbacks) ||
				got.RuntimeParams[strings.ToLower(strings.TrimPrefix(k, "PG"))] != "" {
				t.Skipf("pgx now reads %s", k)
			}
			for _, pass := range [][]string{slices.Concat(LibPQ, LibPQTarget), {k}} {
				for _, kv := range Env(pass, "A=1") {
					if strings.HasPrefix(kv, k+"=") {
						t.Errorf("%s reached the child (%s): libpq would connect elsewhere than pgx", k, kv)
					}
				}
			}
		})
	}
}
