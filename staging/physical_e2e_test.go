package staging_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/restage/restage/dbrestore/mask"
	"github.com/restage/restage/dbrestore/physical"
	"github.com/restage/restage/dbrestore/physical/physicaltest"
	"github.com/restage/restage/staging"
	"github.com/restage/restage/staging/stagingtest"
)

func newPhysicalWorld(t *testing.T) *stagingtest.World {
	t.Helper()
	physicaltest.Require(t)
	return newWorld(t, stagingtest.Options{Physical: true, BackupWait: 2 * time.Second})
}

// liveSlot names the slot the clusters' folder says is live.
func liveSlot(t *testing.T, w *stagingtest.World) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(w.ClusterDir, "live"))
	if err != nil {
		return "none"
	}
	return strings.TrimSpace(string(b))
}

// fileHolding returns the first file under the clusters' folder dir, outside the live
// slot's folder (none when live is ""), that holds one of values; "" when none does.
func fileHolding(t *testing.T, dir, live string, values ...string) string {
	t.Helper()
	var found string
	err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil || found != "" {
			return err
		}
		if d.IsDir() && live != "" && path == filepath.Join(dir, live) {
			return filepath.SkipDir
		}
		if !d.Type().IsRegular() {
			return nil
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		for _, v := range values {
			if bytes.Contains(b, []byte(v)) {
				found = path
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return found
}

// physicalSnapshot is what an operator sees of a physical staging: the live slot, its
// databases, the live database's contents, the release, what the service answers.
func physicalSnapshot(t *testing.T, w *stagingtest.World) string {
	t.Helper()
	current, _ := os.Readlink(w.Current)
	return fmt.Sprintf("slot %s\ndatabases %s\nlive %s\ncurrent %s\nhealth %s", liveSlot(t, w),
		w.Staging.QueryString(t, "postgres", `SELECT string_agg(datname, ' ' ORDER BY datname) FROM pg_database`),
		w.Staging.QueryString(t, w.StagingDB, fingerprint), filepath.Base(current), get(t, w.AppURL+"/+health"))
}

func stepDetail(rep *staging.Report, name string) string {
	for _, s := range rep.Steps {
		if s.Name == name {
			return s.Detail
		}
	}
	return ""
}

// TestPhysicalRebuild rebuilds staging from a pgBackRest backup three times (the first
// seeds slot b; the second and third restore with --delta), checks the data, the migrations, the
// neutralized cluster, and that production's repository was never written to.
func TestPhysicalRebuild(t *testing.T) {
	w := newPhysicalWorld(t)
	// The world's post-restore SQL masks: the seed is off unless set.
	editConfig(t, w.ConfigPath, "[cluster]\n", "[cluster]\nseed = true\n")
	ctx := context.Background()
	repo0, err := w.Phys.Listing()
	if err != nil {
		t.Fatal(err)
	}
	rep := mustRun(t, w)
	if rep.Strategy != staging.Physical || liveSlot(t, w) != "a" {
		t.Fatalf("strategy %s, live slot %s\n%s", rep.Strategy, liveSlot(t, w), rep.Text())
	}
	t.Log(rep.Text())
	// The first restore is copied into slot b before its first start ([cluster] seed).
	if d := stepDetail(rep, "restore"); !strings.Contains(d, "full copy") || !strings.Contains(d, "slot b seeded from it") {
		t.Fatalf("first rebuild's restore: %q", d)
	}
	if h := get(t, w.AppURL+"/+health"); !strings.HasPrefix(h, "200 ok release="+rep.Release.ID) {
		t.Fatalf("health: %s", h)
	}
	// The data are production's at the backup, sanitised; the migrations ran on staging only.
	for _, table := range []string{"bug", "comment"} {
		prod := w.Production.QueryString(t, w.ProdDB, "SELECT count(*)::text FROM "+table)
		if got := w.Staging.QueryString(t, w.StagingDB, "SELECT count(*)::text FROM "+table); got != prod {
			t.Errorf("%s: %s rows on staging, %s on production", table, got, prod)
		}
	}
	if v := w.Staging.QueryString(t, w.StagingDB, "SELECT version::text FROM schema_migrations"); v != fmt.Sprint(stagingtest.CodePatch) {
		t.Errorf("staging at patch %s", v)
	}
	if v := w.Production.QueryString(t, w.ProdDB, "SELECT version::text FROM schema_migrations"); v != fmt.Sprint(stagingtest.ProductionPatch) {
		t.Errorf("production at patch %s", v)
	}
	if n := w.Staging.QueryString(t, w.StagingDB, "SELECT count(*)::text FROM person WHERE email NOT LIKE '%@staging.invalid'"); n != "0" {
		t.Errorf("%s people not sanitised", n)
	}
	if dbs := w.Staging.QueryString(t, "postgres", "SELECT string_agg(datname, ' ' ORDER BY datname) FROM pg_database"); dbs != "bugs_staging postgres template0 template1" {
		t.Errorf("databases on staging: %s", dbs)
	}
	if a := w.Staging.QueryString(t, "postgres", "SELECT current_setting('archive_mode')"); a != "off" {
		t.Errorf("archive_mode %s", a)
	}
	// The restored cluster switches WAL segments: none reaches production's repository.
	w.Staging.QueryString(t, "postgres", "SELECT pg_switch_wal()::text")
	if n := w.Staging.QueryString(t, "postgres", "SELECT (archived_count + failed_count)::text FROM pg_stat_archiver"); n != "0" {
		t.Errorf("the staging cluster tried to archive %s segments", n)
	}
	if repo1, _ := w.Phys.Listing(); !slices.Equal(repo0, repo1) {
		t.Errorf("production's repository changed during the rebuild")
	}

	// About 5%% of the rows change; a new backup; the second rebuild restores into slot
	// b, seeded by the first: --delta, trusting size and time.
	w.Production.Exec(t, w.ProdDB, "UPDATE bug SET title = title || ' (changed)' WHERE id % 20 = 0")
	if _, err := w.Backup(ctx); err != nil {
		t.Fatal(err)
	}
	rep = mustRun(t, w)
	if d := stepDetail(rep, "restore"); liveSlot(t, w) != "b" || !strings.Contains(d, "(delta, by size and time)") || strings.Contains(d, "seeded") {
		t.Fatalf("second rebuild: slot %s, restore %q", liveSlot(t, w), d)
	}
	changed := w.Production.QueryString(t, w.ProdDB, "SELECT count(*)::text FROM bug WHERE title LIKE '%(changed)'")
	if got := w.Staging.QueryString(t, w.StagingDB, "SELECT count(*)::text FROM bug WHERE title LIKE '%(changed)'"); got != changed {
		t.Errorf("%s changed bugs on staging, %s on production", got, changed)
	}
	// The third restores into slot a, which holds the first copy: --delta, trusting size
	// and time (the slot was restored by restage).
	repo2, _ := w.Phys.Listing()
	rep = mustRun(t, w)
	if liveSlot(t, w) != "a" || !strings.Contains(stepDetail(rep, "restore"), "(delta, by size and time)") {
		t.Fatalf("third rebuild: slot %s, restore %q", liveSlot(t, w), stepDetail(rep, "restore"))
	}
	if repo3, _ := w.Phys.Listing(); !slices.Equal(repo2, repo3) {
		t.Errorf("production's repository changed during the rebuild")
	}
	if rep.Downtime > 10*time.Second { // loose: the benchmark measures it
		t.Errorf("downtime %s", rep.Downtime)
	}
}

// Every fault leaves staging as it was (or puts it back), and the next run succeeds.
func TestPhysicalRebuildFaults(t *testing.T) {
	w := newPhysicalWorld(t)
	mustRun(t, w)
	ctx := context.Background()
	fault := func(name, step string, outcome staging.Outcome, says string, inject, repair func(t *testing.T)) {
		t.Run(name, func(t *testing.T) {
			if says == "" {
				t.Fatal("a fault must name the error it expects")
			}
			before := physicalSnapshot(t, w)
			inject(t)
			rep, err := run(t, w)
			if err == nil {
				t.Fatalf("the rebuild succeeded:\n%s", rep.Text())
			}
			t.Logf("failed step %q outcome %q error %q", rep.FailedStep, rep.Outcome, rep.Error)
			if rep.FailedStep != step || rep.Outcome != outcome || !strings.Contains(rep.Error, says) {
				t.Errorf("failed step %q outcome %q error %q, want %q %q %q\n%s", rep.FailedStep, rep.Outcome, rep.Error, step, outcome, says, rep.Text())
			}
			if after := physicalSnapshot(t, w); after != before {
				t.Errorf("staging changed:\n--- before\n%s\n--- after\n%s", before, after)
			}
			lockIsFree(t, w)
			repair(t)
			rep = mustRun(t, w)
			t.Logf("next run: %s; notes %q", rep.State, rep.Notes)
		})
	}
	stanzaDir := filepath.Join(w.Phys.Repo, "backup", physicaltest.Stanza)
	away := stanzaDir + ".away"
	fault("missing backup set", "backup", staging.OutcomeFailed, "missing stanza path", func(t *testing.T) {
		if err := os.Rename(stanzaDir, away); err != nil {
			t.Fatal(err)
		}
	}, func(t *testing.T) {
		if err := os.Rename(away, stanzaDir); err != nil {
			t.Fatal(err)
		}
	})

	var saved map[string][]byte
	fault("corrupt backup set", "restore", staging.OutcomeFailed, "contentChecksum_invalid", func(t *testing.T) {
		// Bytes flipped in every file of the newest set's biggest database folder.
		labels, _ := filepath.Glob(filepath.Join(stanzaDir, "2*"))
		slices.Sort(labels)
		files, _ := filepath.Glob(filepath.Join(labels[len(labels)-1], "pg_data", "base", "*", "*"))
		saved = map[string][]byte{}
		for _, f := range files {
			data, err := os.ReadFile(f)
			if err != nil || len(data) < 64 {
				continue
			}
			saved[f] = slices.Clone(data)
			for i := len(data) / 2; i < len(data)/2+8; i++ {
				data[i] ^= 0xff
			}
			if err := os.WriteFile(f, data, 0o640); err != nil {
				t.Fatal(err)
			}
		}
		if len(saved) == 0 {
			t.Fatal("no backup file to corrupt")
		}
	}, func(t *testing.T) {
		for f, data := range saved {
			if err := os.WriteFile(f, data, 0o640); err != nil {
				t.Fatal(err)
			}
		}
	})

	// The WAL segments' folders of the archive (archive.info stays, so pgBackRest still
	// reads the stanza): the restore works, the recovery cannot.
	walDirs, _ := filepath.Glob(filepath.Join(w.Phys.Repo, "archive", physicaltest.Stanza, "*-*", "[0-9A-F]*"))
	fault("recovery fails (WAL missing from the archive)", "recover", staging.OutcomeFailed, "could not locate required checkpoint record", func(t *testing.T) {
		if len(walDirs) == 0 {
			t.Fatal("no WAL in the archive")
		}
		for _, d := range walDirs {
			if err := os.Rename(d, d+".away"); err != nil {
				t.Fatal(err)
			}
		}
	}, func(t *testing.T) {
		for _, d := range walDirs {
			if err := os.Rename(d+".away", d); err != nil {
				t.Fatal(err)
			}
		}
	})

	// The live slot cannot be read when the cutover records it (the repair of a killed
	// cutover would not know which cluster to put back): nothing is touched.
	t.Run("live slot unknown at the cutover", func(t *testing.T) {
		before := physicalSnapshot(t, w)
		liveFile := filepath.Join(w.ClusterDir, "live")
		saved, err := os.ReadFile(liveFile)
		if err != nil {
			t.Fatal(err)
		}
		c, err := staging.LoadEnvironment(w.ConfigPath)
		if err != nil {
			t.Fatal(err)
		}
		rb, err := staging.Open(c, staging.OpenOptions{Logger: discard(), Observer: staging.ObserverFuncs{
			OnStepDone: func(_ staging.RunInfo, s staging.Step) {
				if s.Name == "schema" && s.Status == "ok" {
					if err := os.WriteFile(liveFile, []byte("c\n"), 0o600); err != nil {
						t.Error(err)
					}
				}
			}}})
		if err != nil {
			t.Fatal(err)
		}
		defer rb.Close()
		rep, err := rb.Run(ctx)
		if werr := os.WriteFile(liveFile, saved, 0o600); werr != nil {
			t.Fatal(werr)
		}
		if err == nil || rep.FailedStep != "cutover" || rep.Outcome != staging.OutcomeFailed ||
			!strings.Contains(rep.Error, "which cluster is live, recorded before the cutover") || !strings.Contains(rep.Error, `names "c"`) {
			t.Errorf("err %v; failed step %q outcome %q error %q; want the cutover refused for the unknown live slot\n%s",
				err, rep.FailedStep, rep.Outcome, rep.Error, rep.Text())
		}
		if slices.ContainsFunc(rep.Steps, func(s *staging.Step) bool { return s.Name == "stop" }) {
			t.Errorf("the service was stopped:\n%s", rep.Text())
		}
		if _, err := os.Stat(filepath.Join(w.StateDir, staging.IntentFile)); !os.IsNotExist(err) {
			t.Errorf("a cutover record was written: %v", err)
		}
		if after := physicalSnapshot(t, w); after != before {
			t.Errorf("staging changed:\n--- before\n%s\n--- after\n%s", before, after)
		}
		lockIsFree(t, w)
		mustRun(t, w)
	})

	w.Staging.Exec(t, "postgres", "CREATE DATABASE scratch")
	w.Staging.Exec(t, "scratch", "CREATE TABLE note AS SELECT 'kept' AS text")
	config, err := os.ReadFile(w.ConfigPath)
	if err != nil {
		t.Fatal(err)
	}
	fault("a database restage does not manage", "verify", staging.OutcomeFailed, "scratch", func(*testing.T) {}, func(t *testing.T) {
		// cluster.carry copies it into the new cluster at the next run.
		carried := strings.Replace(string(config), "[cluster]\n", "[cluster]\ncarry = [\"scratch\"]\n", 1)
		if err := os.WriteFile(w.ConfigPath, []byte(carried), 0o644); err != nil {
			t.Fatal(err)
		}
	})
	t.Run("carried over", func(t *testing.T) {
		if got := w.Staging.QueryString(t, "scratch", "SELECT text FROM note"); got != "kept" {
			t.Fatalf("scratch: %q", got)
		}
		w.Staging.Exec(t, "postgres", "DROP DATABASE scratch")
		if err := os.WriteFile(w.ConfigPath, config, 0o644); err != nil {
			t.Fatal(err)
		}
	})

	inject, repair := replaceFile(filepath.Join(w.Source, "migrations", "5_bug_heat.up.sql"), "ALTER TABLE bug ADD COLUMN heat int;\nUPDATE bug SET heat = 1 / 0;\n")
	fault("migration fails", "schema", staging.OutcomeFailed, "division by zero", inject, repair)
	inject, repair = replaceFile(filepath.Join(w.Source, stagingtest.FailHealthFile), "broken\n")
	fault("health gate stays red", "start", staging.OutcomeRolledBack, "release is broken (FAIL_HEALTH)", inject, repair)

	t.Run("killed mid-restore", func(t *testing.T) {
		before := physicalSnapshot(t, w)
		idle := map[string]string{"a": "b", "b": "a"}[liveSlot(t, w)]
		marker := filepath.Join(w.ClusterDir, idle, "restage-slot.json")
		killRunWhen(t, w, "the restore", func() bool {
			b, _ := os.ReadFile(marker)
			_, err := os.Stat(filepath.Join(w.ClusterDir, idle, "data", "base"))
			return strings.Contains(string(b), `"restoring"`) && err == nil
		})
		if after := physicalSnapshot(t, w); after != before {
			t.Fatalf("the kill changed staging:\n%s\n%s", before, after)
		}
		rep := mustRun(t, w)
		joined := strings.Join(rep.Notes, "\n")
		if !strings.Contains(joined, "took over the lock of a dead run") || !strings.Contains(joined, "half-restored") {
			t.Errorf("notes: %s", joined)
		}
		lockIsFree(t, w)
	})

	t.Run("killed mid-cutover", func(t *testing.T) {
		record := filepath.Join(w.StateDir, staging.IntentFile)
		killRunWhen(t, w, "the cutover", func() bool {
			b, _ := os.ReadFile(record)
			return strings.Contains(string(b), `"phase": "swapped"`) || strings.Contains(string(b), `"phase": "activat`)
		})
		rep := mustRun(t, w)
		joined := strings.Join(rep.Notes, "\n")
		if !strings.Contains(joined, "repaired the cutover of run") {
			t.Errorf("notes: %s\n%s", joined, rep.Text())
		}
		if _, err := os.Stat(record); !os.IsNotExist(err) {
			t.Errorf("the cutover record is still there: %v", err)
		}
		if h := get(t, w.AppURL+"/+health"); !strings.HasPrefix(h, "200 ok release="+rep.Release.ID) {
			t.Errorf("health: %s", h)
		}
		lockIsFree(t, w)
	})

	t.Run("live cluster down (a reboot)", func(t *testing.T) {
		if err := w.StopLiveCluster(); err != nil {
			t.Fatal(err)
		}
		rep := mustRun(t, w)
		if joined := strings.Join(rep.Notes, "\n"); !strings.Contains(joined, "(it was down)") {
			t.Errorf("notes: %s", joined)
		}
	})

	t.Run("dry run", func(t *testing.T) {
		before := physicalSnapshot(t, w)
		rep, err := open(t, w).Plan(ctx)
		if err != nil || rep.Outcome != staging.OutcomePlanned || stepDetail(rep, "verify") == "" ||
			!strings.Contains(strings.Join(rep.Notes, "\n"), "(--delta over the copy it holds, by size and time)") {
			t.Fatalf("plan: %v\n%s", err, rep.Text())
		}
		// It says which release would be built, as a logical dry run does (it did not).
		if d := stepDetail(rep, "release"); !strings.HasPrefix(d, "would build a release from ") || rep.Release == nil {
			t.Errorf("the dry run names no release: %q\n%s", d, rep.Text())
		}
		if after := physicalSnapshot(t, w); after != before {
			t.Errorf("a dry run changed staging:\n%s\n%s", before, after)
		}
	})
}

// TestPhysicalMaskedRebuild masks the restored cluster with SQL before the cutover.
func TestPhysicalMaskedRebuild(t *testing.T) {
	physicaltest.Require(t)
	w := maskedWorld(t, stagingtest.Options{Physical: true, BackupWait: 2 * time.Second})
	// Production's other database, kept on staging ([cluster] keep), is not masked: one
	// with personal columns fails the rebuild before its cutover, naming each of them.
	// So do production's postgres and template1, which every cluster keeps.
	w.Production.Exec(t, "postgres", "CREATE DATABASE reports")
	w.Production.Exec(t, "reports", "CREATE TABLE mailing (id int, contact_email text); INSERT INTO mailing VALUES (1, 'person1@users.example.com')")
	w.Production.Exec(t, "postgres", "CREATE TABLE staff (id int, email text); INSERT INTO staff VALUES (1, 'person2@users.example.com')")
	w.Production.Exec(t, "template1", "CREATE TABLE contact (id int, phone text)")
	if _, err := w.Backup(context.Background()); err != nil {
		t.Fatal(err)
	}
	editConfig(t, w.ConfigPath, "[cluster]\n", "[cluster]\nkeep = [\"reports\"]\n")
	// Production's default: the first change of a page after a checkpoint writes the
	// whole page, old row versions included, into the WAL.
	editConfig(t, w.ConfigPath, `settings = { fsync = "off"`, `settings = { full_page_writes = "on", fsync = "off"`)
	live := liveSlot(t, w)
	rep, err := run(t, w)
	var ue *mask.UnmaskedError
	if !errors.As(err, &ue) || strings.Join(ue.Columns, " ") != "postgres.public.staff.email reports.public.mailing.contact_email template1.public.contact.phone" ||
		!strings.Contains(rep.Text(), "cluster.keep") {
		t.Fatalf("a kept database with personal columns: %v\n%s", err, rep.Text())
	}
	if liveSlot(t, w) != live {
		t.Fatalf("the failed rebuild switched the live slot from %s to %s", live, liveSlot(t, w))
	}
	// The slot it prepared held production's rows unmasked: it is emptied.
	if f := fileHolding(t, w.ClusterDir, live, "person1@users.example.com", "person2@users.example.com"); f != "" {
		t.Fatalf("after the failed masked rebuild, %s holds production's unmasked e-mails", f)
	}
	if !strings.Contains(rep.Text(), "which did not go live: with [mask] it may hold production's unmasked data") {
		t.Fatalf("the report does not say the slot was emptied:\n%s", rep.Text())
	}
	editConfig(t, w.ConfigPath, "keep = [\"reports\"]\n", "passwords = \"clear\"\n")
	w.Production.Exec(t, "postgres", "CREATE ROLE app_login LOGIN PASSWORD 'production-secret'")
	w.Production.Exec(t, "postgres", "DROP TABLE staff")
	w.Production.Exec(t, "template1", "DROP TABLE contact")
	if _, err := w.Backup(context.Background()); err != nil {
		t.Fatal(err)
	}
	rep = mustRun(t, w)
	if rep.Mask == nil || !strings.Contains(stepDetail(rep, "neutralize"), "masked") {
		t.Fatalf("no masking reported:\n%s", rep.Text())
	}
	prodEmails := strings.Split(w.Production.QueryString(t, w.ProdDB, "SELECT string_agg(email, '|') FROM person"), "|")
	stagingEmails := w.Staging.QueryString(t, w.StagingDB, "SELECT string_agg(email, '|') FROM person")
	for _, e := range prodEmails {
		if strings.Contains(stagingEmails, e) {
			t.Fatalf("production's e-mail %q is on staging", e)
		}
	}
	if n := w.Staging.QueryString(t, w.StagingDB, "SELECT count(*)::text FROM session"); n != "0" {
		t.Errorf("%s sessions on staging", n)
	}
	if n := w.Staging.QueryString(t, w.StagingDB, "SELECT count(DISTINCT email)::text FROM person"); n != w.Production.QueryString(t, w.ProdDB, "SELECT count(*)::text FROM person") {
		t.Errorf("%s distinct e-mails", n)
	}
	if n := w.Staging.QueryString(t, "postgres", "SELECT count(*)::text FROM pg_authid WHERE rolpassword IS NOT NULL"); n != "0" {
		t.Errorf("with cluster.passwords = \"clear\", %s roles keep production's password", n)
	}
	// Nor in the cluster's files: no old row version in the tables' pages or indexes,
	// nor in the WAL (full-page images of the masking's changes). A staging superuser
	// could read those with pageinspect, anyone with the files with grep.
	if f := fileHolding(t, w.ClusterDir, "", prodEmails...); f != "" {
		t.Fatalf("after the masked rebuild, %s holds production's e-mails", f)
	}
}

// TestPhysicalMaskedKilledRun: a masked physical rebuild killed after its restore, before
// its masking, leaves production's rows unmasked in the idle slot, whose marker says
// restored (Repair empties only a restore cut short). The next run, taking over the dead
// run's lock, empties that slot in its clean step, even when it fails right after.
func TestPhysicalMaskedKilledRun(t *testing.T) {
	physicaltest.Require(t)
	w := maskedWorld(t, stagingtest.Options{Physical: true, BackupWait: 2 * time.Second})
	w.Production.Exec(t, "postgres", "SET password_encryption = 'md5'; CREATE ROLE legacy LOGIN PASSWORD 'production-secret'")
	if _, err := w.Backup(context.Background()); err != nil {
		t.Fatal(err)
	}
	// cluster.passwords is "keep" by default: a note names the md5 verifiers kept.
	rep := mustRun(t, w)
	if notes := strings.Join(rep.Notes, "\n"); !strings.Contains(notes, "roles legacy keep production's md5 password verifiers") {
		t.Errorf("notes: %s", notes)
	}
	live := liveSlot(t, w)
	idle := map[string]string{"a": "b", "b": "a"}[live]
	marker := filepath.Join(w.ClusterDir, idle, "restage-slot.json")
	killRunWhen(t, w, "the recovery", func() bool {
		b, _ := os.ReadFile(marker)
		return strings.Contains(string(b), `"restored"`)
	})
	emails := strings.Split(w.Production.QueryString(t, w.ProdDB, "SELECT string_agg(email, '|') FROM (SELECT email FROM person ORDER BY id LIMIT 5) p"), "|")
	if fileHolding(t, w.ClusterDir, live, emails...) == "" {
		t.Fatal("the killed run left no unmasked copy in the idle slot: the test proves nothing")
	}
	// The next run fails at its verify step (a database this environment does not
	// manage), after its clean step.
	w.Staging.Exec(t, "postgres", "CREATE DATABASE scratch")
	rep, err := run(t, w)
	if !errors.Is(err, staging.ErrForeign) {
		t.Fatalf("want the verify step's refusal, got %v\n%s", err, rep.Text())
	}
	if f := fileHolding(t, w.ClusterDir, live, emails...); f != "" {
		t.Fatalf("after the killed masked run, %s holds production's unmasked e-mails", f)
	}
	if notes := strings.Join(rep.Notes, "\n"); !strings.Contains(notes, "emptied slot "+idle+", left by a run that was killed") {
		t.Fatalf("notes: %s", notes)
	}
	w.Staging.Exec(t, "postgres", "DROP DATABASE scratch")
	mustRun(t, w)
	if got := liveSlot(t, w); got != idle {
		t.Fatalf("live slot %s after the next rebuild, want %s", got, idle)
	}
}

// TestPhysicalRebuildFromBaseBackup rebuilds staging from pg_basebackups in the backup
// folder ([backup] type = "basebackup"), twice.
func TestPhysicalRebuildFromBaseBackup(t *testing.T) {
	physicaltest.Require(t)
	w := newWorld(t, stagingtest.Options{Physical: true, BaseBackup: true, BackupWait: 2 * time.Second})
	rep := mustRun(t, w)
	if !strings.HasPrefix(rep.Backup.Path, "physical:base-tar") || liveSlot(t, w) != "a" {
		t.Fatalf("backup %+v, slot %s\n%s", rep.Backup, liveSlot(t, w), rep.Text())
	}
	w.Production.Exec(t, w.ProdDB, "UPDATE bug SET title = 'changed' WHERE id <= 10")
	if _, err := w.Backup(context.Background()); err != nil {
		t.Fatal(err)
	}
	mustRun(t, w)
	if n := w.Staging.QueryString(t, w.StagingDB, "SELECT count(*)::text FROM bug WHERE title = 'changed'"); n != "10" || liveSlot(t, w) != "b" {
		t.Fatalf("%s changed bugs on slot %s", n, liveSlot(t, w))
	}
	if v := w.Staging.QueryString(t, w.StagingDB, "SELECT version::text FROM schema_migrations"); v != fmt.Sprint(stagingtest.CodePatch) {
		t.Errorf("staging at patch %s", v)
	}

	// A dry run's exit status says whether the rebuild would start (README: 1 for a
	// corrupt backup). It read only the manifest, so it planned a restore of a base
	// backup whose files no longer match it, which the rebuild refuses at its restore.
	manifests, err := filepath.Glob(filepath.Join(w.BackupDir, "basebackup-*.basebackup.json"))
	if err != nil || len(manifests) == 0 {
		t.Fatalf("no base backup manifest in %s: %v", w.BackupDir, err)
	}
	slices.Sort(manifests)
	newest := strings.TrimSuffix(manifests[len(manifests)-1], ".basebackup.json")
	files, err := filepath.Glob(filepath.Join(newest, "*.tar.gz"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no tar file in %s: %v", newest, err)
	}
	f, err := os.OpenFile(files[0], os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteAt([]byte("XX"), 100); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	rep, err = open(t, w).Plan(context.Background())
	if !errors.Is(err, physical.ErrChecksum) || rep.Outcome != staging.OutcomeFailed {
		t.Fatalf("dry run over a corrupt base backup: %v (want ErrChecksum)\n%s", err, rep.Text())
	}
	if _, err := open(t, w).Run(context.Background()); !errors.Is(err, physical.ErrChecksum) {
		t.Fatalf("rebuild over a corrupt base backup: %v (want ErrChecksum, as the dry run said)", err)
	}
	if liveSlot(t, w) != "b" {
		t.Errorf("live slot %s after the refused rebuild, want b", liveSlot(t, w))
	}
}

// TestPhysicalPostRestoreLeavesNoOldRowVersions: the world's post-restore SQL masks the
// e-mails with an UPDATE on the side cluster (no [mask]). The old row versions, in the
// table's pages and index, production's statistics and the WAL's full-page images
// would stay in the live slot's files; the rebuild rewrites what the SQL changed and
// removes the WAL again. With post_restore_rewrite = false they stay.
func TestPhysicalPostRestoreLeavesNoOldRowVersions(t *testing.T) {
	w := newPhysicalWorld(t)
	w.Production.Exec(t, w.ProdDB, "ANALYZE person") // production's statistics hold its e-mails
	if _, err := w.Backup(context.Background()); err != nil {
		t.Fatal(err)
	}
	editConfig(t, w.ConfigPath, `settings = { fsync = "off"`, `settings = { full_page_writes = "on", fsync = "off"`)
	editConfig(t, w.ConfigPath, "[database]\n", "[database]\npost_restore_rewrite = false\n")
	mustRun(t, w)
	if f := fileHolding(t, filepath.Join(w.ClusterDir, liveSlot(t, w)), "", "@users.example.com"); f == "" {
		t.Fatal("with post_restore_rewrite = false no file of the live slot holds production's e-mails: the test proves nothing")
	}

	editConfig(t, w.ConfigPath, "post_restore_rewrite = false\n", "")
	rep := mustRun(t, w)
	if n := w.Staging.QueryString(t, w.StagingDB, "SELECT count(*)::text FROM person WHERE email NOT LIKE '%@staging.invalid'"); n != "0" {
		t.Fatalf("%s people not sanitised", n)
	}
	if d := stepDetail(rep, "neutralize"); !strings.Contains(d, "then rewrote the 2 table(s) they updated or deleted rows of (public.person, public.session)") {
		t.Fatalf("the report does not say what was rewritten: %q", d)
	}
	if f := fileHolding(t, filepath.Join(w.ClusterDir, liveSlot(t, w)), "", "@users.example.com"); f != "" {
		t.Fatalf("after the post-restore SQL masked the e-mails, %s holds production's", f)
	}
}

// TestPhysicalPostRestoreSlotsHoldNoUnmaskedCopy: post-restore SQL that masks (the
// world's; post_restore_rewrite is not false) is masking, as [mask] is: the first
// rebuild seeds no copy of production's files into the other slot, and a rebuild that
// fails before its SQL has run empties the slot it prepared.
func TestPhysicalPostRestoreSlotsHoldNoUnmaskedCopy(t *testing.T) {
	w := newPhysicalWorld(t)
	rep := mustRun(t, w)
	if d := stepDetail(rep, "restore"); strings.Contains(d, "seeded") {
		t.Fatalf("the first rebuild seeded the other slot with production's unmasked files: %q", d)
	}
	live := liveSlot(t, w)
	if f := fileHolding(t, w.ClusterDir, live, "@users.example.com"); f != "" {
		t.Fatalf("after the first rebuild, %s holds production's e-mails", f)
	}
	// A post-restore file that fails before the one that masks.
	if err := os.WriteFile(filepath.Join(w.Dir, "first.sql"), []byte("SELECT 1/0;\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	editConfig(t, w.ConfigPath, `post_restore = ["sanitize.sql"]`, `post_restore = ["first.sql", "sanitize.sql"]`)
	rep, err := run(t, w)
	if err == nil || liveSlot(t, w) != live {
		t.Fatalf("the rebuild with a failing post-restore file: %v, live slot %s\n%s", err, liveSlot(t, w), rep.Text())
	}
	if !strings.Contains(strings.Join(rep.Notes, "\n"), "with post-restore SQL (database.post_restore_rewrite: it masks) it may hold production's unmasked data") {
		t.Errorf("the report does not say the prepared slot was emptied:\n%s", rep.Text())
	}
	if f := fileHolding(t, w.ClusterDir, live, "@users.example.com"); f != "" {
		t.Fatalf("after the failed rebuild, %s holds production's e-mails", f)
	}
}
