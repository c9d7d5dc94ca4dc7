package dbrestore

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestCatalogIgnoresIncompleteBackups(t *testing.T) {
	prod, _, db := seeded(t, 20)
	dir := t.TempDir()
	cat, err := NewCatalog(dir, Config{})
	if err != nil {
		t.Fatal(err)
	}
	_, err = cat.Latest(db)
	if !errors.Is(err, ErrNoBackup) {
		t.Fatalf("empty folder: %v", err)
	}
	requireErrContains(t, err, "no complete "+db+" backup in "+dir)

	good := dumpOf(t, prod, db, DumpOptions{Dir: dir})
	// Newer, but incomplete in every way: a dump being written, a manifest being
	// written, a dump without manifest, a manifest without dump, an unreadable manifest.
	later := time.Now().Add(time.Hour)
	base := backupBase(db, later)
	data, _ := os.ReadFile(good.Path)
	write := func(name string, content []byte) {
		t.Helper()
		if err := os.WriteFile(filepath.Join(dir, name), content, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write(tmpPrefix+base+dumpSuffix, data)
	manifestJSON, _ := os.ReadFile(good.ManifestPath)
	write(tmpPrefix+base+manifestSuffix, manifestJSON)
	write(backupBase(db, later.Add(time.Minute))+dumpSuffix, data)
	orphan := strings.ReplaceAll(string(manifestJSON), good.Manifest.Dump, backupBase(db, later.Add(2*time.Minute))+dumpSuffix)
	orphan = strings.ReplaceAll(orphan, good.Manifest.Created.Format("2006-01-02T15:04:05"), later.Add(2*time.Minute).UTC().Format("2006-01-02T15:04:05"))
	write(backupBase(db, later.Add(2*time.Minute))+manifestSuffix, []byte(orphan))
	write(backupBase(db, later.Add(3*time.Minute))+manifestSuffix, []byte("{not json"))

	got, err := cat.Latest(db)
	if err != nil || got.Path != good.Path {
		t.Fatalf("Latest = %v, %v; want %s", got, err, good.Name())
	}
	// Another database's backups are not this one's.
	if _, err := cat.Latest("other_db"); !errors.Is(err, ErrNoBackup) {
		t.Fatalf("other database: %v", err)
	}
	// Without the good one, the message says what is there.
	if err := os.Remove(good.ManifestPath); err != nil {
		t.Fatal(err)
	}
	_, err = cat.Latest(db)
	if !errors.Is(err, ErrNoBackup) {
		t.Fatalf("only incomplete backups: %v", err)
	}
	requireErrContains(t, err, "2 dump(s) without a manifest", "unreadable manifest")
}

func TestCatalogMaxAgeAndWait(t *testing.T) {
	prod, _ := servers(t)
	db := prod.Database(t)
	dir := t.TempDir()
	old := dumpOf(t, prod, db, DumpOptions{Dir: dir})
	rewriteManifest(t, old, func(m *Manifest) { m.Created = time.Now().Add(-26 * time.Hour) })
	cat, _ := NewCatalog(dir, Config{})
	ctx := testCtx(t)

	_, err := cat.Wait(ctx, WaitOptions{Database: db, MaxAge: 20 * time.Hour})
	if !errors.Is(err, ErrTooOld) {
		t.Fatalf("old backup: %v", err)
	}
	requireErrContains(t, err, "newest "+db+" backup is 26h old", "max_age 20h", old.Name())
	if b, err := cat.Wait(ctx, WaitOptions{Database: db}); err != nil || b.Path != old.Path {
		t.Fatalf("no max age: %v, %v", b, err)
	}

	// Waiting: a fresh backup appears while Wait polls.
	type result struct {
		b   *Backup
		err error
	}
	done := make(chan result, 1)
	go func() {
		b, err := cat.Wait(ctx, WaitOptions{Database: db, MaxAge: 20 * time.Hour, Wait: 5 * time.Minute, Poll: 20 * time.Millisecond})
		done <- result{b, err}
	}()
	fresh := dumpOf(t, prod, db, DumpOptions{Dir: dir})
	r := <-done
	if r.err != nil || r.b.Path != fresh.Path {
		t.Fatalf("Wait = %v, %v; want %s", r.b, r.err, fresh.Name())
	}

	// Waiting that runs out says what it found and for how long it waited.
	_, err = cat.Wait(ctx, WaitOptions{Database: "never_backed_up", Wait: 100 * time.Millisecond, Poll: 20 * time.Millisecond})
	if !errors.Is(err, ErrNoBackup) {
		t.Fatalf("wait for a missing backup: %v", err)
	}
	requireErrContains(t, err, "waited")

	// A cancelled context ends the wait.
	cctx, cancel := context.WithCancel(ctx)
	go func() { time.Sleep(50 * time.Millisecond); cancel() }()
	_, err = cat.Wait(cctx, WaitOptions{Database: "never_backed_up", Wait: time.Hour, Poll: 10 * time.Millisecond})
	if !errors.Is(err, context.Canceled) || !errors.Is(err, ErrNoBackup) {
		t.Fatalf("cancelled wait: %v", err)
	}
	if _, err := cat.Wait(ctx, WaitOptions{}); err == nil {
		t.Fatal("Wait without a database")
	}
}

func TestCatalogMissingFolder(t *testing.T) {
	missing := filepath.Join(t.TempDir(), "backups")
	if _, err := NewCatalog(missing, Config{}); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("NewCatalog(missing) = %v", err)
	}
	if _, err := NewCatalog("", Config{}); err == nil {
		t.Fatal("NewCatalog(\"\") succeeded")
	}
	// A folder that goes away (an unmounted volume) fails at once, without waiting.
	dir := filepath.Join(t.TempDir(), "backups")
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	cat, err := NewCatalog(dir, Config{})
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(dir); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	_, err = cat.Wait(testCtx(t), WaitOptions{Database: "x", Wait: time.Hour, Poll: 10 * time.Millisecond})
	if !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("Wait on a vanished folder: %v", err)
	}
	if time.Since(start) > 10*time.Minute {
		t.Fatal("waited on a vanished folder")
	}
}

