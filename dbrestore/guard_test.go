package dbrestore

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/restage/restage/dbrestore/pgtest"
)

// guardScene is a staging server with databases every guarded operation would change.
type guardScene struct {
	srv                     *pgtest.Server
	live, tmpl, next, prev  string // existing: marker 1, 2, 3; prev does not exist
	renamed, clone, restore string // do not exist
	held                    *pgx.Conn
}

func newGuardScene(t *testing.T, srv *pgtest.Server) *guardScene {
	t.Helper()
	stem := dbName(t, srv, "guard")
	g := &guardScene{srv: srv, live: stem + "_live", tmpl: stem + "_tmpl", next: stem + "_next", prev: stem + "_prev",
		renamed: stem + "_renamed", clone: stem + "_clone", restore: stem + "_restore"}
	for _, n := range []string{g.prev, g.renamed, g.clone, g.restore} {
		t.Cleanup(func() { dropQuietly(srv, n) })
	}
	makeDB(t, srv, g.live, 1)
	makeDB(t, srv, g.tmpl, 2)
	makeDB(t, srv, g.next, 3)
	g.held = srv.Connect(t, g.live)
	return g
}

// ops runs every guarded operation of s on the scene, returning their errors by name.
func (g *guardScene) ops(ctx context.Context, s *Server, b *Backup) map[string]error {
	_, restoreErr := s.Restore(ctx, b, RestoreOptions{Target: g.restore})
	_, terminateErr := s.Terminate(ctx, g.live)
	return map[string]error{
		"drop":       s.Drop(ctx, g.live),
		"rename":     s.Rename(ctx, g.live, g.renamed),
		"swap":       s.Swap(ctx, g.live, g.next, g.prev),
		"clone":      s.Clone(ctx, g.tmpl, g.clone),
		"clone over": s.Clone(ctx, g.tmpl, g.next),
		"terminate":  terminateErr,
		"restore":    restoreErr,
		"checkpoint": s.Checkpoint(ctx),
	}
}

// unchanged fails the test when any operation changed the scene.
func (g *guardScene) unchanged(t *testing.T) {
	t.Helper()
	for name, want := range map[string]int64{g.live: 1, g.tmpl: 2, g.next: 3} {
		if !dbExists(t, g.srv, name) {
			t.Fatalf("%s is gone", name)
		}
		if got := marker(t, g.srv, name); got != want {
			t.Fatalf("%s has marker %d, want %d", name, got, want)
		}
		if !allowConn(t, g.srv, name) {
			t.Fatalf("%s refuses connections", name)
		}
	}
	for _, name := range []string{g.prev, g.renamed, g.clone, g.restore} {
		if dbExists(t, g.srv, name) {
			t.Fatalf("%s was created", name)
		}
	}
	if err := g.held.Ping(context.Background()); err != nil {
		t.Fatalf("the session on %s was terminated: %v", g.live, err)
	}
}

// Trust rule 7: a Server that knows no production identity refuses every drop, rename,
// clone and termination, and says which setting fixes that. A restore always knows one:
// its backup's source.
func TestGuardFailsClosedWithoutProduction(t *testing.T) {
	prod, staging := servers(t)
	ctx := testCtx(t)
	g := newGuardScene(t, staging)
	srv := newServer(t, staging, ServerConfig{})
	for name, err := range g.ops(ctx, srv, nil) {
		if name == "restore" {
			continue // Restore(nil) is an options error; a real one below
		}
		if !errors.Is(err, ErrNoProduction) {
			t.Errorf("%s without a known production: %v, want ErrNoProduction", name, err)
			continue
		}
		requireErrContains(t, err, "ServerConfig.Production", "[database] production_ids", "restore a backup first")
	}
	g.unchanged(t)
	if err := srv.GuardProduction(ctx); !errors.Is(err, ErrNoProduction) {
		t.Errorf("GuardProduction() without ids: %v", err)
	}
	if err := srv.GuardProduction(ctx, 0); !errors.Is(err, ErrNoProduction) {
		t.Errorf("GuardProduction(0): %v (zero is no identity)", err)
	}
	if got := srv.Sources(); len(got) != 0 {
		t.Fatalf("Sources() = %v", got)
	}

	// Restore notes its backup's source before guarding: it knows production, and this
	// server is not it.
	db := prod.Database(t)
	seed(t, prod, db, 10)
	b := dumpOf(t, prod, db, DumpOptions{})
	if _, err := srv.Restore(ctx, b, RestoreOptions{Target: g.restore}); err != nil {
		t.Fatalf("restore into a server that knew no production: %v", err)
	}
	if got := srv.Sources(); !slices.Equal(got, []uint64{prod.SystemIdentifier(t)}) {
		t.Fatalf("Sources() after a restore = %v, want production's", got)
	}
	if err := srv.Drop(ctx, g.restore); err != nil || dbExists(t, staging, g.restore) {
		t.Fatalf("drop once production is known: %v", err)
	}
}

