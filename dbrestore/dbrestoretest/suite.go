package dbrestoretest

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/restage/restage/dbrestore"
)

// Server is what the staging Rebuilder requires of the staging database server
// (staging.Databases has the same methods): restores, the whole-database operations and
// the production guard. *dbrestore.Server and *Fake implement it.
type Server interface {
	dbrestore.Restorer
	dbrestore.Admin
	dbrestore.Guard
}

var (
	_ Server = (*dbrestore.Server)(nil)
	_ Server = (*Fake)(nil)
)

// Fixture tells Admin how to make and look into the servers it checks.
type Fixture struct {
	// New returns a Server that knows no production identity yet, so that it refuses
	// every change with dbrestore.ErrNoProduction until told one, and that protects
	// Protected besides template0, template1 and postgres. Servers New returns may share
	// one database server; the suite's database names are its own. Required.
	New func(t *testing.T) Server
	// SystemID is the system_identifier of the database server New's servers manage.
	// Required (not 0).
	SystemID uint64
	// Create creates database name on the database server of s, holding mark, behind the
	// back of s (no guard runs): the databases the suite then drops, renames, swaps and
	// clones. Required.
	Create func(t *testing.T, s Server, name, mark string)
	// Mark returns the mark of database name of the database server of s: the one Create
	// gave it or the one of the database it was cloned from, renamed from or restored
	// from. Required.
	Mark func(t *testing.T, s Server, name string) string
	// Drop, when set, drops database name of the database server of s behind the back
	// of s, and is no error when it is missing: the suite drops what it made when each
	// check ends (in t.Cleanup: t.Context() has ended). nil: nothing is cleaned up (an
	// in-memory server goes away by itself).
	Drop func(t *testing.T, s Server, name string)
	// Protected is a database name the servers New returns protect besides the system
	// ones; the suite creates it (Create) and drops it (Drop). "": only template0,
	// template1 and postgres are checked.
	Protected string
	// Backup, when set, returns a complete, verifiable backup of another server than
	// SystemID's, and the mark a database restored from it holds; the suite then checks
	// Restore too. nil: Restore is not checked.
	Backup func(t *testing.T) (b *dbrestore.Backup, mark string)
}

// Admin runs the conformance suite against the servers f makes. Each promise is a
// subtest: exists, drop, rename, swap, clone, allow-connections, guard, guard-source,
// no-production, production, protected, long-names, and, when f.Backup is set, restore.
func Admin(t *testing.T, f Fixture) {
	t.Helper()
	if f.New == nil || f.Create == nil || f.Mark == nil || f.SystemID == 0 {
		t.Fatal("dbrestoretest: Fixture.New, SystemID, Create and Mark are required")
	}
	sc := &suite{f: f, run: fmt.Sprintf("%x", uint32(time.Now().UnixNano()))}
	// Another server's identity, taken as production's: told to a server, it lets the
	// server change its own databases.
	sc.other = f.SystemID ^ 0x5eed
	t.Run("exists", sc.exists)
	t.Run("drop", sc.drop)
	t.Run("rename", sc.rename)
	t.Run("swap", sc.swap)
	t.Run("clone", sc.clone)
	t.Run("allow-connections", sc.allowConnections)
	t.Run("guard", sc.guard)
	t.Run("guard-source", sc.guardSource)
	t.Run("no-production", sc.noProduction)
	t.Run("production", sc.production)
	t.Run("protected", sc.protected)
	t.Run("long-names", sc.longNames)
	if f.Backup != nil {
		t.Run("restore", sc.restore)
	}
}

type suite struct {
	f     Fixture
	run   string // names this run's databases
	other uint64 // production's identity: not the server's
	seq   atomic.Int64
}

// name returns a fresh database name with role in it, dropped (Fixture.Drop) when the
// test ends.
func (sc *suite) name(t *testing.T, s Server, role string) string {
	t.Helper()
	name := fmt.Sprintf("dbrt_%s_%d_%s", sc.run, sc.seq.Add(1), role)
	sc.dropAtEnd(t, s, name)
	return name
}

func (sc *suite) dropAtEnd(t *testing.T, s Server, name string) {
	if sc.f.Drop != nil {
		t.Cleanup(func() { sc.f.Drop(t, s, name) })
	}
}

