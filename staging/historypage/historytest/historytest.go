package historytest

import (
	"context"
	"crypto/sha1"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"time"

	"github.com/restage/restage/codesync"
	"github.com/restage/restage/dbrestore"
	"github.com/restage/restage/dbrestore/dbrestoretest"
	"github.com/restage/restage/schema"
	"github.com/restage/restage/staging"
	"github.com/restage/restage/svcctl"
)

// Options shape a recording.
type Options struct {
	// Dir is the recording's folder (state/, the releases, the code tree, the lock and
	// staging.toml); it must exist. Required.
	Dir string
	// Nights is how many nightly rebuilds to run; 0: 30.
	Nights int
	// First is when the first night's rebuild starts; zero: 03:00 UTC, Nights days
	// before 2026-03-31.
	First time.Time
}

// Recording is a recorded history.
type Recording struct {
	// StateDir is the state folder holding the history (staging.History reads it).
	StateDir string
	// ConfigPath is an environment config (staging.toml) whose state_dir is StateDir; it
	// loads with staging.LoadEnvironment (the rest of it describes a world that does not
	// exist: nothing may run from it).
	ConfigPath string
	// Reports are the reports the runs returned, oldest first.
	Reports []*staging.Report
}

// The failing nights (0-based) and what fails.
const (
	failRestore = 8  // the restore runs out of disk
	failHealth  = 16 // the new release is not healthy: rolled back
	failSchema  = 24 // a migration gives up on a lock
)

// Record runs opts.Nights rebuilds, one a day, and returns what they recorded. A run
// that fails as planned is part of the history; any other error of a run is returned.
func Record(ctx context.Context, opts Options) (*Recording, error) {
	if opts.Dir == "" {
		return nil, errors.New("historytest: Options.Dir is required")
	}
	if opts.Nights == 0 {
		opts.Nights = 30
	}
	if opts.First.IsZero() {
		opts.First = time.Date(2026, 3, 31, 3, 0, 0, 0, time.UTC).AddDate(0, 0, -opts.Nights)
	}
	w, err := newWorld(opts.Dir)
	if err != nil {
		return nil, err
	}
	rb, err := w.rebuilder()
	if err != nil {
		return nil, err
	}
	defer rb.Close()
	rec := &Recording{StateDir: w.stateDir, ConfigPath: filepath.Join(opts.Dir, "staging.toml")}
	if err := w.writeConfig(rec.ConfigPath); err != nil {
		return nil, err
	}
	for i := range opts.Nights {
		if err := w.plan(i, opts.First.AddDate(0, 0, i)); err != nil {
			return nil, err
		}
		rep, err := rb.Run(ctx)
		if rep == nil {
			return nil, fmt.Errorf("historytest: night %d: no report: %w", i+1, err)
		}
		if want := w.night.outcome(); rep.Outcome != want {
			return nil, fmt.Errorf("historytest: night %d: outcome %q, want %q (%v)", i+1, rep.Outcome, want, err)
		}
		rec.Reports = append(rec.Reports, rep)
	}
	return rec, nil
}

// Production's identity, the databases' names and the migrations' first version.
const (
	productionID = 7312345678901234567
	prodDB       = "launchpad_prod"
	stagingDB    = "launchpad_staging"
	baseVersion  = 2200
)

// migration is one migration of the code, with when the code gains it and how long it
// takes on the full database.
type migration struct {
	version uint
	name    string
	night   int // the first night whose code has it
	takes   time.Duration
}

var migrations = []migration{
	{2201, "add_bug_heat_index", 1, 3*time.Minute + 20*time.Second},
	{2202, "person_karma_default", 2, 4 * time.Second},
	{2203, "drop_old_sessions", 4, 45 * time.Second},
	{2204, "bugtask_status_backfill", 8, 11 * time.Minute},
	{2205, "add_branch_merge_queue", 9, 2 * time.Second},
	{2206, "translation_message_fk", 13, 6*time.Minute + 30*time.Second},
	{2207, "archive_publishing_history", 16, 2*time.Minute + 10*time.Second},
	{2208, "bug_subscription_filter", 20, 20 * time.Second},
	{2209, "spph_sourcepackagename_idx", 22, 8 * time.Minute},
	{2210, "drop_legacy_karma_cache", 27, 15 * time.Second},
}

// trainEvery is the release train's period: production gets the migrations of the code
// as it was at the last train, staging applies the newer ones every night.
const trainEvery = 7

