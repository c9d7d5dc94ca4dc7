package main

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/restage/restage/dbrestore"
	"github.com/restage/restage/dbrestore/pgtest"
	"github.com/restage/restage/dbrestore/physical"
	"github.com/restage/restage/examples/internal/cli/clitest"
)

func TestMain(m *testing.M) { os.Exit(pgtest.Main(m)) }

// buildBackup builds the command into a temporary folder.
func buildBackup(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "backup")
	out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput()
	if err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	return bin
}

func runBackup(t *testing.T, bin string, env []string, args ...string) (int, string, string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.Env = append(os.Environ(), env...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatal(err)
	}
	return code, stdout.String(), stderr.String()
}

func TestBackupCommand(t *testing.T) {
	pgtest.Require(t)
	prod := pgtest.Shared(t, "production")
	db := prod.Database(t)
	prod.Exec(t, db, "CREATE TABLE t (id int PRIMARY KEY); INSERT INTO t SELECT generate_series(1, 123)")
	bin := buildBackup(t)
	dir := t.TempDir()

	for i := range 3 {
		code, out, errOut := runBackup(t, bin, nil, "-dsn", prod.DSN(db), "-dir", dir, "-keep", "2", "-counts")
		if code != 0 {
			t.Fatalf("run %d: exit %d\n%s%s", i, code, out, errOut)
		}
		if !strings.Contains(out, "backup of "+db+" complete") {
			t.Fatalf("output:\n%s", out)
		}
	}
	manifests, _ := filepath.Glob(filepath.Join(dir, "*.manifest.json"))
	dumps, _ := filepath.Glob(filepath.Join(dir, "*.dump"))
	if len(manifests) != 2 || len(dumps) != 2 {
		t.Fatalf("-keep 2 left %d manifests and %d dumps", len(manifests), len(dumps))
	}
	data, _ := os.ReadFile(manifests[0])
	var m dbrestore.Manifest
	if err := json.Unmarshal(data, &m); err != nil || m.RowCounts["public.t"] != 123 || m.SystemIdentifier != prod.SystemIdentifier(t) {
		t.Fatalf("manifest %v: %s", err, data)
	}
	if err := verifyNewest(t, dir, db); err != nil {
		t.Fatal(err)
	}

	// Directory format with parallel jobs.
	pdir := t.TempDir()
	if code, out, errOut := runBackup(t, bin, nil, "-dsn", prod.DSN(db), "-dir", pdir, "-jobs", "2"); code != 0 || !strings.Contains(out, "directory") {
		t.Fatalf("-jobs 2: exit %d\n%s%s", code, out, errOut)
	}
}

