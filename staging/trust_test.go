package staging

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/restage/restage/codesync"
	"github.com/restage/restage/dbrestore"
	"github.com/restage/restage/internal/safefile"
)

// Rule 7: a deploy never sees a backup, so it must learn production's identity from the
// catalog's manifests or the config, and refuse everything when it knows none.
func TestDeployKnowingNoProductionRefusesEverything(t *testing.T) {
	w := newWorld()
	w.dbs["staging_next"] = "clone"
	before := w.snapshot()
	rep, err := w.rebuilder(t, func(c *Config) { c.Backups = nil }).Deploy(context.Background(), DeployOptions{})
	if !errors.Is(err, dbrestore.ErrNoProduction) || ExitStatus(err) != ExitUsage || rep.FailedStep != "guard" {
		t.Fatalf("err %v (exit %d), failed step %q", err, ExitStatus(err), rep.FailedStep)
	}
	if !strings.Contains(err.Error(), "production_ids") {
		t.Errorf("the error does not say which key to set: %v", err)
	}
	if w.snapshot() != before {
		t.Fatalf("staging changed:\n%s\n%s", before, w.snapshot())
	}
}

func TestDeployRefusesProductionServer(t *testing.T) {
	for name, set := range map[string]func(w *world, c *Config){
		"named by a manifest":  func(w *world, c *Config) { w.sources = []uint64{7, w.sysID} },
		"listed in production": func(w *world, c *Config) { c.Backups = nil; c.Production = []uint64{w.sysID} },
	} {
		t.Run(name, func(t *testing.T) {
			w := newWorld()
			w.dbs["staging_next"] = "clone"
			before := w.snapshot()
			rep, err := w.rebuilder(t, func(c *Config) { set(w, c) }).Deploy(context.Background(), DeployOptions{})
			if !errors.Is(err, dbrestore.ErrProduction) || rep.FailedStep != "guard" {
				t.Fatalf("err %v, failed step %q", err, rep.FailedStep)
			}
			if w.snapshot() != before {
				t.Fatal("production changed")
			}
		})
	}
}

func TestDeployWithProductionKnownFromConfig(t *testing.T) {
	w := newWorld()
	w.dbs["staging_next"] = "clone"
	rep, err := w.rebuilder(t, func(c *Config) { c.Backups = nil; c.Production = []uint64{99} }).Deploy(context.Background(), DeployOptions{})
	if err != nil {
		t.Fatalf("deploy: %v\n%s", err, rep.Text())
	}
}

func TestRebuildRefusesAServerNamedByAnyManifest(t *testing.T) {
	w := newWorld()
	w.sources = []uint64{w.sourceID, w.sysID} // another production database's backups
	before := w.snapshot()
	rep, err := w.rebuilder(t).Run(context.Background())
	if !errors.Is(err, dbrestore.ErrProduction) || rep.FailedStep != "verify" {
		t.Fatalf("err %v, step %q", err, rep.FailedStep)
	}
	if w.snapshot() != before {
		t.Fatal("staging changed")
	}
}

// Item 3: PostgreSQL truncates names to 63 bytes, so "<name>_next" could be "<name>".
func TestLongDatabaseNamesAreRefused(t *testing.T) {
	w := newWorld()
	ok := strings.Repeat("s", maxNameLen-len("_failed"))
	cfg := Config{Environment: "staging", Backups: w, Databases: w, Source: fakeSource{}, Releases: w, Schema: w,
		Service: svc{w}, DSN: func(db string) string { return db }}
	cfg.LockFile = filepath.Join(t.TempDir(), "l")
	cfg.Backup.Database = "prod"
	cfg.Database = ok
	if _, err := New(cfg); err != nil {
		t.Fatalf("a %d-byte name: %v", len(ok), err)
	}
	cfg.Database = ok + "s"
	if _, err := New(cfg); !errors.Is(err, ErrConfig) || !strings.Contains(err.Error(), "63-byte") {
		t.Fatalf("a %d-byte name: %v", len(cfg.Database), err)
	}
	cfg.Database, cfg.Clones = "staging", []string{strings.Repeat("e", 60)}
	if _, err := New(cfg); !errors.Is(err, ErrConfig) {
		t.Fatalf("a long clone name: %v", err)
	}

	text := strings.Replace(sampleConfig, `name         = "launchpad_staging"`, `name = "`+strings.Repeat("x", 63)+`"`, 1)
	_, err := LoadEnvironment(writeConfig(t, text))
	if !errors.Is(err, ErrConfig) || !strings.Contains(err.Error(), "database.name") {
		t.Fatalf("config with a 63-byte name: %v", err)
	}
}

