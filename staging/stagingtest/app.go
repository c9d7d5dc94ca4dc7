package stagingtest

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"regexp"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/restage/restage/dbrestore/pgtest"
)

// AppCommand is the first argument that makes a program embedding ServeApp run the app.
const AppCommand = "demo-app"

// Fault files: a release holding one of these at its top misbehaves, for tests.
const (
	FailStartFile  = "FAIL_START"  // the app exits at once
	FailHealthFile = "FAIL_HEALTH" // the app answers its health check with 503
)

// RunApp makes a test binary double as the app: when the program was started as
// "PROG demo-app ARGS" (AppCommand), it runs ServeApp with ARGS and exits, with status 1
// and the error on stderr when the app fails. Call it first in TestMain; otherwise it
// returns at once.
func RunApp() {
	if len(os.Args) < 2 || os.Args[1] != AppCommand {
		return
	}
	if err := ServeApp(context.Background(), os.Args[2:]); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	os.Exit(0)
}

// Start builds a World for the test tb in a temporary folder, with the test binary as
// its app (so its TestMain must call RunApp), and closes it when the test ends. It skips
// the test, or fails it, as pgtest.Require says when there is no PostgreSQL to use.
func Start(tb testing.TB, opts Options) *World {
	tb.Helper()
	pgtest.Require(tb)
	exe, err := os.Executable()
	if err != nil {
		tb.Fatal(err)
	}
	opts.Dir, opts.App = tb.TempDir(), []string{exe, AppCommand}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	w, err := NewWorld(ctx, opts)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(w.Close)
	return w
}

// ServeApp runs the demo staging service: an HTTP server that reads the bug tracker's
// database and serves its release's robots.txt. Flags: -listen ADDR, -dsn URL, -root DIR
// (the release; default: the folder above the program's). It answers
//
//	/+health     200 when the database answers and its patch level matches the
//	             release's migrations, 503 otherwise
//	/robots.txt  the release's robots.txt
//	/            counts of people, bugs and comments
//
// It stops on SIGTERM or SIGINT.
func ServeApp(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet(AppCommand, flag.ContinueOnError)
	listen := fs.String("listen", "127.0.0.1:8080", "address to listen on")
	dsn := fs.String("dsn", "", "database URL")
	root := fs.String("root", "", "release folder (default: the folder above the program's)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *root == "" {
		exe, err := os.Executable()
		if err != nil {
			return err
		}
		*root = filepath.Dir(filepath.Dir(exe))
	}
	if _, err := os.Stat(filepath.Join(*root, FailStartFile)); err == nil {
		return fmt.Errorf("release %s is broken (%s)", *root, FailStartFile)
	}
	want, err := latestMigration(filepath.Join(*root, "migrations"))
	if err != nil {
		return err
	}
	ctx, stop := signal.NotifyContext(ctx, syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	pool, err := pgxpool.New(ctx, *dsn)
	if err != nil {
		return fmt.Errorf("database: %w", err)
	}
	defer pool.Close()
	mux := http.NewServeMux()
	mux.HandleFunc("/+health", func(w http.ResponseWriter, r *http.Request) {
		if _, err := os.Stat(filepath.Join(*root, FailHealthFile)); err == nil {
			http.Error(w, "release is broken ("+FailHealthFile+")", http.StatusServiceUnavailable)
			return
		}
		qctx, cancel := context.WithTimeout(r.Context(), 3*time.Second)
		defer cancel()
		var version int64
		var dirty bool
		var bugs int64
		// Constant time whatever the size: the planner's estimate, not a count.
		err := pool.QueryRow(qctx, `SELECT version, dirty, (SELECT reltuples::bigint FROM pg_class WHERE oid = 'bug'::regclass) FROM schema_migrations`).Scan(&version, &dirty, &bugs)
		switch {
		case err != nil:
			http.Error(w, "database: "+err.Error(), http.StatusServiceUnavailable)
		case dirty || version != want:
			http.Error(w, fmt.Sprintf("patch level %d (dirty %v), code needs %d", version, dirty, want), http.StatusServiceUnavailable)
		default:
			fmt.Fprintf(w, "ok release=%s patch=%d bugs=%d\n", filepath.Base(*root), version, bugs)
		}
	})
	mux.HandleFunc("/robots.txt", func(w http.ResponseWriter, r *http.Request) {
		http.ServeFile(w, r, filepath.Join(*root, "robots.txt"))
	})
	mux.HandleFunc("/{$}", func(w http.ResponseWriter, r *http.Request) {
		var people, bugs, comments int64
		err := pool.QueryRow(r.Context(), `SELECT (SELECT count(*) FROM person), (SELECT count(*) FROM bug), (SELECT count(*) FROM comment)`).Scan(&people, &bugs, &comments)
		if err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		fmt.Fprintf(w, "bug tracker (release %s): %d people, %d bugs, %d comments\n", filepath.Base(*root), people, bugs, comments)
	})
	l, err := net.Listen("tcp", *listen)
	if err != nil {
		return err
	}
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	go func() {
		<-ctx.Done()
		sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		defer cancel()
		_ = srv.Shutdown(sctx)
	}()
	if err := srv.Serve(l); err != nil && !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}

var migrationName = regexp.MustCompile(`^(\d+)_.*\.up\.sql$`)

func latestMigration(dir string) (int64, error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return 0, err
	}
	var latest int64
	for _, e := range entries {
		if m := migrationName.FindStringSubmatch(e.Name()); m != nil {
			v, _ := strconv.ParseInt(m[1], 10, 64)
			latest = max(latest, v)
		}
	}
	return latest, nil
}
