package staging

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/restage/restage/dbrestore"
	"github.com/restage/restage/dbrestore/pgtest"
)

// prodWorld is the fake world as a production server: AllowConnections has nothing to
// do, the guard refuses (as productionDatabases); the world's own guard refuses every
// other change, since it is told no production identity.
type prodWorld struct{ *world }

func (p prodWorld) AllowConnections(context.Context, string) error { return nil }
func (p prodWorld) GuardProduction(context.Context, ...uint64) error {
	return dbrestore.ErrProduction
}

type fakeActivity struct {
	sessions []dbrestore.Session
	replicas []dbrestore.Replica
	// onSessions, when set, runs as the preflight reads the sessions.
	onSessions func()
	// err, when set, is what Sessions and Replicas return (e.g. ErrStatsHidden).
	err error
}

func (a *fakeActivity) Sessions(context.Context) ([]dbrestore.Session, error) {
	if a.onSessions != nil {
		a.onSessions()
	}
	if a.err != nil {
		return nil, a.err
	}
	return a.sessions, nil
}
func (a *fakeActivity) Replicas(context.Context) ([]dbrestore.Replica, error) {
	if a.err != nil {
		return nil, a.err
	}
	return a.replicas, nil
}

// promoter is a production Rebuilder over the fake world, whose staging history ran the
// world's migration (2_add_x) in a second.
func (w *world) promoter(t *testing.T, act Activity) *Rebuilder {
	t.Helper()
	hist := t.TempDir()
	rep := &Report{ID: "staging-run", Environment: "staging", Kind: "rebuild", Outcome: OutcomeOK,
		Schema: &SchemaInfo{From: 1, To: 2, Migrations: []MigrationTime{{Version: 2, Name: "add_x", Duration: time.Second}}}}
	if err := appendHistory(hist, rep, 0); err != nil {
		t.Fatal(err)
	}
	return w.rebuilder(t, func(c *Config) {
		c.Environment, c.Role, c.Backups, c.Databases = "production", RoleProduction, nil, prodWorld{w}
		c.Preflight = &Preflight{Activity: act, StagingStateDir: hist}
	})
}

func TestPromoteMigratesInPlace(t *testing.T) {
	w := newWorld()
	rep, err := w.promoter(t, &fakeActivity{}).Promote(context.Background(), PromoteOptions{})
	if err != nil {
		t.Fatalf("promote: %v\n%s", err, rep.Text())
	}
	// The live database migrated in place (no restore, no copy, no rename), r1 serving it.
	if got, want := w.snapshot(), "dbs=[staging=backup 0 @v2 staging_prev=backup -1 @v1] current=r1 running=true serving=r1/backup 0 @v2"; got != want {
		t.Errorf("after the promote:\n got %s\nwant %s", got, want)
	}
	if rep.Kind != "promote" || rep.Strategy != MigrateInPlace || rep.Downtime <= 0 || rep.Schema.To != 2 || len(w.delivered) != 1 {
		t.Errorf("report:\n%s", rep.Text())
	}
}

