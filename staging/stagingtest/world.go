package stagingtest

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/restage/restage/dbrestore"
	"github.com/restage/restage/dbrestore/pgtest"
	"github.com/restage/restage/dbrestore/physical"
	"github.com/restage/restage/dbrestore/physical/physicaltest"
	"github.com/restage/restage/internal/testutil"
	"github.com/restage/restage/schema"
)

// Options shape a World.
type Options struct {
	// Dir is the world's folder; it must exist and be empty. Required.
	Dir string
	// App is the argv prefix that runs ServeApp: App[0] is copied into the code tree as
	// bin/app and the rest are its first arguments (e.g. ["/path/to/demo", "demo-app"]).
	// Required.
	App []string
	// People and Bugs size the production data (comments are twice the bugs);
	// 0: 2,000 and 20,000.
	People, Bugs int
	// Clones are listed in the staging config's database.clones.
	Clones []string
	// Strategy is the staging config's database.strategy; "": swap.
	Strategy string
	// BackupWait is the staging config's backup.wait; 0: 10s.
	BackupWait time.Duration
	// Experimental adds the experimental environment: its config (experimental.toml,
	// sharing the staging server), and "bugs_experimental" in staging's clones.
	Experimental bool
	// Mask gives the staging config the [mask] section MaskSection (the key from
	// MaskKeyEnv, which the caller sets) instead of the post-restore sanitising.
	Mask bool
	// Physical makes production a cluster archiving into a pgBackRest repository (with
	// a full backup) and staging a physical environment: strategy physical, its
	// clusters under ClusterDir, the live one on StagingPort.
	Physical bool
	// BaseBackup, with Physical, backs production up with pg_basebackup into BackupDir
	// ([backup] type = "basebackup") instead of pgBackRest.
	BaseBackup bool
	// Logger receives progress; nil: discarded.
	Logger *slog.Logger
}

// World is a throwaway production + staging setup. Close tears it down.
type World struct {
	Dir        string
	Production *pgtest.Server
	Staging    *pgtest.Server
	Mail       *MailServer

	ProdDB     string // production database
	ProdID     uint64 // the production server's system_identifier
	StagingDB  string // staging database name (live)
	BackupDir  string
	Source     string // the code tree (a folder)
	Releases   string
	Current    string
	StateDir   string
	LockFile   string
	Pidfile    string
	AppURL     string // the staging service's base URL
	ConfigPath string // staging.toml

	// The experimental environment, with Options.Experimental.
	Exp *Env

	// With Options.Physical: production's cluster and pgBackRest repository, and the
	// folder of staging's clusters (Staging then points at the live port).
	Phys       *physicaltest.Production
	ClusterDir string
	sidePort   int

	opts Options
	log  *slog.Logger
}

// Backups is the folder name of the world's production backups.
const backupsDir = "backups"

// NewWorld builds a world in opts.Dir: two servers, the production database with its
// data at ProductionPatch, one backup, a code tree at CodePatch, a mail server and the
// staging config file.
func NewWorld(ctx context.Context, opts Options) (_ *World, err error) {
	if opts.Dir == "" || len(opts.App) == 0 {
		return nil, errors.New("stagingtest: Options.Dir and Options.App are required")
	}
	if opts.People == 0 {
		opts.People = 2000
	}
	if opts.Bugs == 0 {
		opts.Bugs = 20000
	}
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	w := &World{Dir: opts.Dir, opts: opts, log: log, ProdDB: "bugs_prod", StagingDB: "bugs_staging"}
	defer func() {
		if err != nil {
			w.Close()
		}
	}()
	w.BackupDir = filepath.Join(w.Dir, backupsDir)
	w.Source = filepath.Join(w.Dir, "build", "bugs")
	w.Releases = filepath.Join(w.Dir, "staging", "releases")
	w.Current = filepath.Join(w.Dir, "staging", "current")
	w.StateDir = filepath.Join(w.Dir, "state")
	w.LockFile = filepath.Join(w.Dir, "run", "staging.lock")
	w.Pidfile = filepath.Join(w.Dir, "run", "app.pid")
	for _, d := range []string{w.BackupDir, w.Releases} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return nil, err
		}
	}
	// The state and lock folders are 0700, as restage makes them (DESIGN rule 12).
	for _, d := range []string{filepath.Dir(w.LockFile), w.StateDir} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			return nil, err
		}
	}

	log.Info("starting the production and staging PostgreSQL servers")
	if opts.Physical {
		if err := w.startPhysical(ctx); err != nil {
			return nil, err
		}
	} else {
		if w.Production, err = startServer(ctx); err != nil {
			return nil, fmt.Errorf("production server: %w", err)
		}
		if w.Staging, err = startServer(ctx); err != nil {
			return nil, fmt.Errorf("staging server: %w", err)
		}
	}
	if w.Mail, err = StartMailServer(); err != nil {
		return nil, err
	}
	if err := w.makeProduction(ctx); err != nil {
		return nil, err
	}
	if _, err := w.Backup(ctx); err != nil {
		return nil, err
	}
	if err := w.makeCode(); err != nil {
		return nil, err
	}
	if opts.Experimental {
		w.opts.Clones = append(w.opts.Clones, "bugs_experimental")
		if err := w.writeExperimental(); err != nil {
			return nil, err
		}
	}
	if err := w.writeConfig(); err != nil {
		return nil, err
	}
	return w, nil
}

