package dbrestore

import (
	"testing"
	"time"
)

// keptPID is the server process of the admin connection s keeps, 0 when none.
func keptPID(s *Server) uint32 {
	s.kept.mu.Lock()
	defer s.kept.mu.Unlock()
	if s.kept.conn == nil {
		return 0
	}
	return s.kept.conn.PgConn().PID()
}

// Admin calls in a row share one connection; a kept connection the server ended is
// replaced, not used; Close ends the kept one.
func TestAdminConnectionIsKeptBetweenCalls(t *testing.T) {
	staging, srv := stagingServer(t)
	ctx := testCtx(t)
	if _, err := srv.Exists(ctx, "postgres"); err != nil {
		t.Fatal(err)
	}
	first := keptPID(srv)
	if first == 0 {
		t.Fatal("no connection kept after a call")
	}
	if _, err := srv.List(ctx); err != nil {
		t.Fatal(err)
	}
	if got := keptPID(srv); got != first {
		t.Fatalf("second call on server process %d, first on %d: not reused", got, first)
	}

	// The server ends the kept connection (a restart, an idle timeout, an operator).
	if n := staging.QueryInt(t, "postgres", "SELECT pg_terminate_backend($1)::int", int64(first)); n != 1 {
		t.Fatalf("terminated %d sessions", n)
	}
	if _, err := srv.Exists(ctx, "postgres"); err != nil {
		t.Fatalf("call after the kept connection was ended: %v", err)
	}
	second := keptPID(srv)
	if second == 0 || second == first {
		t.Fatalf("kept server process %d after %d was ended", second, first)
	}

	if err := srv.Close(); err != nil {
		t.Fatal(err)
	}
	if keptPID(srv) != 0 {
		t.Fatal("a connection kept after Close")
	}
	for range 100 {
		if staging.QueryInt(t, "postgres", "SELECT count(*) FROM pg_stat_activity WHERE pid = $1", int64(second)) == 0 {
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("server process %d still there after Close", second)
}