func TestVerifyRejectsDamagedDumps(t *testing.T) {
	prod, _, db := seeded(t, 200)
	ctx := testCtx(t)
	fresh := func() (*DirCatalog, *Backup) {
		b := dumpOf(t, prod, db, DumpOptions{})
		cat, err := NewCatalog(filepath.Dir(b.Path), Config{})
		if err != nil {
			t.Fatal(err)
		}
		return cat, b
	}

	// A flipped byte: same size, checksum mismatch.
	cat, b := fresh()
	data, _ := os.ReadFile(b.Path)
	data[len(data)/2] ^= 0xff
	if err := os.WriteFile(b.Path, data, 0o644); err != nil {
		t.Fatal(err)
	}
	err := cat.Verify(ctx, b)
	if !errors.Is(err, ErrChecksum) {
		t.Fatalf("flipped byte: %v", err)
	}
	requireErrContains(t, err, "SHA-256")

	// Truncated.
	cat, b = fresh()
	if err := os.Truncate(b.Path, b.Manifest.Size/2); err != nil {
		t.Fatal(err)
	}
	err = cat.Verify(ctx, b)
	if !errors.Is(err, ErrChecksum) {
		t.Fatalf("truncated: %v", err)
	}
	requireErrContains(t, err, "truncated")

	// Garbage whose manifest matches: pg_restore --list refuses it.
	cat, b = fresh()
	garbage := []byte(strings.Repeat("not a dump\n", 100))
	if err := os.WriteFile(b.Path, garbage, 0o644); err != nil {
		t.Fatal(err)
	}
	size, sum, _ := checksum(ctx, b.Path, FormatCustom, nil)
	rewriteManifest(t, b, func(m *Manifest) { m.Size, m.SHA256 = size, sum })
	err = cat.Verify(ctx, b)
	if !errors.Is(err, ErrCorrupt) {
		t.Fatalf("garbage: %v", err)
	}
	var ce *CommandError
	if !errors.As(err, &ce) || ce.Args[0] != "pg_restore" {
		t.Fatalf("garbage: no pg_restore CommandError in %v", err)
	}

	// The dump removed after the look.
	cat, b = fresh()
	if err := os.Remove(b.Path); err != nil {
		t.Fatal(err)
	}
	if err := cat.Verify(ctx, b); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("missing dump: %v", err)
	}
}

