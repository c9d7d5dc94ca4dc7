package dbrestore

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/restage/restage/internal/testutil"
)

// A database being restored is closed to the staging server's other logins until the
// restore is complete: with production's grants (KeepOwners: a table granted to PUBLIC)
// a login could otherwise connect and read production's values before the post-restore
// SQL replaces them. Once complete, PUBLIC may connect again, as to any new database.
func TestRestoreTargetClosedToOtherLoginsUntilComplete(t *testing.T) {
	prod, staging, db := seeded(t, 50)
	prod.Exec(t, db, "GRANT SELECT ON users TO PUBLIC")
	b := dumpOf(t, prod, db, DumpOptions{Counts: true})
	suffix := fmt.Sprint(time.Now().UnixNano() % 1e9)
	reader := staging.LoginRole(t, "reader_"+suffix, "postgres")
	// The file sleeps before it masks: the window a reader would use.
	scrub := testutil.WriteTemp(t, "scrub.sql", "SELECT pg_sleep(1.5);\nUPDATE users SET email = 'user' || id || '@example.invalid';\n")
	srv := newServer(t, staging, ServerConfig{Production: []uint64{prod.SystemIdentifier(t)}})
	target := dbName(t, staging, "fenced")
	readerDSN := strings.Replace(reader, "/postgres", "/"+target, 1)

	ctx := testCtx(t)
	done := make(chan struct{})
	var (
		wg              sync.WaitGroup
		leaked, refused int
	)
	wg.Go(func() {
		for {
			select {
			case <-done:
				return
			case <-time.After(20 * time.Millisecond):
			}
			cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
			conn, err := pgx.Connect(cctx, readerDSN)
			if err != nil {
				if strings.Contains(err.Error(), "permission denied for database") {
					refused++
				}
				cancel()
				continue
			}
			var n int
			if err := conn.QueryRow(cctx, "SELECT count(*) FROM users WHERE email LIKE '%@example.org'").Scan(&n); err == nil && n > 0 {
				leaked++
			}
			conn.Close(cctx)
			cancel()
		}
	})
	_, err := srv.Restore(ctx, b, RestoreOptions{Target: target, KeepOwners: true, PostRestore: []string{scrub}})
	close(done)
	wg.Wait()
	if err != nil {
		t.Fatal(err)
	}
	if leaked > 0 {
		t.Fatalf("a staging login read production's e-mails from %s while it was restored (%d times)", target, leaked)
	}
	if refused == 0 {
		t.Fatal("the reader never tried while the database existed: the test proves nothing")
	}
	// Complete: PUBLIC may connect again, and the reader reads the masked values only.
	conn, err := pgx.Connect(ctx, readerDSN)
	if err != nil {
		t.Fatalf("the reader cannot connect to the restored database: %v", err)
	}
	defer conn.Close(ctx)
	var prodRows, rows int
	if err := conn.QueryRow(ctx, "SELECT count(*) FILTER (WHERE email LIKE '%@example.org'), count(*) FROM users").Scan(&prodRows, &rows); err != nil {
		t.Fatal(err)
	}
	if prodRows != 0 || rows != 50 {
		t.Fatalf("after the restore the reader sees %d production e-mails in %d rows", prodRows, rows)
	}
	if n := staging.QueryInt(t, "postgres", "SELECT has_database_privilege('public', $1, 'TEMPORARY')::int", target); n != 1 {
		t.Error("PUBLIC's TEMPORARY was not given back")
	}
}