// Trust rule 7: a Server whose own system_identifier is configured as production refuses
// every operation, and every database survives.
func TestGuardRefusesAServerListedAsProduction(t *testing.T) {
	prod, staging, b := backupOf(t, 10, DumpOptions{})
	ctx := testCtx(t)
	g := newGuardScene(t, staging)
	id := staging.SystemIdentifier(t)
	srv := newServer(t, staging, ServerConfig{Production: []uint64{prod.SystemIdentifier(t), id}})
	for name, err := range g.ops(ctx, srv, b) {
		if !errors.Is(err, ErrProduction) {
			t.Errorf("%s on a server listed as production: %v, want ErrProduction", name, err)
			continue
		}
		requireErrContains(t, err, strconv.FormatUint(id, 10))
	}
	g.unchanged(t)
	if err := srv.GuardProduction(ctx); !errors.Is(err, ErrProduction) {
		t.Errorf("GuardProduction on a listed server: %v", err)
	}
	if _, err := NewServer(ServerConfig{AdminDSN: staging.AdminDSN(), Production: []uint64{0}}); err == nil {
		t.Error("NewServer accepted 0 as a production system_identifier")
	}
}

// GuardSource: the source server is refused; any other server learns the source for
// every later operation; a backup that names no source is corrupt.
func TestGuardSource(t *testing.T) {
	prod, staging, b := backupOf(t, 10, DumpOptions{})
	ctx := testCtx(t)
	prodID, stagingID := prod.SystemIdentifier(t), staging.SystemIdentifier(t)

	t.Run("this server is the source", func(t *testing.T) {
		g := newGuardScene(t, prod)
		onProd := newServer(t, prod, ServerConfig{})
		err := onProd.GuardSource(ctx, b)
		if !errors.Is(err, ErrProduction) {
			t.Fatalf("GuardSource on the source server: %v", err)
		}
		requireErrContains(t, err, strconv.FormatUint(prodID, 10), b.Name())
		// Later operations refuse it: the source was noted, and this server is it.
		for name, err := range g.ops(ctx, onProd, b) {
			if !errors.Is(err, ErrProduction) {
				t.Errorf("%s after GuardSource refused the source: %v, want ErrProduction", name, err)
			}
		}
		g.unchanged(t)
	})

	t.Run("another server", func(t *testing.T) {
		g := newGuardScene(t, staging)
		srv := newServer(t, staging, ServerConfig{})
		if err := srv.Drop(ctx, g.next); !errors.Is(err, ErrNoProduction) {
			t.Fatalf("drop before GuardSource: %v", err)
		}
		if err := srv.GuardSource(ctx, b); err != nil {
			t.Fatalf("GuardSource on staging: %v", err)
		}
		if got := srv.Sources(); !slices.Equal(got, []uint64{prodID}) {
			t.Fatalf("Sources() = %v, want [%d]", got, prodID)
		}
		if err := srv.Drop(ctx, g.next); err != nil || dbExists(t, staging, g.next) {
			t.Fatalf("drop after GuardSource: %v", err)
		}
		// A backup whose source is this server: refused, and from then on every
		// operation is, although another production identity is known too.
		own := *b
		own.Manifest.SystemIdentifier = stagingID
		if err := srv.GuardSource(ctx, &own); !errors.Is(err, ErrProduction) {
			t.Fatalf("GuardSource with this server as the source: %v", err)
		}
		if err := srv.Drop(ctx, g.live); !errors.Is(err, ErrProduction) || !dbExists(t, staging, g.live) {
			t.Fatalf("drop after the source was noted: %v", err)
		}
	})

	t.Run("no system_identifier", func(t *testing.T) {
		srv := newServer(t, staging, ServerConfig{})
		zero := *b
		zero.Manifest.SystemIdentifier = 0
		if err := srv.GuardSource(ctx, &zero); !errors.Is(err, ErrCorrupt) {
			t.Fatalf("GuardSource of a backup without a source: %v, want ErrCorrupt", err)
		}
		if err := srv.GuardSource(ctx, nil); err == nil {
			t.Fatal("GuardSource(nil) passed")
		}
		if got := srv.Sources(); len(got) != 0 {
			t.Fatalf("Sources() = %v", got)
		}
	})

	t.Run("GuardProduction notes ids", func(t *testing.T) {
		g := newGuardScene(t, staging)
		srv := newServer(t, staging, ServerConfig{})
		if err := srv.GuardProduction(ctx, 0, prodID); err != nil {
			t.Fatalf("GuardProduction(production's id) on staging: %v", err)
		}
		if err := srv.Drop(ctx, g.next); err != nil {
			t.Fatalf("drop after GuardProduction: %v", err)
		}
		if err := srv.GuardProduction(ctx, stagingID); !errors.Is(err, ErrProduction) {
			t.Fatalf("GuardProduction(this server's id): %v", err)
		}
		if err := srv.Drop(ctx, g.live); !errors.Is(err, ErrProduction) || !dbExists(t, staging, g.live) {
			t.Fatalf("drop after this server was given as production: %v", err)
		}
	})
}