// New names every missing part at once, and what a run would only discover later.
func TestNewNamesEveryProblem(t *testing.T) {
	w := newWorld()
	_, err := New(Config{Backups: w, Source: fakeSource{}, Options: Options{Strategy: "rsync", Database: strings.Repeat("d", 60)}})
	if !errors.Is(err, ErrConfig) {
		t.Fatalf("err = %v", err)
	}
	for _, want := range []string{"Environment", "Databases", "Releases", "Schema", "Service", "DSN", "LockFile",
		`Strategy "rsync"`, "Database: "} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("%q not named in %v", want, err)
		}
	}
	if strings.Contains(err.Error(), "Source") {
		t.Errorf("Source was given: %v", err)
	}
}

// Backup.Database (which backups to take) is a rebuild's: a deploy, whose catalog only
// names production's identities, does without it, and a rebuild or dry run without it
// fails at its backup step, changing nothing.
func TestBackupDatabaseIsARebuildsOnly(t *testing.T) {
	w := newWorld()
	r := w.rebuilder(t, func(c *Config) { c.Backup.Database = "" })
	before := w.snapshot()
	for name, f := range map[string]func(context.Context) (*Report, error){"Run": r.Run, "Plan": r.Plan} {
		rep, err := f(context.Background())
		if !errors.Is(err, ErrConfig) || !strings.Contains(err.Error(), "Backup.Database") || rep.FailedStep != "backup" {
			t.Errorf("%s without Backup.Database: err %v, failed step %q", name, err, rep.FailedStep)
		}
	}
	if w.snapshot() != before {
		t.Fatalf("staging changed: %s -> %s", before, w.snapshot())
	}
	if _, err := r.Deploy(context.Background(), DeployOptions{}); errors.Is(err, ErrConfig) {
		t.Fatalf("a deploy without Backup.Database: %v", err)
	}
}

// Item 4: Activate moved current and then failed: the rollback must put current back,
// not leave the new code running on the old database.
func TestHalfDoneActivationIsUndone(t *testing.T) {
	w := newWorld()
	before := w.snapshot()
	w.failActivate = fail
	rep, err := w.rebuilder(t).Run(context.Background())
	if !errors.Is(err, errInjected) || rep.Outcome != OutcomeRolledBack {
		t.Fatalf("err %v outcome %s\n%s", err, rep.Outcome, rep.Text())
	}
	if got := w.snapshot(); got != before {
		t.Fatalf("not put back:\n got %s\nwant %s\n%s", got, before, rep.Text())
	}
}

// Item 12: a dry run never notifies nor writes history, even when it fails.
func TestFailedDryRunLeavesNoTrace(t *testing.T) {
	w := newWorld()
	w.failVerify = fail
	r := w.rebuilder(t)
	rep, err := r.Plan(context.Background())
	if !errors.Is(err, errInjected) || ExitStatus(err) != ExitFailed || rep.Outcome != OutcomeFailed {
		t.Fatalf("err %v outcome %s", err, rep.Outcome)
	}
	if len(w.delivered) != 0 {
		t.Fatalf("a dry run delivered %d reports", len(w.delivered))
	}
	if _, err := os.Stat(filepath.Join(r.cfg.StateDir, HistoryFile)); !os.IsNotExist(err) {
		t.Fatalf("a dry run wrote history: %v", err)
	}
}

// Item 10: history 0600 in a 0700 folder, never through a planted symlink.
func TestHistoryIsPrivate(t *testing.T) {
	w := newWorld()
	state := filepath.Join(t.TempDir(), "state")
	r := w.rebuilder(t, func(c *Config) { c.StateDir = state })
	if _, err := r.Run(context.Background()); err != nil {
		t.Fatal(err)
	}
	for path, want := range map[string]os.FileMode{state: 0o700, filepath.Join(state, HistoryFile): 0o600} {
		st, err := os.Stat(path)
		if err != nil || st.Mode().Perm() != want {
			t.Errorf("%s: mode %v (%v), want %v", path, st.Mode().Perm(), err, want)
		}
	}
	victim := filepath.Join(t.TempDir(), "victim")
	if err := os.WriteFile(victim, []byte("keep"), 0o644); err != nil {
		t.Fatal(err)
	}
	state2 := t.TempDir()
	if err := os.Symlink(victim, filepath.Join(state2, HistoryFile)); err != nil {
		t.Fatal(err)
	}
	// The run succeeds; its history line is refused, which it says (ErrUnrecorded).
	if _, err := w.rebuilder(t, func(c *Config) { c.StateDir = state2 }).Run(context.Background()); !errors.Is(err, ErrUnrecorded) {
		t.Fatalf("a run whose history file is a planted symlink: %v; want ErrUnrecorded", err)
	}
	if got, _ := os.ReadFile(victim); string(got) != "keep" {
		t.Fatalf("history written through a symlink: %q", got)
	}
}

