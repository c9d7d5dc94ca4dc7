package physicaltest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/restage/restage/dbrestore/pgtest"
	"github.com/restage/restage/internal/testutil"
)

// Stanza is the pgBackRest stanza of every Production.
const Stanza = "main"

// Options shape a Production.
type Options struct {
	// Settings are extra postgresql.conf lines ("key = value").
	Settings []string
	// Compress is the repository's compress-type; "": lz4.
	Compress string
	// GroupAccess makes the data directory group-readable (initdb --allow-group-access:
	// folders 0750, files 0640), as some production clusters are.
	GroupAccess bool
}

// Production is a running cluster with WAL archiving into a pgBackRest repository.
type Production struct {
	Dir    string // owned by the cluster's user: data/, repo/, the socket, the logs
	Data   string
	Repo   string // the repository folder
	Config string // pgbackrest.conf
	Port   int
	BinDir string

	cred *syscall.Credential
}

// Require skips tb when there are no server binaries or no pgbackrest (fails it with
// RESTAGE_REQUIRE_POSTGRES=1) and returns the binaries' folder.
func Require(tb testing.TB) string {
	tb.Helper()
	bin := pgtest.Require(tb)
	if _, err := exec.LookPath("pgbackrest"); err != nil {
		if os.Getenv(pgtest.RequireEnv) == "1" {
			tb.Fatalf("pgbackrest not on PATH (%s=1): install Debian's pgbackrest", pgtest.RequireEnv)
		}
		tb.Skip("pgbackrest not on PATH")
	}
	return bin
}

// RequireLibrary skips tb when the server binaries bin lack the extension library lib
// (fails it with RESTAGE_REQUIRE_POSTGRES=1); pkg names Debian's package, with %s for
// the major version: "postgresql-%s-cron".
func RequireLibrary(tb testing.TB, bin, lib, pkg string) {
	tb.Helper()
	if _, err := os.Stat(filepath.Join(filepath.Dir(bin), "lib", lib+".so")); err == nil {
		return
	}
	msg := fmt.Sprintf("no %s library beside %s: install Debian's %s", lib, bin, fmt.Sprintf(pkg, filepath.Base(filepath.Dir(bin))))
	if os.Getenv(pgtest.RequireEnv) == "1" {
		tb.Fatalf("%s (%s=1)", msg, pgtest.RequireEnv)
	}
	tb.Skip(msg)
}

// Start starts a Production for tb, stopped when tb ends.
func Start(tb testing.TB, opts Options) *Production {
	tb.Helper()
	Require(tb)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	p, err := StartProduction(ctx, opts)
	if err != nil {
		tb.Fatalf("physicaltest: %v", err)
	}
	tb.Cleanup(func() { _ = p.Stop() })
	return p
}

// StartProduction makes and starts a cluster archiving into a fresh repository, with its
// stanza created. The caller must Stop it.
func StartProduction(ctx context.Context, opts Options) (_ *Production, err error) {
	bin, err := pgtest.BinDir()
	if err != nil {
		return nil, err
	}
	dir, err := os.MkdirTemp("", "restage-prod-")
	if err != nil {
		return nil, err
	}
	p := &Production{Dir: dir, Data: filepath.Join(dir, "data"), Repo: filepath.Join(dir, "repo"),
		Config: filepath.Join(dir, "pgbackrest.conf"), BinDir: bin}
	defer func() {
		if err != nil {
			_ = p.Stop()
		}
	}()
	if os.Geteuid() == 0 {
		u, err := user.Lookup("postgres")
		if err != nil {
			return nil, err
		}
		uid, _ := strconv.Atoi(u.Uid)
		gid, _ := strconv.Atoi(u.Gid)
		p.cred = &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}
		if err := os.Chown(dir, uid, gid); err != nil {
			return nil, err
		}
	}
	if p.Port, err = testutil.FreePort(); err != nil {
		return nil, err
	}
	compress := opts.Compress
	if compress == "" {
		compress = "lz4"
	}
	conf := fmt.Sprintf(`[global]
repo1-path=%s
repo1-retention-full=4
log-level-console=warn
log-level-file=off
lock-path=%s
start-fast=y
compress-type=%s
process-max=2

[%s]
pg1-path=%s
pg1-port=%d
pg1-socket-path=%s
`, p.Repo, filepath.Join(dir, "lock"), compress, Stanza, p.Data, p.Port, dir)
	if err := p.write(p.Config, conf); err != nil {
		return nil, err
	}
	initdb := []string{filepath.Join(bin, "initdb"), "-D", p.Data, "-U", "postgres", "--auth=trust", "-E", "UTF8", "--locale=C", "--no-sync"}
	if opts.GroupAccess {
		initdb = append(initdb, "--allow-group-access")
	}
	if _, err := p.run(ctx, initdb...); err != nil {
		return nil, err
	}
	settings := append([]string{
		fmt.Sprintf("port = %d", p.Port),
		"listen_addresses = '127.0.0.1'",
		fmt.Sprintf("unix_socket_directories = '%s'", dir),
		"wal_level = logical",
		"archive_mode = on",
		fmt.Sprintf("archive_command = 'pgbackrest --config=%s --stanza=%s archive-push %%p'", p.Config, Stanza),
		"fsync = off", "full_page_writes = off", "max_wal_size = 1GB", "shared_buffers = 128MB",
	}, opts.Settings...)
	f, err := os.OpenFile(filepath.Join(p.Data, "postgresql.conf"), os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		return nil, err
	}
	_, err = f.WriteString("\n" + strings.Join(settings, "\n") + "\n")
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return nil, err
	}
	if _, err := p.run(ctx, filepath.Join(bin, "pg_ctl"), "start", "-D", p.Data, "-l", filepath.Join(dir, "server.log"), "-w", "-s"); err != nil {
		return nil, err
	}
	if _, err := p.PgBackRest(ctx, "stanza-create"); err != nil {
		return nil, err
	}
	return p, nil
}