// night is the plan of one night's rebuild.
type night struct {
	index   int
	start   time.Time
	size    int64   // the backup's bytes
	rate    float64 // restore bytes per second
	created time.Time
	waited  time.Duration // the backup step's wait for the backup
	prod    uint          // production's schema version (the backup's)
	pending []migration   // the code's migrations newer than prod
	commit  string
}

func (n *night) outcome() staging.Outcome {
	switch n.index {
	case failRestore, failSchema:
		return staging.OutcomeFailed
	case failHealth:
		return staging.OutcomeRolledBack
	}
	return staging.OutcomeOK
}

// world is the stand-in staging environment the nights run in.
type world struct {
	dir, stateDir, tree string
	clock               *clock
	rnd                 *rand.Rand
	night               *night

	mu      sync.Mutex
	healthy int // health checks passed this night (the restart's follows a failure)
}

func newWorld(dir string) (*world, error) {
	w := &world{
		dir: dir, stateDir: filepath.Join(dir, "state"), tree: filepath.Join(dir, "build", "launchpad"),
		clock: &clock{}, rnd: rand.New(rand.NewPCG(17, 2026)),
	}
	for _, d := range []string{w.stateDir, filepath.Join(w.tree, "lib"), filepath.Join(dir, "staging", "releases"), filepath.Join(dir, "run")} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			return nil, fmt.Errorf("historytest: %w", err)
		}
	}
	for i := range 40 {
		name := filepath.Join(w.tree, "lib", fmt.Sprintf("module%02d.py", i))
		if err := os.WriteFile(name, []byte(fmt.Sprintf("# module %d\n", i)), 0o644); err != nil {
			return nil, fmt.Errorf("historytest: %w", err)
		}
	}
	return w, nil
}

// plan sets up night i, starting at about start.
func (w *world) plan(i int, start time.Time) error {
	n := &night{index: i, start: start.Add(time.Duration(w.rnd.IntN(240)) * time.Second)}
	n.size = int64(38.2e9 + float64(i)*0.16e9 + w.rnd.Float64()*0.3e9)
	n.rate = 58e6 + w.rnd.NormFloat64()*4e6
	if i >= 18 && i <= 20 { // a noisy neighbour on the staging host's disks
		n.rate = 34e6 + w.rnd.Float64()*4e6
	}
	n.created = n.start.Add(-95*time.Minute + time.Duration(w.rnd.IntN(600))*time.Second)
	n.waited = time.Duration(200+w.rnd.IntN(600)) * time.Millisecond
	if i == 11 { // production's dump was late: the run waited for it
		n.waited = 22*time.Minute + 40*time.Second
		n.created = n.start.Add(n.waited - 30*time.Second)
	}
	train := i / trainEvery * trainEvery // the night of the last train
	for _, m := range migrations {
		switch {
		case m.night <= train:
			n.prod = m.version
		case m.night <= i:
			n.pending = append(n.pending, m)
		}
	}
	if n.prod == 0 {
		n.prod = baseVersion
	}
	sum := sha1.Sum([]byte("launchpad " + strconv.Itoa(i)))
	n.commit = hex.EncodeToString(sum[:])[:12]
	w.clock.set(n.start)
	w.mu.Lock()
	w.night, w.healthy = n, 0
	w.mu.Unlock()
	// The code changes every night.
	return os.WriteFile(filepath.Join(w.tree, "VERSION"), []byte(n.commit+"\n"), 0o644)
}

// jitter returns d give or take a fifth.
func (w *world) jitter(d time.Duration) time.Duration {
	return time.Duration(float64(d) * (0.9 + 0.2*w.rnd.Float64()))
}

func (w *world) rebuilder() (*staging.Rebuilder, error) {
	releases, err := codesync.New(codesync.Config{
		Releases: filepath.Join(w.dir, "staging", "releases"), Current: filepath.Join(w.dir, "staging", "current"),
		Keep: 3, Now: w.clock.now, Logger: discard,
	})
	if err != nil {
		return nil, err
	}
	return staging.New(staging.Config{
		Environment: "staging",
		Backups:     (*catalog)(w),
		Databases:   &databases{Fake: &dbrestoretest.Fake{}, w: w},
		Source:      (*source)(w),
		Releases:    releases,
		Schema:      (*upgrader)(w),
		Service:     (*service)(w),
		Health:      (*health)(w),
		DSN:         func(db string) string { return "postgres://staging-db.example.org/" + db },
		Options: staging.Options{
			Database: stagingDB,
			Backup:   dbrestore.WaitOptions{Database: prodDB, MaxAge: 20 * time.Hour, Wait: 45 * time.Minute},
			Clones:   []string{"launchpad_experimental"},
			LockFile: filepath.Join(w.dir, "run", "staging.lock"),
			StateDir: w.stateDir,
			Logger:   discard,
			Now:      w.clock.now,
		},
	})
}