// A promote's migrations run on production's live database with a bound on their lock
// waits (5s unless [preflight] max_lock_wait says), so that one queued behind a lock
// cannot hold production's traffic on that table; a rebuild's, on staging, have none.
func TestPromoteBoundsMigrationLockWaits(t *testing.T) {
	w := newWorld()
	if _, err := w.promoter(t, &fakeActivity{}).Promote(context.Background(), PromoteOptions{}); err != nil {
		t.Fatal(err)
	}
	r := w.promoter(t, &fakeActivity{})
	r.cfg.Preflight.MaxLockWait = 2 * time.Second
	w.dbs["staging"] = strings.TrimSuffix(w.dbs["staging"], "@v2") + "@v1"
	if _, err := r.Promote(context.Background(), PromoteOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := w.rebuilder(t).Run(context.Background()); err != nil {
		t.Fatal(err)
	}
	var waits []time.Duration
	for _, tg := range w.upgraded {
		waits = append(waits, tg.LockWait)
	}
	if want := []time.Duration{DefaultMaxLockWait, 2 * time.Second, 0}; fmt.Sprint(waits) != fmt.Sprint(want) {
		t.Errorf("lock waits of the promotes' and the rebuild's migrations: %v, want %v", waits, want)
	}
}

func TestPromotePreflightChangesNothing(t *testing.T) {
	w := newWorld()
	before := w.snapshot()
	act := &fakeActivity{sessions: []dbrestore.Session{{PID: 7, User: "postgres", XactAge: time.Hour}}}
	rep, err := w.promoter(t, act).Promote(context.Background(), PromoteOptions{})
	if !errors.Is(err, ErrPreflight) || ExitStatus(err) != ExitFailed || rep.FailedStep != "preflight" {
		t.Fatalf("promote with an hour-old transaction: %v\n%s", err, rep.Text())
	}
	if got := w.snapshot(); got != before {
		t.Errorf("a refused promote changed production:\n%s\n%s", before, got)
	}
}

// README: the preflight refuses "every reason named". A role that cannot see other
// users' activity was the only reason named: a migration staging never ran was found
// only by the promote after the GRANT.
func TestPromotePreflightNamesEveryReasonWhenStatsAreHidden(t *testing.T) {
	w := newWorld()
	before := w.snapshot()
	hidden := fmt.Errorf(`%w: role "monitor" is neither a superuser nor a member of pg_read_all_stats; on the server run: GRANT pg_read_all_stats TO "monitor"`, dbrestore.ErrStatsHidden)
	r := w.promoter(t, &fakeActivity{err: hidden})
	r.cfg.Preflight.StagingStateDir = t.TempDir() // staging never ran 2_add_x
	rep, err := r.Promote(context.Background(), PromoteOptions{})
	if !errors.Is(err, ErrPreflight) || !errors.Is(err, dbrestore.ErrStatsHidden) || ExitStatus(err) != ExitFailed {
		t.Fatalf("promote with hidden stats: %v (want ErrPreflight and ErrStatsHidden)\n%s", err, rep.Text())
	}
	for _, want := range []string{`GRANT pg_read_all_stats TO "monitor"`, "migration 2_add_x never ran on staging"} {
		if !strings.Contains(err.Error(), want) || !strings.Contains(rep.Error, want) {
			t.Errorf("the refusal does not name %q: %v\n%s", want, err, rep.Text())
		}
	}
	if got := w.snapshot(); got != before {
		t.Errorf("a refused promote changed production:\n%s\n%s", before, got)
	}
}

func TestPromoteFailedHealthAfterMigrations(t *testing.T) {
	w := newWorld()
	calls := 0
	w.failHealth = func() error {
		if calls++; calls == 1 {
			return errInjected
		}
		return nil
	}
	rep, err := w.promoter(t, &fakeActivity{}).Promote(context.Background(), PromoteOptions{})
	if !errors.Is(err, errInjected) || rep.Outcome != OutcomeBroken || !strings.Contains(rep.State, "THE SCHEMA IS AHEAD OF THE RESTORED CODE") {
		t.Fatalf("promote with a failing health gate: %v\n%s", err, rep.Text())
	}
	// The previous release runs again, on the migrated database: the operator decides.
	if got, want := w.snapshot(), "dbs=[staging=backup 0 @v2 staging_prev=backup -1 @v1] current=r0 running=true serving=r0/backup 0 @v2"; got != want {
		t.Errorf("after the failed promote:\n got %s\nwant %s", got, want)
	}
}

// A promote killed after it moved `current` is repaired by the next run (the release
// put back, the service started; nothing renamed), which then promotes.
func TestPromoteRepairsAKilledPromote(t *testing.T) {
	w := newWorld()
	r := w.promoter(t, &fakeActivity{})
	rel, _ := w.Build(context.Background(), fakeSource{})
	if _, err := w.Activate(context.Background(), rel); err != nil {
		t.Fatal(err)
	}
	w.running, w.serving = false, ""
	in := intent{Run: "killed", Kind: "promote", PID: 1, Started: time.Now(), Phase: phaseActivated, Live: "staging",
		Prev: "staging_prev", Old: "staging_old", Failed: "staging_failed", HadLive: true, Release: rel.ID}
	data, _ := json.Marshal(in)
	if err := os.WriteFile(filepath.Join(r.cfg.StateDir, IntentFile), data, 0o600); err != nil {
		t.Fatal(err)
	}
	rep, err := r.Promote(context.Background(), PromoteOptions{})
	if err != nil {
		t.Fatalf("promote after a killed one: %v\n%s", err, rep.Text())
	}
	if !strings.Contains(strings.Join(rep.Notes, "\n"), "repaired the cutover of run killed") {
		t.Errorf("notes: %v", rep.Notes)
	}
	if got, want := w.snapshot(), "dbs=[staging=backup 0 @v2 staging_prev=backup -1 @v1] current=r2 running=true serving=r2/backup 0 @v2"; got != want {
		t.Errorf("after the repair and the promote:\n got %s\nwant %s", got, want)
	}
}

// A promote killed once its migrations began (the record it leaves then is taken from a
// real promote): the next run's repair says the schema may be ahead of the previous
// release and what to decide, naming production, both when it cannot start the service
// and when it can (the promote then runs again).
func TestPromoteKilledWhileMigrating(t *testing.T) {
	w := newWorld()
	r := w.promoter(t, &fakeActivity{})
	record := filepath.Join(r.cfg.StateDir, IntentFile)
	var left []byte
	w.failSchema = func() error {
		left, _ = os.ReadFile(record) // what a kill -9 leaves once the migrations began
		return errInjected
	}
	if _, err := r.Promote(context.Background(), PromoteOptions{}); !errors.Is(err, errInjected) {
		t.Fatalf("promote with a failing migration: %v", err)
	}
	var in intent
	if err := json.Unmarshal(left, &in); err != nil || in.Phase != phaseMigrating || !in.Migrated || in.SchemaFrom != 1 || in.SchemaTo != 2 {
		t.Fatalf("the record while migrating: %+v, %v\n%s", in, err, left)
	}
	// The kill: the migration ran, the service is down, the record is left.
	w.failSchema = nil
	w.dbs["staging"], w.running, w.serving = "backup 0 @v2", false, ""
	if err := os.WriteFile(record, left, 0o600); err != nil {
		t.Fatal(err)
	}
	wantSaid := []string{"THE SCHEMA MAY BE AHEAD OF THE PREVIOUS RELEASE", "run " + in.Run + " was killed after migrations began",
		"production environment production's live database staging", "patch level 1 before", "goes to 2", "the operator must decide"}

	w.failStart = func() error { return errInjected }
	rep, err := r.Promote(context.Background(), PromoteOptions{})
	if err == nil || rep.Outcome != OutcomeBroken || rep.FailedStep != "repair" {
		t.Fatalf("a repair that cannot start the service: %v\n%s", err, rep.Text())
	}
	for _, s := range append(wantSaid, "the production environment production needs an operator", "the repair could not start it") {
		if !strings.Contains(rep.State, s) {
			t.Errorf("the state does not say %q:\n%s", s, rep.State)
		}
	}
	if strings.Contains(rep.State, "staging needs") {
		t.Errorf("the state calls production staging:\n%s", rep.State)
	}

	w.failStart = nil
	rep, err = r.Promote(context.Background(), PromoteOptions{})
	if err != nil {
		t.Fatalf("promote after the repair: %v\n%s", err, rep.Text())
	}
	notes := strings.Join(rep.Notes, "\n")
	for _, s := range append(wantSaid, "repaired the cutover of run "+in.Run+" (promote, pid", "in the production environment production, killed during phase \"migrating\"", "the repair started it again") {
		if !strings.Contains(notes, s) {
			t.Errorf("the notes do not say %q:\n%s", s, notes)
		}
	}
	if got, want := w.snapshot(), "dbs=[staging=backup 0 @v2 staging_prev=backup -1 @v1] current=r2 running=true serving=r2/backup 0 @v2"; got != want {
		t.Errorf("after the repair and the promote:\n got %s\nwant %s", got, want)
	}
}

// blockIntent makes the cutover record unwritable: a folder (not empty, so that nothing
// removes it) where the record goes.
func blockIntent(t testing.TB, r *Rebuilder) {
	t.Helper()
	path := r.intentPath()
	if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Join(path, "blocked"), 0o700); err != nil {
		t.Fatal(err)
	}
}

