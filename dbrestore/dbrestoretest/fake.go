package dbrestoretest

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"sync"

	"github.com/restage/restage/dbrestore"
)

// Fake is an in-memory staging database server for tests of code that restores,
// swaps, drops and clones databases: a database is a name holding a content string. It
// keeps dbrestore.Server's promises (the conformance suite Admin checks them): it fails
// closed with dbrestore.ErrNoProduction until it knows a production identity, refuses
// everything with dbrestore.ErrProduction once SystemID is one, and refuses protected
// names (template0, template1, postgres and Protect) and names over 63 bytes.
//
// The function fields inject faults: each is called first, with the call's arguments,
// and its error fails the call before anything changed. Set the fields before the Fake
// is used or between calls, never during one. The zero value is ready to use: a server
// whose system_identifier is 1 that holds template0, template1 and postgres. A Fake is
// safe for concurrent use.
type Fake struct {
	SystemID   uint64   // this server's system_identifier; 0: 1
	Protect    []string // databases never changed, besides template0, template1 and postgres
	Production []uint64 // production servers' identities known from the start (ServerConfig.Production)

	// ExistsFunc, when set, is called by Exists.
	ExistsFunc func(ctx context.Context, name string) error
	// DropFunc, when set, is called by Drop.
	DropFunc func(ctx context.Context, name string) error
	// RenameFunc, when set, is called by Rename.
	RenameFunc func(ctx context.Context, from, to string) error
	// SwapFunc, when set, is called by Swap.
	SwapFunc func(ctx context.Context, live, next, prev string) error
	// CloneFunc, when set, is called by Clone.
	CloneFunc func(ctx context.Context, template, name string) error
	// RestoreFunc, when set, is called by Restore (a failed restore leaves no target).
	RestoreFunc func(ctx context.Context, b *dbrestore.Backup, opts dbrestore.RestoreOptions) error
	// AllowConnectionsFunc, when set, is called by AllowConnections.
	AllowConnectionsFunc func(ctx context.Context, name string) error
	// GuardFunc, when set, is called by GuardProduction and GuardSource (e.g. the server
	// cannot be reached to read its system_identifier).
	GuardFunc func(ctx context.Context) error

	mu    sync.Mutex
	dbs   map[string]string // name -> content
	known map[uint64]bool   // production identities told (GuardProduction, GuardSource, Restore)
}

var _ Server = (*Fake)(nil)

// init makes the zero Fake's databases; called with f.mu held.
func (f *Fake) init() {
	if f.dbs == nil {
		f.dbs = map[string]string{"template0": "", "template1": "", "postgres": ""}
		f.known = map[uint64]bool{}
	}
}

func (f *Fake) systemID() uint64 {
	if f.SystemID == 0 {
		return 1
	}
	return f.SystemID
}

// Create adds database name holding content, or replaces its content, behind the back of
// the guard: what exists on the server before the code under test runs.
func (f *Fake) Create(name, content string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.init()
	f.dbs[name] = content
}

// Content returns the content of database name, and whether it exists.
func (f *Fake) Content(name string) (string, bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.init()
	c, ok := f.dbs[name]
	return c, ok
}

// Databases returns the names of the server's databases, sorted.
func (f *Fake) Databases() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.init()
	return slices.Sorted(maps.Keys(f.dbs))
}

// fault calls fn, the call of a function field, when the field is set, then reports a
// done ctx.
func fault(ctx context.Context, set bool, fn func() error) error {
	if set {
		if err := fn(); err != nil {
			return err
		}
	}
	return ctx.Err()
}

// change starts a change, op on names: it calls the function field (fn, when set), then
// takes f.mu and checks the guard. Unless it fails, the caller changes the databases and
// then unlocks f.mu.
func (f *Fake) change(ctx context.Context, set bool, fn func() error, op string, names ...string) error {
	if err := fault(ctx, set, fn); err != nil {
		return err
	}
	f.mu.Lock()
	if err := f.guard(op, names...); err != nil {
		f.mu.Unlock()
		return err
	}
	return nil
}

