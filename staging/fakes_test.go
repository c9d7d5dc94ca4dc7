package staging

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sort"
	"sync"
	"time"

	"github.com/restage/restage/codesync"
	"github.com/restage/restage/dbrestore"
	"github.com/restage/restage/notify"
	"github.com/restage/restage/schema"
	"github.com/restage/restage/svcctl"
)

// world is an in-memory staging environment: databases (name -> content), releases,
// the current release, a service and the reports delivered. Its parts fail on demand
// through function fields.
type world struct {
	mu        sync.Mutex
	dbs       map[string]string // database -> content ("backup N", "... @vK")
	releases  []*codesync.Release
	current   string
	running   bool
	serving   string // "release/database" the service serves
	delivered []*notify.Message
	events    []string
	nextID    int
	backupSeq int
	sysID     uint64          // the staging server's system_identifier
	sourceID  uint64          // production's, named by the backups' manifests
	known     map[uint64]bool // production identities the guard has been told
	sources   []uint64        // what the catalog's manifests name
	allowed   []string        // AllowConnections calls
	upgraded  []schema.Target // Upgrade calls
	log       *slog.Logger    // what the parts log to; nil: nothing

	failWait, failVerify, failRestore, failBuild, failSchema func() error
	failStop, failStart, failHealth, failNotify, failSwap    func() error
	// failActivate fails Activate after it moved current (a metadata write failing).
	failActivate func() error
	// failRestoreLogin is CheckRestoreLogin's answer (a restore login that is a superuser).
	failRestoreLogin func() error
}

var (
	_ Databases         = (*world)(nil)
	_ dbrestore.Catalog = (*world)(nil)
	_ codesync.Syncer   = (*world)(nil)
)

func newWorld() *world {
	return &world{dbs: map[string]string{"staging": "backup 0 @v1", "staging_prev": "backup -1 @v1"}, current: "r0",
		releases: []*codesync.Release{{ID: "r0", Dir: "/releases/r0", State: codesync.StateActive}},
		running:  true, serving: "r0/backup 0 @v1", backupSeq: 1,
		sysID: 2, sourceID: 1, known: map[uint64]bool{}, sources: []uint64{1}}
}

// guarded refuses op on names, as dbrestore.Server does: names over 63 bytes, the
// system databases, and any change while no production identity is known or when this
// server is production. Called with w.mu held.
func (w *world) guarded(op string, names ...string) error {
	for _, n := range names {
		switch {
		case len(n) > dbrestore.MaxNameLen:
			return fmt.Errorf("%s %q: %w", op, n, dbrestore.ErrNameTooLong)
		case n == "template0" || n == "template1" || n == "postgres":
			return fmt.Errorf("%s %q: %w", op, n, dbrestore.ErrProtected)
		}
	}
	if len(w.known) == 0 {
		return fmt.Errorf("%s: %w", op, dbrestore.ErrNoProduction)
	}
	if w.known[w.sysID] {
		return fmt.Errorf("%s: %w", op, dbrestore.ErrProduction)
	}
	return nil
}

func (w *world) GuardProduction(ctx context.Context, ids ...uint64) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	for _, id := range ids {
		if id != 0 {
			w.known[id] = true
		}
	}
	return w.guarded("guard")
}

func (w *world) GuardSource(ctx context.Context, b *dbrestore.Backup) error {
	if b.Manifest.SystemIdentifier == 0 {
		return dbrestore.ErrCorrupt
	}
	return w.GuardProduction(ctx, b.Manifest.SystemIdentifier)
}

func (w *world) AllowConnections(ctx context.Context, name string) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if err := w.guarded("allow connections", name); err != nil {
		return err
	}
	w.allowed = append(w.allowed, name)
	return nil
}

// CheckRestoreLogin implements restoreLoginChecker, as dbrestore.Server does.
func (w *world) CheckRestoreLogin(ctx context.Context) error { return call(w.failRestoreLogin) }

func (w *world) SourceIDs(ctx context.Context) ([]uint64, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return slices.Clone(w.sources), nil
}

func (w *world) event(format string, args ...any) {
	w.events = append(w.events, fmt.Sprintf(format, args...))
}

func call(f func() error) error {
	if f == nil {
		return nil
	}
	return f()
}