// A promote whose cutover record cannot be written stops nothing, names the cutover as
// the step that failed, and says production is as it was.
func TestPromoteUnrecordedCutoverStopsNothing(t *testing.T) {
	w := newWorld()
	act := &fakeActivity{}
	r := w.promoter(t, act)
	act.onSessions = func() { blockIntent(t, r) }
	before := w.snapshot()
	rep, err := r.Promote(context.Background(), PromoteOptions{})
	if err == nil || !strings.Contains(err.Error(), "cutover record") || ExitStatus(err) != ExitFailed {
		t.Fatalf("promote without its cutover record: %v\n%s", err, rep.Text())
	}
	if rep.FailedStep != "cutover" || !strings.Contains(rep.Error, "cutover record") {
		t.Errorf("failed step %q (%s), want the cutover:\n%s", rep.FailedStep, rep.Error, rep.Text())
	}
	for _, s := range []string{"untouched: the cutover record " + r.intentPath() + " could not be written, so nothing was stopped",
		"production's service, its live database staging and its live release are as they were", "was built and discarded"} {
		if !strings.Contains(rep.State, s) {
			t.Errorf("the state does not say %q:\n%s", s, rep.State)
		}
	}
	if got := w.snapshot(); got != before {
		t.Errorf("the promote changed production:\n got %s\nwant %s", got, before)
	}
	for _, s := range rep.Steps {
		if s.Name == "stop" || s.Name == "schema" {
			t.Errorf("step %s ran without a cutover record", s.Name)
		}
	}
}