// create makes a fresh database with role in its name, holding the mark role, behind the
// back of s.
func (sc *suite) create(t *testing.T, s Server, role string) string {
	t.Helper()
	name := sc.name(t, s, role)
	sc.f.Create(t, s, name, role)
	return name
}

// staging returns a fresh server that knows production's identity (sc.other): one that
// may change its own databases.
func (sc *suite) staging(t *testing.T) Server {
	t.Helper()
	s := sc.f.New(t)
	if err := s.GuardProduction(t.Context(), sc.other); err != nil {
		t.Fatalf("GuardProduction(%d) of a server whose system_identifier is %d: %v; want nil", sc.other, sc.f.SystemID, err)
	}
	return s
}

// backup returns a backup, not on disk, whose manifest names source.
func backup(source uint64) *dbrestore.Backup {
	return &dbrestore.Backup{Path: "/nonexistent/prod-20260101T000000.000Z.dump",
		Manifest: dbrestore.Manifest{Database: "prod", Format: dbrestore.FormatCustom, SystemIdentifier: source}}
}

// state is what the suite sees of some databases: name -> mark, "-" for a missing one.
type state map[string]string

const missing = "-"

// look returns the state of names; marked says which names hold a mark (the rest are
// only looked up).
func (sc *suite) look(t *testing.T, s Server, marked bool, names ...string) state {
	t.Helper()
	st := state{}
	for _, n := range names {
		ok, err := s.Exists(t.Context(), n)
		if err != nil {
			t.Fatalf("Exists(%q): %v", n, err)
		}
		switch {
		case !ok:
			st[n] = missing
		case marked:
			st[n] = sc.f.Mark(t, s, n)
		default:
			st[n] = "exists"
		}
	}
	return st
}

// requireState fails unless the databases are as want says.
func (sc *suite) requireState(t *testing.T, s Server, what string, want state) {
	t.Helper()
	for n, w := range want {
		got := sc.look(t, s, w != "exists" && w != missing, n)[n]
		if got != w {
			t.Errorf("after %s: database %q is %q, want %q", what, n, got, w)
		}
	}
}

// sentinels names dbrestore's errors the suite expects.
var sentinels = map[error]string{
	dbrestore.ErrNoProduction: "dbrestore.ErrNoProduction", dbrestore.ErrProduction: "dbrestore.ErrProduction",
	dbrestore.ErrProtected: "dbrestore.ErrProtected", dbrestore.ErrNameTooLong: "dbrestore.ErrNameTooLong",
	dbrestore.ErrExists: "dbrestore.ErrExists", dbrestore.ErrNotFound: "dbrestore.ErrNotFound",
	dbrestore.ErrCorrupt: "dbrestore.ErrCorrupt",
}

// requireIs fails unless err matches target.
func requireIs(t *testing.T, err, target error, what string) {
	t.Helper()
	if !errors.Is(err, target) {
		t.Errorf("%s: %v; want %s (%v)", what, err, sentinels[target], target)
	}
}

// requireNil fails the test now when err is not nil.
func requireNil(t *testing.T, err error, what string) {
	t.Helper()
	if err != nil {
		t.Fatalf("%s: %v", what, err)
	}
}

// change is one call that changes databases, for the checks that every change refuses.
type change struct {
	what string
	call func(context.Context) error
}

// changes returns one call of every kind of change over the databases the suite made:
// a and b exist, fresh and fresh2 do not.
func changes(s Server, a, b, fresh, fresh2 string) []change {
	return []change{
		{fmt.Sprintf("Drop(%q)", a), func(ctx context.Context) error { return s.Drop(ctx, a) }},
		{fmt.Sprintf("Drop(%q) of a missing database", fresh), func(ctx context.Context) error { return s.Drop(ctx, fresh) }},
		{fmt.Sprintf("Rename(%q, %q)", a, fresh), func(ctx context.Context) error { return s.Rename(ctx, a, fresh) }},
		{fmt.Sprintf("Swap(%q, %q, %q)", a, b, fresh), func(ctx context.Context) error { return s.Swap(ctx, a, b, fresh) }},
		{fmt.Sprintf("Swap(%q, %q, %q) without a live database", fresh, b, fresh2), func(ctx context.Context) error {
			return s.Swap(ctx, fresh, b, fresh2)
		}},
		{fmt.Sprintf("Clone(%q, %q)", a, fresh), func(ctx context.Context) error { return s.Clone(ctx, a, fresh) }},
		{fmt.Sprintf("Clone(%q, %q) over an existing one", a, b), func(ctx context.Context) error { return s.Clone(ctx, a, b) }},
		{fmt.Sprintf("AllowConnections(%q)", a), func(ctx context.Context) error { return s.AllowConnections(ctx, a) }},
	}
}