// snapshot is what an operator sees of staging.
func (w *world) snapshot() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	names := make([]string, 0, len(w.dbs))
	for n := range w.dbs {
		names = append(names, n+"="+w.dbs[n])
	}
	sort.Strings(names)
	return fmt.Sprintf("dbs=%v current=%s running=%v serving=%s", names, w.current, w.running, w.serving)
}

// catalog
func (w *world) Wait(ctx context.Context, o dbrestore.WaitOptions) (*dbrestore.Backup, error) {
	if err := call(w.failWait); err != nil {
		return nil, err
	}
	return &dbrestore.Backup{Path: fmt.Sprintf("/backups/prod-%d.dump", w.backupSeq),
		Manifest: dbrestore.Manifest{Database: o.Database, Created: time.Now().Add(-time.Hour), Size: 1 << 20,
			SystemIdentifier: w.sourceID}}, nil
}
func (w *world) Verify(ctx context.Context, b *dbrestore.Backup) error { return call(w.failVerify) }

// databases

// restored is what a database restored from the latest backup holds.
func (w *world) restored() string { return fmt.Sprintf("backup %d @v1", w.backupSeq) }

func (w *world) Restore(ctx context.Context, b *dbrestore.Backup, o dbrestore.RestoreOptions) (*dbrestore.RestoreResult, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	switch src := b.Manifest.SystemIdentifier; src {
	case 0:
		return nil, dbrestore.ErrCorrupt
	case w.sysID:
		w.known[src] = true
		return nil, fmt.Errorf("restore: %w (the backup's source)", dbrestore.ErrProduction)
	default:
		w.known[src] = true
	}
	if err := w.guarded("restore", o.Target); err != nil {
		return nil, err
	}
	if _, ok := w.dbs[o.Target]; ok {
		if !o.Replace {
			return nil, dbrestore.ErrExists
		}
		delete(w.dbs, o.Target)
	}
	if err := call(w.failRestore); err != nil {
		return nil, err // the half-built target is dropped
	}
	w.dbs[o.Target] = w.restored()
	w.event("restore %s", o.Target)
	if w.log != nil {
		w.log.Info("pg_restore: restored into the fake", "database", o.Target)
	}
	return &dbrestore.RestoreResult{Database: o.Target, Objects: 10}, nil
}
func (w *world) Exists(ctx context.Context, name string) (bool, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	_, ok := w.dbs[name]
	return ok, nil
}
func (w *world) Drop(ctx context.Context, name string) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if err := w.guarded("drop", name); err != nil {
		return err
	}
	delete(w.dbs, name)
	return nil
}
func (w *world) Swap(ctx context.Context, live, next, prev string) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if err := w.guarded("swap", live, next, prev); err != nil {
		return err
	}
	if live == next || live == prev || next == prev {
		return fmt.Errorf("swap %q, %q, %q: three different names needed", live, next, prev)
	}
	if err := call(w.failSwap); err != nil {
		return err
	}
	if _, ok := w.dbs[next]; !ok {
		return fmt.Errorf("swap: %s: %w", next, dbrestore.ErrNotFound)
	}
	if _, ok := w.dbs[prev]; ok {
		return fmt.Errorf("swap: %s: %w", prev, dbrestore.ErrExists)
	}
	if c, ok := w.dbs[live]; ok {
		w.dbs[prev] = c
	}
	w.dbs[live] = w.dbs[next]
	delete(w.dbs, next)
	w.event("swap %s %s %s", live, next, prev)
	return nil
}
func (w *world) Rename(ctx context.Context, from, to string) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if err := w.guarded("rename", from, to); err != nil {
		return err
	}
	c, ok := w.dbs[from]
	if !ok {
		return dbrestore.ErrNotFound
	}
	if _, ok := w.dbs[to]; ok {
		return dbrestore.ErrExists
	}
	w.dbs[to] = c
	delete(w.dbs, from)
	return nil
}

func (w *world) Clone(ctx context.Context, template, name string) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if err := w.guarded("clone", name); err != nil {
		return err
	}
	if len(template) > dbrestore.MaxNameLen {
		return fmt.Errorf("clone from %q: %w", template, dbrestore.ErrNameTooLong)
	}
	c, ok := w.dbs[template]
	switch {
	case template == name:
		return fmt.Errorf("clone %q from itself", name)
	case !ok:
		return fmt.Errorf("clone from %q: %w", template, dbrestore.ErrNotFound)
	}
	w.dbs[name] = c
	return nil
}

// source
type fakeSource struct{}

