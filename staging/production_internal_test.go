package staging

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/restage/restage/dbrestore"
	"github.com/restage/restage/schema"
)

const productionTOML = `environment = "production"
role        = "production"
lock_file   = "run/production.lock"
state_dir   = "state"
[database]
admin_dsn = "postgres://postgres@127.0.0.1:1/postgres"
name      = "bugs_prod"
[code]
source   = "src"
releases = "releases"
current  = "current"
[service]
type    = "command"
start   = ["true"]
stop    = ["true"]
status  = ["true"]
[preflight]
staging_state_dir = "staging-state"
`

func writeProduction(t *testing.T, text string) string {
	t.Helper()
	dir := t.TempDir()
	if err := os.MkdirAll(filepath.Join(dir, "src"), 0o755); err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(dir, "production.toml")
	if err := os.WriteFile(p, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// A production Rebuilder's databases refuse every change to a whole database, whoever
// asks (rule 8): the promote has no path to a restore, drop, rename, swap or clone.
func TestProductionDatabasesRefuseEveryChange(t *testing.T) {
	c, err := LoadProduction(writeProduction(t, productionTOML), nil)
	if err != nil {
		t.Fatal(err)
	}
	r, err := OpenProduction(c, OpenOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	if r.cfg.Role != RoleProduction || r.cfg.Preflight == nil || r.cfg.Preflight.StagingStateDir != filepath.Join(filepath.Dir(c.path), "staging-state") {
		t.Fatalf("wired: role %q preflight %+v", r.cfg.Role, r.cfg.Preflight)
	}
	ctx := context.Background()
	db := r.cfg.Databases
	for name, err := range map[string]error{
		"drop":   db.Drop(ctx, "bugs_prod"),
		"rename": db.Rename(ctx, "bugs_prod", "x"),
		"swap":   db.Swap(ctx, "bugs_prod", "bugs_prod_next", "bugs_prod_prev"),
		"clone":  db.Clone(ctx, "bugs_prod", "x"),
		"guard":  db.GuardProduction(ctx),
		"source": db.GuardSource(ctx, &dbrestore.Backup{}),
		"restore": func() error {
			_, err := db.Restore(ctx, &dbrestore.Backup{}, dbrestore.RestoreOptions{Target: "bugs_prod"})
			return err
		}(),
	} {
		if !errors.Is(err, dbrestore.ErrProduction) {
			t.Errorf("%s on production: %v", name, err)
		}
	}
	for name, err := range map[string]error{
		"rebuild": func() error { _, err := r.Run(ctx); return err }(),
		"deploy":  func() error { _, err := r.Deploy(ctx, DeployOptions{}); return err }(),
		"dry run": func() error { _, err := r.Plan(ctx); return err }(),
	} {
		if !errors.Is(err, dbrestore.ErrProduction) || !errors.Is(err, ErrRole) || ExitStatus(err) != ExitUsage {
			t.Errorf("%s of production: %v", name, err)
		}
	}
}

func TestProductionConfig(t *testing.T) {
	if _, err := LoadEnvironment(writeProduction(t, productionTOML)); !errors.Is(err, ErrConfig) || !strings.Contains(err.Error(), "nightly and experimental refuse it") {
		t.Errorf("nightly loaded a production config: %v", err)
	}
	for change, want := range map[string]string{
		`role        = "production"`:          `role "staging": train promote deploys only`,
		"[preflight]\n":                       "unknown key",
		`staging_state_dir = "staging-state"`: "missing required key preflight.staging_state_dir",
		"[database]\n":                        "database.clones",
		`[preflight]` + "\n" + `staging_state_dir = "staging-state"` + "\n": "missing required section [preflight]",
		"[service]\n":             "backup:",
		`name      = "bugs_prod"`: "database.strategy",
		`staging_state_dir = "staging-state"` + "\n" + `max_transaction_age = "soon"`:    "max_transaction_age",
		`staging_state_dir = "staging-state"` + "\n" + `system_users = ["postgres", ""]`: "preflight.system_users",
	} {
		var text string
		switch want {
		case "database.clones":
			text = strings.Replace(productionTOML, change, change+"clones = [\"x\"]\n", 1)
		case "backup:":
			text = strings.Replace(productionTOML, change, "[backup]\ndir = \"b\"\n"+change, 1)
		case "database.strategy":
			text = strings.Replace(productionTOML, change, change+"\nstrategy = \"swap\"", 1)
		case "unknown key":
			text = strings.Replace(productionTOML, change, change+"max_lag = \"1s\"\n", 1)
		case "missing required section [preflight]":
			text = strings.Replace(productionTOML, change, "", 1)
		case "missing required key preflight.staging_state_dir":
			text = strings.Replace(productionTOML, change, `max_migration_time = "1s"`, 1)
		default:
			text = strings.Replace(productionTOML, change, strings.Replace(change, `"production"`, `"staging"`, 1), 1)
			if strings.Contains(change, "\n") {
				text = strings.Replace(productionTOML, `staging_state_dir = "staging-state"`, change, 1)
			}
		}
		_, err := LoadProduction(writeProduction(t, text), nil)
		if !errors.Is(err, ErrConfig) || !strings.Contains(err.Error(), want) {
			t.Errorf("%q: %v; want an error naming %q", want, err, want)
		}
	}
	for _, key := range []string{"jobs = 4", "restore_timeout = \"1h\"", "restore_dsn = \"postgres://r@db/postgres\"", "post_restore_rewrite = false"} {
		text := strings.Replace(productionTOML, "[database]\n", "[database]\n"+key+"\n", 1)
		want := "database." + strings.Fields(key)[0]
		if _, err := LoadProduction(writeProduction(t, text), nil); !errors.Is(err, ErrConfig) || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: %v; want an error naming %s", key, err, want)
		}
	}
}

func TestCheckPreflight(t *testing.T) {
	p := &Preflight{MaxTransactionAge: time.Minute, MaxReplicationLag: 30 * time.Second, MaxMigrationTime: 10 * time.Second,
		SystemUsers: []string{"postgres", "app"}, StagingStateDir: "/staging"}
	history := []*Report{
		{ID: "old", Schema: &SchemaInfo{Migrations: []MigrationTime{{Version: 4, Name: "slow", Duration: time.Second}}}},
		{ID: "new", Schema: &SchemaInfo{Migrations: []MigrationTime{{Version: 4, Name: "slow", Duration: 12 * time.Second}, {Version: 5, Name: "fast", Duration: time.Second}}}},
		{ID: "failed before the schema step"},
	}
	ok := []dbrestore.Session{{PID: 1, User: "app", State: "idle"}, {PID: 2, User: "postgres", XactAge: 30 * time.Second}}
	if reasons, _ := checkPreflight(p, ok, []dbrestore.Replica{{Name: "s1", ReplayLag: time.Second}},
		[]schema.Migration{{Version: 5, Name: "fast"}}, history); len(reasons) > 0 {
		t.Errorf("a fine production refused: %v", reasons)
	}
	// A prepared transaction younger than the limit is fine, whoever prepared it.
	if reasons, _ := checkPreflight(p, append(ok, dbrestore.Session{User: "bob", Database: "shop", State: "prepared", XactAge: time.Second, GID: "t1"}),
		nil, nil, history); len(reasons) > 0 {
		t.Errorf("a young prepared transaction refused: %v", reasons)
	}
	reasons, _ := checkPreflight(p,
		append(ok, dbrestore.Session{PID: 3, User: "alice", XactAge: 2 * time.Minute}, dbrestore.Session{PID: 4, User: "alice"},
			dbrestore.Session{User: "bob", Database: "shop", State: "prepared", XactAge: time.Hour, GID: "orphan 1"}),
		[]dbrestore.Replica{{Name: "s1", ReplayLag: time.Minute}},
		[]schema.Migration{{Version: 4, Name: "slow"}, {Version: 5, Name: "fast"}, {Version: 6, Name: "new"}}, history)
	all := strings.Join(reasons, "\n")
	for _, want := range []string{
		"a transaction has been open for 2m0s (pid 3, user alice",
		`2 connection(s) of user "alice"`,
		`standby "s1" () replays 1m0s behind`,
		"migration 4_slow took 12s on staging (run new)",
		"migration 6_new never ran on staging",
		`prepared transaction "orphan 1" (user bob, database shop) has been open for 1h0m0s, over max_transaction_age 1m0s`,
	} {
		if !strings.Contains(all, want) {
			t.Errorf("reasons lack %q:\n%s", want, all)
		}
	}
	if len(reasons) != 6 {
		t.Errorf("%d reasons, want 6:\n%s", len(reasons), all)
	}
	// Defaults: 60s, 60s, 15s, postgres.
	reasons, _ = checkPreflight(&Preflight{}, []dbrestore.Session{{User: "postgres", XactAge: 59 * time.Second}, {User: "app"}}, nil,
		[]schema.Migration{{Version: 4, Name: "slow"}}, history)
	if len(reasons) != 1 || !strings.Contains(reasons[0], `user "app"`) {
		t.Errorf("defaults: %v", reasons)
	}
}

// The preflight runs on production only the migration files staging ran: a pending
// file whose SHA-256 is not the one staging's newest run of it recorded (or recorded as
// unreadable) refuses the promote; a run recorded before checksums is not compared. The
// checksum survives the history's JSON.
func TestCheckPreflightComparesMigrationFiles(t *testing.T) {
	dir := t.TempDir()
	ran, other := filepath.Join(dir, "7_x.up.sql"), filepath.Join(dir, "other.sql")
	os.WriteFile(ran, []byte("ALTER TABLE bug ADD COLUMN x int;\n"), 0o644)
	os.WriteFile(other, []byte("ALTER TABLE bug ADD COLUMN x int;\nDELETE FROM comment;\n"), 0o644)
	sum, err := fileSHA256(ran)
	if err != nil {
		t.Fatal(err)
	}
	line, err := (&Report{ID: "r", Schema: &SchemaInfo{Migrations: []MigrationTime{{Version: 7, Name: "x", Duration: time.Second, SHA256: sum}}}}).MarshalJSON()
	if err != nil {
		t.Fatal(err)
	}
	var back Report
	if err := back.UnmarshalJSON(line); err != nil || back.Schema.Migrations[0].SHA256 != sum {
		t.Fatalf("the history line loses the checksum: %s (%v)", line, err)
	}
	history := func(s string) []*Report {
		return []*Report{{ID: "r", Schema: &SchemaInfo{Migrations: []MigrationTime{{Version: 7, Name: "x", Duration: time.Second, SHA256: s}}}}}
	}
	p := &Preflight{}
	for _, tc := range []struct {
		path, recorded, want string
	}{
		{ran, sum, ""},
		{other, sum, "7_x is not the file staging ran"},
		{filepath.Join(dir, "missing.sql"), sum, "7_x is not the file staging ran"},
		{ran, unreadableFile, "7_x is not the file staging ran"},
		{other, "", ""}, // an older restage's run: no checksum to compare
	} {
		reasons, _ := checkPreflight(p, nil, nil, []schema.Migration{{Version: 7, Name: "x", Path: tc.path}}, history(tc.recorded))
		if got := strings.Join(reasons, "; "); (tc.want == "") != (got == "") || !strings.Contains(got, tc.want) {
			t.Errorf("%s against %q: %q, want %q", filepath.Base(tc.path), tc.recorded, got, tc.want)
		}
	}
}

// checkCommit compares the release's commit with staging's newest successful rebuild's,
// skipping failed runs, deploys and runs that recorded no commit.
func TestCheckCommit(t *testing.T) {
	run := func(id, kind string, outcome Outcome, commit string) *Report {
		return &Report{ID: id, Kind: kind, Outcome: outcome, Release: &ReleaseInfo{ID: id, Commit: commit}}
	}
	history := []*Report{
		run("r1", "rebuild", OutcomeOK, "aaa"),
		run("r2", "rebuild", OutcomeOK, ""),
		run("r3", "rebuild", OutcomeFailed, "ccc"),
		run("r4", "deploy", OutcomeOK, "ddd"),
	}
	for _, tc := range []struct {
		history      []*Report
		commit       string
		reason, fine string
	}{
		{history, "aaa", "", "staging ran commit aaa (run r1)"},
		{history, "ccc", "the release is commit ccc, and staging's newest successful rebuild (run r1 in s/history.jsonl) ran aaa", ""},
		{history, "", "", ""},
		{history[1:], "ccc", "", ""},
		{nil, "aaa", "", ""},
	} {
		reason, fine := checkCommit(tc.history, tc.commit, "s")
		if !strings.HasPrefix(reason, tc.reason) || (tc.reason == "") != (reason == "") || fine != tc.fine {
			t.Errorf("commit %q over %d runs: %q, %q", tc.commit, len(tc.history), reason, fine)
		}
	}
}