func (sc *suite) exists(t *testing.T) {
	s := sc.f.New(t) // Exists reads: no production identity needed
	a := sc.create(t, s, "a")
	sc.requireState(t, s, "Create", state{a: "a", sc.name(t, s, "none"): missing})
}

func (sc *suite) drop(t *testing.T) {
	s := sc.staging(t)
	a, b := sc.create(t, s, "a"), sc.create(t, s, "b")
	requireNil(t, s.Drop(t.Context(), a), "Drop")
	sc.requireState(t, s, "Drop", state{a: missing, b: "b"})
	requireNil(t, s.Drop(t.Context(), a), "Drop of a missing database")
}

func (sc *suite) rename(t *testing.T) {
	s := sc.staging(t)
	ctx := t.Context()
	a, b := sc.create(t, s, "a"), sc.create(t, s, "b")
	to := sc.name(t, s, `it's "b"`) // quoted, not pasted
	requireNil(t, s.Rename(ctx, a, to), "Rename")
	sc.requireState(t, s, "Rename", state{a: missing, to: "a"})

	requireIs(t, s.Rename(ctx, to, b), dbrestore.ErrExists, "Rename onto an existing database")
	sc.requireState(t, s, "a refused Rename", state{to: "a", b: "b"})
	requireIs(t, s.Rename(ctx, a, sc.name(t, s, "c")), dbrestore.ErrNotFound, "Rename of a missing database")
}

func (sc *suite) swap(t *testing.T) {
	ctx := t.Context()
	t.Run("with-live", func(t *testing.T) {
		s := sc.staging(t)
		live, next := sc.create(t, s, "live"), sc.create(t, s, "next")
		prev := sc.name(t, s, "prev")
		requireNil(t, s.Swap(ctx, live, next, prev), "Swap")
		sc.requireState(t, s, "Swap", state{live: "next", prev: "live", next: missing})
	})
	t.Run("without-live", func(t *testing.T) {
		s := sc.staging(t)
		next := sc.create(t, s, "next")
		live, prev := sc.name(t, s, "live"), sc.name(t, s, "prev")
		requireNil(t, s.Swap(ctx, live, next, prev), "Swap")
		sc.requireState(t, s, "Swap without a live database", state{live: "next", prev: missing, next: missing})
	})
	t.Run("refused", func(t *testing.T) {
		s := sc.staging(t)
		live, next, prev := sc.create(t, s, "live"), sc.create(t, s, "next"), sc.create(t, s, "prev")
		before := state{live: "live", next: "next", prev: "prev"}
		requireIs(t, s.Swap(ctx, live, next, prev), dbrestore.ErrExists, "Swap onto an existing prev")
		sc.requireState(t, s, "Swap onto an existing prev", before)

		gone := sc.name(t, s, "gone")
		free := sc.name(t, s, "free")
		requireIs(t, s.Swap(ctx, live, gone, free), dbrestore.ErrNotFound, "Swap with a missing next")
		sc.requireState(t, s, "Swap with a missing next", state{live: "live", free: missing})

		if err := s.Swap(ctx, live, live, free); err == nil {
			t.Error("Swap(live, live, prev): no error; want one (three different names)")
		}
		sc.requireState(t, s, "Swap with the same name twice", state{live: "live", free: missing})
	})
}

func (sc *suite) clone(t *testing.T) {
	s := sc.staging(t)
	ctx := t.Context()
	tmpl, old := sc.create(t, s, "tmpl"), sc.create(t, s, "old")
	fresh := sc.name(t, s, "fresh")
	requireNil(t, s.Clone(ctx, tmpl, fresh), "Clone")
	sc.requireState(t, s, "Clone", state{fresh: "tmpl", tmpl: "tmpl"})
	requireNil(t, s.Clone(ctx, tmpl, old), "Clone over an existing database")
	sc.requireState(t, s, "Clone over an existing database", state{old: "tmpl", tmpl: "tmpl"})

	other := sc.create(t, s, "other")
	requireIs(t, s.Clone(ctx, sc.name(t, s, "gone"), other), dbrestore.ErrNotFound, "Clone of a missing template")
	sc.requireState(t, s, "Clone of a missing template", state{other: "other"})
}

