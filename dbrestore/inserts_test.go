package dbrestore

import (
	"fmt"
	"strings"
	"testing"
	"time"
)

// A dump made with --inserts whose INSERT fails on staging with an error position (a
// regrole column naming a role only production has): libpq quotes the statement's start,
// production's values, under the message, and pg_restore prints it. No error, output or
// log line carries them.
func TestRestoreWithholdsInsertedValues(t *testing.T) {
	prod, staging := servers(t)
	db := prod.Database(t)
	role := fmt.Sprintf("prod_only_%d", time.Now().UnixNano()%1e9)
	prod.Exec(t, "postgres", "CREATE ROLE "+role)
	t.Cleanup(func() { prod.Exec(t, "postgres", "DROP ROLE IF EXISTS "+role) })
	prod.Exec(t, db, fmt.Sprintf(`CREATE TABLE grantee (email text, who regrole);
INSERT INTO grantee VALUES ('person1@prod.example.org', '%s')`, role))
	b := dumpOf(t, prod, db, DumpOptions{Args: []string{"--inserts"}})
	log, logs := testLogger(t)
	srv := newServer(t, staging, ServerConfig{Production: []uint64{prod.SystemIdentifier(t)}, Logger: log})
	res, err := srv.Restore(testCtx(t), b, RestoreOptions{Target: dbName(t, staging, "inserts")})
	if err == nil || !strings.Contains(err.Error(), "does not exist") {
		t.Fatalf("restore: %v, want it to fail on the role", err)
	}
	for what, text := range map[string]string{"error": err.Error(), "output": res.Output, "log": logs.String()} {
		if i := strings.Index(text, "person1@"); i >= 0 {
			t.Errorf("the %s holds production's value: ...%s...", what, text[max(0, i-200):min(len(text), i+50)])
		}
	}
}