// Item 6: a run that dies during its cutover leaves an intent record; the next run
// (or dry run) repairs from it first: names and current as before, connections
// allowed, the service started, and says what it repaired.
func TestKilledCutoverIsRepaired(t *testing.T) {
	for _, phase := range []string{phaseStopping, phaseActivating, phaseActivated} {
		for _, via := range []string{"run", "dry run"} {
			t.Run(phase+" "+via, func(t *testing.T) {
				w := newWorld()
				before := w.snapshot()
				state := t.TempDir()
				lock := filepath.Join(t.TempDir(), "staging.lock")
				set := func(c *Config) { c.StateDir, c.LockFile = state, lock }
				r := w.rebuilder(t, set)
				// The run dies (no deferred cleanup of its own runs after this point but the
				// lock's release) right after the phase is recorded.
				die := func() error {
					if in, err := r.readIntent(); err == nil && in != nil && in.Phase == phase {
						runtime.Goexit()
					}
					return nil
				}
				switch phase {
				case phaseStopping:
					w.failStop = func() error { w.running = false; w.serving = ""; return die() }
				case phaseActivating: // after the swap, before current moved
					r.cfg.Releases = dieOnActivate{w, die}
				case phaseActivated:
					w.failStart = die
				}
				done := make(chan struct{})
				go func() { defer close(done); _, _ = r.Run(context.Background()) }()
				<-done
				if in, err := r.readIntent(); err != nil || in == nil {
					t.Fatalf("no intent record after the kill: %v", err)
				}
				if w.running {
					t.Fatal("the killed run left the service running; the test needs it stopped")
				}
				w.failStop, w.failStart = nil, nil

				r2 := w.rebuilder(t, set)
				var rep *Report
				var err error
				if via == "run" {
					w.failVerify = fail // a run that fails early still repairs first
					rep, err = r2.Run(context.Background())
					if !errors.Is(err, errInjected) {
						t.Fatalf("err %v", err)
					}
				} else {
					rep, err = r2.Plan(context.Background())
					if err != nil {
						t.Fatalf("dry run: %v\n%s", err, rep.Text())
					}
				}
				if got := w.snapshot(); got != before {
					t.Fatalf("not repaired:\n got %s\nwant %s\n%s", got, before, rep.Text())
				}
				if !strings.Contains(strings.Join(rep.Notes, "\n"), "repaired the cutover") {
					t.Fatalf("the report does not say what was repaired:\n%s", rep.Text())
				}
				if via == "dry run" && !strings.Contains(rep.State, "cutover repaired") {
					t.Fatalf("a dry run that repaired says its state is %q", rep.State)
				}
				// The repair comes first, after the wait for the backup and the lock.
				for _, s := range rep.Steps {
					if s.Name == "repair" {
						break
					}
					if s.Name != "backup" && s.Name != "lock" {
						t.Fatalf("step %s ran before the repair:\n%s", s.Name, rep.Text())
					}
				}
				if len(w.allowed) == 0 {
					t.Fatal("connections were not allowed again")
				}
				if in, _ := r2.readIntent(); in != nil {
					t.Fatal("the intent record is still there after the repair")
				}
			})
		}
	}
}

// dieOnActivate is the world's syncer with an Activate that dies first.
type dieOnActivate struct {
	*world
	die func() error
}

func (d dieOnActivate) Activate(ctx context.Context, r *codesync.Release) (*codesync.Release, error) {
	_ = d.die()
	return d.world.Activate(ctx, r)
}