func TestFmtAge(t *testing.T) {
	for d, want := range map[time.Duration]string{
		26 * time.Hour:                              "26h",
		26*time.Hour + 5*time.Minute:                "26h5m",
		45 * time.Minute:                            "45m",
		30 * time.Second:                            "30s",
		20*time.Hour + 29*time.Second:               "20h",
		-2 * time.Minute:                            "-2m",
		time.Hour + 59*time.Minute + 31*time.Second: "2h",
	} {
		if got := fmtAge(d); got != want {
			t.Errorf("fmtAge(%s) = %q, want %q", d, got, want)
		}
	}
}

func TestParseBase(t *testing.T) {
	when := time.Date(2026, 11, 25, 3, 0, 0, 123e6, time.UTC)
	for _, db := range []string{"launchpad_prod", "with-dash", `we"ird name's/x`, ".hidden"} {
		base := backupBase(db, when)
		if strings.ContainsAny(base, `/"' `) || strings.HasPrefix(base, ".") {
			t.Errorf("unsafe file name %q", base)
		}
		for _, suffix := range []string{dumpSuffix, manifestSuffix} {
			esc, ts, ok := parseBase(base + suffix)
			if !ok || esc != escapeName(db) || !ts.Equal(when) {
				t.Errorf("parseBase(%q) = %q, %s, %v", base+suffix, esc, ts, ok)
			}
		}
	}
	if got := backupBase("launchpad_prod", when); got != "launchpad_prod-20261125T030000.123Z" {
		t.Errorf("backupBase = %q", got)
	}
}

// A manifest planted in a folder shared with other tools (or one copied under another
// name) names another tool's folder, another file or another backup's dump: the prune
// removes none of them, and says so.
func TestPruneRemovesOnlyItsOwnDumps(t *testing.T) {
	dir := t.TempDir()
	const db = "launchpad_prod"
	write := func(name string, m Manifest) {
		t.Helper()
		data, _ := json.Marshal(m)
		if err := os.WriteFile(filepath.Join(dir, name), data, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	backup := func(created time.Time) string {
		t.Helper()
		base := backupBase(db, created)
		if err := os.WriteFile(filepath.Join(dir, base+dumpSuffix), []byte("dump"), 0o600); err != nil {
			t.Fatal(err)
		}
		write(base+manifestSuffix, Manifest{Database: db, Format: FormatCustom, Created: created,
			SystemIdentifier: 7, Dump: base + dumpSuffix})
		return base + dumpSuffix
	}
	now := time.Now().UTC()
	kept := backup(now)
	pruned := backup(now.Add(-time.Hour))
	if err := os.MkdirAll(filepath.Join(dir, "pgbackrest", "archive"), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "globals.sql"), []byte("-- roles"), 0o600); err != nil {
		t.Fatal(err)
	}
	for i, target := range []string{"pgbackrest", "globals.sql", kept} {
		created := now.Add(-time.Duration(48+i) * time.Hour)
		write(fmt.Sprintf("notes%d%s", i, manifestSuffix), Manifest{Database: db, Format: FormatCustom,
			Created: created, SystemIdentifier: 7, Dump: target})
	}
	cat, err := NewCatalog(dir, Config{})
	if err != nil {
		t.Fatal(err)
	}
	removed, err := cat.Prune(PruneOptions{Database: db, Keep: 1})
	requireErrContains(t, err, `notes0.manifest.json names the dump "pgbackrest", not its own`)
	if len(removed) != 1 || removed[0] != pruned {
		t.Errorf("removed %q, want only %s", removed, pruned)
	}
	for _, p := range []string{"pgbackrest/archive", "globals.sql", kept, "notes2" + manifestSuffix} {
		if _, err := os.Stat(filepath.Join(dir, p)); err != nil {
			t.Errorf("the prune removed %s: %v", p, err)
		}
	}
}