// A promote whose record cannot say the migrations begin runs none: it names the
// cutover as the step that failed and starts the previous release again on the
// database as it was.
func TestPromoteUnrecordedMigrationsRunNone(t *testing.T) {
	w := newWorld()
	r := w.promoter(t, &fakeActivity{})
	w.failStop = func() error {
		w.failStop = nil
		blockIntent(t, r)
		return nil
	}
	rep, err := r.Promote(context.Background(), PromoteOptions{})
	if !errors.Is(err, ErrRolledBack) || !strings.Contains(err.Error(), "cutover record") || rep.Outcome != OutcomeRolledBack {
		t.Fatalf("promote without its migrating record: %v\n%s", err, rep.Text())
	}
	if rep.FailedStep != "cutover" {
		t.Errorf("failed step %q, want the cutover:\n%s", rep.FailedStep, rep.Text())
	}
	if want := "rolled back: production runs the previous release again, healthy; the database staging is as it was (no migration ran)"; rep.State != want {
		t.Errorf("state:\n got %s\nwant %s", rep.State, want)
	}
	if got, want := w.snapshot(), "dbs=[staging=backup 0 @v1 staging_prev=backup -1 @v1] current=r0 running=true serving=r0/backup 0 @v1"; got != want {
		t.Errorf("after the promote:\n got %s\nwant %s", got, want)
	}
}

// A promote whose admin role cannot see other users' activity on a real server (no
// pg_read_all_stats) is refused at the preflight, before anything stops, with an error
// that names the privilege and the GRANT; granted, the same role's preflight sees
// another user's connection and refuses for that.
func TestPromoteRefusedWithoutReadAllStats(t *testing.T) {
	pgtest.Require(t)
	srv := pgtest.Shared(t, "production")
	ctx := context.Background()
	suffix := fmt.Sprint(time.Now().UnixNano() % 1e9)
	monitor := "promote_monitor_" + suffix
	admin, err := dbrestore.NewServer(dbrestore.ServerConfig{AdminDSN: srv.LoginRole(t, monitor, "postgres")})
	if err != nil {
		t.Fatal(err)
	}
	other, err := pgx.Connect(ctx, srv.LoginRole(t, "promote_other_"+suffix, "postgres"))
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close(ctx)

	w := newWorld()
	r := w.promoter(t, admin)
	before := w.snapshot()
	rep, err := r.Promote(ctx, PromoteOptions{})
	grant := "GRANT pg_read_all_stats TO " + pgx.Identifier{monitor}.Sanitize()
	if !errors.Is(err, ErrPreflight) || !errors.Is(err, dbrestore.ErrStatsHidden) || !strings.Contains(err.Error(), grant) || ExitStatus(err) != ExitFailed {
		t.Fatalf("promote as a role without pg_read_all_stats: %v (want ErrPreflight naming %q)\n%s", err, grant, rep.Text())
	}
	if rep.FailedStep != "preflight" || !strings.Contains(rep.Error, grant) || !strings.HasPrefix(rep.State, "untouched: ") {
		t.Errorf("report:\n%s", rep.Text())
	}
	if got := w.snapshot(); got != before {
		t.Errorf("a refused promote changed production:\n got %s\nwant %s", got, before)
	}

	srv.Exec(t, "postgres", grant)
	rep, err = r.Promote(ctx, PromoteOptions{})
	if !errors.Is(err, ErrPreflight) || !strings.Contains(err.Error(), `connection(s) of user "promote_other_`+suffix+`"`) {
		t.Fatalf("promote as a role with pg_read_all_stats, another user connected: %v\n%s", err, rep.Text())
	}
	if got := w.snapshot(); got != before {
		t.Errorf("a refused promote changed production:\n got %s\nwant %s", got, before)
	}
}
