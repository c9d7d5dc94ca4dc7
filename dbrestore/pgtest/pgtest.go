package pgtest

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/restage/restage/internal/testutil"
)

// RequireEnv is the environment variable that turns a skip for missing binaries into a failure.
const RequireEnv = "RESTAGE_REQUIRE_POSTGRES"

// ErrNoBinaries reports that no PostgreSQL server binaries were found.
var ErrNoBinaries = errors.New("pgtest: no PostgreSQL server binaries (initdb, postgres) on PATH or under /usr/lib/postgresql/*/bin")

// errExited reports that a local server's process exited while it was awaited.
var errExited = errors.New("server process exited")

// Server is a running throwaway PostgreSQL server.
type Server struct {
	// Host and Port are where the server listens on TCP.
	Host string
	Port int
	// User and Password are the superuser's credentials (Password is empty with trust auth).
	User     string
	Password string
	// Dir is the cluster's folder (data, socket, log); empty for servers not run locally.
	Dir string
	// BinDir holds the server binaries that run it; empty for servers not run locally.
	BinDir string
	// Container describes the container of a server run by StartContainer; nil otherwise.
	Container *ContainerInfo

	stopOnce sync.Once
	stopErr  error
	stop     func() error
	dbSeq    int
	mu       sync.Mutex
}

// DSN returns a postgres:// URL for database on this server.
func (s *Server) DSN(database string) string {
	u := url.URL{
		Scheme:   "postgres",
		Host:     net.JoinHostPort(s.Host, strconv.Itoa(s.Port)),
		Path:     "/" + database,
		RawQuery: "sslmode=disable",
	}
	if s.Password != "" {
		u.User = url.UserPassword(s.User, s.Password)
	} else {
		u.User = url.User(s.User)
	}
	return u.String()
}

// AdminDSN returns the DSN of the server's "postgres" database.
func (s *Server) AdminDSN() string { return s.DSN("postgres") }

// Stop stops the server and removes its folder. It is safe to call more than once.
func (s *Server) Stop() error {
	s.stopOnce.Do(func() {
		if s.stop != nil {
			s.stopErr = s.stop()
		}
	})
	return s.stopErr
}

// Connect opens a connection to database, closed when the test ends.
func (s *Server) Connect(tb testing.TB, database string) *pgx.Conn {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, s.DSN(database))
	if err != nil {
		tb.Fatalf("pgtest: connect to %s: %v", database, err)
	}
	tb.Cleanup(func() { conn.Close(context.Background()) })
	return conn
}

// Exec runs sql in database, failing the test on error.
func (s *Server) Exec(tb testing.TB, database, sql string, args ...any) {
	tb.Helper()
	err := s.on(tb, database, 5*time.Minute, func(ctx context.Context, c *pgx.Conn) error {
		_, err := c.Exec(ctx, sql, args...)
		return err
	})
	if err != nil {
		tb.Fatalf("pgtest: exec in %s: %v\n%s", database, err, sql)
	}
}

// QueryInt returns the single integer sql yields in database.
func (s *Server) QueryInt(tb testing.TB, database, sql string, args ...any) int64 {
	tb.Helper()
	var n int64
	s.queryRow(tb, database, sql, args, &n)
	return n
}

// QueryString returns the single text value sql yields in database.
func (s *Server) QueryString(tb testing.TB, database, sql string, args ...any) string {
	tb.Helper()
	var v string
	s.queryRow(tb, database, sql, args, &v)
	return v
}

// queryRow scans the one row sql yields in database into dest, failing the test on an
// error.
func (s *Server) queryRow(tb testing.TB, database, sql string, args []any, dest ...any) {
	tb.Helper()
	err := s.on(tb, database, time.Minute, func(ctx context.Context, c *pgx.Conn) error {
		return c.QueryRow(ctx, sql, args...).Scan(dest...)
	})
	if err != nil {
		tb.Fatalf("pgtest: query in %s: %v\n%s", database, err, sql)
	}
}

// on runs fn on a connection of its own to database, all within timeout, and returns
// fn's error; it fails the test when it cannot connect.
func (s *Server) on(tb testing.TB, database string, timeout time.Duration, fn func(context.Context, *pgx.Conn) error) error {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	conn, err := pgx.Connect(ctx, s.DSN(database))
	if err != nil {
		tb.Fatalf("pgtest: connect to %s: %v", database, err)
	}
	defer conn.Close(context.Background())
	return fn(ctx, conn)
}

// LoginRole creates a login role called name with no privileges (the superuser's
// password, if any), dropped when the test ends, and returns the DSN of database as it.
func (s *Server) LoginRole(tb testing.TB, name, database string) string {
	tb.Helper()
	q := "CREATE ROLE " + pgx.Identifier{name}.Sanitize() + " LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE"
	if s.Password != "" {
		q += " PASSWORD '" + strings.ReplaceAll(s.Password, "'", "''") + "'"
	}
	s.Exec(tb, "postgres", q)
	tb.Cleanup(func() { s.Exec(tb, "postgres", "DROP ROLE IF EXISTS "+pgx.Identifier{name}.Sanitize()) })
	u, err := url.Parse(s.DSN(database))
	if err != nil {
		tb.Fatal(err)
	}
	u.User = url.User(name)
	if s.Password != "" {
		u.User = url.UserPassword(name, s.Password)
	}
	return u.String()
}

