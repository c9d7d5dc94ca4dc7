package dbrestoretest_test

import (
	"context"
	"errors"
	"slices"
	"testing"

	"github.com/restage/restage/dbrestore"
	"github.com/restage/restage/dbrestore/dbrestoretest"
	"github.com/restage/restage/internal/suitetest"
)

const fakeID = 7

// server is a Fake, possibly broken: a function set here replaces the Fake's method.
type server struct {
	*dbrestoretest.Fake
	drop    func(ctx context.Context, name string) error
	swap    func(ctx context.Context, live, next, prev string) error
	clone   func(ctx context.Context, template, name string) error
	guard   func(ctx context.Context, ids ...uint64) error
	restore func(ctx context.Context, b *dbrestore.Backup, opts dbrestore.RestoreOptions) (*dbrestore.RestoreResult, error)
	rename  func(ctx context.Context, from, to string) error
}

func (s *server) Drop(ctx context.Context, name string) error {
	if s.drop != nil {
		return s.drop(ctx, name)
	}
	return s.Fake.Drop(ctx, name)
}

func (s *server) Rename(ctx context.Context, from, to string) error {
	if s.rename != nil {
		return s.rename(ctx, from, to)
	}
	return s.Fake.Rename(ctx, from, to)
}

func (s *server) Swap(ctx context.Context, live, next, prev string) error {
	if s.swap != nil {
		return s.swap(ctx, live, next, prev)
	}
	return s.Fake.Swap(ctx, live, next, prev)
}

func (s *server) Clone(ctx context.Context, template, name string) error {
	if s.clone != nil {
		return s.clone(ctx, template, name)
	}
	return s.Fake.Clone(ctx, template, name)
}

func (s *server) GuardProduction(ctx context.Context, ids ...uint64) error {
	if s.guard != nil {
		return s.guard(ctx, ids...)
	}
	return s.Fake.GuardProduction(ctx, ids...)
}

func (s *server) GuardSource(ctx context.Context, b *dbrestore.Backup) error {
	if s.guard != nil && b != nil && b.Manifest.SystemIdentifier != 0 {
		return s.guard(ctx, b.Manifest.SystemIdentifier)
	}
	return s.Fake.GuardSource(ctx, b)
}

func (s *server) Restore(ctx context.Context, b *dbrestore.Backup, opts dbrestore.RestoreOptions) (*dbrestore.RestoreResult, error) {
	if s.restore != nil {
		return s.restore(ctx, b, opts)
	}
	return s.Fake.Restore(ctx, b, opts)
}

// fake returns the Fake under s, a *Fake or a *server.
func fake(s dbrestoretest.Server) *dbrestoretest.Fake {
	if w, ok := s.(*server); ok {
		return w.Fake
	}
	return s.(*dbrestoretest.Fake)
}

// fakeFixture runs the suite against Fakes (SystemID 7, protecting "keep"); brk, when
// set, breaks each.
func fakeFixture(brk func(*server)) dbrestoretest.Fixture {
	return dbrestoretest.Fixture{
		New: func(t *testing.T) dbrestoretest.Server {
			s := &server{Fake: &dbrestoretest.Fake{SystemID: fakeID, Protect: []string{"keep"}}}
			if brk == nil {
				return s.Fake
			}
			brk(s)
			return s
		},
		SystemID:  fakeID,
		Protected: "keep",
		Create:    func(_ *testing.T, s dbrestoretest.Server, name, mark string) { fake(s).Create(name, mark) },
		Mark: func(t *testing.T, s dbrestoretest.Server, name string) string {
			c, ok := fake(s).Content(name)
			if !ok {
				t.Fatalf("fake has no database %q", name)
			}
			return c
		},
		Backup: func(*testing.T) (*dbrestore.Backup, string) {
			b := &dbrestore.Backup{Path: "/backups/prod-20260101T000000.000Z.dump",
				Manifest: dbrestore.Manifest{Database: "prod", SystemIdentifier: 1}}
			return b, b.Path // a Fake's restored database holds the dump's path
		},
	}
}

