package pgtest

import (
	"testing"
)

// The fallback startFor uses without local binaries starts a working container server.
func TestContainerFallbackStartsAServer(t *testing.T) {
	RequireDocker(t)
	s, err := startContainerFallback(t)
	if err != nil {
		skipOrFail(t, err)
	}
	if s == nil {
		t.Fatal("fallback returned no server although a Docker engine answers")
	}
	t.Cleanup(func() { _ = s.Stop() })
	if s.Container == nil || s.Container.ID == "" || s.Dir != "" {
		t.Fatalf("not a container server: %+v", s)
	}
	db := s.Database(t)
	s.Exec(t, db, "CREATE TABLE x AS SELECT 7 AS v")
	if v := s.QueryInt(t, db, "SELECT v FROM x"); v != 7 {
		t.Fatalf("v = %d, want 7", v)
	}
	if s.SystemIdentifier(t) == 0 {
		t.Fatal("system_identifier 0")
	}
}