// startServer starts a local cluster, or a container where there are no binaries.
func startServer(ctx context.Context) (*pgtest.Server, error) {
	bin, err := pgtest.BinDir()
	if err != nil {
		if StartContainer != nil {
			return StartContainer(ctx)
		}
		return nil, err
	}
	return pgtest.StartLocal(ctx, bin)
}

// StartContainer starts a containerised server, used when there are no local binaries
// (the image: $RESTAGE_TEST_PG_IMAGE, else pgtest.DefaultImage). Stop stops it.
var StartContainer = func(ctx context.Context) (*pgtest.Server, error) {
	return pgtest.StartContainer(ctx, pgtest.ContainerOptions{})
}

// Close stops the service, the servers and the mail server. The folder is left to the caller.
func (w *World) Close() {
	if w.Pidfile != "" {
		stopPidfile(w.Pidfile)
	}
	if w.Exp != nil {
		stopPidfile(w.Exp.Pidfile)
	}
	if w.Mail != nil {
		_ = w.Mail.Close()
	}
	if w.Staging != nil {
		_ = w.Staging.Stop()
	}
	if w.Production != nil {
		_ = w.Production.Stop()
	}
	w.closePhysical()
}

func (w *World) exec(ctx context.Context, srv *pgtest.Server, db, sql string) error {
	conn, err := pgx.Connect(ctx, srv.DSN(db))
	if err != nil {
		return err
	}
	defer conn.Close(ctx)
	_, err = conn.Exec(ctx, sql)
	return err
}

func writeMigrations(dir string, upto int) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	for i, m := range migrations {
		if i >= upto {
			break
		}
		if err := os.WriteFile(filepath.Join(dir, m.name), []byte(m.up+"\n"), 0o644); err != nil {
			return err
		}
		down := strings.Replace(m.name, ".up.", ".down.", 1)
		if err := os.WriteFile(filepath.Join(dir, down), []byte(m.down+"\n"), 0o644); err != nil {
			return err
		}
	}
	return nil
}

func (w *World) makeProduction(ctx context.Context) error {
	w.log.Info("creating the production database", "database", w.ProdDB, "bugs", w.opts.Bugs)
	if err := w.exec(ctx, w.Production, "postgres", "CREATE DATABASE "+w.ProdDB); err != nil {
		return err
	}
	conn, err := pgx.Connect(ctx, w.Production.DSN("postgres"))
	if err != nil {
		return err
	}
	var id int64
	err = conn.QueryRow(ctx, "SELECT system_identifier FROM pg_control_system()").Scan(&id)
	conn.Close(ctx)
	if err != nil {
		return err
	}
	w.ProdID = uint64(id)
	dir := filepath.Join(w.Dir, "production", "migrations")
	if err := writeMigrations(dir, ProductionPatch); err != nil {
		return err
	}
	up, err := schema.New(schema.Config{Logger: w.log})
	if err != nil {
		return err
	}
	if _, err := up.Upgrade(ctx, schema.Target{DSN: w.Production.DSN(w.ProdDB), Dir: dir}); err != nil {
		return fmt.Errorf("production schema: %w", err)
	}
	return w.exec(ctx, w.Production, w.ProdDB, fmt.Sprintf(productionData, w.opts.People, w.opts.Bugs))
}