func TestFakeConformance(t *testing.T) {
	dbrestoretest.Admin(t, fakeFixture(nil))
}

// The zero Fake is a server with the system databases that knows no production.
func TestFakeZeroValue(t *testing.T) {
	var f dbrestoretest.Fake
	if got := f.Databases(); !slices.Equal(got, []string{"postgres", "template0", "template1"}) {
		t.Fatalf("Databases() = %q", got)
	}
	f.Create("x", "c")
	if err := f.Drop(t.Context(), "x"); !errors.Is(err, dbrestore.ErrNoProduction) {
		t.Fatalf("Drop: %v, want ErrNoProduction", err)
	}
	if err := f.GuardProduction(t.Context(), 1); !errors.Is(err, dbrestore.ErrProduction) {
		t.Fatalf("GuardProduction(1) of the zero Fake (system_identifier 1): %v, want ErrProduction", err)
	}
}

// Each function field fails its call before anything changes.
func TestFakeFunctionFields(t *testing.T) {
	boom := errors.New("boom")
	ctx := t.Context()
	backup := &dbrestore.Backup{Path: "/b.dump", Manifest: dbrestore.Manifest{SystemIdentifier: 1}}
	calls := map[string]struct {
		set  func(f *dbrestoretest.Fake)
		call func(f *dbrestoretest.Fake) error
	}{
		"Exists": {func(f *dbrestoretest.Fake) { f.ExistsFunc = func(context.Context, string) error { return boom } },
			func(f *dbrestoretest.Fake) error { _, err := f.Exists(ctx, "a"); return err }},
		"Drop": {func(f *dbrestoretest.Fake) { f.DropFunc = func(context.Context, string) error { return boom } },
			func(f *dbrestoretest.Fake) error { return f.Drop(ctx, "a") }},
		"Rename": {func(f *dbrestoretest.Fake) {
			f.RenameFunc = func(context.Context, string, string) error { return boom }
		},
			func(f *dbrestoretest.Fake) error { return f.Rename(ctx, "a", "c") }},
		"Swap": {func(f *dbrestoretest.Fake) {
			f.SwapFunc = func(context.Context, string, string, string) error { return boom }
		}, func(f *dbrestoretest.Fake) error { return f.Swap(ctx, "a", "b", "c") }},
		"Clone": {func(f *dbrestoretest.Fake) { f.CloneFunc = func(context.Context, string, string) error { return boom } },
			func(f *dbrestoretest.Fake) error { return f.Clone(ctx, "a", "b") }},
		"Restore": {func(f *dbrestoretest.Fake) {
			f.RestoreFunc = func(context.Context, *dbrestore.Backup, dbrestore.RestoreOptions) error { return boom }
		}, func(f *dbrestoretest.Fake) error {
			_, err := f.Restore(ctx, backup, dbrestore.RestoreOptions{Target: "b", Replace: true})
			return err
		}},
		"AllowConnections": {func(f *dbrestoretest.Fake) {
			f.AllowConnectionsFunc = func(context.Context, string) error { return boom }
		}, func(f *dbrestoretest.Fake) error { return f.AllowConnections(ctx, "a") }},
		"GuardProduction": {func(f *dbrestoretest.Fake) { f.GuardFunc = func(context.Context) error { return boom } },
			func(f *dbrestoretest.Fake) error { return f.GuardProduction(ctx, 1) }},
		"GuardSource": {func(f *dbrestoretest.Fake) { f.GuardFunc = func(context.Context) error { return boom } },
			func(f *dbrestoretest.Fake) error { return f.GuardSource(ctx, backup) }},
	}
	for name, c := range calls {
		t.Run(name, func(t *testing.T) {
			f := &dbrestoretest.Fake{SystemID: 2, Production: []uint64{1}}
			f.Create("a", "A")
			f.Create("b", "B")
			before := f.Databases()
			c.set(f)
			if err := c.call(f); !errors.Is(err, boom) {
				t.Fatalf("%s: %v, want the function field's error", name, err)
			}
			if got := f.Databases(); !slices.Equal(got, before) {
				t.Errorf("databases %q, want %q", got, before)
			}
			if a, _ := f.Content("a"); a != "A" {
				t.Errorf("a holds %q, want A", a)
			}
		})
	}
}