func TestBackupCommandFailures(t *testing.T) {
	pgtest.Require(t)
	prod := pgtest.Shared(t, "production")
	db := prod.Database(t)
	bin := buildBackup(t)
	dir := t.TempDir()

	cases := []struct {
		name string
		args []string
		code int
		want string
	}{
		{"no args", nil, 2, "-dsn is required"},
		{"no dir", []string{"-dsn", prod.DSN(db)}, 2, "-dir is required"},
		{"bad flag", []string{"-frobnicate"}, 2, "frobnicate"},
		{"missing folder", []string{"-dsn", prod.DSN(db), "-dir", filepath.Join(dir, "nope")}, 1, "no such file or directory"},
		{"missing database", []string{"-dsn", prod.DSN("no_such_db"), "-dir", dir}, 1, `database "no_such_db" does not exist`},
		// A password on the command line is refused: ps shows it to every user.
		{"password in the URL", []string{"-v", "-dsn", strings.Replace(prod.DSN(db), "postgres@", "postgres:Hunter2Secret@", 1), "-dir", dir}, 2, "-dsn holds a password"},
		{"password as a key", []string{"-dsn", "host=127.0.0.1 password='Hunter2Secret' dbname=" + db, "-dir", dir}, 2, "PGPASSWORD or ~/.pgpass"},
		{"password in the query", []string{"-dsn", prod.DSN(db) + "&password=Hunter2Secret", "-dir", dir}, 2, "-dsn holds a password"},
		{"password with -basebackup", []string{"-basebackup", "-dsn", "password=Hunter2Secret", "-dir", dir}, 2, "-dsn holds a password"},
	}
	for _, c := range cases {
		code, out, errOut := runBackup(t, bin, nil, c.args...)
		if code != c.code || !strings.Contains(errOut, c.want) {
			t.Errorf("%s: exit %d, stderr %q; want exit %d mentioning %q", c.name, code, errOut, c.code, c.want)
		}
		if strings.Contains(out+errOut, "Hunter2Secret") {
			t.Errorf("%s: password printed:\n%s%s", c.name, out, errOut)
		}
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 0 {
		t.Errorf("failed backups left %d entries", len(entries))
	}
	if code, _, _ := runBackup(t, bin, nil, "-h"); code != 0 {
		t.Errorf("-h: exit %d", code)
	}
}

// -keep removes an old backup only through the manifest of the same name: a planted
// manifest naming another file makes the run exit 1 after the new backup is complete,
// which stays, and the file it names stays too.
func TestBackupCommandKeepRefusesForeignDump(t *testing.T) {
	pgtest.Require(t)
	prod := pgtest.Shared(t, "production")
	db := prod.Database(t)
	bin := buildBackup(t)
	dir := t.TempDir()
	if code, out, errOut := runBackup(t, bin, nil, "-dsn", prod.DSN(db), "-dir", dir); code != 0 {
		t.Fatalf("first backup: exit %d\n%s%s", code, out, errOut)
	}
	manifests, _ := filepath.Glob(filepath.Join(dir, "*.manifest.json"))
	if len(manifests) != 1 {
		t.Fatalf("%d manifests after one backup", len(manifests))
	}
	data, err := os.ReadFile(manifests[0])
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(data, &m); err != nil {
		t.Fatal(err)
	}
	m["dump"] = "precious.txt" // another tool's file
	data, _ = json.Marshal(m)
	foreign := filepath.Join(dir, "precious.txt")
	if err := os.WriteFile(foreign, []byte("not a dump"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(manifests[0], data, 0o644); err != nil {
		t.Fatal(err)
	}
	time.Sleep(10 * time.Millisecond) // a later stamp for the new backup

	code, out, errOut := runBackup(t, bin, nil, "-dsn", prod.DSN(db), "-dir", dir, "-keep", "1")
	if code != 1 || !strings.Contains(out, "complete") || !strings.Contains(errOut, "backup written, but removing old backups failed") ||
		!strings.Contains(errOut, "precious.txt") {
		t.Fatalf("-keep 1 past a foreign manifest: exit %d\n%s%s\nwant exit 1, the backup complete and the refusal named", code, out, errOut)
	}
	if _, err := os.Stat(foreign); err != nil {
		t.Errorf("the file a planted manifest named was removed: %v", err)
	}
	if _, err := os.Stat(manifests[0]); err != nil {
		t.Errorf("the planted manifest was removed: %v", err)
	}
	if err := verifyNewest(t, dir, db); err != nil {
		t.Errorf("the new backup, kept after exit 1: %v", err)
	}
}

// verifyNewest verifies the newest backup of db in dir, as staging's catalog would.
func verifyNewest(t *testing.T, dir, db string) error {
	t.Helper()
	cat, err := dbrestore.NewCatalog(dir, dbrestore.Config{})
	if err != nil {
		return err
	}
	b, err := cat.Wait(t.Context(), dbrestore.WaitOptions{Database: db, MaxAge: time.Hour})
	if err != nil {
		return err
	}
	return cat.Verify(t.Context(), b)
}

// TestUsage runs backup in-process as main does; no server needed.
func TestUsage(t *testing.T) {
	const usage = "usage: backup -dsn URL -dir DIR [-jobs N] [-keep N] [-counts] [-format custom|directory] [-compress SPEC] [-lock-wait-timeout D] [-bindir DIR] [-v]\n" +
		"       backup -basebackup [-plain] -dsn URL -dir DIR [-keep N] [-bindir DIR] [-v]\n"
	dir := t.TempDir()
	clitest.Check(t, "backup", run, nil, []clitest.Case{
		{Args: []string{"-h"}, Code: 0, StderrStart: usage + "\nflags:\n"},
		{Args: []string{"-help"}, Code: 0, StderrStart: usage},
		{Args: nil, Code: 2, Stderr: "backup: -dsn is required\n" + usage},
		{Args: []string{"-dsn", "postgres:///db"}, Code: 2, Stderr: "backup: -dir is required\n" + usage},
		{Args: []string{"-dsn", "postgres:///db", "-dir", dir, "-jobs", "0"}, Code: 2, Stderr: "backup: -jobs must be at least 1, -keep not negative and -lock-wait-timeout positive\n" + usage},
		{Args: []string{"-dsn", "postgres:///db", "-dir", dir, "-jobs", "many"}, Code: 2, Stderr: "backup: invalid value \"many\" for flag -jobs: parse error\n" + usage},
		{Args: []string{"-frobnicate"}, Code: 2, Stderr: "backup: flag provided but not defined: -frobnicate\n" + usage},
		{Args: []string{"-dsn", "postgres:///db", "-dir", dir, "db2"}, Code: 2, Stderr: "backup: unexpected argument \"db2\"\n" + usage},
		{Args: []string{"-plain", "-dsn", "postgres:///db", "-dir", dir}, Code: 2, Stderr: "backup: -plain goes with -basebackup\n" + usage},
		// Bad flag values are usage errors (exit 2), not failed backups (exit 1).
		{Args: []string{"-dsn", "postgres:///db", "-dir", dir, "-format", "tar"}, Code: 2, Stderr: "backup: -format \"tar\": want custom or directory\n" + usage},
		{Args: []string{"-dsn", "postgres:///db", "-dir", dir, "-format", "custom", "-jobs", "2"}, Code: 2, Stderr: "backup: -jobs 2 writes the directory format, not -format custom\n" + usage},
		{Args: []string{"-basebackup", "-counts", "-jobs", "2", "-dsn", "postgres:///db", "-dir", dir}, Code: 2, Stderr: "backup: -counts, -jobs: pg_dump's, not -basebackup's\n" + usage},
	})
	if entries, _ := os.ReadDir(dir); len(entries) != 0 {
		t.Errorf("usage errors left %d entries", len(entries))
	}
}

// TestBaseBackupCommand takes base backups with -basebackup and keeps the newest.
func TestBaseBackupCommand(t *testing.T) {
	pgtest.Require(t)
	prod := pgtest.Shared(t, "production")
	bin := buildBackup(t)
	dir := t.TempDir()
	for i := range 2 {
		code, out, errOut := runBackup(t, bin, nil, "-basebackup", "-dsn", prod.DSN("postgres"), "-dir", dir, "-keep", "1")
		if code != 0 || !strings.Contains(out, "base backup complete") {
			t.Fatalf("run %d: exit %d\n%s%s", i, code, out, errOut)
		}
		time.Sleep(time.Second) // base backups are named by the second
	}
	manifests, _ := filepath.Glob(filepath.Join(dir, "*"+physical.BaseManifestSuffix))
	if len(manifests) != 1 {
		t.Fatalf("-keep 1 left %v", manifests)
	}
	set, err := (&physical.BaseBackupDir{Dir: dir}).Latest(context.Background())
	if err != nil || set.SystemIdentifier != prod.SystemIdentifier(t) {
		t.Fatalf("%+v %v", set, err)
	}
}

// TestBaseBackupCommandRelativeDir takes a base backup into a -dir relative to the
// working folder (pg_basebackup runs in "/": the folder must be made absolute first), and
// refuses a missing folder without creating it.
func TestBaseBackupCommandRelativeDir(t *testing.T) {
	pgtest.Require(t)
	prod := pgtest.Shared(t, "production")
	bin := buildBackup(t)
	work := t.TempDir()
	if err := os.Mkdir(filepath.Join(work, "backups"), 0o700); err != nil {
		t.Fatal(err)
	}
	run := func(args ...string) (int, string) {
		t.Helper()
		cmd := exec.Command(bin, args...)
		cmd.Dir = work
		out, err := cmd.CombinedOutput()
		code := 0
		if ee, ok := err.(*exec.ExitError); ok {
			code = ee.ExitCode()
		} else if err != nil {
			t.Fatal(err)
		}
		return code, string(out)
	}
	if code, out := run("-basebackup", "-dsn", prod.DSN("postgres"), "-dir", "backups"); code != 0 {
		t.Fatalf("-dir backups: exit %d\n%s", code, out)
	}
	manifests, _ := filepath.Glob(filepath.Join(work, "backups", "*"+physical.BaseManifestSuffix))
	if len(manifests) != 1 {
		t.Fatalf("-dir backups (relative) left manifests %v in %s", manifests, filepath.Join(work, "backups"))
	}
	if code, out := run("-basebackup", "-dsn", prod.DSN("postgres"), "-dir", "nope"); code != 1 || !strings.Contains(out, "no such file or directory") {
		t.Fatalf("-dir nope: exit %d\n%s; want exit 1, the folder missing", code, out)
	}
	if _, err := os.Lstat(filepath.Join(work, "nope")); !os.IsNotExist(err) {
		t.Fatalf("-dir nope was created: %v", err)
	}
}
