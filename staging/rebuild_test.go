package staging

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/restage/restage/codesync"
	"github.com/restage/restage/schema"
)

func (w *world) rebuilder(t *testing.T, mutate ...func(*Config)) *Rebuilder {
	t.Helper()
	cfg := Config{
		Environment: "staging",
		Backups:     w, Databases: w, Source: fakeSource{}, Releases: w, Schema: w,
		Service: svc{w}, Health: health{w}, Notifier: notifier{w},
		DSN: func(db string) string { return "db:" + db },
	}
	cfg.Database = "staging"
	cfg.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	cfg.Backup.Database = "prod"
	cfg.LockFile = filepath.Join(t.TempDir(), "staging.lock")
	cfg.StateDir = t.TempDir()
	for _, m := range mutate {
		m(&cfg)
	}
	r, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func TestSwapRebuild(t *testing.T) {
	w := newWorld()
	r := w.rebuilder(t)
	rep, err := r.Run(context.Background())
	if err != nil {
		t.Fatalf("Run: %v\n%s", err, rep.Text())
	}
	if got, want := w.snapshot(), "dbs=[staging=backup 1 @v2 staging_prev=backup 0 @v1] current=r1 running=true serving=r1/backup 1 @v2"; got != want {
		t.Fatalf("after rebuild:\n got %s\nwant %s", got, want)
	}
	if w.dbs["staging_prev"] != "backup 0 @v1" {
		t.Fatalf("yesterday's database not kept as staging_prev: %v", w.dbs)
	}
	if rep.Outcome != OutcomeOK || rep.Schema.From != 1 || rep.Schema.To != 2 || len(rep.Schema.Migrations) != 1 {
		t.Fatalf("report: %+v", rep)
	}
	if len(w.delivered) != 1 || w.delivered[0].Topic != "staging-rebuild" || !strings.Contains(w.delivered[0].Body, "applied 2_add_x") {
		t.Fatalf("delivered: %+v", w.delivered)
	}
	// The service was stopped only for the cutover: the restore ran while it served.
	if !strings.Contains(strings.Join(w.events, ","), "restore staging_next") {
		t.Fatalf("events %v", w.events)
	}
	hist, err := History(r.cfg.StateDir)
	if err != nil || len(hist) != 1 || hist[0].Outcome != OutcomeOK {
		t.Fatalf("history %v %v", hist, err)
	}
	// A second rebuild drops yesterday's _prev and keeps today's.
	w.backupSeq = 2
	if _, err := r.Run(context.Background()); err != nil {
		t.Fatal(err)
	}
	if w.dbs["staging_prev"] != "backup 1 @v2" || w.dbs["staging"] != "backup 2 @v2" {
		t.Fatalf("second rebuild: %v", w.dbs)
	}
}

func TestFirstRebuild(t *testing.T) {
	w := newWorld()
	w.dbs, w.current, w.releases, w.running, w.serving = map[string]string{}, "", nil, false, ""
	rep, err := w.rebuilder(t).Run(context.Background())
	if err != nil {
		t.Fatalf("Run: %v\n%s", err, rep.Text())
	}
	if got, want := w.snapshot(), "dbs=[staging=backup 1 @v2] current=r1 running=true serving=r1/backup 1 @v2"; got != want {
		t.Fatalf("got %s\nwant %s", got, want)
	}
}

// A restore login the restore would refuse (a superuser) fails the verify step, before
// leftovers are dropped or a release is built, and a dry run says so too: it is known
// before anything changes.
func TestRefusedRestoreLoginFailsVerify(t *testing.T) {
	w := newWorld()
	w.dbs["staging_next"] = "leftover"
	before := w.snapshot()
	w.failRestoreLogin = fail
	r := w.rebuilder(t)
	plan, err := r.Plan(context.Background())
	if !errors.Is(err, errInjected) || plan.FailedStep != "verify" {
		t.Fatalf("dry run: err %v, failed step %q; want the verify step refusing the restore login", err, plan.FailedStep)
	}
	rep, err := r.Run(context.Background())
	if !errors.Is(err, errInjected) || rep.FailedStep != "verify" {
		t.Fatalf("run: err %v, failed step %q; want the verify step refusing the restore login", err, rep.FailedStep)
	}
	if got := w.snapshot(); got != before || len(w.releases) != 1 {
		t.Fatalf("staging changed:\n got %s (%d releases)\nwant %s", got, len(w.releases), before)
	}
}

// Every fault before the cutover leaves staging exactly as it was, and is reported.
func TestFaultsBeforeCutoverLeaveStagingUntouched(t *testing.T) {
	for _, tc := range []struct {
		step string
		set  func(w *world)
	}{
		{"backup", func(w *world) { w.failWait = fail }},
		{"verify", func(w *world) { w.failVerify = fail }},
		{"restore", func(w *world) { w.failRestore = fail }},
		{"release", func(w *world) { w.failBuild = fail }},
		{"schema", func(w *world) { w.failSchema = fail }},
		{"stop", func(w *world) {
			n := 0
			w.failStop = func() error { n++; return fail() }
		}},
	} {
		t.Run(tc.step, func(t *testing.T) {
			w := newWorld()
			before := w.snapshot()
			tc.set(w)
			r := w.rebuilder(t)
			rep, err := r.Run(context.Background())
			if !errors.Is(err, errInjected) {
				t.Fatalf("err = %v", err)
			}
			if got := w.snapshot(); got != before {
				t.Fatalf("staging changed:\n got %s\nwant %s", got, before)
			}
			if rep.FailedStep != tc.step || rep.Outcome != OutcomeFailed || !strings.HasPrefix(rep.State, "untouched") {
				t.Fatalf("report: step %q outcome %q state %q", rep.FailedStep, rep.Outcome, rep.State)
			}
			if len(w.delivered) != 1 || w.delivered[0].Status != "failed" || !strings.Contains(w.delivered[0].Subject, "failed at step "+tc.step) {
				t.Fatalf("delivered %+v", w.delivered)
			}
			if _, ok := w.dbs["staging_next"]; ok {
				t.Fatal("staging_next left behind")
			}
			for _, rel := range w.releases {
				if rel.ID != "r0" && rel.State != "failed" {
					t.Fatalf("unused release %s not marked failed", rel.ID)
				}
			}
			// The next run succeeds.
			*w = *newWorldLike(w)
			if _, err := r.Run(context.Background()); err != nil {
				t.Fatalf("next run: %v", err)
			}
		})
	}
}

// newWorldLike clears the injected faults of w.
func newWorldLike(w *world) *world {
	c := &world{dbs: w.dbs, releases: w.releases, current: w.current, running: w.running,
		serving: w.serving, nextID: w.nextID, backupSeq: w.backupSeq + 1,
		sysID: w.sysID, sourceID: w.sourceID, known: map[uint64]bool{}, sources: w.sources}
	return c
}

func TestFaultsAfterCutoverRollBack(t *testing.T) {
	for _, tc := range []struct {
		name string
		set  func(w *world)
	}{
		{"start", func(w *world) { w.failStart = failOnce() }},
		{"health", func(w *world) { w.failHealth = failOnce() }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			w := newWorld()
			before := w.snapshot()
			tc.set(w)
			rep, err := w.rebuilder(t).Run(context.Background())
			if !errors.Is(err, ErrRolledBack) || !errors.Is(err, errInjected) {
				t.Fatalf("err = %v", err)
			}
			if got := w.snapshot(); got != before {
				t.Fatalf("not rolled back:\n got %s\nwant %s\n%s", got, before, rep.Text())
			}
			if rep.Outcome != OutcomeRolledBack || !strings.Contains(w.delivered[0].Subject, "rolled back at step") {
				t.Fatalf("outcome %s subject %q", rep.Outcome, w.delivered[0].Subject)
			}
			if w.find("r1").State != "failed" {
				t.Fatal("failed release not marked failed")
			}
		})
	}
}