// A rollback whose restart fails leaves the names and `current` as they were before the
// cutover, and the record says so: the next run's repair only starts the service again,
// and does not swap the names a second time (which would put the database of the night
// before back live and drop the previous one).
func TestRepairAfterRollbackDoesNotSwapAgain(t *testing.T) {
	for _, via := range []string{"run", "dry run"} {
		t.Run(via, func(t *testing.T) {
			w := newWorld()
			before := w.snapshot()
			state := t.TempDir()
			set := func(c *Config) { c.StateDir, c.LockFile = state, filepath.Join(state, "staging.lock") }
			r := w.rebuilder(t, set)
			w.failStart = fail // the new release's start, then the previous one's restart
			rep, err := r.Run(context.Background())
			if !errors.Is(err, ErrRollback) || rep.Outcome != OutcomeBroken {
				t.Fatalf("err %v, outcome %s", err, rep.Outcome)
			}
			w.failStart = nil
			if in, err := r.readIntent(); err != nil || in == nil || in.Phase != phaseRolledBack {
				t.Fatalf("intent record after the rollback: %+v, %v", in, err)
			}
			dbs := func() string { s := w.snapshot(); return s[:strings.Index(s, " running=")] }
			if got, want := dbs(), before[:strings.Index(before, " running=")]; got != want {
				t.Fatalf("the rollback did not put the names back:\n got %s\nwant %s", got, want)
			}

			r2 := w.rebuilder(t, set)
			if via == "run" {
				w.failVerify = fail // stop right after the repair
				rep, err = r2.Run(context.Background())
				if !errors.Is(err, errInjected) {
					t.Fatalf("err %v", err)
				}
			} else if rep, err = r2.Plan(context.Background()); err != nil {
				t.Fatalf("dry run: %v\n%s", err, rep.Text())
			}
			if got := w.snapshot(); got != before {
				t.Fatalf("the repair changed the names again:\n got %s\nwant %s\n%s", got, before, rep.Text())
			}
			if !strings.Contains(strings.Join(rep.Notes, "\n"), "rolled back but not healthy again") {
				t.Fatalf("the report does not say what was repaired:\n%s", rep.Text())
			}
			if in, _ := r2.readIntent(); in != nil {
				t.Fatal("the intent record is still there after the repair")
			}
		})
	}
}

// A cutover record that names another environment's databases (two environments given
// one state_dir, a record copied along with a config, or a database.name changed since)
// is refused: its repair would stop this environment's service, then swap and drop the
// databases it names, here experimental's live one.
func TestRepairRefusesAnotherEnvironmentsRecord(t *testing.T) {
	for _, via := range []string{"run", "dry run"} {
		t.Run(via, func(t *testing.T) {
			w := newWorld()
			w.dbs["experimental"] = "experimental's data"
			before := w.snapshot()
			r := w.rebuilder(t)
			in := intent{Run: "other", Kind: "deploy", PID: 1, Started: time.Now(), Phase: phaseActivated,
				Live: "experimental", Next: "experimental_deploy", Prev: "experimental_prev", Old: "experimental_old",
				Failed: "experimental_failed", HadLive: false, Release: "r9"}
			err := runOverRecord(t, r, in, via)
			if err == nil || !strings.Contains(err.Error(), `names the database "experimental"`) || ExitStatus(err) != ExitFailed {
				t.Fatalf("err %v, want the record refused", err)
			}
			if got := w.snapshot(); got != before {
				t.Fatalf("the record of another environment was followed:\n got %s\nwant %s", got, before)
			}
		})
	}
}

// runOverRecord writes in as r's cutover record, then runs r (via "run") or plans it
// ("dry run"), and returns its error.
func runOverRecord(t *testing.T, r *Rebuilder, in intent, via string) error {
	t.Helper()
	data, _ := json.Marshal(in)
	if err := os.WriteFile(filepath.Join(r.cfg.StateDir, IntentFile), data, 0o600); err != nil {
		t.Fatal(err)
	}
	if via == "run" {
		_, err := r.Run(context.Background())
		return err
	}
	_, err := r.Plan(context.Background())
	return err
}

// A state_dir other users may write to is refused before a record found there is
// followed: another user of the host could plant a cutover record (and spooled
// reports, a history) there and have the next run, even a dry run, swap and drop
// this environment's databases.
func TestRepairRefusesARecordOthersCouldPlant(t *testing.T) {
	for _, via := range []string{"run", "dry run"} {
		t.Run(via, func(t *testing.T) {
			w := newWorld()
			before := w.snapshot()
			r := w.rebuilder(t)
			if err := os.Chmod(r.cfg.StateDir, os.ModeSticky|0o777); err != nil {
				t.Fatal(err)
			}
			in := intent{Run: "planted", Kind: "rebuild", PID: 1, Started: time.Now(), Phase: phaseActivated,
				Live: "staging", Next: "staging_next", Prev: "staging_prev", Old: "staging_old", Failed: "staging_failed", HadLive: true, Release: "r0"}
			err := runOverRecord(t, r, in, via)
			if !errors.Is(err, safefile.ErrNotPrivate) || ExitStatus(err) != ExitFailed {
				t.Fatalf("err %v, want the state folder refused", err)
			}
			if got := w.snapshot(); got != before {
				t.Fatalf("a record others could plant was followed:\n got %s\nwant %s", got, before)
			}
		})
	}
}