var discard = slog.New(slog.NewTextHandler(io.Discard, nil))

// writeConfig writes an environment config naming the recording's state folder, and
// checks that it loads.
func (w *world) writeConfig(path string) error {
	text := fmt.Sprintf(`# A recorded history (made by historytest): only state_dir is real.
environment = "staging"
lock_file   = "run/staging.lock"
state_dir   = "state"

[backup]
dir      = "backups"
database = %q

[database]
admin_dsn      = "postgres://postgres@staging-db.example.org:5432/postgres"
name           = %q
production_ids = ["%d"]
clones         = ["launchpad_experimental"]

[code]
source   = "build/launchpad"
releases = "staging/releases"
current  = "staging/current"

[service]
type    = "process"
command = ["bin/app"]
pidfile = "run/app.pid"
`, prodDB, stagingDB, uint64(productionID))
	if err := os.WriteFile(path, []byte(text), 0o600); err != nil {
		return fmt.Errorf("historytest: %w", err)
	}
	if _, err := staging.LoadEnvironment(path); err != nil {
		return fmt.Errorf("historytest: the config does not load: %w", err)
	}
	return nil
}

// clock is the virtual clock the parts move forward.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) set(t time.Time) {
	c.mu.Lock()
	c.t = t
	c.mu.Unlock()
}