// Backup takes a backup of the production database, as production's nightly job does.
func (w *World) Backup(ctx context.Context) (*dbrestore.Backup, error) {
	if w.Phys != nil && w.opts.BaseBackup {
		w.log.Info("backing up production with pg_basebackup", "dir", w.BackupDir)
		_, err := physical.BaseBackup(ctx, physical.BaseBackupOptions{DSN: w.Production.DSN("postgres"), Dir: w.BackupDir, Keep: 2, Logger: w.log})
		return nil, err
	}
	if w.Phys != nil {
		w.log.Info("backing up production with pgBackRest", "repo", w.Phys.Repo)
		return nil, w.Phys.Backup(ctx, "full")
	}
	w.log.Info("backing up production", "dir", w.BackupDir)
	return dbrestore.Dump(ctx, dbrestore.Config{Logger: w.log}, dbrestore.DumpOptions{
		DSN: w.Production.DSN(w.ProdDB), Dir: w.BackupDir, Counts: true})
}

func (w *World) makeCode() error {
	w.log.Info("writing the code tree", "dir", w.Source)
	if err := writeMigrations(filepath.Join(w.Source, "migrations"), CodePatch); err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Join(w.Source, "bin"), 0o755); err != nil {
		return err
	}
	if err := copyFile(w.opts.App[0], filepath.Join(w.Source, "bin", "app"), 0o755); err != nil {
		return fmt.Errorf("install the app: %w", err)
	}
	files := map[string]string{
		"robots.txt":           RobotsCode,
		"README":               "The bug tracker.\n",
		".git/HEAD":            "ref: refs/heads/main\n", // excluded from releases
		"lib/bugs/__init__.py": "",
	}
	for i := range 200 {
		files[fmt.Sprintf("lib/bugs/module%03d.py", i)] = fmt.Sprintf("# module %d\n\ndef handler_%d(request):\n    return %d\n", i, i, i)
		files[fmt.Sprintf("templates/page%03d.html", i)] = fmt.Sprintf("<html><body>Page %d</body></html>\n", i)
	}
	for name, text := range files {
		p := filepath.Join(w.Source, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			return err
		}
		if err := os.WriteFile(p, []byte(text), 0o644); err != nil {
			return err
		}
	}
	if err := os.WriteFile(filepath.Join(w.Dir, "robots-staging.txt"), []byte(RobotsStaging), 0o644); err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(w.Dir, "sanitize.sql"), []byte(SanitizeSQL), 0o644)
}

func copyFile(from, to string, mode os.FileMode) error {
	in, err := os.Open(from)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.OpenFile(to, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, mode)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}

func tomlList(items []string) string {
	q := make([]string, len(items))
	for i, s := range items {
		q[i] = strconv.Quote(s)
	}
	return "[" + strings.Join(q, ", ") + "]"
}

func (w *World) writeConfig() error {
	port, err := testutil.FreePort()
	if err != nil {
		return err
	}
	w.AppURL = "http://127.0.0.1:" + strconv.Itoa(port)
	command := w.appCommand(w.Current, w.AppURL, w.Staging.DSN(w.StagingDB))
	wait := w.opts.BackupWait
	if wait == 0 {
		wait = 10 * time.Second
	}
	postRestore := `post_restore = ["sanitize.sql"]`
	if w.opts.Mask {
		postRestore = "# post_restore: none; [mask] masks the personal data while it loads"
	}
	if w.Phys != nil {
		return w.writePhysicalConfig(command, wait, postRestore)
	}
	strategy := w.opts.Strategy
	if strategy == "" {
		strategy = "swap"
	}
	text := fmt.Sprintf(`# The demo's staging environment (made by stagingtest).
environment = "staging"
lock_file   = "run/staging.lock"
state_dir   = "state"

[backup]
dir      = %q
database = %q
wait     = %q
max_age  = "20h"
poll     = "1s"

[database]
admin_dsn    = %q
name         = %q
strategy     = %q
jobs         = 2
protect      = [%q, "bugs_experimental"]
%s
clones       = %s
`, backupsDir, w.ProdDB, wait.String(), w.Staging.AdminDSN(), w.StagingDB, strategy, w.ProdDB, postRestore,
		tomlList(w.opts.Clones))
	return w.writeStagingConfig(text, command)
}

// writeStagingConfig writes staging.toml: head (the environment's keys, [backup],
// [database] and the like), then the code, schema, service and notify sections every
// world's staging shares, then [mask] with Options.Mask.
func (w *World) writeStagingConfig(head string, command []string) error {
	text := head + "\n" + codeFromTree("staging") + "\n" +
		serviceSection(command, "run/app.pid", w.AppURL) + "stop_timeout   = \"10s\"\n\n" +
		w.notifySection("staging-rebuild", "staging@example.org", "error-reports@example.org")
	if w.opts.Mask {
		text += "\n" + MaskSection
	}
	w.ConfigPath = filepath.Join(w.Dir, "staging.toml")
	return os.WriteFile(w.ConfigPath, []byte(text), 0o644)
}