// Issue 12 item 2: a manifest without system_identifier, or with zero, is a corrupt
// backup: the catalog never picks it, Restore refuses it, and nothing is created.
func TestManifestWithoutSystemIdentifierIsCorrupt(t *testing.T) {
	prod, staging, db := seeded(t, 10)
	ctx := testCtx(t)
	dir := t.TempDir()
	cat, err := NewCatalog(dir, Config{})
	if err != nil {
		t.Fatal(err)
	}
	srv := newServer(t, staging, ServerConfig{Production: []uint64{prod.SystemIdentifier(t)}})
	for _, how := range []string{"zero", "missing"} {
		t.Run(how, func(t *testing.T) {
			b := dumpOf(t, prod, db, DumpOptions{Dir: dir})
			var raw map[string]any
			data, _ := os.ReadFile(b.ManifestPath)
			if err := json.Unmarshal(data, &raw); err != nil {
				t.Fatal(err)
			}
			if how == "zero" {
				raw["system_identifier"] = "0"
			} else {
				delete(raw, "system_identifier")
			}
			data, _ = json.Marshal(raw)
			if err := os.WriteFile(b.ManifestPath, data, 0o644); err != nil {
				t.Fatal(err)
			}
			if _, err := readManifest(b.ManifestPath); !errors.Is(err, ErrCorrupt) {
				t.Fatalf("readManifest: %v, want ErrCorrupt", err)
			}
			_, err := cat.Latest(db)
			if !errors.Is(err, ErrNoBackup) {
				t.Fatalf("Latest picked a backup without a source: %v", err)
			}
			requireErrContains(t, err, "unreadable manifest", filepath.Base(b.ManifestPath))

			b.Manifest.SystemIdentifier = 0 // as a caller holding it in memory would have it
			target := dbName(t, staging, "nosource")
			if _, err := srv.Restore(ctx, b, RestoreOptions{Target: target}); !errors.Is(err, ErrCorrupt) {
				t.Fatalf("Restore of a backup without a source: %v, want ErrCorrupt", err)
			}
			if dbExists(t, staging, target) {
				t.Fatal("Restore created the target")
			}
			if err := os.Remove(b.ManifestPath); err != nil {
				t.Fatal(err)
			}
		})
	}
}

