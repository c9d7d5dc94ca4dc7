package dbrestore

import (
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/restage/restage/dbrestore/pgtest"
)

// A role that cannot see other users' activity (not a superuser, not in
// pg_read_all_stats) gets ErrStatsHidden from Sessions and Replicas, naming the role and
// the GRANT that fixes it, instead of a list without the other users' sessions; once
// granted, it sees another user's open transaction.
func TestActivityNeedsReadAllStats(t *testing.T) {
	prod, _ := servers(t)
	ctx := testCtx(t)
	suffix := fmt.Sprint(time.Now().UnixNano() % 1e9)
	monitor := `restage "pf" monitor ` + suffix
	srv := newServer(t, prod, ServerConfig{AdminDSN: prod.LoginRole(t, monitor, "postgres")})

	// Another user holds a transaction open.
	other, err := pgx.Connect(ctx, prod.LoginRole(t, "pf_other_"+suffix, "postgres"))
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close(ctx)
	if _, err := other.Exec(ctx, "BEGIN; SELECT 1"); err != nil {
		t.Fatal(err)
	}

	grant := "GRANT pg_read_all_stats TO " + pgx.Identifier{monitor}.Sanitize()
	sessions, err := srv.Sessions(ctx)
	if !errors.Is(err, ErrStatsHidden) || !strings.Contains(err.Error(), grant) || !strings.Contains(err.Error(), "pg_read_all_stats") {
		t.Errorf("Sessions without pg_read_all_stats: %v, %+v; want ErrStatsHidden naming %q", err, sessions, grant)
	}
	replicas, err := srv.Replicas(ctx)
	if !errors.Is(err, ErrStatsHidden) || !strings.Contains(err.Error(), grant) {
		t.Errorf("Replicas without pg_read_all_stats: %v, %+v; want ErrStatsHidden naming %q", err, replicas, grant)
	}

	prod.Exec(t, "postgres", grant)
	sessions, err = srv.Sessions(ctx)
	if err != nil {
		t.Fatalf("Sessions with pg_read_all_stats: %v", err)
	}
	found := false
	for _, s := range sessions {
		if s.User == "pf_other_"+suffix {
			found = s.State == "idle in transaction" && s.XactAge > 0
		}
	}
	if !found {
		t.Errorf("with pg_read_all_stats, the other user's open transaction is not seen: %+v", sessions)
	}
	if _, err := srv.Replicas(ctx); err != nil {
		t.Errorf("Replicas with pg_read_all_stats: %v", err)
	}
}

// A prepared transaction (two-phase commit) is in no session, yet holds its locks, and
// the oldest row versions, until COMMIT PREPARED or ROLLBACK PREPARED, however long
// its coordinator is gone: Sessions lists it, with its identifier and age, so that a
// promote's preflight refuses an old one instead of stopping production for
// migrations that would wait on its locks.
func TestSessionsListPreparedTransactions(t *testing.T) {
	bin := pgtest.Require(t)
	ctx := testCtx(t)
	prod, err := pgtest.StartLocalWith(ctx, bin, "max_prepared_transactions=4")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = prod.Stop() })
	prod.Exec(t, "postgres", "CREATE TABLE bug (id int)")
	c := prod.Connect(t, "postgres")
	if _, err := c.Exec(ctx, "BEGIN; LOCK TABLE bug IN ACCESS SHARE MODE; PREPARE TRANSACTION 'orphan 1'"); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { prod.Exec(t, "postgres", "ROLLBACK PREPARED 'orphan 1'") })
	c.Close(ctx) // its coordinator is gone; the transaction stays
	time.Sleep(50 * time.Millisecond)
	srv := newServer(t, prod, ServerConfig{AdminDSN: prod.AdminDSN()})
	sessions, err := srv.Sessions(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var found []Session
	for _, s := range sessions {
		if s.GID != "" {
			found = append(found, s)
		}
	}
	if len(found) != 1 || found[0].GID != "orphan 1" || found[0].PID != 0 || found[0].User != "postgres" ||
		found[0].Database != "postgres" || found[0].State != "prepared" || found[0].XactAge < 50*time.Millisecond {
		t.Fatalf("prepared transactions among the sessions: %+v, want the one prepared", found)
	}
}