func (c *clock) advance(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

// take moves the clock forward by about d (give or take a fifth).
func (w *world) take(d time.Duration) { w.clock.advance(w.jitter(d)) }

// catalog stands in for production's backups folder.
type catalog world

var _ dbrestore.Catalog = (*catalog)(nil)

func (c *catalog) Wait(ctx context.Context, opts dbrestore.WaitOptions) (*dbrestore.Backup, error) {
	n := c.night
	c.clock.advance(n.waited)
	name := fmt.Sprintf("%s-%s.dump", opts.Database, n.created.UTC().Format("20060102T150405Z"))
	return &dbrestore.Backup{
		Path: filepath.Join(c.dir, "backups", name), ManifestPath: filepath.Join(c.dir, "backups", name+".json"),
		Manifest: dbrestore.Manifest{
			Database: opts.Database, Format: "custom", Dump: name, Created: n.created, Size: n.size,
			SystemIdentifier: productionID, ServerVersion: "15.8", PgDumpVersion: "pg_dump (PostgreSQL) 15.8",
		},
	}, nil
}

func (c *catalog) Verify(ctx context.Context, b *dbrestore.Backup) error {
	(*world)(c).take(time.Duration(float64(b.Manifest.Size) / 450e6 * float64(time.Second)))
	return nil
}

func (c *catalog) SourceIDs(ctx context.Context) ([]uint64, error) {
	return []uint64{productionID}, nil
}

// databases stands in for the staging database server: a dbrestoretest.Fake, which
// keeps dbrestore.Server's promises (the production guard, protected names), whose
// changes move the virtual clock by what they take on the production database. On the
// night planned so, the restore runs out of disk.
type databases struct {
	*dbrestoretest.Fake
	w *world
}

var _ staging.Databases = (*databases)(nil)

func (d *databases) Restore(ctx context.Context, b *dbrestore.Backup, opts dbrestore.RestoreOptions) (*dbrestore.RestoreResult, error) {
	n := d.w.night
	took := time.Duration(float64(b.Manifest.Size) / n.rate * float64(time.Second))
	if n.index == failRestore {
		d.w.clock.advance(took * 6 / 10)
		return nil, fmt.Errorf("pg_restore: exit status 1: pg_restore: error: could not extend file \"base/16384/2613\": No space left on device")
	}
	d.w.clock.advance(took)
	if _, err := d.Fake.Restore(ctx, b, opts); err != nil {
		return nil, err
	}
	post, analyze := d.w.jitter(40*time.Second), d.w.jitter(3*time.Minute)
	d.w.clock.advance(post + analyze)
	return &dbrestore.RestoreResult{Database: opts.Target, Objects: 4211, Restore: took, PostRestore: post, Analyze: analyze}, nil
}

func (d *databases) Drop(ctx context.Context, name string) error {
	_, existed := d.Content(name)
	if err := d.Fake.Drop(ctx, name); err != nil || !existed {
		return err
	}
	d.w.take(6 * time.Second)
	return nil
}

func (d *databases) Swap(ctx context.Context, live, next, prev string) error {
	if err := d.Fake.Swap(ctx, live, next, prev); err != nil {
		return err
	}
	d.w.clock.advance(180 * time.Millisecond)
	return nil
}

func (d *databases) Clone(ctx context.Context, template, name string) error {
	if err := d.Fake.Clone(ctx, template, name); err != nil {
		return err
	}
	d.w.take(time.Duration(float64(d.w.night.size) / 1.1e9 * float64(time.Second)))
	return nil
}

func (d *databases) Rename(ctx context.Context, from, to string) error {
	if err := d.Fake.Rename(ctx, from, to); err != nil {
		return err
	}
	d.w.clock.advance(90 * time.Millisecond)
	return nil
}

// source stands in for the git checkout of the staging branch: the tree is a folder,
// the revision names the night's commit.
type source world

var _ codesync.Source = (*source)(nil)

func (s *source) Describe(ctx context.Context) (codesync.Revision, error) {
	return codesync.Revision{Source: "git.launchpad.example/launchpad", Ref: "staging", Commit: s.night.commit}, nil
}

func (s *source) Open(ctx context.Context) (*codesync.Tree, error) {
	rev, _ := s.Describe(ctx)
	(*world)(s).take(25 * time.Second) // the export of the tree
	return &codesync.Tree{Dir: s.tree, Revision: rev}, nil
}

// upgrader stands in for the migrations: it applies the night's pending ones.
type upgrader world

var _ schema.Upgrader = (*upgrader)(nil)

func (u *upgrader) Status(ctx context.Context, t schema.Target) (*schema.Status, error) {
	n := u.night
	st := &schema.Status{Version: n.prod, Latest: n.prod, HasVersion: true}
	for _, m := range n.pending {
		st.Pending = append(st.Pending, schema.Migration{Version: m.version, Name: m.name})
		st.Latest = m.version
	}
	return st, nil
}

func (u *upgrader) Upgrade(ctx context.Context, t schema.Target) (*schema.Result, error) {
	w := (*world)(u)
	n := w.night
	res := &schema.Result{From: n.prod, To: n.prod}
	w.take(1500 * time.Millisecond) // connect, read the version
	for _, m := range n.pending {
		took := w.jitter(m.takes)
		if n.index == failSchema && m == n.pending[len(n.pending)-1] {
			w.clock.advance(5 * time.Minute)
			return res, fmt.Errorf("migration %d_%s: ERROR: canceling statement due to lock timeout (SQLSTATE 55P03)", m.version, m.name)
		}
		w.clock.advance(took)
		res.Applied = append(res.Applied, schema.Applied{Migration: schema.Migration{Version: m.version, Name: m.name}, Duration: took})
		res.To = m.version
	}
	return res, nil
}

// service stands in for the staging service.
type service world

var _ svcctl.Controller = (*service)(nil)

func (s *service) Start(ctx context.Context) error { (*world)(s).take(2 * time.Second); return nil }
func (s *service) Stop(ctx context.Context) error  { (*world)(s).take(4 * time.Second); return nil }
func (s *service) Status(ctx context.Context) (svcctl.Status, error) {
	return svcctl.Status{State: svcctl.StateRunning}, nil
}

// health stands in for the health gate: on the night planned so, the new release never
// answers healthy and the previous one, started again, does.
type health world

var _ svcctl.Checker = (*health)(nil)

func (h *health) Wait(ctx context.Context) error {
	w := (*world)(h)
	w.mu.Lock()
	first := w.healthy == 0
	w.healthy++
	w.mu.Unlock()
	if w.night.index == failHealth && first {
		w.clock.advance(60 * time.Second)
		return errors.New("GET http://127.0.0.1:8080/+health: 502 Bad Gateway for 60s (service.health_timeout)")
	}
	w.take(11 * time.Second)
	return nil
}
