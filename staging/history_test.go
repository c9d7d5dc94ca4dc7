package staging

import (
	"context"
	"encoding/json"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"
)

// sampleReport is a finished rebuild with every duration the history stores, each
// with nanoseconds that a float of seconds must carry.
func sampleReport(id string, started time.Time) *Report {
	return &Report{
		ID: id, Environment: "staging", Kind: "rebuild", Strategy: Swap, Outcome: OutcomeOK,
		Started: started, Total: 62*time.Minute + 3456789012, Downtime: 4*time.Second + 120000001,
		Backup: &BackupInfo{Name: "prod-1.dump", Path: "/srv/backups/prod-1.dump", Database: "prod",
			Created: started.Add(-3 * time.Hour), Age: 3*time.Hour + 17, Size: 123 << 20},
		Release: &ReleaseInfo{ID: "r7", Revision: "main@abc", Previous: "r6"},
		Schema: &SchemaInfo{From: 3, To: 5, Migrations: []MigrationTime{
			{Version: 4, Name: "add_x", Duration: 1500 * time.Millisecond}, {Version: 5, Name: "add_y", Duration: 999}}},
		Steps: []*Step{
			{Name: "backup", Started: started, Duration: 2*time.Second + 1, Status: "ok", Detail: "prod-1.dump"},
			{Name: "restore", Started: started.Add(2 * time.Second), Duration: 55*time.Minute + 123456789, Status: "ok"},
			{Name: "start", Started: started.Add(time.Hour), Duration: 3 * time.Second, Status: "failed", Error: "boom", Output: "a\nb\n"},
		},
		State: "serving", Notes: []string{"n"}, RequestedBy: "ops",
	}
}

func TestReportJSONStoresSeconds(t *testing.T) {
	rep := sampleReport("20250101T020000Z-aa", time.Date(2025, 1, 1, 2, 0, 0, 0, time.UTC))
	rep.Log = "the whole log"
	line, err := json.Marshal(rep)
	if err != nil {
		t.Fatal(err)
	}
	var raw map[string]any
	if err := json.Unmarshal(line, &raw); err != nil {
		t.Fatal(err)
	}
	if raw["v"] != 2.0 || raw["total_seconds"] != 3723.456789012 || raw["downtime_seconds"] != 4.120000001 {
		t.Errorf("top level: v=%v total_seconds=%v downtime_seconds=%v", raw["v"], raw["total_seconds"], raw["downtime_seconds"])
	}
	for _, k := range []string{"total", "downtime", "Log", "log"} {
		if _, ok := raw[k]; ok {
			t.Errorf("key %q in %s", k, line)
		}
	}
	step := raw["steps"].([]any)[1].(map[string]any)
	if step["duration_seconds"] != 3300.123456789 || step["duration"] != nil {
		t.Errorf("step: %v", step)
	}
	if b := raw["backup"].(map[string]any); b["age_seconds"] != 10800.000000017 || b["age"] != nil || b["size"] != float64(123<<20) {
		t.Errorf("backup: %v", b)
	}
	if m := raw["schema"].(map[string]any)["migrations"].([]any)[0].(map[string]any); m["duration_seconds"] != 1.5 {
		t.Errorf("migration: %v", m)
	}

	var back Report
	if err := json.Unmarshal(line, &back); err != nil {
		t.Fatal(err)
	}
	rep.Log = "" // not part of the history
	if !reflect.DeepEqual(&back, rep) {
		t.Errorf("round trip:\n got %+v\nwant %+v", back, *rep)
	}
}