func (fakeSource) Describe(ctx context.Context) (codesync.Revision, error) {
	return codesync.Revision{Source: "/src", Ref: "main", Commit: "abc"}, nil
}
func (fakeSource) Open(ctx context.Context) (*codesync.Tree, error) {
	return &codesync.Tree{Dir: "/src"}, nil
}

// releases
func (w *world) Build(ctx context.Context, src codesync.Source) (*codesync.Release, error) {
	if err := call(w.failBuild); err != nil {
		return nil, err
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	w.nextID++
	r := &codesync.Release{ID: fmt.Sprintf("r%d", w.nextID), State: codesync.StateBuilt}
	r.Dir = "/releases/" + r.ID
	w.releases = append(w.releases, r)
	return r, nil
}
func (w *world) find(id string) *codesync.Release {
	for _, r := range w.releases {
		if r.ID == id {
			return r
		}
	}
	return nil
}
func (w *world) Activate(ctx context.Context, r *codesync.Release) (*codesync.Release, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	prev := w.find(w.current)
	if prev != nil {
		prev.State = codesync.StateBuilt
	}
	w.current = r.ID
	if err := call(w.failActivate); err != nil {
		return nil, err // current moved, the release's metadata not written
	}
	w.find(r.ID).State = codesync.StateActive
	return prev, nil
}
func (w *world) Current(ctx context.Context) (*codesync.Release, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.find(w.current), nil
}
func (w *world) Rollback(ctx context.Context) (*codesync.Release, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	cur := w.find(w.current)
	cur.State = codesync.StateFailed
	for i := len(w.releases) - 1; i >= 0; i-- {
		if r := w.releases[i]; r.ID < cur.ID && r.State != codesync.StateFailed {
			r.State = codesync.StateActive
			w.current = r.ID
			return r, nil
		}
	}
	w.current = ""
	return nil, nil
}
func (w *world) Discard(ctx context.Context, r *codesync.Release) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.find(r.ID).State = codesync.StateFailed
	return nil
}
func (w *world) Prune(ctx context.Context) error { return nil }

// schema: the migration bumps the database's content to @v2
func (w *world) Status(ctx context.Context, t schema.Target) (*schema.Status, error) {
	return &schema.Status{Version: 1, Latest: 2, Pending: []schema.Migration{{Version: 2, Name: "add_x"}}}, nil
}
func (w *world) Upgrade(ctx context.Context, t schema.Target) (*schema.Result, error) {
	if err := call(w.failSchema); err != nil {
		return &schema.Result{From: 1, To: 1}, err
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	w.upgraded = append(w.upgraded, t)
	db := t.DSN[len("db:"):]
	w.dbs[db] = w.dbs[db][:len(w.dbs[db])-len("@v1")] + "@v2"
	return &schema.Result{From: 1, To: 2, Applied: []schema.Applied{{Migration: schema.Migration{Version: 2, Name: "add_x"}, Duration: time.Millisecond}}}, nil
}

// service
type svc struct{ w *world }

func (s svc) Start(ctx context.Context) error {
	w := s.w
	if err := call(w.failStart); err != nil {
		return err
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	w.running = true
	w.serving = w.current + "/" + w.dbs["staging"]
	return nil
}
func (s svc) Stop(ctx context.Context) error {
	w := s.w
	if err := call(w.failStop); err != nil {
		return err
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	w.running = false
	w.serving = ""
	return nil
}
func (s svc) Status(ctx context.Context) (svcctl.Status, error) {
	if s.w.running {
		return svcctl.Status{State: svcctl.StateRunning}, nil
	}
	return svcctl.Status{State: svcctl.StateStopped}, nil
}

type health struct{ w *world }

func (h health) Wait(ctx context.Context) error { return call(h.w.failHealth) }

type notifier struct{ w *world }

func (n notifier) Notify(ctx context.Context, m *notify.Message) error {
	if err := call(n.w.failNotify); err != nil {
		return err
	}
	n.w.mu.Lock()
	defer n.w.mu.Unlock()
	n.w.delivered = append(n.w.delivered, m)
	return nil
}

var errInjected = errors.New("injected fault")

func fail() error { return errInjected }

// failOnce returns a fault that fails the first call (errInjected) and no other.
func failOnce() func() error {
	n := 0
	return func() error {
		n++
		if n == 1 {
			return fail()
		}
		return nil
	}
}