// SourceIDs: the distinct sources of every manifest in the folder, any database, sorted;
// corrupt manifests and temporary files ignored.
func TestSourceIDs(t *testing.T) {
	prod, staging := servers(t)
	ctx := testCtx(t)
	dir := t.TempDir()
	cat, err := NewCatalog(dir, Config{})
	if err != nil {
		t.Fatal(err)
	}
	if ids, err := cat.SourceIDs(ctx); err != nil || len(ids) != 0 {
		t.Fatalf("empty folder: %v, %v", ids, err)
	}
	a, b := prod.Database(t), prod.Database(t)
	s := staging.Database(t)
	dumpOf(t, prod, a, DumpOptions{Dir: dir})
	dumpOf(t, prod, a, DumpOptions{Dir: dir})
	pruned := dumpOf(t, prod, b, DumpOptions{Dir: dir})
	if err := os.Remove(pruned.Path); err != nil { // a manifest alone still names its source
		t.Fatal(err)
	}
	other := dumpOf(t, staging, s, DumpOptions{Dir: dir})
	// A temporary manifest with a third id, a corrupt one, one with a zero id: ignored.
	fake := other.Manifest
	fake.SystemIdentifier = 42
	data, _ := json.Marshal(fake)
	write := func(name string, data []byte) {
		t.Helper()
		if err := os.WriteFile(filepath.Join(dir, name), data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write(tmpPrefix+"x-20260101T000000.000Z"+manifestSuffix, data)
	write("y-20260101T000000.000Z"+manifestSuffix, []byte("{not json"))
	fake.SystemIdentifier = 0
	data, _ = json.Marshal(fake)
	write("z-20260101T000000.000Z"+manifestSuffix, data)

	ids, err := cat.SourceIDs(ctx)
	if err != nil {
		t.Fatal(err)
	}
	want := []uint64{prod.SystemIdentifier(t), staging.SystemIdentifier(t)}
	slices.Sort(want)
	if !slices.Equal(ids, want) {
		t.Fatalf("SourceIDs = %v, want %v", ids, want)
	}
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	if _, err := cat.SourceIDs(cctx); !errors.Is(err, context.Canceled) {
		t.Fatalf("SourceIDs with a cancelled context: %v", err)
	}
	// A manifest that cannot be read (here: a folder by that name) might hide a
	// production identity: an error, not a shorter list.
	if err := os.Mkdir(filepath.Join(dir, "w-20260101T000000.000Z"+manifestSuffix), 0o755); err != nil {
		t.Fatal(err)
	}
	if ids, err := cat.SourceIDs(ctx); err == nil {
		t.Fatalf("SourceIDs with an unreadable manifest = %v, want an error", ids)
	}
}

// Issue 12 item 3: PostgreSQL cuts identifiers to 63 bytes, so with a 63-byte live name,
// "<live>_next" is the live database. The guard refuses such names before anything.
func TestGuardRefusesNamesPostgreSQLWouldTruncate(t *testing.T) {
	prod, staging := servers(t)
	ctx := testCtx(t)
	stem := dbName(t, staging, "long")
	live := stem + strings.Repeat("x", MaxNameLen-len(stem))
	next, prev := live+"_next", live+"_prev"
	if len(live) != MaxNameLen {
		t.Fatalf("live name has %d bytes", len(live))
	}
	makeDB(t, staging, live, 1)
	// The hazard is real: the server takes next for live.
	if n := staging.QueryInt(t, "postgres", "SELECT count(*) FROM pg_database WHERE datname = $1::text::name", next); n != 1 {
		t.Fatalf("%d databases match the %d-byte name cut to 63 bytes", n, len(next))
	}
	db := prod.Database(t)
	seed(t, prod, db, 10)
	b := dumpOf(t, prod, db, DumpOptions{})
	srv := newServer(t, staging, ServerConfig{Production: []uint64{prod.SystemIdentifier(t)}})
	_, restoreErr := srv.Restore(ctx, b, RestoreOptions{Target: next, Replace: true})
	_, terminateErr := srv.Terminate(ctx, next)
	for name, err := range map[string]error{
		"drop":           srv.Drop(ctx, next),
		"restore":        restoreErr,
		"swap":           srv.Swap(ctx, prev, next, live+"_old"),
		"rename":         srv.Rename(ctx, next, stem+"_y"),
		"clone":          srv.Clone(ctx, "template1", next),
		"clone template": srv.Clone(ctx, next, stem+"_z"),
		"terminate":      terminateErr,
	} {
		if !errors.Is(err, ErrNameTooLong) {
			t.Errorf("%s with a %d-byte name: %v, want ErrNameTooLong", name, len(next), err)
		}
	}
	if !dbExists(t, staging, live) || marker(t, staging, live) != 1 {
		t.Fatal("the live database was changed through its truncated name")
	}
	// 63 bytes are fine.
	if err := srv.Drop(ctx, live); err != nil || dbExists(t, staging, live) {
		t.Fatalf("drop of a 63-byte name: %v", err)
	}
}

// AllowConnections (the repair after a killed run) is guarded like every change: it fails
// closed, refuses production, and otherwise opens a database closed to connections.
func TestAllowConnectionsIsGuarded(t *testing.T) {
	prod, staging := servers(t)
	ctx := testCtx(t)
	name := dbName(t, staging, "closed")
	makeDB(t, staging, name, 1)
	staging.Exec(t, "postgres", "ALTER DATABASE "+ident(name)+" ALLOW_CONNECTIONS false")
	for want, cfg := range map[error]ServerConfig{
		ErrNoProduction: {},
		ErrProduction:   {Production: []uint64{staging.SystemIdentifier(t)}},
	} {
		if err := newServer(t, staging, cfg).AllowConnections(ctx, name); !errors.Is(err, want) {
			t.Errorf("AllowConnections with %+v: %v, want %v", cfg.Production, err, want)
		}
		if allowConn(t, staging, name) {
			t.Fatal("a refused AllowConnections opened the database")
		}
	}
	srv := newServer(t, staging, ServerConfig{Production: []uint64{prod.SystemIdentifier(t)}})
	if err := srv.AllowConnections(ctx, name); err != nil || !allowConn(t, staging, name) {
		t.Fatalf("AllowConnections on staging: %v, allowed %v", err, allowConn(t, staging, name))
	}
	if err := srv.AllowConnections(ctx, name+"_missing"); err != nil {
		t.Fatalf("AllowConnections on a missing database: %v", err)
	}
}