func (p *Production) write(path, content string) error {
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		return err
	}
	if p.cred != nil {
		return os.Chown(path, int(p.cred.Uid), int(p.cred.Gid))
	}
	return nil
}

// run runs argv as the cluster's user and returns its standard output.
func (p *Production) run(ctx context.Context, argv ...string) ([]byte, error) {
	cmd := exec.CommandContext(ctx, argv[0], argv[1:]...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: p.cred}
	cmd.Dir = "/"
	cmd.Env = append(os.Environ(), "LC_ALL=C")
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Run(); err != nil {
		return nil, fmt.Errorf("%s: %w\n%s%s", strings.Join(argv, " "), err, errb.String(), out.String())
	}
	return out.Bytes(), nil
}

// PgBackRest runs pgbackrest command for the stanza with args, as the cluster's user.
func (p *Production) PgBackRest(ctx context.Context, command string, args ...string) ([]byte, error) {
	argv := append([]string{"pgbackrest", "--config=" + p.Config, "--stanza=" + Stanza}, args...)
	return p.run(ctx, append(argv, command)...)
}

// Backup takes a backup of type full, diff or incr.
func (p *Production) Backup(ctx context.Context, typ string) error {
	_, err := p.PgBackRest(ctx, "backup", "--type="+typ)
	return err
}

// Info returns `pgbackrest info --output=json`.
func (p *Production) Info(ctx context.Context) (string, error) {
	b, err := p.PgBackRest(ctx, "info", "--output=json")
	return string(b), err
}

// Listing returns every file of the repository with its size and modification time,
// sorted: equal listings mean nothing was written to it.
func (p *Production) Listing() ([]string, error) {
	var out []string
	err := filepath.WalkDir(p.Repo, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		fi, err := d.Info()
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(p.Repo, path)
		if d.IsDir() {
			out = append(out, rel+"/")
		} else {
			out = append(out, fmt.Sprintf("%s %d %d", rel, fi.Size(), fi.ModTime().UnixNano()))
		}
		return nil
	})
	sort.Strings(out)
	return out, err
}

// ArchiveListing returns the WAL archive's files (names and sizes).
func (p *Production) ArchiveListing() ([]string, error) {
	all, err := p.Listing()
	var out []string
	for _, l := range all {
		if strings.HasPrefix(l, "archive/") {
			out = append(out, l)
		}
	}
	return out, err
}

// DSN returns the URL of database over TCP.
func (p *Production) DSN(database string) string {
	return fmt.Sprintf("postgres://postgres@127.0.0.1:%d/%s?sslmode=disable", p.Port, database)
}

// Exec runs sql in database.
func (p *Production) Exec(ctx context.Context, database, sql string) error {
	conn, err := pgx.Connect(ctx, p.DSN(database))
	if err != nil {
		return err
	}
	defer conn.Close(context.WithoutCancel(ctx))
	_, err = conn.Exec(ctx, sql)
	return err
}

// SystemIdentifier returns the cluster's system_identifier.
func (p *Production) SystemIdentifier(ctx context.Context) (uint64, error) {
	conn, err := pgx.Connect(ctx, p.DSN("postgres"))
	if err != nil {
		return 0, err
	}
	defer conn.Close(context.WithoutCancel(ctx))
	var id int64
	err = conn.QueryRow(ctx, "SELECT system_identifier FROM pg_control_system()").Scan(&id)
	return uint64(id), err
}

// Stop stops the cluster (immediately) and removes its folder.
func (p *Production) Stop() error {
	var errs []error
	if _, err := os.Stat(filepath.Join(p.Data, "postmaster.pid")); err == nil {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		_, err := p.run(ctx, filepath.Join(p.BinDir, "pg_ctl"), "stop", "-D", p.Data, "-m", "immediate", "-w", "-s")
		errs = append(errs, err)
	}
	errs = append(errs, os.RemoveAll(p.Dir))
	return errors.Join(errs...)
}