// SystemIdentifier returns the cluster's system_identifier.
func (s *Server) SystemIdentifier(tb testing.TB) uint64 {
	tb.Helper()
	return uint64(s.QueryInt(tb, "postgres", "SELECT system_identifier FROM pg_control_system()"))
}

var unsafeName = regexp.MustCompile(`[^a-z0-9_]+`)

// Database creates a fresh, empty database for the test and returns its name. It is
// dropped when the test ends.
func (s *Server) Database(tb testing.TB) string {
	tb.Helper()
	s.mu.Lock()
	s.dbSeq++
	seq := s.dbSeq
	s.mu.Unlock()
	name := unsafeName.ReplaceAllString(strings.ToLower(tb.Name()), "_")
	if len(name) > 40 {
		name = name[len(name)-40:]
	}
	name = fmt.Sprintf("t%d_%s", seq, strings.Trim(name, "_"))
	s.Exec(tb, "postgres", "CREATE DATABASE "+pgx.Identifier{name}.Sanitize())
	tb.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		conn, err := pgx.Connect(ctx, s.AdminDSN())
		if err != nil {
			return // the server is gone already
		}
		defer conn.Close(context.Background())
		_, _ = conn.Exec(ctx, "DROP DATABASE IF EXISTS "+pgx.Identifier{name}.Sanitize()+" WITH (FORCE)")
	})
	return name
}

// BinDir returns the folder holding the PostgreSQL server binaries: the one of initdb on
// PATH, else the newest /usr/lib/postgresql/*/bin.
func BinDir() (string, error) {
	if p, err := exec.LookPath("initdb"); err == nil {
		if real, err := filepath.EvalSymlinks(p); err == nil {
			p = real
		}
		dir := filepath.Dir(p)
		if _, err := os.Stat(filepath.Join(dir, "postgres")); err == nil {
			return dir, nil
		}
	}
	dirs, _ := filepath.Glob("/usr/lib/postgresql/*/bin")
	sort.Slice(dirs, func(i, j int) bool { return versionOf(dirs[i]) > versionOf(dirs[j]) })
	for _, d := range dirs {
		if _, err := os.Stat(filepath.Join(d, "initdb")); err == nil {
			return d, nil
		}
	}
	return "", ErrNoBinaries
}

func versionOf(binDir string) float64 {
	v, _ := strconv.ParseFloat(filepath.Base(filepath.Dir(binDir)), 64)
	return v
}

// Require skips the test when no server binaries exist, or fails it when RESTAGE_REQUIRE_POSTGRES=1.
// It returns the binaries' folder.
func Require(tb testing.TB) string {
	tb.Helper()
	dir, err := BinDir()
	if err != nil {
		if os.Getenv(RequireEnv) == "1" {
			tb.Fatalf("%v (%s=1)", err, RequireEnv)
		}
		tb.Skipf("%v; set %s=1 to make this a failure", err, RequireEnv)
	}
	return dir
}

var (
	sharedMu sync.Mutex
	shared   = map[string]*Server{}
)

// Shared returns the server called name, started on first use and kept for the whole test
// binary; Main stops it. Different names are independent clusters with different
// system_identifiers.
func Shared(tb testing.TB, name string) *Server {
	tb.Helper()
	sharedMu.Lock()
	defer sharedMu.Unlock()
	if s, ok := shared[name]; ok {
		return s
	}
	s, err := startFor(tb)
	if err != nil {
		tb.Fatalf("pgtest: start %s server: %v", name, err)
	}
	shared[name] = s
	return s
}

// Main runs the tests, then stops every shared server. Use it as
// `func TestMain(m *testing.M) { os.Exit(pgtest.Main(m)) }`.
func Main(m *testing.M) int {
	code := m.Run()
	sharedMu.Lock()
	defer sharedMu.Unlock()
	for name, s := range shared {
		if err := s.Stop(); err != nil {
			fmt.Fprintf(os.Stderr, "pgtest: stop %s server: %v\n", name, err)
		}
		delete(shared, name)
	}
	return code
}

// Start starts a server owned by the test: it is stopped and removed when the test ends.
func Start(tb testing.TB) *Server {
	tb.Helper()
	s, err := startFor(tb)
	if err != nil {
		tb.Fatalf("pgtest: start server: %v", err)
	}
	tb.Cleanup(func() {
		if err := s.Stop(); err != nil {
			tb.Errorf("pgtest: stop server: %v", err)
		}
	})
	return s
}

// startFor starts a local cluster, or a container where there are no binaries but a
// Docker engine exists.
func startFor(tb testing.TB) (*Server, error) {
	tb.Helper()
	binDir, err := BinDir()
	if err != nil {
		if s, cerr := startContainerFallback(tb); s != nil || cerr != nil {
			return s, cerr
		}
		Require(tb)
		return nil, err
	}
	return StartLocal(context.Background(), binDir)
}