// A line as restage wrote it before the history had a format version: durations in
// nanoseconds under their plain names.
const v1Line = `{"id":"20240601T020000Z-0a1b2c3d4e5f","environment":"staging","kind":"rebuild","strategy":"swap","outcome":"ok",` +
	`"started":"2024-06-01T02:00:00Z","total":93500000000,"downtime":2250000000,` +
	`"backup":{"name":"prod-7.dump","path":"/srv/backups/prod-7.dump","database":"prod","created":"2024-06-01T00:30:00Z","age":5400000000000,"size":1048576},` +
	`"release":{"id":"r3","revision":"/src@main","previous":"r2"},` +
	`"schema":{"from":1,"to":2,"migrations":[{"version":2,"name":"add_x","duration":1000000}]},` +
	`"steps":[{"name":"backup","started":"2024-06-01T02:00:00Z","duration":500000000,"status":"ok","detail":"prod-7.dump"},` +
	`{"name":"restore","started":"2024-06-01T02:00:01Z","duration":80000000000,"status":"ok"}],` +
	`"state":"staging serves release r3","notes":["a note"]}`

func TestHistoryReadsLinesFromBeforeSeconds(t *testing.T) {
	dir := t.TempDir()
	writeHistory(t, dir, v1Line+"\n")
	rep := sampleReport("new", time.Now().UTC().Truncate(time.Second))
	if err := appendHistory(dir, rep, 0); err != nil {
		t.Fatal(err)
	}
	hist, err := History(dir)
	if err != nil || len(hist) != 2 {
		t.Fatalf("History: %d runs, %v", len(hist), err)
	}
	old := hist[0]
	if old.Total != 93500*time.Millisecond || old.Downtime != 2250*time.Millisecond || old.Outcome != OutcomeOK ||
		old.Backup.Age != 90*time.Minute || old.Backup.Size != 1<<20 || old.Release.Previous != "r2" ||
		old.Schema.To != 2 || old.Schema.Migrations[0].Duration != time.Millisecond ||
		len(old.Steps) != 2 || old.Steps[0].Duration != 500*time.Millisecond || old.Steps[1].Duration != 80*time.Second ||
		old.Steps[0].Detail != "prod-7.dump" || len(old.Notes) != 1 {
		t.Errorf("old line read as %+v (backup %+v, steps %+v %+v)", old, old.Backup, old.Steps[0], old.Steps[1])
	}
	if !reflect.DeepEqual(hist[1], rep) {
		t.Errorf("new line read as %+v", hist[1])
	}
}

