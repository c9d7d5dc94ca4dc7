package staging_test

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/restage/restage/dbrestore/mask"
	"github.com/restage/restage/staging"
	"github.com/restage/restage/staging/stagingtest"
)

const e2eMaskKey = "e2e-mask-key-0123456789"

// maskedWorld is a world whose staging config masks person and truncates session.
func maskedWorld(t *testing.T, opts stagingtest.Options) *stagingtest.World {
	t.Helper()
	t.Setenv(stagingtest.MaskKeyEnv, e2eMaskKey)
	opts.Mask = true
	return newWorld(t, opts)
}

// pgDump returns pg_dump's plain SQL of a staging database.
func pgDump(t *testing.T, w *stagingtest.World, db string) string {
	t.Helper()
	bin := "pg_dump"
	if dirs, _ := filepath.Glob("/usr/lib/postgresql/*/bin/pg_dump"); len(dirs) > 0 {
		bin = dirs[len(dirs)-1]
	}
	out, err := exec.Command(bin, "--dbname", w.Staging.DSN(db)).Output()
	if err != nil {
		t.Fatalf("pg_dump: %v", err)
	}
	return string(out)
}

func TestMaskedRebuildEndToEnd(t *testing.T) {
	w := maskedWorld(t, stagingtest.Options{})
	rep := mustRun(t, w)

	// No production name or e-mail address, and no session, is anywhere in staging.
	dump := pgDump(t, w, w.StagingDB)
	for _, sql := range []string{"SELECT string_agg(name, '|') FROM person", "SELECT string_agg(email, '|') FROM person",
		"SELECT string_agg(id, '|') FROM session"} {
		for _, v := range strings.Split(w.Production.QueryString(t, w.ProdDB, sql), "|") {
			if strings.Contains(dump, v+"\t") || strings.Contains(dump, "\t"+v+"\n") {
				t.Fatalf("production value %q is in pg_dump of staging", v)
			}
		}
	}
	// Joins still match, e-mails are unique, and the service serves the masked data.
	for _, check := range []struct{ sql, want string }{
		{"SELECT count(*)::text FROM bug b JOIN person p ON p.id = b.reporter", w.Production.QueryString(t, w.ProdDB, "SELECT count(*)::text FROM bug")},
		{"SELECT count(DISTINCT email)::text FROM person", "500"},
		{"SELECT count(*)::text FROM person WHERE email LIKE 'u%@example.invalid' AND name NOT LIKE 'Person %'", "500"},
		{"SELECT count(*)::text FROM session", "0"},
	} {
		if got := w.Staging.QueryString(t, w.StagingDB, check.sql); got != check.want {
			t.Errorf("%s = %s, want %s", check.sql, got, check.want)
		}
	}

	// The report and the history list each masked column, its rule, its rows and the time.
	if rep.Mask == nil || len(rep.Mask.Columns) != 2 || len(rep.Mask.Tables) != 1 || rep.Mask.Seconds <= 0 {
		t.Fatalf("report mask = %+v", rep.Mask)
	}
	text := rep.Text()
	for _, want := range []string{"masking:     2 columns, 1 table rule", "public.person.email: email, 500 values",
		"public.person.name: name, 500 values", "public.session: truncate"} {
		if !strings.Contains(text, want) {
			t.Errorf("report lacks %q:\n%s", want, text)
		}
	}
	hist, err := staging.History(w.StateDir)
	if err != nil || len(hist) != 1 || hist[0].Mask == nil || len(hist[0].Mask.Columns) != 2 || hist[0].Mask.Columns[0].Rows != 500 {
		t.Fatalf("history: %+v %v", hist, err)
	}

	// The key is in no report, log, history line or mail.
	histFile, _ := os.ReadFile(filepath.Join(w.StateDir, "history.jsonl"))
	js, _ := json.Marshal(rep)
	for what, s := range map[string]string{"report": text + string(js), "log": rep.Log, "history": string(histFile),
		"mail": lastMail(t, w, 1)} {
		if strings.Contains(s, e2eMaskKey) {
			t.Errorf("the mask key is in the %s", what)
		}
	}

	// A second rebuild gives identical masked values.
	before := w.Staging.QueryString(t, w.StagingDB, "SELECT md5(string_agg(p::text, ',' ORDER BY id)) FROM person p")
	if _, err := w.Backup(context.Background()); err != nil {
		t.Fatal(err)
	}
	mustRun(t, w)
	if after := w.Staging.QueryString(t, w.StagingDB, "SELECT md5(string_agg(p::text, ',' ORDER BY id)) FROM person p"); after != before {
		t.Fatal("two rebuilds gave different masked values")
	}
}