// guard refuses op on names as dbrestore.Server does: empty, too long or protected
// names, then a production server, or any server while no production identity is
// known. Called with f.mu held.
func (f *Fake) guard(op string, names ...string) error {
	f.init()
	for _, n := range names {
		switch {
		case n == "":
			return fmt.Errorf("dbrestoretest: fake %s: empty database name", op)
		case len(n) > dbrestore.MaxNameLen:
			return fmt.Errorf("dbrestoretest: fake %s %q: %w", op, n, dbrestore.ErrNameTooLong)
		case n == "template0" || n == "template1" || n == "postgres" || slices.Contains(f.Protect, n):
			return fmt.Errorf("dbrestoretest: fake %s %q: %w", op, n, dbrestore.ErrProtected)
		}
	}
	if err := f.checkProduction(); err != nil {
		return fmt.Errorf("dbrestoretest: fake %s %q: %w", op, names, err)
	}
	return nil
}

// checkProduction refuses this server when it is production, or when no production
// identity is known. Called with f.mu held.
func (f *Fake) checkProduction() error {
	switch {
	case f.known[f.systemID()] || slices.Contains(f.Production, f.systemID()):
		return fmt.Errorf("%w (system_identifier %d)", dbrestore.ErrProduction, f.systemID())
	case len(f.known) == 0 && len(f.Production) == 0:
		return dbrestore.ErrNoProduction
	}
	return nil
}

// Exists reports whether a database called name exists.
func (f *Fake) Exists(ctx context.Context, name string) (bool, error) {
	if err := fault(ctx, f.ExistsFunc != nil, func() error { return f.ExistsFunc(ctx, name) }); err != nil {
		return false, err
	}
	_, ok := f.Content(name)
	return ok, nil
}

// Drop drops name; a missing database is not an error.
func (f *Fake) Drop(ctx context.Context, name string) error {
	if err := f.change(ctx, f.DropFunc != nil, func() error { return f.DropFunc(ctx, name) }, "drop", name); err != nil {
		return err
	}
	defer f.mu.Unlock()
	delete(f.dbs, name)
	return nil
}

// Rename renames from to to; to must not exist.
func (f *Fake) Rename(ctx context.Context, from, to string) error {
	if err := f.change(ctx, f.RenameFunc != nil, func() error { return f.RenameFunc(ctx, from, to) }, "rename", from, to); err != nil {
		return err
	}
	defer f.mu.Unlock()
	if from == to {
		return fmt.Errorf("dbrestoretest: fake rename %q to itself", from)
	}
	if _, ok := f.dbs[to]; ok {
		return fmt.Errorf("dbrestoretest: fake rename %q to %q: %w", from, to, dbrestore.ErrExists)
	}
	c, ok := f.dbs[from]
	if !ok {
		return fmt.Errorf("dbrestoretest: fake rename %q: %w", from, dbrestore.ErrNotFound)
	}
	f.dbs[to] = c
	delete(f.dbs, from)
	return nil
}

// Swap renames live to prev (when live exists) and next to live, all or nothing. next
// must exist and prev must not.
func (f *Fake) Swap(ctx context.Context, live, next, prev string) error {
	if err := f.change(ctx, f.SwapFunc != nil, func() error { return f.SwapFunc(ctx, live, next, prev) },
		"swap", live, next, prev); err != nil {
		return err
	}
	defer f.mu.Unlock()
	if live == next || live == prev || next == prev {
		return fmt.Errorf("dbrestoretest: fake swap needs three different names, got %q, %q, %q", live, next, prev)
	}
	n, ok := f.dbs[next]
	if !ok {
		return fmt.Errorf("dbrestoretest: fake swap: %q: %w", next, dbrestore.ErrNotFound)
	}
	if _, ok := f.dbs[prev]; ok {
		return fmt.Errorf("dbrestoretest: fake swap: %q: %w", prev, dbrestore.ErrExists)
	}
	if l, ok := f.dbs[live]; ok {
		f.dbs[prev] = l
	}
	f.dbs[live] = n
	delete(f.dbs, next)
	return nil
}