// breakages are Fakes broken in one way each, and the subtest of the suite that must
// catch it.
var breakages = map[string]suitetest.Breakage[func(*server)]{
	// The guard fails open: a server that was never told production's identity acts.
	"takes any server for staging": {Catches: "no-production", Break: func(s *server) { s.Production = []uint64{424242} }},
	// The guard forgets this server's own identity when told it.
	"forgets its own identity": {Catches: "production", Break: func(s *server) {
		s.guard = func(ctx context.Context, ids ...uint64) error {
			return s.Fake.GuardProduction(ctx, slices.DeleteFunc(slices.Clone(ids), func(id uint64) bool { return id == fakeID })...)
		}
	}},
	"ignores the protect list": {Catches: "protected", Break: func(s *server) { s.Protect = nil }},
	// PostgreSQL's own behaviour, unguarded: a name cut to 63 bytes is another database.
	"cuts long names": {Catches: "long-names", Break: func(s *server) {
		cut := func(n string) string { return n[:min(len(n), dbrestore.MaxNameLen)] }
		s.drop = func(ctx context.Context, n string) error { return s.Fake.Drop(ctx, cut(n)) }
		s.swap = func(ctx context.Context, l, n, p string) error { return s.Fake.Swap(ctx, cut(l), cut(n), cut(p)) }
	}},
	"drops a missing database with an error": {Catches: "drop", Break: func(s *server) {
		s.drop = func(ctx context.Context, n string) error {
			if _, ok := s.Content(n); !ok {
				return dbrestore.ErrNotFound
			}
			return s.Fake.Drop(ctx, n)
		}
	}},
	"renames onto an existing database": {Catches: "rename", Break: func(s *server) {
		s.rename = func(ctx context.Context, from, to string) error {
			if err := s.Fake.Drop(ctx, to); err != nil {
				return err
			}
			return s.Fake.Rename(ctx, from, to)
		}
	}},
	// Two renames, not one transaction: a missing next leaves live renamed away.
	"swaps in two steps": {Catches: "swap", Break: func(s *server) {
		s.swap = func(ctx context.Context, live, next, prev string) error {
			if _, ok := s.Content(live); ok {
				if err := s.Fake.Rename(ctx, live, prev); err != nil {
					return err
				}
			}
			return s.Fake.Rename(ctx, next, live)
		}
	}},
	"refuses to clone over a database": {Catches: "clone", Break: func(s *server) {
		s.clone = func(ctx context.Context, template, name string) error {
			if _, ok := s.Content(name); ok {
				return dbrestore.ErrExists
			}
			return s.Fake.Clone(ctx, template, name)
		}
	}},
	"restores over a database without Replace": {Catches: "restore", Break: func(s *server) {
		s.restore = func(ctx context.Context, b *dbrestore.Backup, o dbrestore.RestoreOptions) (*dbrestore.RestoreResult, error) {
			o.Replace = true
			return s.Fake.Restore(ctx, b, o)
		}
	}},
}

// TestSuiteCatchesBrokenFakes shows that the suite's promises can fail: against a Fake
// broken in one way, the subtest of that promise fails (TestFakeConformance passes it).
func TestSuiteCatchesBrokenFakes(t *testing.T) {
	suitetest.Catches(t, breakages, func(t *testing.T, apply func(*server)) {
		dbrestoretest.Admin(t, fakeFixture(apply))
	})
}