// A backup with a new personal column that has no rule fails before anything changes,
// naming the column; a dry run lists it and offers a rule; a rule for a column the
// backup lacks is a config error (exit 2).
func TestMaskedRebuildFailsClosed(t *testing.T) {
	w := maskedWorld(t, stagingtest.Options{BackupWait: time.Second})
	mustRun(t, w)
	before := snapshot(t, w)

	ctx := context.Background()
	w.Production.Exec(t, w.ProdDB, "ALTER TABLE bug ADD COLUMN reporter_email text DEFAULT 'someone@prod.example.org'")
	if _, err := w.Backup(ctx); err != nil {
		t.Fatal(err)
	}
	rep, err := run(t, w)
	if err == nil || !errors.Is(err, mask.ErrUnmasked) || staging.ExitStatus(err) != staging.ExitFailed {
		t.Fatalf("rebuild with an unmasked column: %v (exit %d)", err, staging.ExitStatus(err))
	}
	if rep.FailedStep != "mask" || rep.Mask == nil || strings.Join(rep.Mask.Unmasked, " ") != "public.bug.reporter_email" ||
		!strings.Contains(rep.Text(), "public.bug.reporter_email") {
		t.Fatalf("report: failed step %q, mask %+v\n%s", rep.FailedStep, rep.Mask, rep.Text())
	}
	if after := snapshot(t, w); after != before {
		t.Fatalf("staging changed:\nbefore %s\nafter  %s", before, after)
	}

	// The dry run lists it and the starter rules suggest one.
	rb := open(t, w)
	plan, err := rb.Plan(ctx)
	if err == nil || plan.Mask == nil || strings.Join(plan.Mask.Unmasked, " ") != "public.bug.reporter_email" ||
		!strings.Contains(plan.Text(), "unmasked:    1 column without a decision in [mask.columns]:\n  public.bug.reporter_email") {
		t.Fatalf("dry run: %v %+v", err, plan.Mask)
	}
	starter, err := rb.MaskRules(ctx)
	if err != nil || !strings.Contains(starter, `"public.bug.reporter_email" = "email"`) {
		t.Fatalf("starter rules: %v\n%s", err, starter)
	}

	// A rule for a column the backup lacks: a config error, exit 2.
	cfg, err := os.ReadFile(w.ConfigPath)
	if err != nil {
		t.Fatal(err)
	}
	fixed := strings.Replace(string(cfg), "[mask.tables]", "\"public.bug.reporter_email\" = \"email\"\n\"public.bug.reporter_mail\" = \"email\"\n[mask.tables]", 1)
	if err := os.WriteFile(w.ConfigPath, []byte(fixed), 0o644); err != nil {
		t.Fatal(err)
	}
	_, err = run(t, w)
	if staging.ExitStatus(err) != staging.ExitUsage || !strings.Contains(err.Error(), `mask.columns."public.bug.reporter_mail"`) {
		t.Fatalf("rule for a missing column: %v (exit %d)", err, staging.ExitStatus(err))
	}
	if after := snapshot(t, w); after != before {
		t.Fatalf("staging changed:\nbefore %s\nafter  %s", before, after)
	}
	// An unknown kind: the config does not load, naming the key.
	bad := strings.Replace(string(cfg), `= "name"`, `= "fake"`, 1)
	if err := os.WriteFile(w.ConfigPath, []byte(bad), 0o644); err != nil {
		t.Fatal(err)
	}
	_, err = staging.LoadEnvironment(w.ConfigPath)
	if staging.ExitStatus(err) != staging.ExitUsage || !strings.Contains(err.Error(), `mask.columns."public.person.name": "fake"`) {
		t.Fatalf("unknown kind: %v", err)
	}
	// Fixed, the rebuild succeeds.
	if err := os.WriteFile(w.ConfigPath, []byte(strings.Replace(fixed, "\"public.bug.reporter_mail\" = \"email\"\n", "", 1)), 0o644); err != nil {
		t.Fatal(err)
	}
	mustRun(t, w)
	if n := w.Staging.QueryString(t, w.StagingDB, "SELECT count(*)::text FROM bug WHERE reporter_email LIKE '%prod.example.org'"); n != "0" {
		t.Fatalf("%s production e-mails in bug.reporter_email", n)
	}
}