// Clone makes name a copy of template, replacing an existing name.
func (f *Fake) Clone(ctx context.Context, template, name string) error {
	if err := f.change(ctx, f.CloneFunc != nil, func() error { return f.CloneFunc(ctx, template, name) },
		"clone into", name); err != nil {
		return err
	}
	defer f.mu.Unlock()
	if template == "" || template == name {
		return fmt.Errorf("dbrestoretest: fake clone %q from %q: need a different template", name, template)
	}
	if len(template) > dbrestore.MaxNameLen {
		return fmt.Errorf("dbrestoretest: fake clone template %q: %w", template, dbrestore.ErrNameTooLong)
	}
	c, ok := f.dbs[template]
	if !ok {
		return fmt.Errorf("dbrestoretest: fake clone template %q: %w", template, dbrestore.ErrNotFound)
	}
	f.dbs[name] = c
	return nil
}

// AllowConnections checks the guard as every change does; a Fake never refuses
// connections, so there is nothing else to do.
func (f *Fake) AllowConnections(ctx context.Context, name string) error {
	if err := f.change(ctx, f.AllowConnectionsFunc != nil, func() error { return f.AllowConnectionsFunc(ctx, name) },
		"allow connections to", name); err != nil {
		return err
	}
	f.mu.Unlock()
	return nil
}

// GuardProduction notes ids (zeros ignored) as production's, then refuses with
// dbrestore.ErrProduction when SystemID is one of the identities known, or with
// dbrestore.ErrNoProduction when none is.
func (f *Fake) GuardProduction(ctx context.Context, ids ...uint64) error {
	if err := fault(ctx, f.GuardFunc != nil, func() error { return f.GuardFunc(ctx) }); err != nil {
		return err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.init()
	for _, id := range ids {
		if id != 0 {
			f.known[id] = true
		}
	}
	if err := f.checkProduction(); err != nil {
		return fmt.Errorf("dbrestoretest: fake server: %w", err)
	}
	return nil
}

// GuardSource refuses a backup whose manifest names no source (dbrestore.ErrCorrupt),
// then is GuardProduction with its source.
func (f *Fake) GuardSource(ctx context.Context, b *dbrestore.Backup) error {
	if b == nil {
		return errors.New("dbrestoretest: fake GuardSource needs a backup")
	}
	if b.Manifest.SystemIdentifier == 0 {
		return fmt.Errorf("dbrestoretest: fake: %w: manifest of %s has no system_identifier", dbrestore.ErrCorrupt, b.Name())
	}
	return f.GuardProduction(ctx, b.Manifest.SystemIdentifier)
}

// Restore makes opts.Target hold b.Path as its content. Like dbrestore.Server, it notes
// b's source as production, refuses a backup that names no source (dbrestore.ErrCorrupt)
// or whose source is this server (dbrestore.ErrProduction), a guarded target, and an
// existing target unless opts.Replace. It reports one Progress event, the whole restore.
func (f *Fake) Restore(ctx context.Context, b *dbrestore.Backup, opts dbrestore.RestoreOptions) (*dbrestore.RestoreResult, error) {
	if err := fault(ctx, f.RestoreFunc != nil, func() error { return f.RestoreFunc(ctx, b, opts) }); err != nil {
		return nil, err
	}
	if b == nil || opts.Target == "" {
		return nil, errors.New("dbrestoretest: fake Restore needs a backup and a target")
	}
	src := b.Manifest.SystemIdentifier
	if src == 0 {
		return nil, fmt.Errorf("dbrestoretest: fake: %w: manifest of %s has no system_identifier", dbrestore.ErrCorrupt, b.Name())
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.init()
	f.known[src] = true
	if src == f.systemID() {
		return nil, fmt.Errorf("dbrestoretest: fake restore %s: %w (this server is the backup's source)", b.Name(), dbrestore.ErrProduction)
	}
	if err := f.guard("restore into", opts.Target); err != nil {
		return nil, err
	}
	if _, ok := f.dbs[opts.Target]; ok && !opts.Replace {
		return nil, fmt.Errorf("dbrestoretest: fake restore into %q: %w", opts.Target, dbrestore.ErrExists)
	}
	f.dbs[opts.Target] = b.Path
	if opts.Progress != nil {
		opts.Progress(dbrestore.Progress{Done: 1, Total: 1, Item: "DATABASE " + opts.Target})
	}
	return &dbrestore.RestoreResult{Database: opts.Target, Objects: 1, RowCounts: b.Manifest.RowCounts}, nil
}