func TestConcurrentRunIsLockedOut(t *testing.T) {
	w := newWorld()
	r := w.rebuilder(t)
	l, err := AcquireExclusive(context.Background(), r.cfg.LockFile, LockOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Release()
	before := w.snapshot()
	rep, err := r.Run(context.Background())
	var le *LockedError
	if !errors.As(err, &le) || le.Owner == nil || rep.Outcome != OutcomeLocked {
		t.Fatalf("err = %v, outcome %s", err, rep.Outcome)
	}
	if w.snapshot() != before || len(w.delivered) != 0 {
		t.Fatal("a locked-out run changed something or sent a report")
	}
}

func TestInPlace(t *testing.T) {
	w := newWorld()
	rep, err := w.rebuilder(t, func(c *Config) { c.Strategy = InPlace }).Run(context.Background())
	if err != nil {
		t.Fatalf("Run: %v\n%s", err, rep.Text())
	}
	if got, want := w.snapshot(), "dbs=[staging=backup 1 @v2] current=r1 running=true serving=r1/backup 1 @v2"; got != want {
		t.Fatalf("got %s\nwant %s", got, want)
	}
	if !strings.Contains(rep.State, "the downtime spans the whole restore") {
		t.Errorf("the report does not say the downtime was the whole restore: %q", rep.State)
	}
	// A failed restore in place cannot put the data back, and says so.
	w2 := newWorld()
	w2.failRestore = fail
	rep, err = w2.rebuilder(t, func(c *Config) { c.Strategy = InPlace }).Run(context.Background())
	if !errors.Is(err, errInjected) || rep.Outcome != OutcomeBroken || !strings.Contains(rep.State, "was replaced") {
		t.Fatalf("err %v outcome %s state %q", err, rep.Outcome, rep.State)
	}
}

// A report that can be neither delivered nor spooled is an outcome of its own: the
// rebuild succeeded (exit 4, not 1, whose meaning is "staging left as it was").
func TestUndeliveredReportHasItsOwnExitStatus(t *testing.T) {
	w := newWorld()
	w.failNotify = fail
	rep, err := w.rebuilder(t).Run(context.Background())
	if !errors.Is(err, errInjected) || !errors.Is(err, ErrUndelivered) || ExitStatus(err) != ExitUndelivered || rep.Outcome != OutcomeOK {
		t.Fatalf("err = %v, exit %d, outcome %s", err, ExitStatus(err), rep.Outcome)
	}
	// A failed run whose report is lost too stays a failure.
	w = newWorld()
	w.failNotify, w.failBuild = fail, fail
	_, err = w.rebuilder(t).Run(context.Background())
	if errors.Is(err, ErrUndelivered) || ExitStatus(err) != ExitFailed {
		t.Fatalf("err = %v, exit %d", err, ExitStatus(err))
	}
}

type closingService struct {
	svc
	closed *int
}

func (c closingService) Close() error { *c.closed++; return errors.New("engine gone") }

func TestCloseClosesTheParts(t *testing.T) {
	w := newWorld()
	closed := 0
	r := w.rebuilder(t, func(c *Config) { c.Service = closingService{svc{w}, &closed} })
	if err := r.Close(); err == nil || !strings.Contains(err.Error(), "engine gone") || closed != 1 {
		t.Fatalf("Close: %v, service closed %d times", err, closed)
	}
	// Parts without Close are left alone.
	if err := w.rebuilder(t).Close(); err != nil {
		t.Fatal(err)
	}
	// Every part that can be closed is, and a part in two roles once.
	var schemaClosed, releasesClosed, svcClosed int
	both := &closingHealthService{closingService{svc{w}, &svcClosed}}
	r = w.rebuilder(t, func(c *Config) {
		c.Schema = closingSchema{c.Schema, &schemaClosed}
		c.Releases = closingReleases{c.Releases, &releasesClosed}
		c.Service, c.Health = both, both
	})
	if err := r.Close(); err == nil || schemaClosed != 1 || releasesClosed != 1 || svcClosed != 1 {
		t.Fatalf("Close: %v; closed: schema %d, releases %d, service and health %d", err, schemaClosed, releasesClosed, svcClosed)
	}
}

type closingSchema struct {
	schema.Upgrader
	closed *int
}

func (c closingSchema) Close() error { *c.closed++; return nil }

type closingReleases struct {
	codesync.Syncer
	closed *int
}

func (c closingReleases) Close() error { *c.closed++; return nil }

// closingHealthService is a service that is its own health check.
type closingHealthService struct{ closingService }

func (*closingHealthService) Wait(context.Context) error { return nil }

func TestPlanWithoutTableReaderListsAgainstTheLiveDatabase(t *testing.T) {
	// The fake catalog cannot read the backup's version table: the plan falls back to the
	// live database's status, says so, and changes nothing.
	w := newWorld()
	before := w.snapshot()
	rep, err := w.rebuilder(t).Plan(context.Background())
	if err != nil {
		t.Fatalf("Plan: %v\n%s", err, rep.Text())
	}
	if rep.Outcome != OutcomePlanned || rep.Schema == nil || rep.Schema.From != 1 || rep.Schema.To != 2 ||
		len(rep.Schema.Pending) != 1 || !strings.Contains(rep.Text(), "1 migration would run against staging (1 -> 2)") {
		t.Fatalf("plan: %+v\n%s", rep.Schema, rep.Text())
	}
	if got := w.snapshot(); got != before {
		t.Fatalf("a plan changed staging:\n got %s\nwant %s", got, before)
	}
}

// TestReleaseBuiltDuringRestore: the release is built while the database is restored
// (nothing live is touched before the cutover), and the report says so.
func TestReleaseBuiltDuringRestore(t *testing.T) {
	w := newWorld()
	started := make(chan struct{})
	w.failBuild = func() error { close(started); return nil }
	w.failRestore = func() error {
		select {
		case <-started:
			return nil
		case <-time.After(10 * time.Second):
			return errors.New("the release build had not started while the restore ran")
		}
	}
	rep, err := w.rebuilder(t).Run(context.Background())
	if err != nil {
		t.Fatalf("rebuild: %v\n%s", err, rep.Text())
	}
	for _, s := range rep.Steps {
		if s.Name == "release" && !strings.Contains(s.Detail, "during the restore") {
			t.Fatalf("release step: %q", s.Detail)
		}
	}
}

// A rebuild whose cutover record cannot be written stops nothing (a killed run could
// not be repaired without it), names the cutover as the step that failed, and says
// staging is as it was: swap, after its schema step; inplace, before its stop.
func TestUnrecordedCutoverStopsNothing(t *testing.T) {
	for _, strategy := range []Strategy{Swap, InPlace} {
		t.Run(string(strategy), func(t *testing.T) {
			w := newWorld()
			r := w.rebuilder(t, func(c *Config) { c.Strategy = strategy })
			if strategy == InPlace {
				delete(w.dbs, "staging_prev") // inplace drops it to make room, before the record
			}
			before := w.snapshot()
			if strategy == Swap {
				w.failSchema = func() error { blockIntent(t, r); return nil }
			} else {
				w.failVerify = func() error { blockIntent(t, r); return nil } // after the repair, before the stop
			}
			rep, err := r.Run(context.Background())
			if err == nil || !strings.Contains(err.Error(), "cutover record") {
				t.Fatalf("rebuild without its cutover record: %v\n%s", err, rep.Text())
			}
			if rep.FailedStep != "cutover" || !strings.HasPrefix(rep.State, "untouched: the cutover record "+r.intentPath()+" could not be written, so nothing was stopped") {
				t.Errorf("failed step %q, state %q", rep.FailedStep, rep.State)
			}
			for _, s := range rep.Steps {
				if s.Name == "stop" {
					t.Error("the service was stopped without a cutover record")
				}
			}
			if got := w.snapshot(); got != before {
				t.Errorf("staging changed:\n got %s\nwant %s", got, before)
			}
		})
	}
}

// A run that fails outside any step (its config lacks the backups) names no empty step.
func TestFailureOutsideAStep(t *testing.T) {
	w := newWorld()
	rep, err := w.rebuilder(t, func(c *Config) { c.Backups = nil }).Run(context.Background())
	if !errors.Is(err, ErrConfig) || rep.FailedStep != "backup" || !strings.HasSuffix(rep.Subject(), "failed at step backup") {
		t.Fatalf("err %v, step %q, subject %q", err, rep.FailedStep, rep.Subject())
	}
	rep = &Report{Environment: "staging", Kind: "rebuild", Outcome: OutcomeFailed, Error: "boom"}
	if s := rep.Subject(); strings.Contains(s, "at step") || !strings.Contains(rep.Text(), "FAILED: boom") {
		t.Fatalf("subject %q, text:\n%s", s, rep.Text())
	}
}

// The backup is waited for before the lock is taken (wait ─► lock ─► verify): while a
// rebuild waits for the night's dump, a cron job can still take the lock shared.
func TestBackupIsAwaitedBeforeTheLock(t *testing.T) {
	w := newWorld()
	lock := filepath.Join(t.TempDir(), "staging.lock")
	var heldDuringWait bool
	w.failWait = func() error {
		f, err := os.OpenFile(lock, os.O_RDWR|os.O_CREATE, 0o600)
		if err != nil {
			return err
		}
		defer f.Close()
		if err := syscall.Flock(int(f.Fd()), syscall.LOCK_SH|syscall.LOCK_NB); err != nil {
			heldDuringWait = true
		}
		return nil
	}
	rep, err := w.rebuilder(t, func(c *Config) { c.LockFile = lock }).Run(context.Background())
	if err != nil {
		t.Fatalf("Run: %v\n%s", err, rep.Text())
	}
	if heldDuringWait {
		t.Fatal("the rebuild held the lock while it waited for the backup")
	}
	if len(rep.Steps) < 3 || rep.Steps[0].Name != "backup" || rep.Steps[1].Name != "lock" || rep.Steps[2].Name != "verify" {
		t.Fatalf("steps: want backup, lock, verify first:\n%s", rep.Text())
	}
}