// appCommand is the command line of the app of the release at current: it listens at
// appURL's host and port and reads the database at dsn.
func (w *World) appCommand(current, appURL, dsn string) []string {
	command := append([]string{filepath.Join(current, "bin", "app")}, w.opts.App[1:]...)
	return append(command, "-listen", strings.TrimPrefix(appURL, "http://"), "-dsn", dsn)
}

// codeFromTree is the [code] and [schema] sections of an environment that deploys the
// world's code tree into the folder dir (staging, experimental), with staging's
// robots.txt.
func codeFromTree(dir string) string {
	return fmt.Sprintf(`[code]
source   = "build/bugs"
releases = "%[1]s/releases"
current  = "%[1]s/current"
keep     = 3
exclude  = [".git"]
[code.overlay]
"robots.txt" = "robots-staging.txt"

[schema]
migrations = "migrations"
`, dir)
}

// serviceSection is the [service] section that runs the app with command, writing its
// pid to pidfile and healthy when appURL's /+health says so.
func serviceSection(command []string, pidfile, appURL string) string {
	return fmt.Sprintf(`[service]
type           = "process"
command        = %s
pidfile        = %q
health_url     = %q
health_timeout = "30s"
`, tomlList(command), pidfile, appURL+"/+health")
}

// notifySection is the [notify] section that mails the reports under topic (none when
// empty) from from to to, through the world's SMTP server.
func (w *World) notifySection(topic, from, to string) string {
	text := "[notify]\n"
	if topic != "" {
		text += fmt.Sprintf("topic = %q\n", topic)
	}
	return text + fmt.Sprintf(`[notify.email]
smtp = %q
from = %q
to   = [%q]
tls  = "none"
`, w.Mail.Addr, from, to)
}

// newEnv lays out the second environment name: its folders below the world's folder
// name, a free port for its app, its database db on srv; command runs its app.
func (w *World) newEnv(name, db string, srv *pgtest.Server) (e *Env, command []string, err error) {
	port, err := testutil.FreePort()
	if err != nil {
		return nil, nil, err
	}
	root := filepath.Join(w.Dir, name)
	e = &Env{
		ConfigPath: filepath.Join(w.Dir, name+".toml"), DB: db,
		Releases: filepath.Join(root, "releases"), Current: filepath.Join(root, "current"),
		StateDir: filepath.Join(root, "state"), LockFile: filepath.Join(root, "run", name+".lock"),
		Pidfile: filepath.Join(root, "run", "app.pid"), AppURL: "http://127.0.0.1:" + strconv.Itoa(port),
	}
	if err := os.MkdirAll(e.Releases, 0o755); err != nil {
		return nil, nil, err
	}
	if err := os.MkdirAll(filepath.Dir(e.Pidfile), 0o700); err != nil {
		return nil, nil, err
	}
	return e, w.appCommand(e.Current, e.AppURL, srv.DSN(db)), nil
}

// Env is a second environment of a World (experimental): deploys only, sharing the
// staging server.
type Env struct {
	ConfigPath string
	DB         string
	Releases   string
	Current    string
	StateDir   string
	LockFile   string
	Pidfile    string
	AppURL     string
}

func (w *World) writeExperimental() error {
	e, command, err := w.newEnv("experimental", "bugs_experimental", w.Staging)
	if err != nil {
		return err
	}
	text := fmt.Sprintf(`# The experimental environment (made by stagingtest): bleeding-edge code on a
# database cloned from the nightly restore; deploys only, on staging's server.
environment = "experimental"
lock_file   = "experimental/run/experimental.lock"
state_dir   = "experimental/state"

[database]
admin_dsn = %q
name      = %q
protect   = [%q, %q, %q]
production_ids = ["%d"]   # the production server: every drop and rename refuses it

`, w.Staging.AdminDSN(), e.DB, w.ProdDB, w.StagingDB, w.StagingDB+"_next", w.ProdID) +
		codeFromTree("experimental") + "\n" +
		serviceSection(command, "experimental/run/app.pid", e.AppURL) + "\n" +
		w.notifySection("experimental-deploy", "experimental@example.org", "error-reports@example.org")
	w.Exp = e
	return os.WriteFile(e.ConfigPath, []byte(text), 0o644)
}
