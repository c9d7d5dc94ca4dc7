package schema_test

import (
	"context"
	"errors"
	"fmt"
	"log"
	"log/slog"
	"os"
	"path/filepath"
	"testing"

	"github.com/restage/restage/dbrestore/pgtest"
	"github.com/restage/restage/schema"
)

// exampleTarget is set by TestExample, which runs the Example against a real server.
var exampleTarget schema.Target

func ExampleMigrateUpgrader_Upgrade() {
	ctx := context.Background()
	// target := schema.Target{DSN: "postgres://postgres@staging-db/launchpad_staging_next", Dir: "release/database/migrations"}
	target := exampleTarget

	u, err := schema.New(schema.Config{Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		log.Fatal(err)
	}
	plan, err := u.Plan(ctx, target)
	if err != nil {
		log.Fatal(err)
	}
	for _, m := range plan {
		fmt.Printf("would apply %d %s\n", m.Version, m.Name)
	}
	res, err := u.Upgrade(ctx, target)
	switch {
	case errors.Is(err, schema.ErrDirty):
		log.Fatalf("fix the database by hand, then Force: %v", err)
	case err != nil:
		log.Fatal(err)
	}
	for _, a := range res.Applied {
		fmt.Printf("applied %d %s (took %t)\n", a.Version, a.Name, a.Duration > 0)
	}
	fmt.Printf("patch level %d -> %d\n", res.From, res.To)
	// It needs a server, so go test only compiles it; TestExample runs it and checks that
	// it prints:
	// would apply 1 users
	// would apply 2 email
	// applied 1 users (took true)
	// applied 2 email (took true)
	// patch level 0 -> 2
}

// TestExample runs ExampleMigrateUpgrader_Upgrade against a fresh database and checks its
// output (go test runs Examples without a testing.T, so this test provides the server).
func TestExample(t *testing.T) {
	srv := pgtest.Shared(t, "staging")
	db := srv.Database(t)
	dir := t.TempDir()
	writeFiles(t, dir, map[string]string{
		"1_users.up.sql": "CREATE TABLE users (id bigint PRIMARY KEY);",
		"2_email.up.sql": "ALTER TABLE users ADD COLUMN email text;",
	})
	exampleTarget = schema.Target{DSN: srv.DSN(db), Dir: dir}
	t.Cleanup(func() { exampleTarget = schema.Target{} })

	out := captureStdout(t, ExampleMigrateUpgrader_Upgrade)
	want := "would apply 1 users\nwould apply 2 email\napplied 1 users (took true)\napplied 2 email (took true)\npatch level 0 -> 2\n"
	if out != want {
		t.Fatalf("example printed:\n%s\nwant:\n%s", out, want)
	}
}

func captureStdout(t *testing.T, fn func()) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "stdout")
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	old := os.Stdout
	os.Stdout = f
	func() {
		defer func() { os.Stdout = old }()
		fn()
	}()
	f.Close()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}