func (sc *suite) allowConnections(t *testing.T) {
	s := sc.staging(t)
	a := sc.create(t, s, "a")
	requireNil(t, s.AllowConnections(t.Context(), a), "AllowConnections")
	sc.requireState(t, s, "AllowConnections", state{a: "a"})
	requireNil(t, s.AllowConnections(t.Context(), sc.name(t, s, "gone")), "AllowConnections of a missing database")
}

// guard: production's identities are remembered for every later call.
func (sc *suite) guard(t *testing.T) {
	ctx := t.Context()
	s := sc.f.New(t)
	requireIs(t, s.GuardProduction(ctx), dbrestore.ErrNoProduction, "GuardProduction() of a server told nothing")
	requireIs(t, s.GuardProduction(ctx, 0), dbrestore.ErrNoProduction, "GuardProduction(0) (no identity)")
	requireNil(t, s.GuardProduction(ctx, sc.other), "GuardProduction(production's id)")
	requireNil(t, s.GuardProduction(ctx), "GuardProduction() after production's id was given")
	a := sc.create(t, s, "a")
	requireNil(t, s.Drop(ctx, a), "Drop after production's id was given")
}

func (sc *suite) guardSource(t *testing.T) {
	ctx := t.Context()
	t.Run("no-source", func(t *testing.T) {
		s := sc.f.New(t)
		a := sc.create(t, s, "a")
		requireIs(t, s.GuardSource(ctx, backup(0)), dbrestore.ErrCorrupt, "GuardSource of a backup naming no source")
		requireIs(t, s.Drop(ctx, a), dbrestore.ErrNoProduction, "Drop after GuardSource of a backup naming no source")
		sc.requireState(t, s, "refused Drop", state{a: "a"})
	})
	t.Run("other-source", func(t *testing.T) {
		s := sc.f.New(t)
		a := sc.create(t, s, "a")
		requireNil(t, s.GuardSource(ctx, backup(sc.other)), "GuardSource of another server's backup")
		requireNil(t, s.Drop(ctx, a), "Drop after GuardSource")
		sc.requireState(t, s, "Drop", state{a: missing})
	})
	t.Run("own-source", func(t *testing.T) {
		s := sc.f.New(t)
		a := sc.create(t, s, "a")
		requireNil(t, s.GuardProduction(ctx, sc.other), "GuardProduction(production's id)")
		requireIs(t, s.GuardSource(ctx, backup(sc.f.SystemID)), dbrestore.ErrProduction,
			"GuardSource of a backup of this very server")
		requireIs(t, s.Drop(ctx, a), dbrestore.ErrProduction, "Drop after this server was named a backup's source")
		sc.requireState(t, s, "refused Drop", state{a: "a"})
	})
}

// noProduction: a server that knows no production identity changes nothing.
func (sc *suite) noProduction(t *testing.T) {
	s := sc.f.New(t)
	a, b := sc.create(t, s, "a"), sc.create(t, s, "b")
	fresh, fresh2 := sc.name(t, s, "fresh"), sc.name(t, s, "fresh2")
	before := state{a: "a", b: "b", fresh: missing, fresh2: missing}
	for _, c := range changes(s, a, b, fresh, fresh2) {
		requireIs(t, c.call(t.Context()), dbrestore.ErrNoProduction, c.what+" on a server told no production identity")
		sc.requireState(t, s, "refused "+c.what, before)
	}
}

