package dbrestore

import (
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
)

// childRun is one run of a PostgreSQL client program as recorded by spyBinDir.
type childRun struct {
	tool string
	args string
	env  []string
}

func (r childRun) lookup(key string) (string, bool) {
	for _, kv := range r.env {
		if k, v, ok := strings.Cut(kv, "="); ok && k == key {
			return v, true
		}
	}
	return "", false
}

// spyBinDir returns a folder holding pg_dump and pg_restore scripts that record their
// arguments and environment, then run the real programs, and a function returning the
// runs recorded so far.
func spyBinDir(tb testing.TB) (string, func() []childRun) {
	tb.Helper()
	dir, records := tb.TempDir(), tb.TempDir()
	for _, tool := range []string{"pg_dump", "pg_restore"} {
		real, err := (Config{}).tool(tool)
		if err != nil {
			tb.Fatal(err)
		}
		script := "#!/bin/sh\n" +
			"f=" + records + "/" + tool + ".$$\n" +
			"echo \"$*\" > \"$f\"\n" +
			"env >> \"$f\"\n" +
			"exec " + real + " \"$@\"\n"
		if err := os.WriteFile(filepath.Join(dir, tool), []byte(script), 0o755); err != nil {
			tb.Fatal(err)
		}
	}
	return dir, func() []childRun {
		tb.Helper()
		entries, err := os.ReadDir(records)
		if err != nil {
			tb.Fatal(err)
		}
		var runs []childRun
		for _, e := range entries {
			data, err := os.ReadFile(filepath.Join(records, e.Name()))
			if err != nil {
				tb.Fatal(err)
			}
			lines := strings.Split(strings.TrimRight(string(data), "\n"), "\n")
			tool, _, _ := strings.Cut(e.Name(), ".")
			runs = append(runs, childRun{tool: tool, args: lines[0], env: lines[1:]})
		}
		return runs
	}
}

// Trust rule 10: pg_dump and pg_restore get an explicit environment (the basics, libpq's
// settings, what dbrestore sets), never this process's secrets.
func TestChildrenGetAnExplicitEnvironment(t *testing.T) {
	prod, staging := servers(t)
	t.Setenv("SMTP_PASSWORD", "smtp-Secret-1")
	t.Setenv("RESTAGE_MASK_KEY", "mask-Secret-2")
	t.Setenv("PGPASSWORD", "parent-Secret-3") // the DSNs carry their own: this one must not go on
	t.Setenv("PGSSLMODE", "disable")          // a libpq setting without a secret: passed on
	bin, runs := spyBinDir(t)
	ctx := testCtx(t)

	db := prod.Database(t)
	seed(t, prod, db, 10)
	withPassword := func(dsn, pw string) string { return strings.Replace(dsn, "postgres@", "postgres:"+pw+"@", 1) }
	b, err := Dump(ctx, Config{BinDir: bin}, DumpOptions{DSN: withPassword(prod.DSN(db), "dump-pw"), Dir: t.TempDir(), Counts: true})
	if err != nil {
		t.Fatal(err)
	}
	srv := newServer(t, staging, ServerConfig{
		AdminDSN: withPassword(staging.AdminDSN(), "restore-pw"), BinDir: bin,
		Production: []uint64{prod.SystemIdentifier(t)},
	})
	target := dbName(t, staging, "childenv")
	if _, err := srv.Restore(ctx, b, RestoreOptions{Target: target}); err != nil {
		t.Fatal(err)
	}

	var dumped, restored bool
	for _, r := range runs() {
		for _, kv := range r.env {
			if strings.Contains(kv, "Secret") {
				t.Errorf("%s %s saw %s", r.tool, r.args, kv)
			}
		}
		if v, _ := r.lookup("PATH"); v == "" {
			t.Errorf("%s %s has no PATH", r.tool, r.args)
		}
		if v, _ := r.lookup("PGSSLMODE"); v != "disable" {
			t.Errorf("%s %s: PGSSLMODE %q, want libpq's settings passed on", r.tool, r.args, v)
		}
		switch {
		case r.tool == "pg_dump" && strings.Contains(r.args, "--snapshot"):
			dumped = true
			if v, _ := r.lookup("PGPASSWORD"); v != "dump-pw" {
				t.Errorf("pg_dump: PGPASSWORD %q, want the DSN's", v)
			}
		case r.tool == "pg_restore" && strings.Contains(r.args, "--dbname"):
			restored = true
			if v, _ := r.lookup("PGPASSWORD"); v != "restore-pw" {
				t.Errorf("pg_restore: PGPASSWORD %q, want the admin DSN's", v)
			}
			if v, _ := r.lookup("PGOPTIONS"); !strings.Contains(v, "maintenance_work_mem") {
				t.Errorf("pg_restore: PGOPTIONS %q lacks the session settings", v)
			}
		}
	}
	if !dumped || !restored {
		t.Fatalf("the spies saw no dump (%v) or no restore (%v): %+v", dumped, restored, runs())
	}
}

// The children reach the server pgx reaches (and the guard checked) when the admin DSN
// leaves the port to the environment, and use the password pgx uses when the DSN has none
// (the backup command's documented PGPASSWORD).
func TestChildrenReachTheServerTheEnvironmentNames(t *testing.T) {
	prod, staging, db := seeded(t, 10)
	ctx := testCtx(t)
	bin, runs := spyBinDir(t)
	t.Setenv("PGPASSWORD", "from-env")
	b, err := Dump(ctx, Config{BinDir: bin}, DumpOptions{DSN: prod.DSN(db), Dir: t.TempDir(), Counts: true})
	if err != nil {
		t.Fatal(err)
	}
	if !slices.ContainsFunc(runs(), func(r childRun) bool {
		v, _ := r.lookup("PGPASSWORD")
		return r.tool == "pg_dump" && strings.Contains(r.args, "--snapshot") && v == "from-env"
	}) {
		t.Fatal("pg_dump did not get the PGPASSWORD the DSN left to the environment")
	}
	t.Setenv("PGPORT", strconv.Itoa(staging.Port))
	srv := newServer(t, staging, ServerConfig{
		AdminDSN: "host=127.0.0.1 user=postgres dbname=postgres sslmode=disable", BinDir: bin,
		Production: []uint64{prod.SystemIdentifier(t)},
	})
	target := dbName(t, staging, "pgport")
	if _, err := srv.Restore(ctx, b, RestoreOptions{Target: target}); err != nil {
		t.Fatal(err)
	}
	if n := staging.QueryInt(t, target, "SELECT count(*) FROM users"); n != 10 {
		t.Fatalf("restored %d users", n)
	}
	if !slices.ContainsFunc(runs(), func(r childRun) bool {
		v, _ := r.lookup("PGPORT")
		return r.tool == "pg_restore" && v == strconv.Itoa(staging.Port)
	}) {
		t.Fatal("pg_restore did not get PGPORT")
	}
}
