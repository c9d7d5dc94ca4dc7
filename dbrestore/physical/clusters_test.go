package physical

import (
	"context"
	"errors"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/restage/restage/dbrestore/pgtest"
)

// fakeSource is a Source with function fields.
type fakeSource struct {
	latest  func(ctx context.Context) (*BackupSet, error)
	restore func(ctx context.Context, set *BackupSet, dir string, opts RestoreOptions) error
	verify  func(ctx context.Context, set *BackupSet) error // nil: every set is good
	origin  Origin
}

func (f *fakeSource) Verify(ctx context.Context, set *BackupSet) error {
	if f.verify == nil {
		return nil
	}
	return f.verify(ctx, set)
}

func (f *fakeSource) Latest(ctx context.Context) (*BackupSet, error) { return f.latest(ctx) }
func (f *fakeSource) Restore(ctx context.Context, set *BackupSet, dir string, opts RestoreOptions) error {
	return f.restore(ctx, set, dir, opts)
}
func (f *fakeSource) Origin() Origin { return f.origin }

func newTestClusters(t *testing.T) *Clusters {
	t.Helper()
	bin := pgtest.Require(t)
	dir := filepath.Join(t.TempDir(), "pg")
	c, err := NewClusters(ClustersConfig{Environment: "staging", Dir: dir, Port: 6543, BinDir: bin})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func TestRepairRefusesForeignFolder(t *testing.T) {
	c := newTestClusters(t)
	foreign := filepath.Join(c.cfg.Dir, "a", "data")
	if err := os.MkdirAll(foreign, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(foreign, "PG_VERSION"), []byte("15\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Repair(context.Background()); !errors.Is(err, ErrNotOurs) {
		t.Fatalf("want ErrNotOurs, got %v", err)
	}
	src := &fakeSource{restore: func(context.Context, *BackupSet, string, RestoreOptions) error {
		t.Fatal("restored into a foreign folder")
		return nil
	}}
	if _, err := c.Restore(context.Background(), src, &BackupSet{Label: "x"}, true); !errors.Is(err, ErrNotOurs) {
		t.Fatalf("want ErrNotOurs, got %v", err)
	}
	// Another environment's marker is not ours either.
	if err := os.WriteFile(filepath.Join(c.cfg.Dir, "a", markerFile), []byte(`{"environment":"experimental","slot":"a"}`), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Repair(context.Background()); !errors.Is(err, ErrNotOurs) {
		t.Fatalf("want ErrNotOurs, got %v", err)
	}
	if _, err := os.Stat(filepath.Join(foreign, "PG_VERSION")); err != nil {
		t.Fatal("the foreign folder was touched")
	}
}

func TestRepairEmptiesHalfRestoredSlot(t *testing.T) {
	c := newTestClusters(t)
	ctx := context.Background()
	if _, err := c.Repair(ctx); err != nil {
		t.Fatal(err)
	}
	boom := errors.New("killed")
	src := &fakeSource{restore: func(_ context.Context, _ *BackupSet, dir string, _ RestoreOptions) error {
		if err := os.MkdirAll(filepath.Join(dir, "base"), 0o700); err != nil {
			return err
		}
		return boom
	}}
	if _, err := c.Restore(ctx, src, &BackupSet{Label: "x"}, true); !errors.Is(err, boom) {
		t.Fatalf("want the source's error, got %v", err)
	}
	if c.Delta() {
		t.Fatal("a half-restored slot offered for a delta restore")
	}
	did, err := c.Repair(ctx)
	if err != nil || len(did) != 1 || !strings.Contains(did[0], "half-restored") {
		t.Fatalf("repair: %v %v", did, err)
	}
	if _, err := os.Stat(filepath.Join(c.cfg.Dir, "a", "data")); !errors.Is(err, os.ErrNotExist) {
		t.Fatal("the half-restored data directory is still there")
	}
}

// A set the source refuses (a corrupt backup) leaves the idle slot, the copy kept for a
// rollback and the next delta, as it was: nothing is stopped, marked or emptied.
func TestRestoreVerifiesBeforeTouchingTheIdleSlot(t *testing.T) {
	c := newTestClusters(t)
	ctx := context.Background()
	good := &fakeSource{restore: func(_ context.Context, _ *BackupSet, dir string, _ RestoreOptions) error {
		if err := os.MkdirAll(filepath.Join(dir, "base"), 0o700); err != nil {
			return err
		}
		return os.WriteFile(filepath.Join(dir, "PG_VERSION"), []byte("15\n"), 0o600)
	}}
	bad := &fakeSource{
		verify: func(context.Context, *BackupSet) error { return ErrChecksum },
		restore: func(context.Context, *BackupSet, string, RestoreOptions) error {
			t.Fatal("restored a set that Verify refused")
			return nil
		},
	}
	// The first restore, refused: no slot folder is left without its marker (which
	// would stop every later run as not restage's).
	if _, err := c.Restore(ctx, bad, &BackupSet{Label: "sunday"}, false); !errors.Is(err, ErrChecksum) {
		t.Fatalf("want ErrChecksum, got %v", err)
	}
	if _, err := c.Repair(ctx); err != nil {
		t.Fatalf("repair after a refused first restore: %v", err)
	}
	s, err := c.Restore(ctx, good, &BackupSet{Label: "monday"}, false)
	if err != nil {
		t.Fatal(err)
	}
	before, err := c.readMarker(s)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Restore(ctx, bad, &BackupSet{Label: "tuesday"}, false); !errors.Is(err, ErrChecksum) {
		t.Fatalf("want ErrChecksum, got %v", err)
	}
	if _, err := os.Stat(filepath.Join(s.Data, "PG_VERSION")); err != nil {
		t.Fatalf("the idle slot was emptied for a set Verify refused: %v", err)
	}
	after, err := c.readMarker(s)
	if err != nil || *after != *before {
		t.Fatalf("the idle slot's marker changed: %+v -> %+v (%v)", before, after, err)
	}
}

// A side port another server listens on (the restored slot could not start there) is
// refused before the idle slot's copy is replaced.
func TestRestoreRefusesBusySidePortBeforeTouchingTheIdleSlot(t *testing.T) {
	bin := pgtest.Require(t)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	side := ln.Addr().(*net.TCPAddr).Port
	ln.Close()
	port := side - 1
	if port < 1024 {
		port = side + 1
	}
	c, err := NewClusters(ClustersConfig{Environment: "staging", Dir: filepath.Join(t.TempDir(), "pg"), Port: port, SidePort: side, BinDir: bin})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	restored := 0
	src := &fakeSource{restore: func(_ context.Context, _ *BackupSet, dir string, _ RestoreOptions) error {
		restored++
		if err := os.MkdirAll(filepath.Join(dir, "base"), 0o700); err != nil {
			return err
		}
		return os.WriteFile(filepath.Join(dir, "PG_VERSION"), []byte("15\n"), 0o600)
	}}
	s, err := c.Restore(ctx, src, &BackupSet{Label: "monday"}, false)
	if err != nil {
		t.Fatal(err)
	}
	busy, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(side)))
	if err != nil {
		t.Skipf("side port %d taken meanwhile: %v", side, err)
	}
	defer busy.Close()
	if _, err := c.Restore(ctx, src, &BackupSet{Label: "tuesday"}, false); !errors.Is(err, ErrProduction) {
		t.Fatalf("restore with the side port taken: want ErrProduction, got %v", err)
	}
	if restored != 1 {
		t.Fatalf("the source restored %d times, want once (the side port was taken)", restored)
	}
	if m, err := c.readMarker(s); err != nil || m.Backup != "monday" || m.State != stateRestored {
		t.Fatalf("the idle slot's marker: %+v, %v; want monday's copy, restored", m, err)
	}
}

func TestCheckOrigin(t *testing.T) {
	c := newTestClusters(t)
	for _, o := range []Origin{{Port: 6543}, {Host: "localhost", Port: 6544}, {Dir: c.cfg.Dir + "/a/data"}, {Dir: filepath.Dir(c.cfg.Dir)}} {
		if err := c.CheckOrigin(o); !errors.Is(err, ErrProduction) {
			t.Errorf("%+v: want ErrProduction, got %v", o, err)
		}
	}
	for _, o := range []Origin{{}, {Host: "db.example.org", Port: 6543}, {Port: 5432, Dir: "/var/lib/postgresql/15/main"}} {
		if err := c.CheckOrigin(o); err != nil {
			t.Errorf("%+v: %v", o, err)
		}
	}
}

func TestCheckSettings(t *testing.T) {
	p := CheckSettings("cluster.settings", map[string]string{"shared_buffers": "1GB", "archive_command": "x", "port": "1", "Bad Name": "1"})
	if len(p) != 3 || !strings.Contains(strings.Join(p, ";"), "cluster.settings.archive_command") {
		t.Fatalf("%q", p)
	}
	// A file of settings could hold the ones restage controls.
	p = CheckSettings("cluster.settings", map[string]string{"include": "/etc/x.conf", "include_dir": "/etc/x", "include_if_exists": "/etc/y.conf"})
	if len(p) != 3 || !strings.Contains(p[0], "cluster.settings.include:") {
		t.Fatalf("%q", p)
	}
}

func TestCommandLine(t *testing.T) {
	got := commandLine([][2]string{{"archive_command", ""}, {"unix_socket_directories", "/srv/it's here"}, {"port", "5433"}})
	if want := `-c 'archive_command=' -c 'unix_socket_directories=/srv/it'\''s here' -c 'port=5433'`; got != want {
		t.Fatalf("got  %s\nwant %s", got, want)
	}
}

func TestParseInfo(t *testing.T) {
	const info = `[{"name":"main","status":{"code":0,"message":"ok"},"db":[{"id":1,"system-id":7714597089408503621,"version":"15"}],
"backup":[{"label":"A","type":"full","error":false,"timestamp":{"start":1,"stop":2},"info":{"size":10,"repository":{"size":5}},"database":{"id":1}},
{"label":"B","type":"incr","error":true,"timestamp":{"start":3,"stop":4},"info":{"size":10},"database":{"id":1}}]}]`
	set, err := parseInfo([]byte(info), "main")
	if err != nil || set.Label != "A" || set.SystemIdentifier != 7714597089408503621 || set.RepoSize != 5 {
		t.Fatalf("%+v %v", set, err)
	}
	if _, err := parseInfo([]byte(`[{"name":"main","status":{"code":2,"message":"no valid backups"}}]`), "main"); !errors.Is(err, ErrNoBackup) {
		t.Fatal(err)
	}
	if _, err := parseInfo([]byte(`[{"name":"main","status":{"code":1,"message":"missing stanza path"}}]`), "main"); !errors.Is(err, ErrCorrupt) {
		t.Fatal(err)
	}
	if _, err := parseInfo([]byte(`garbage`), "main"); !errors.Is(err, ErrCorrupt) {
		t.Fatal(err)
	}
}

// TestDeltaByTimeUntrustsStagingWrites: a delta into a slot restage restored trusts size
// and time, but only after every file written since that restore got a time no backup
// holds; files the restore wrote (production's times) keep theirs.
func TestDeltaByTimeUntrustsStagingWrites(t *testing.T) {
	ctx := context.Background()
	prodTime := time.Now().Add(-time.Hour).Truncate(time.Second)
	var opts []RestoreOptions
	src := &fakeSource{restore: func(_ context.Context, _ *BackupSet, dir string, o RestoreOptions) error {
		opts = append(opts, o)
		if o.Delta {
			return nil
		}
		for _, f := range []string{"PG_VERSION", "base/1/100", "base/1/200"} {
			p := filepath.Join(dir, f)
			if err := os.MkdirAll(filepath.Dir(p), 0o700); err != nil {
				return err
			}
			if err := os.WriteFile(p, []byte("production"), 0o600); err != nil {
				return err
			}
			if err := os.Chtimes(p, prodTime, prodTime); err != nil {
				return err
			}
		}
		return nil
	}}
	for _, checksums := range []bool{false, true} {
		c := newTestClusters(t)
		c.cfg.DeltaChecksums = checksums
		opts = nil
		s, err := c.Restore(ctx, src, &BackupSet{Label: "full"}, true)
		if err != nil {
			t.Fatal(err)
		}
		// The cluster restage ran writes one file.
		written := filepath.Join(s.Data, "base/1/200")
		if err := os.WriteFile(written, []byte("staging!!!"), 0o600); err != nil {
			t.Fatal(err)
		}
		if _, err := c.Restore(ctx, src, &BackupSet{Label: "incr"}, true); err != nil {
			t.Fatal(err)
		}
		if len(opts) != 2 || opts[0].Delta || !opts[1].Delta || opts[1].ByTime == checksums {
			t.Fatalf("checksums %v: restores %+v", checksums, opts)
		}
		if checksums {
			continue
		}
		if st, _ := os.Stat(written); !st.ModTime().Equal(untrusted) {
			t.Fatalf("a file staging wrote keeps the time %s: a delta by time would keep it", st.ModTime())
		}
		if st, _ := os.Stat(filepath.Join(s.Data, "base/1/100")); !st.ModTime().Equal(prodTime) {
			t.Fatalf("a restored file's time changed to %s", st.ModTime())
		}
	}
	// A slot whose marker does not say when it was restored: checksums.
	c := newTestClusters(t)
	opts = nil
	if _, err := c.Restore(ctx, src, &BackupSet{Label: "full"}, true); err != nil {
		t.Fatal(err)
	}
	m := filepath.Join(c.cfg.Dir, "a", markerFile)
	if err := os.WriteFile(m, []byte(`{"environment":"staging","slot":"a","state":"restored"}`), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Restore(ctx, src, &BackupSet{Label: "incr"}, true); err != nil || opts[1].ByTime {
		t.Fatalf("restores %+v, %v", opts, err)
	}
}

// Production's host given as one of this host's own addresses is this host.
func TestLocalHostKnowsItsAddresses(t *testing.T) {
	addrs, err := net.InterfaceAddrs()
	if err != nil {
		t.Fatal(err)
	}
	for _, a := range addrs {
		if n, ok := a.(*net.IPNet); ok {
			if !localHost(n.IP.String()) {
				t.Errorf("%s: not this host", n.IP)
			}
		}
	}
	if localHost("192.0.2.1") { // TEST-NET-1: nobody's
		t.Error("192.0.2.1 taken for this host")
	}
}

// [cluster] dir inside a cluster's data directory is refused before anything is made.
func TestDirInsideADataDirectory(t *testing.T) {
	bin := pgtest.Require(t)
	data := t.TempDir()
	if err := os.WriteFile(filepath.Join(data, "PG_VERSION"), []byte("15\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, dir := range []string{data, filepath.Join(data, "base", "restage")} {
		c, err := NewClusters(ClustersConfig{Environment: "staging", Dir: dir, Port: 6543, BinDir: bin})
		if err != nil {
			t.Fatal(err)
		}
		if err := c.ensureDir(); !errors.Is(err, ErrNotOurs) || !strings.Contains(err.Error(), "lies in the data directory "+data) {
			t.Fatalf("%s: %v", dir, err)
		}
	}
	if _, err := os.Stat(filepath.Join(data, "base")); err == nil {
		t.Fatal("made a folder inside the data directory")
	}
}

// pgBackRest reaches production's host through the C library, which reads forms of
// this host's addresses that Go's resolver does not: each is this host, so that a
// [cluster] port or dir that is production's is refused however pg1-host spells it.
func TestLocalHostKnowsItsAliases(t *testing.T) {
	for _, h := range []string{"127.1", "2130706433", "0x7f000001", "0177.0.0.1", "0.0.0.0", "::", "[::1]", "::ffff:127.0.0.1", "0"} {
		if !localHost(h) {
			t.Errorf("%s: not this host", h)
		}
	}
	for _, h := range []string{"192.0.2.1", "3221225985", "192.0.2", "1.2.3.4.5", "0x1g", "08.0.0.1", "256.0.0.1"} {
		if localHost(h) {
			t.Errorf("%s taken for this host", h)
		}
	}
	c := newTestClusters(t)
	if err := c.CheckOrigin(Origin{Host: "127.1", Port: c.cfg.Port}); !errors.Is(err, ErrProduction) {
		t.Errorf("production on port %d of 127.1: %v, want ErrProduction", c.cfg.Port, err)
	}
}