// production: once the server knows it is production, nothing changes.
func (sc *suite) production(t *testing.T) {
	ctx := t.Context()
	check := func(t *testing.T, s Server) {
		t.Helper()
		a, b := sc.create(t, s, "a"), sc.create(t, s, "b")
		fresh, fresh2 := sc.name(t, s, "fresh"), sc.name(t, s, "fresh2")
		before := state{a: "a", b: "b", fresh: missing, fresh2: missing}
		for _, c := range changes(s, a, b, fresh, fresh2) {
			requireIs(t, c.call(ctx), dbrestore.ErrProduction, c.what+" on the production server")
			sc.requireState(t, s, "refused "+c.what, before)
		}
		requireIs(t, s.GuardProduction(ctx, sc.other), dbrestore.ErrProduction,
			"GuardProduction(another id) on the production server")
		requireIs(t, s.GuardSource(ctx, backup(sc.other)), dbrestore.ErrProduction,
			"GuardSource(another server's backup) on the production server")
		requireIs(t, s.Drop(ctx, a), dbrestore.ErrProduction, "Drop after another id was given")
		sc.requireState(t, s, "refused Drop", before)
	}
	t.Run("told-first", func(t *testing.T) {
		s := sc.f.New(t)
		requireIs(t, s.GuardProduction(ctx, sc.f.SystemID), dbrestore.ErrProduction,
			"GuardProduction(the server's own system_identifier)")
		check(t, s)
	})
	t.Run("told-later", func(t *testing.T) {
		s := sc.staging(t)
		requireIs(t, s.GuardProduction(ctx, sc.f.SystemID), dbrestore.ErrProduction,
			"GuardProduction(the server's own system_identifier) after another id")
		check(t, s)
	})
}

// protected: the system databases and the fixture's protected name never change.
func (sc *suite) protected(t *testing.T) {
	ctx := t.Context()
	s := sc.staging(t)
	names := []string{"template0", "template1", "postgres"}
	if p := sc.f.Protected; p != "" {
		sc.dropAtEnd(t, s, p)
		sc.f.Create(t, s, p, "protected")
		names = append(names, p)
	}
	a, b := sc.create(t, s, "a"), sc.create(t, s, "b")
	fresh := sc.name(t, s, "fresh")
	before := sc.look(t, s, false, names...)
	before[a], before[b], before[fresh] = "a", "b", missing
	if p := sc.f.Protected; p != "" {
		before[p] = "protected"
	}
	for _, p := range names {
		calls := []change{
			{fmt.Sprintf("Drop(%q)", p), func(ctx context.Context) error { return s.Drop(ctx, p) }},
			{fmt.Sprintf("Rename(%q, %q)", p, fresh), func(ctx context.Context) error { return s.Rename(ctx, p, fresh) }},
			{fmt.Sprintf("Rename(%q, %q)", a, p), func(ctx context.Context) error { return s.Rename(ctx, a, p) }},
			{fmt.Sprintf("Swap(%q, %q, %q)", p, b, fresh), func(ctx context.Context) error { return s.Swap(ctx, p, b, fresh) }},
			{fmt.Sprintf("Swap(%q, %q, %q)", a, p, fresh), func(ctx context.Context) error { return s.Swap(ctx, a, p, fresh) }},
			{fmt.Sprintf("Swap(%q, %q, %q)", a, b, p), func(ctx context.Context) error { return s.Swap(ctx, a, b, p) }},
			{fmt.Sprintf("Clone(%q, %q)", a, p), func(ctx context.Context) error { return s.Clone(ctx, a, p) }},
			{fmt.Sprintf("AllowConnections(%q)", p), func(ctx context.Context) error { return s.AllowConnections(ctx, p) }},
		}
		for _, c := range calls {
			requireIs(t, c.call(ctx), dbrestore.ErrProtected, c.what)
		}
		sc.requireState(t, s, "the refused changes of "+p, before)
	}
}

