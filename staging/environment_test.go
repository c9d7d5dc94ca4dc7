package staging

import (
	"context"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/restage/restage/codesync"
	"github.com/restage/restage/dbrestore"
	"github.com/restage/restage/internal/testutil"
)

const sampleConfig = `
environment = "staging"
lock_file   = "run/staging.lock"
state_dir   = "state"

[backup]
dir      = "/srv/backups"
database = "launchpad_prod"
wait     = "45m"
max_age  = "20h"

[database]
admin_dsn    = "postgres://postgres:secret@staging-db:5432/postgres"
name         = "launchpad_staging"
strategy     = "swap"
jobs         = 2
protect      = ["launchpad_prod"]
post_restore = ["sanitize.sql"]
clones       = ["launchpad_experimental"]

[code]
source   = "/srv/build/launchpad"
releases = "/srv/staging/releases"
current  = "/srv/staging/current"
keep     = 3
exclude  = [".git"]
[code.overlay]
"robots.txt" = "robots-staging.txt"

[schema]
migrations = "database/migrations"

[service]
type           = "process"
command        = ["/srv/staging/current/bin/app", "-listen", ":8080"]
pidfile        = "/run/restage/app.pid"
health_url     = "http://127.0.0.1:8080/+health"
health_timeout = "60s"

[notify]
topic = "staging-rebuild"
[notify.email]
smtp = "127.0.0.1:25"
from = "staging@example.org"
to   = ["error-reports@example.org"]
`

func writeConfig(t *testing.T, text string) string {
	t.Helper()
	return testutil.WriteTemp(t, "staging.toml", text)
}

func TestLoadEnvironmentDesignSample(t *testing.T) {
	p := writeConfig(t, sampleConfig)
	c, err := LoadEnvironment(p)
	if err != nil {
		t.Fatal(err)
	}
	dir := filepath.Dir(p)
	if c.LockFile != filepath.Join(dir, "run/staging.lock") || c.Database.PostRestore[0] != filepath.Join(dir, "sanitize.sql") ||
		c.Code.Overlay["robots.txt"] != filepath.Join(dir, "robots-staging.txt") {
		t.Fatalf("relative paths not resolved against the config's folder: %+v", c)
	}
	if c.Backup.Wait.Minutes() != 45 || c.Backup.MaxAge.Hours() != 20 || c.Service.HealthTimeout.Seconds() != 60 {
		t.Fatalf("durations: %+v %+v", c.Backup, c.Service)
	}
	if err := c.RequireBackups(); err != nil {
		t.Fatal(err)
	}
}

func TestLoadEnvironmentErrorsNameTheKey(t *testing.T) {
	for _, tc := range []struct{ edit, want string }{
		{`s/wait     = "45m"/wait = "45 minutes"/`, `backup.wait`},
		{`s/keep     = 3/keep = 3\nkepp = 4/`, `unknown key code.kepp`},
		{`s/^name         = "launchpad_staging"//`, `missing required key database.name`},
		{`s/strategy     = "swap"/strategy = "rsync"/`, `database.strategy "rsync"`},
		{`s/type           = "process"/type = "upstart"/`, `service.type "upstart"`},
		{`s/^pidfile .*//`, `missing required key service.pidfile`},
		{`s/^smtp = .*//`, `missing required key notify.email.smtp`},
		{`s/^smtp = .*/smtp = "127.0.0.1:25"\ntls = "starttls"/`, `notify.email.tls "starttls"`},
		{`s/^lock_file .*//`, `missing required key lock_file`},
		{`s/keep     = 3/keep = 3\ncompare = "mtime"/`, `code.compare "mtime"`},
		{`s/keep     = 3/keep = 3\nworkers = -1/`, `code.workers -1`},
		{`s/keep     = 3/keep = 3\nhard_links = "no"/`, `code.hard_links`},
		// A protected or system database as the live name is refused before anything
		// runs, not at the cutover with the service stopped; so is a clone named as it.
		{`s/^name         = "launchpad_staging"/name = "launchpad_prod"/`, `database.name: "launchpad_prod" is listed in database.protect`},
		{`s/^name         = "launchpad_staging"/name = "postgres"/`, `database.name: "postgres" is a system database`},
		{`s/^clones       = .*/clones = ["launchpad_staging"]/`, `database.clones: "launchpad_staging" is database.name itself`},
		// A DSN naming several hosts: the guard checks the one a connection reached,
		// pg_restore would take the next whenever the first did not answer.
		{`s/^admin_dsn .*/admin_dsn = "host=staging-db,prod-db port=5432 user=postgres password=secret dbname=postgres"/`,
			`database.admin_dsn may reach several servers (staging-db:5432, prod-db:5432)`},
		{`s/^name         = "launchpad_staging"/name = "launchpad_staging"\nrestore_dsn = "host=staging-db,prod-db user=app password=secret dbname=postgres"/`,
			`database.restore_dsn may reach several servers (staging-db:5432, prod-db:5432)`},
	} {
		text := sed(t, sampleConfig, tc.edit)
		_, err := LoadEnvironment(writeConfig(t, text))
		if !errors.Is(err, ErrConfig) || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: err = %v, want one naming %q", tc.edit, err, tc.want)
		}
		if err != nil && strings.Contains(err.Error(), "secret") {
			t.Errorf("password in error: %v", err)
		}
	}
}