func writeHistory(t *testing.T, dir, text string) string {
	t.Helper()
	p := filepath.Join(dir, HistoryFile)
	if err := os.WriteFile(p, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestHistorySkipsUnreadableLines(t *testing.T) {
	dir := t.TempDir()
	good := func(id string) string {
		b, err := json.Marshal(sampleReport(id, time.Date(2025, 1, 1, 2, 0, 0, 0, time.UTC)))
		if err != nil {
			t.Fatal(err)
		}
		return string(b)
	}
	g2 := good("two")
	writeHistory(t, dir, strings.Join([]string{
		good("one"),
		`{"id":"x","total":`,        // 2: cut short
		"garbage",                   // 3
		`{"v":3,"id":"future"}`,     // 4: a newer format
		`{"note":"no report"}`,      // 5
		"",                          // 6: blank lines are no runs, and no errors
		g2[:len(g2)/2] + "\x00\xff", // 7: half a line and binary
		v1Line,                      // 8
		good("three"),               // 9
	}, "\n")+"\n")
	hist, err := History(dir)
	var herr *HistoryError
	if !errors.Is(err, ErrHistoryCorrupt) || !errors.As(err, &herr) {
		t.Fatalf("err = %v, want a *HistoryError", err)
	}
	var ids []string
	for _, r := range hist {
		ids = append(ids, r.ID)
	}
	if got := strings.Join(ids, " "); got != "one 20240601T020000Z-0a1b2c3d4e5f three" {
		t.Errorf("runs read: %s", got)
	}
	var lines []int
	for _, l := range herr.Lines {
		lines = append(lines, l.Line)
	}
	if !reflect.DeepEqual(lines, []int{2, 3, 4, 5, 7}) {
		t.Errorf("skipped lines %v, want [2 3 4 5 7]: %v", lines, err)
	}
	if !strings.Contains(err.Error(), "version 3") || !strings.Contains(err.Error(), HistoryFile) {
		t.Errorf("error does not say why: %v", err)
	}

	// No history yet: fs.ErrNotExist and no runs.
	if hist, err := History(t.TempDir()); !errors.Is(err, fs.ErrNotExist) || hist != nil {
		t.Errorf("missing history: %v, %v", hist, err)
	}
}

func TestHistoryKeepsTheNewestRuns(t *testing.T) {
	dir := t.TempDir()
	// An old-format line and a line cut short by a crash (no newline) are kept as they
	// are until they age out, and the next run's line does not run into the cut one.
	writeHistory(t, dir, v1Line+"\n"+`{"id":"cut","tot`)
	t0 := time.Date(2025, 1, 1, 2, 0, 0, 0, time.UTC)
	ids := func() string {
		t.Helper()
		hist, _ := History(dir)
		var out []string
		for _, r := range hist {
			out = append(out, r.ID)
		}
		return strings.Join(out, " ")
	}
	lines := func() int {
		t.Helper()
		b, err := os.ReadFile(filepath.Join(dir, HistoryFile))
		if err != nil {
			t.Fatal(err)
		}
		return strings.Count(string(b), "\n")
	}
	if err := appendHistory(dir, sampleReport("a", t0), 4); err != nil {
		t.Fatal(err)
	}
	if _, err := History(dir); !errors.Is(err, ErrHistoryCorrupt) || ids() != "20240601T020000Z-0a1b2c3d4e5f a" || lines() != 3 {
		t.Fatalf("after one run: %q, %d lines, %v", ids(), lines(), err)
	}
	for i, id := range []string{"b", "c", "d"} {
		if err := appendHistory(dir, sampleReport(id, t0.Add(time.Duration(i+1)*24*time.Hour)), 4); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := History(dir); err != nil || ids() != "a b c d" || lines() != 4 {
		t.Fatalf("bounded to 4: %q, %d lines, %v", ids(), lines(), err)
	}
	if err := appendHistory(dir, sampleReport("e", t0.Add(5*24*time.Hour)), 4); err != nil {
		t.Fatal(err)
	}
	if ids() != "b c d e" || lines() != 4 {
		t.Fatalf("after a fifth run: %q, %d lines", ids(), lines())
	}
	st, err := os.Stat(filepath.Join(dir, HistoryFile))
	if err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("history mode %v, %v; want 0600", st.Mode(), err)
	}
	// The default keeps DefaultHistoryKeep.
	if err := appendHistory(dir, sampleReport("f", t0), 0); err != nil || ids() != "b c d e f" {
		t.Fatalf("keep 0: %q, %v", ids(), err)
	}
	if err := appendHistory(dir, sampleReport("g", t0), 1); err != nil || ids() != "g" || lines() != 1 {
		t.Fatalf("keep 1: %q, %d lines, %v", ids(), lines(), err)
	}
}

func TestHistoryNeverThroughASymlink(t *testing.T) {
	dir := t.TempDir()
	target := filepath.Join(t.TempDir(), "elsewhere")
	if err := os.WriteFile(target, []byte(v1Line+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(target, filepath.Join(dir, HistoryFile)); err != nil {
		t.Fatal(err)
	}
	if err := appendHistory(dir, sampleReport("a", time.Now()), 1); err == nil {
		t.Error("appended through a symlink")
	}
	if hist, err := History(dir); err == nil || hist != nil {
		t.Errorf("read through a symlink: %v, %v", hist, err)
	}
	b, err := os.ReadFile(target)
	st, _ := os.Stat(target)
	if err != nil || string(b) != v1Line+"\n" || st.Mode().Perm() != 0o644 {
		t.Errorf("the symlink's target changed: %q, %v", b, st.Mode())
	}
}

// The Rebuilder keeps HistoryKeep runs.
func TestRebuildHistoryIsBounded(t *testing.T) {
	w := newWorld()
	r := w.rebuilder(t, func(c *Config) { c.HistoryKeep = 2 })
	var ids []string
	for i := range 3 {
		w.backupSeq = i + 1
		rep, err := r.Run(context.Background())
		if err != nil {
			t.Fatalf("run %d: %v", i, err)
		}
		ids = append(ids, rep.ID)
	}
	hist, err := History(r.cfg.StateDir)
	if err != nil || len(hist) != 2 || hist[0].ID != ids[1] || hist[1].ID != ids[2] {
		t.Fatalf("history %v, %v; want the runs %v", hist, err, ids[1:])
	}
	if hist[1].Total <= 0 || hist[1].Steps[0].Duration <= 0 {
		t.Errorf("durations lost: %+v", hist[1])
	}
}

func TestConfigHistoryAndMetricsKeys(t *testing.T) {
	text := sampleConfig + "\n[history]\nkeep = 50\n\n[metrics]\ntextfile = \"node/restage-staging.prom\"\n"
	p := writeConfig(t, text)
	c, err := LoadEnvironment(p)
	if err != nil {
		t.Fatal(err)
	}
	if c.History.Keep != 50 || c.Metrics.Textfile != filepath.Join(filepath.Dir(p), "node/restage-staging.prom") {
		t.Fatalf("[history] %+v, [metrics] %+v", c.History, c.Metrics)
	}
	for _, tc := range []struct{ edit, want string }{
		{"keep = 50", "history.keep -1"},
		{`textfile = "node/restage-staging.prom"`, `metrics.textfile "node/restage.txt"`},
		{"keep = 50", "unknown key history.kept"},
	} {
		repl := map[string]string{"history.keep -1": "keep = -1", `metrics.textfile "node/restage.txt"`: `textfile = "node/restage.txt"`,
			"unknown key history.kept": "kept = 5"}[tc.want]
		_, err := LoadEnvironment(writeConfig(t, strings.Replace(text, tc.edit, repl, 1)))
		if !errors.Is(err, ErrConfig) || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: err = %v, want one naming %q", repl, err, tc.want)
		}
	}

	// Open passes them on; without them, the defaults.
	tmp := t.TempDir()
	open := func(h HistorySection, m MetricsSection) *Rebuilder {
		t.Helper()
		c := &EnvironmentConfig{Environment: "staging", LockFile: filepath.Join(tmp, "x.lock"), StateDir: filepath.Join(tmp, "state"),
			Database: DatabaseSection{AdminDSN: "postgres://postgres@db/postgres", Name: "app", ProductionIDs: []string{"12"}},
			Code:     CodeSection{Source: tmp, Releases: filepath.Join(tmp, "releases"), Current: filepath.Join(tmp, "current")},
			Service:  ServiceSection{Type: "systemd", Keys: &SystemdKeys{Unit: "app.service"}},
			History:  h, Metrics: m}
		r, err := Open(c, OpenOptions{Observer: ObserverFuncs{}})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { r.Close() })
		return r
	}
	if err := os.MkdirAll(filepath.Join(tmp, "releases"), 0o755); err != nil {
		t.Fatal(err)
	}
	r := open(HistorySection{}, MetricsSection{})
	if r.cfg.HistoryKeep != DefaultHistoryKeep || r.cfg.MetricsFile != filepath.Join(tmp, "state", MetricsFile) || r.cfg.Observer == nil {
		t.Errorf("defaults: keep %d, metrics %q, observer %v", r.cfg.HistoryKeep, r.cfg.MetricsFile, r.cfg.Observer)
	}
	r = open(HistorySection{Keep: 7}, MetricsSection{Textfile: "/var/lib/node/restage.prom"})
	if r.cfg.HistoryKeep != 7 || r.cfg.MetricsFile != "/var/lib/node/restage.prom" {
		t.Errorf("set: keep %d, metrics %q", r.cfg.HistoryKeep, r.cfg.MetricsFile)
	}
}