// longNames: PostgreSQL cuts names to 63 bytes, so "<63 bytes>_next" would be the
// 63-byte database itself: longer names are refused, 63 bytes are fine.
func (sc *suite) longNames(t *testing.T) {
	ctx := t.Context()
	s := sc.staging(t)
	stem := sc.name(t, s, "")
	long63 := stem + strings.Repeat("n", dbrestore.MaxNameLen-len(stem))
	sc.dropAtEnd(t, s, long63)
	sc.f.Create(t, s, long63, "long")
	a := sc.create(t, s, "a")
	long64 := long63 + "x" // PostgreSQL would take it for long63
	before := state{long63: "long", a: "a"}
	calls := []change{
		{"Drop(64 bytes)", func(ctx context.Context) error { return s.Drop(ctx, long64) }},
		{"Rename(a, 64 bytes)", func(ctx context.Context) error { return s.Rename(ctx, a, long64) }},
		{"Rename(64 bytes, fresh)", func(ctx context.Context) error { return s.Rename(ctx, long64, a+"x") }},
		{"Swap(64 bytes, a, fresh)", func(ctx context.Context) error { return s.Swap(ctx, long64, a, a+"x") }},
		{"Swap(fresh, 64 bytes, a)", func(ctx context.Context) error { return s.Swap(ctx, a+"x", long64, a+"y") }},
		{"Swap(a, fresh, 64 bytes)", func(ctx context.Context) error { return s.Swap(ctx, a, a+"x", long64) }},
		{"Clone(a, 64 bytes)", func(ctx context.Context) error { return s.Clone(ctx, a, long64) }},
		{"Clone(64 bytes, fresh)", func(ctx context.Context) error { return s.Clone(ctx, long64, a+"x") }},
		{"AllowConnections(64 bytes)", func(ctx context.Context) error { return s.AllowConnections(ctx, long64) }},
	}
	for _, c := range calls {
		requireIs(t, c.call(ctx), dbrestore.ErrNameTooLong, c.what)
		sc.requireState(t, s, "refused "+c.what, before)
	}
	requireNil(t, s.Drop(ctx, long63), "Drop of a 63-byte name")
	sc.requireState(t, s, "Drop of a 63-byte name", state{long63: missing})
}

func (sc *suite) restore(t *testing.T) {
	ctx := t.Context()
	b, mark := sc.f.Backup(t)
	if src := b.Manifest.SystemIdentifier; src == 0 || src == sc.f.SystemID {
		t.Fatalf("dbrestoretest: Fixture.Backup gave a backup of %d; want one of another server than %d", src, sc.f.SystemID)
	}
	s := sc.f.New(t)
	requireNil(t, s.GuardSource(ctx, b), "GuardSource")
	target := sc.name(t, s, "target")
	if _, err := s.Restore(ctx, b, dbrestore.RestoreOptions{Target: target}); err != nil {
		t.Fatalf("Restore: %v", err)
	}
	sc.requireState(t, s, "Restore", state{target: mark})

	old := sc.create(t, s, "old")
	_, err := s.Restore(ctx, b, dbrestore.RestoreOptions{Target: old})
	requireIs(t, err, dbrestore.ErrExists, "Restore into an existing database without Replace")
	sc.requireState(t, s, "Restore into an existing database without Replace", state{old: "old"})
	if _, err := s.Restore(ctx, b, dbrestore.RestoreOptions{Target: old, Replace: true}); err != nil {
		t.Fatalf("Restore with Replace: %v", err)
	}
	sc.requireState(t, s, "Restore with Replace", state{old: mark})

	_, err = s.Restore(ctx, b, dbrestore.RestoreOptions{Target: "postgres", Replace: true})
	requireIs(t, err, dbrestore.ErrProtected, "Restore into postgres")
	long := fmt.Sprintf("dbrt_%s_long_%s", sc.run, strings.Repeat("n", dbrestore.MaxNameLen))
	_, err = s.Restore(ctx, b, dbrestore.RestoreOptions{Target: long})
	requireIs(t, err, dbrestore.ErrNameTooLong, "Restore into a name over 63 bytes")

	fresh := sc.name(t, s, "fresh")
	corrupt := *b
	corrupt.Manifest.SystemIdentifier = 0
	_, err = s.Restore(ctx, &corrupt, dbrestore.RestoreOptions{Target: fresh})
	requireIs(t, err, dbrestore.ErrCorrupt, "Restore of a backup naming no source")
	sc.requireState(t, s, "Restore of a backup naming no source", state{fresh: missing})

	own := *b
	own.Manifest.SystemIdentifier = sc.f.SystemID
	s2 := sc.staging(t)
	_, err = s2.Restore(ctx, &own, dbrestore.RestoreOptions{Target: fresh})
	requireIs(t, err, dbrestore.ErrProduction, "Restore of a backup of this very server")
	sc.requireState(t, s2, "Restore of a backup of this very server", state{fresh: missing})

	s3 := sc.f.New(t)
	requireIs(t, s3.GuardProduction(ctx, sc.f.SystemID), dbrestore.ErrProduction, "GuardProduction(own id)")
	_, err = s3.Restore(ctx, b, dbrestore.RestoreOptions{Target: fresh})
	requireIs(t, err, dbrestore.ErrProduction, "Restore on the production server")
	sc.requireState(t, s3, "Restore on the production server", state{fresh: missing})
}