// Staging protects the experimental database while leaving it a clone: a protected
// clone name is valid (the nightly only makes "<clone>_next").
func TestLoadEnvironmentProtectedClone(t *testing.T) {
	text := sed(t, sampleConfig, `s/^protect      = .*/protect = ["launchpad_prod", "launchpad_experimental"]/`)
	if _, err := LoadEnvironment(writeConfig(t, text)); err != nil {
		t.Fatalf("a clone listed in protect: %v", err)
	}
}

// An experimental config may leave the code to its deploys (experimental -source DIR,
// -git REPO -ref REF); a staging one may not, and Open without a source names the key.
func TestExperimentalCodeSourceFromTheCaller(t *testing.T) {
	noSource := sed(t, sampleConfig, `s/^source   = .*//`)
	if _, err := LoadEnvironment(writeConfig(t, noSource)); !errors.Is(err, ErrConfig) ||
		!strings.Contains(err.Error(), "missing required key code.source") {
		t.Fatalf("a staging config without code.source: %v", err)
	}
	exp := sed(t, noSource, `s/^environment = .*/environment = "experimental"\nrole = "experimental"/`)
	exp = sed(t, exp, `s/^releases = .*/releases = "releases"/`) // beside the config
	exp = sed(t, exp, `s/^dir      = .*/dir = "backups"/`)
	exp = sed(t, exp, `s/^current  = .*/current = "current"/`)
	path := writeConfig(t, exp)
	c, err := LoadEnvironment(path)
	if err != nil {
		t.Fatalf("an experimental config without code.source: %v", err)
	}
	if err := os.WriteFile(filepath.Join(filepath.Dir(path), "robots-staging.txt"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	for _, dir := range []string{c.Code.Releases, c.Backup.Dir} {
		if err := os.Mkdir(dir, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := Open(c, OpenOptions{}); !errors.Is(err, ErrConfig) || !strings.Contains(err.Error(), "missing required key code.source") ||
		!strings.Contains(err.Error(), "-source") {
		t.Fatalf("Open with no source at all: %v", err)
	}
	src, err := codesync.NewDirSource(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	rb, err := Open(c, OpenOptions{Source: src})
	if err != nil {
		t.Fatalf("Open with the caller's source: %v", err)
	}
	rb.Close()
}

// sed applies one s/old/new/ edit (old anchored with ^ matches at a line start).
func sed(t *testing.T, text, edit string) string {
	t.Helper()
	parts := strings.Split(edit, "/")
	if len(parts) != 4 || parts[0] != "s" {
		t.Fatalf("bad edit %q", edit)
	}
	old, repl := parts[1], strings.ReplaceAll(parts[2], `\n`, "\n")
	lines := strings.Split(text, "\n")
	for i, l := range lines {
		if strings.HasPrefix(old, "^") {
			if strings.HasPrefix(l, strings.TrimSuffix(old[1:], ".*")) {
				lines[i] = repl
				return strings.Join(lines, "\n")
			}
			continue
		}
		if strings.Contains(l, old) {
			lines[i] = strings.Replace(l, old, repl, 1)
			return strings.Join(lines, "\n")
		}
	}
	t.Fatalf("edit %q matched nothing", edit)
	return ""
}

func TestCodeKeysReachCodesync(t *testing.T) {
	c, err := LoadEnvironment(writeConfig(t, sampleConfig))
	if err != nil {
		t.Fatal(err)
	}
	if rc := c.releasesConfig(nil); rc.NoHardLinks || rc.Compare != codesync.CompareAuto || rc.Workers != 0 || rc.Sync {
		t.Fatalf("defaults: %+v", rc)
	}
	text := sed(t, sampleConfig, `s/keep     = 3/keep = 3\nhard_links = false\ncompare = "content"\nworkers = 8\nsync = true\nallow_external_symlinks = true/`)
	if c, err = LoadEnvironment(writeConfig(t, text)); err != nil {
		t.Fatal(err)
	}
	rc := c.releasesConfig(nil)
	if !rc.NoHardLinks || rc.Compare != codesync.CompareContent || rc.Workers != 8 || !rc.Sync || !rc.AllowExternalSymlinks {
		t.Fatalf("set: %+v", rc)
	}
}

// A config built in Go goes through the same checks as a file, every problem named by
// its key, and Open keeps the parts' errors for errors.Is.
func TestHandBuiltConfigIsValidatedByOpen(t *testing.T) {
	c := &EnvironmentConfig{Environment: "staging", LockFile: "/run/x.lock", StateDir: t.TempDir(),
		Database: DatabaseSection{AdminDSN: "postgres://postgres@db/postgres", Name: "app", ProductionIDs: []string{"12"}},
		Code:     CodeSection{Source: "/srv/src", Releases: "/srv/releases", Current: "/srv/current", Compare: "bogus"},
		Service:  ServiceSection{Type: "sytemd"}}
	_, err := Open(c, OpenOptions{})
	if !errors.Is(err, ErrConfig) {
		t.Fatalf("err = %v", err)
	}
	for _, want := range []string{`service.type "sytemd"`, `code.compare "bogus"`} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("%q not in %v", want, err)
		}
	}
	if strings.Contains(err.Error(), ": :") {
		t.Errorf("an empty path in %v", err)
	}
}

func TestOpenWrapsThePartsErrors(t *testing.T) {
	shm := "/dev/shm"
	if st, err := os.Stat(shm); err != nil || !st.IsDir() {
		t.Skip("no /dev/shm to put current on another filesystem")
	}
	tmp := t.TempDir()
	current, err := os.MkdirTemp(shm, "restage-current-")
	if err != nil {
		t.Skip(err)
	}
	t.Cleanup(func() { os.RemoveAll(current) })
	if same, _ := sameDevice(tmp, current); same {
		t.Skip("/dev/shm is on the same filesystem as the temporary folder")
	}
	c := &EnvironmentConfig{Environment: "staging", LockFile: filepath.Join(tmp, "x.lock"), StateDir: tmp,
		Database: DatabaseSection{AdminDSN: "postgres://postgres@db/postgres", Name: "app", ProductionIDs: []string{"12"}},
		Code:     CodeSection{Source: tmp, Releases: filepath.Join(tmp, "releases"), Current: filepath.Join(current, "current")},
		Service:  ServiceSection{Type: "systemd", Keys: &SystemdKeys{Unit: "app.service"}}}
	if err := os.Mkdir(c.Code.Releases, 0o755); err != nil {
		t.Fatal(err)
	}
	_, err = Open(c, OpenOptions{})
	if !errors.Is(err, ErrConfig) || !errors.Is(err, codesync.ErrCrossFilesystem) || !strings.Contains(err.Error(), "code") {
		t.Fatalf("err = %v", err)
	}
}

func sameDevice(a, b string) (bool, error) {
	sa, err := os.Stat(a)
	if err != nil {
		return false, err
	}
	sb, err := os.Stat(b)
	if err != nil {
		return false, err
	}
	return sa.Sys().(*syscall.Stat_t).Dev == sb.Sys().(*syscall.Stat_t).Dev, nil
}

// [database] jobs reaches the restore's options, restore_dsn the staging server's.
func TestRestoreKeysReachTheRestore(t *testing.T) {
	tmp := t.TempDir()
	c := &EnvironmentConfig{Environment: "staging", LockFile: filepath.Join(tmp, "x.lock"), StateDir: tmp,
		Database: DatabaseSection{AdminDSN: "postgres://postgres@db/postgres", Name: "app", ProductionIDs: []string{"12"},
			Jobs: 3},
		Code:    CodeSection{Source: tmp, Releases: filepath.Join(tmp, "releases"), Current: filepath.Join(tmp, "current")},
		Service: ServiceSection{Type: "systemd", Keys: &SystemdKeys{Unit: "app.service"}}}
	rb, err := Open(c, OpenOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer rb.Close()
	if o := rb.cfg.Restore; o.Jobs != 3 {
		t.Fatalf("restore options %+v", o)
	}
	if login := rb.cfg.Databases.(*dbrestore.Server).RestoreLogin(); login != "" {
		t.Fatalf("restore login %q without restore_dsn", login)
	}
	c.Database.RestoreDSN = "postgres://restorer:pw@db/postgres"
	rb2, err := Open(c, OpenOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer rb2.Close()
	if login := rb2.cfg.Databases.(*dbrestore.Server).RestoreLogin(); !strings.Contains(login, "restorer:xxxxx@db") {
		t.Fatalf("restore login %q", login)
	}
	// Strategy physical restores no dump: the key is refused there, as in a production config.
	c.Database.Strategy = string(Physical)
	if err := c.Validate(); err == nil || !strings.Contains(err.Error(), "database.restore_dsn") {
		t.Fatalf("restore_dsn with strategy physical: %v", err)
	}
}

// An unknown table is named once, not once per element and key: a cron config given to
// nightly said "unknown key ..., job, job, job.command, job.command, ...".
func TestUnknownKeysNamedOnce(t *testing.T) {
	text := sampleConfig + "\n[[job]]\nname = \"a\"\ncommand = [\"true\"]\n[[job]]\nname = \"b\"\ncommand = [\"true\"]\n[extra]\nx = 1\n"
	_, err := LoadEnvironment(writeConfig(t, text))
	if !errors.Is(err, ErrConfig) || !strings.HasSuffix(err.Error(), ": unknown key extra, job") {
		t.Fatalf("err = %v, want the unknown keys extra and job, each once", err)
	}
}

// A deploy onto an environment whose config says role = "staging" is refused by the
// library, not only by the experimental binary: a branch deployed onto staging would
// bypass the release train. Nothing is reached: the refusal comes before the lock and
// the servers (db does not resolve).
func TestDeployRefusesRoleStaging(t *testing.T) {
	tmp := t.TempDir()
	c := &EnvironmentConfig{Environment: "staging", Role: RoleStaging, LockFile: filepath.Join(tmp, "x.lock"), StateDir: tmp,
		Database: DatabaseSection{AdminDSN: "postgres://postgres@db.invalid/postgres", Name: "app", ProductionIDs: []string{"12"}},
		Code:     CodeSection{Source: tmp, Releases: filepath.Join(tmp, "releases"), Current: filepath.Join(tmp, "current")},
		Service:  ServiceSection{Type: "systemd", Keys: &SystemdKeys{Unit: "app.service"}}}
	rb, err := Open(c, OpenOptions{Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	defer rb.Close()
	rep, err := rb.Deploy(context.Background(), DeployOptions{})
	if !errors.Is(err, ErrRole) || ExitStatus(err) != ExitUsage || rep != nil || !strings.Contains(err.Error(), `role = "staging"`) {
		t.Fatalf("deploy onto staging: report %v, %v", rep, err)
	}
	if _, err := os.Stat(c.LockFile); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("the lock file was made: %v", err)
	}
	// Without a role the config may be experimental's: the deploy goes on (and fails
	// here only at the server, which does not exist).
	c.Role = ""
	rb2, err := Open(c, OpenOptions{Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	defer rb2.Close()
	if _, err := rb2.Deploy(context.Background(), DeployOptions{}); errors.Is(err, ErrRole) {
		t.Fatalf("deploy without a role: %v", err)
	}
}