// startContainerFallback starts a container (container.go); it returns nil, nil when
// containers are not available.
var startContainerFallback = startContainerIfAvailable

// StartLocal starts a cluster from the binaries in binDir. The caller must Stop it.
func StartLocal(ctx context.Context, binDir string) (*Server, error) {
	return StartLocalWith(ctx, binDir)
}

// StartLocalWith is StartLocal with extra server settings ("key=value"), applied after
// the throwaway defaults (fsync=off, full_page_writes=off): "fsync=on" and
// "full_page_writes=on" give a server as durable as PostgreSQL's defaults.
func StartLocalWith(ctx context.Context, binDir string, settings ...string) (*Server, error) {
	dir, err := os.MkdirTemp("", "restage-pg-")
	if err != nil {
		return nil, err
	}
	cred, err := serverCredential()
	if err == nil && cred != nil {
		err = os.Chown(dir, int(cred.Uid), int(cred.Gid))
	}
	if err == nil {
		err = initCluster(ctx, binDir, dir, cred)
	}
	var (
		s      *Server
		exited <-chan error
	)
	if err == nil {
		s, exited, err = startPostgres(binDir, dir, cred, settings)
	}
	if err != nil {
		_ = os.RemoveAll(dir)
		return nil, err
	}
	if err := waitConnect(ctx, s, 60*time.Second, exited); err != nil {
		if errors.Is(err, errExited) {
			log, _ := os.ReadFile(filepath.Join(dir, "server.log"))
			_ = os.RemoveAll(dir)
			return nil, fmt.Errorf("postgres: %w\n%s", err, log)
		}
		_ = s.Stop()
		return nil, fmt.Errorf("postgres: %w", err)
	}
	return s, nil
}

// initCluster makes a cluster in dir/data, owned by cred (nil: this process's user),
// whose superuser "postgres" needs no password.
func initCluster(ctx context.Context, binDir, dir string, cred *syscall.Credential) error {
	initdb := exec.CommandContext(ctx, filepath.Join(binDir, "initdb"),
		"-D", filepath.Join(dir, "data"), "-U", "postgres", "--auth=trust", "-E", "UTF8", "--locale=C", "--no-sync")
	initdb.SysProcAttr = &syscall.SysProcAttr{Credential: cred}
	initdb.Env = append(os.Environ(), "LC_ALL=C")
	if out, err := initdb.CombinedOutput(); err != nil {
		return fmt.Errorf("initdb: %w\n%s", err, out)
	}
	return nil
}

// startPostgres starts the cluster in dir on a free loopback port, its socket in dir and
// its log in dir/server.log, and returns it before it accepts connections, with a
// channel that receives its exit. Its stop removes dir.
func startPostgres(binDir, dir string, cred *syscall.Credential, settings []string) (*Server, <-chan error, error) {
	port, err := testutil.FreePort()
	if err != nil {
		return nil, nil, err
	}
	logFile, err := os.Create(filepath.Join(dir, "server.log"))
	if err != nil {
		return nil, nil, err
	}
	args := []string{"-D", filepath.Join(dir, "data"), "-p", strconv.Itoa(port), "-k", dir, "-c", "listen_addresses=127.0.0.1",
		"-c", "fsync=off", "-c", "full_page_writes=off", "-c", "max_connections=100",
		"-c", "shared_buffers=128MB", "-c", "max_wal_size=2GB", "-c", "log_min_messages=warning"}
	for _, kv := range settings {
		args = append(args, "-c", kv) // the last of a setting's values wins
	}
	srv := exec.Command(filepath.Join(binDir, "postgres"), args...)
	srv.Stdout, srv.Stderr = logFile, logFile
	srv.SysProcAttr = serverSysProcAttr(cred)
	if err := srv.Start(); err != nil {
		logFile.Close()
		return nil, nil, fmt.Errorf("start postgres: %w", err)
	}
	exited := make(chan error, 1)
	go func() { exited <- srv.Wait(); logFile.Close() }()
	s := &Server{Host: "127.0.0.1", Port: port, User: "postgres", Dir: dir, BinDir: binDir}
	s.stop = func() error {
		_ = srv.Process.Signal(syscall.SIGINT) // fast shutdown
		select {
		case <-exited:
		case <-time.After(30 * time.Second):
			_ = syscall.Kill(-srv.Process.Pid, syscall.SIGKILL)
			<-exited
		}
		return os.RemoveAll(dir)
	}
	return s, exited, nil
}

// serverCredential returns the postgres user's credential when running as root, nil otherwise.
func serverCredential() (*syscall.Credential, error) {
	if os.Geteuid() != 0 {
		return nil, nil
	}
	u, err := user.Lookup("postgres")
	if err != nil {
		return nil, fmt.Errorf("running as root needs a \"postgres\" user to run the server: %w", err)
	}
	uid, _ := strconv.Atoi(u.Uid)
	gid, _ := strconv.Atoi(u.Gid)
	return &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}, nil
}
