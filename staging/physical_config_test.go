package staging

import (
	"errors"
	"strings"
	"testing"

	"github.com/restage/restage/dbrestore/mask"
)

// physicalSample is sampleConfig with strategy physical: no admin_dsn, [backup] from a
// pgBackRest stanza, [cluster].
var physicalSample = strings.NewReplacer(
	`dir      = "/srv/backups"`, "type     = \"pgbackrest\"\nstanza   = \"main\"\nconfig   = \"/etc/pgbackrest/pgbackrest.conf\"\ndelta    = true",
	`admin_dsn    = "postgres://postgres:secret@staging-db:5432/postgres"`, `production_ids = ["7312345678901234567"]`,
	`strategy     = "swap"`, `strategy     = "physical"`,
	"[code]\n", "[cluster]\ndir      = \"pg\"\nport     = 5433\nbin_dir  = \"/usr/lib/postgresql/15/bin\"\nsettings = { shared_buffers = \"1GB\" }\nkeep     = [\"reports\"]\n\n[code]\n",
).Replace(sampleConfig)

func TestLoadPhysicalConfig(t *testing.T) {
	c, err := LoadEnvironment(writeConfig(t, physicalSample))
	if err != nil {
		t.Fatal(err)
	}
	if c.Cluster == nil || c.Cluster.Port != 5433 || c.Backup.Stanza != "main" || c.Cluster.Settings["shared_buffers"] != "1GB" || *c.Backup.Delta != true {
		t.Fatalf("%+v %+v", c.Cluster, c.Backup)
	}
	if err := c.RequireBackups(); err != nil {
		t.Fatal(err)
	}
}

func TestPhysicalConfigErrorsNameTheKey(t *testing.T) {
	for _, tc := range []struct{ edit, want string }{
		{`s/^stanza   = "main"//`, `missing required key backup.stanza`},
		{`s/^port     = 5433//`, `cluster.port 0`},
		{`s/dir      = "pg"//`, `missing required key cluster.dir`},
		{`s/shared_buffers = "1GB"/archive_command = "true"/`, `cluster.settings.archive_command`},
		{`s/shared_buffers = "1GB"/port = "5432"/`, `cluster.settings.port`},
		{`s/type     = "pgbackrest"/type = "barman"/`, `backup.type "barman"`},
		{`s/strategy     = "physical"/strategy = "swap"/`, `backup.type "pgbackrest" needs database.strategy`},
		{`s/keep     = ["reports"]/keep = ["launchpad_staging"]/`, `cluster.keep`},
		{`s/port     = 5433/port = 5433\nside_port = 5433/`, `cluster.side_port`},
		{`s/port     = 5433/port = 5433\ncarry = ["reports"]/`, `cluster.carry: "reports" is in cluster.keep too`},
		{`s/port     = 5433/port = 5433\ncarry = ["launchpad_staging"]/`, `cluster.carry: "launchpad_staging" cannot`},
		{`s/port     = 5433/port = 5433\nwal = 1/`, `unknown key cluster.wal`},
		{`s/port     = 5433/port = 5433\npasswords = "wipe"/`, `cluster.passwords "wipe": want "keep" or "clear"`},
		{`s/delta    = true/delta = true\ninfo_timeout = "soon"/`, `backup.info_timeout`},
		{`s/delta    = true/delta = true\nprocess_max = -2/`, `backup.process_max -2: want 1 or more`},
		{`s/^environment = "staging"/environment = "staging"\nrole = "experimental"/`, `physical rebuilds are for role staging`},
		{`s/delta    = true/delta = false/`, ``}, // valid; with seed = true it is not:
	} {
		if tc.want == "" {
			text := sed(t, sed(t, physicalSample, tc.edit), `s/port     = 5433/port = 5433\nseed = true/`)
			if _, err := LoadEnvironment(writeConfig(t, text)); !errors.Is(err, ErrConfig) || !strings.Contains(err.Error(), "cluster.seed") {
				t.Errorf("seed without delta: %v", err)
			}
			continue
		}
		_, err := LoadEnvironment(writeConfig(t, sed(t, physicalSample, tc.edit)))
		if !errors.Is(err, ErrConfig) || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: err = %v, want one naming %q", tc.edit, err, tc.want)
		}
	}
	// A base backup folder instead of pgBackRest.
	withDelta := sed(t, sed(t, sed(t, physicalSample, `s/type     = "pgbackrest"/type = "basebackup"\ndir = "backups"/`), `s/^stanza   = "main"//`), `s/^config   = .*//`)
	if _, err := LoadEnvironment(writeConfig(t, withDelta)); err == nil || !strings.Contains(err.Error(), "backup.process_max are pgBackRest's") {
		t.Errorf("basebackup with delta: %v", err)
	}
	base := sed(t, withDelta, `s/^delta    = true//`)
	if c, err := LoadEnvironment(writeConfig(t, base)); err != nil || c.Backup.Type != "basebackup" {
		t.Errorf("basebackup: %v", err)
	}
	if _, err := LoadEnvironment(writeConfig(t, sed(t, base, `s/^dir = "backups"//`))); err == nil || !strings.Contains(err.Error(), "missing required key backup.dir") {
		t.Errorf("basebackup without dir: %v", err)
	}
	// [mask] masks the restored cluster with SQL.
	if _, err := LoadEnvironment(writeConfig(t, physicalSample+"\n[mask]\nkey_env = \"K\"\n[mask.columns]\n\"public.person.email\" = \"email\"\n")); err != nil {
		t.Errorf("mask with physical: %v", err)
	}
	// backup.delta_checksums is strategy physical's.
	if c, err := LoadEnvironment(writeConfig(t, sed(t, physicalSample, `s/delta    = true/delta = true\ndelta_checksums = true/`))); err != nil || !c.Backup.DeltaChecksums {
		t.Errorf("delta_checksums: %v", err)
	}
	if _, err := LoadEnvironment(writeConfig(t, sed(t, sampleConfig, `s/^max_age  = .*/max_age = "20h"\ndelta_checksums = true/`))); !errors.Is(err, ErrConfig) || !strings.Contains(err.Error(), "backup.delta_checksums") {
		t.Errorf("delta_checksums with swap: %v", err)
	}
	if _, err := LoadEnvironment(writeConfig(t, sed(t, sampleConfig, `s/^max_age  = .*/max_age = "20h"\nsync_once = true/`))); !errors.Is(err, ErrConfig) || !strings.Contains(err.Error(), "backup.sync_once") {
		t.Errorf("sync_once with swap: %v", err)
	}
	if _, err := LoadEnvironment(writeConfig(t, sed(t, sampleConfig, `s/^max_age  = .*/max_age = "20h"\nprocess_max = 4/`))); !errors.Is(err, ErrConfig) || !strings.Contains(err.Error(), "backup.process_max") {
		t.Errorf("process_max with swap: %v", err)
	}
	if c, err := LoadEnvironment(writeConfig(t, sed(t, physicalSample, `s/delta    = true/delta = true\nprocess_max = 4/`))); err != nil || c.Backup.ProcessMax != 4 {
		t.Errorf("process_max: %v", err)
	}
	// [cluster] needs strategy physical.
	_, err := LoadEnvironment(writeConfig(t, sampleConfig+"\n[cluster]\ndir = \"/srv/pg\"\nport = 5433\n"))
	if !errors.Is(err, ErrConfig) || !strings.Contains(err.Error(), "cluster: the [cluster] section needs") {
		t.Errorf("cluster with swap: %v", err)
	}
}

// [cluster] seed: on by default, off by default with [mask] or post-restore SQL that
// masks (post_restore_rewrite not false): the copy would hold production's files
// unmasked until the next rebuild; as set when set.
func TestClusterSeedDefault(t *testing.T) {
	on, off := true, false
	masked := &mask.Config{}
	sanitize := []string{"sanitize.sql"}
	for _, tc := range []struct {
		seed        *bool
		mask        *mask.Config
		postRestore []string
		rewrite     *bool
		want        bool
	}{
		{nil, nil, nil, nil, true}, {nil, masked, nil, nil, false}, {&on, masked, nil, nil, true}, {&off, nil, nil, nil, false},
		{nil, nil, sanitize, nil, false}, {nil, nil, sanitize, &on, false}, {nil, nil, sanitize, &off, true}, {&on, nil, sanitize, nil, true},
	} {
		c := &EnvironmentConfig{Cluster: &ClusterSection{Seed: tc.seed}, Mask: tc.mask,
			Database: DatabaseSection{PostRestore: tc.postRestore, PostRestoreRewrite: tc.rewrite}}
		if got := c.seed(); got != tc.want {
			t.Errorf("seed %v, mask %v, post_restore %v, rewrite %v: %v, want %v", tc.seed, tc.mask != nil, tc.postRestore, tc.rewrite, got, tc.want)
		}
	}
}

// A [cluster] user that does not exist, or root, is a config error naming cluster.user
// (it said "backup: physical: the user to run PostgreSQL and the backup tool as: user:
// unknown user ...").
func TestClusterUserErrorNamesTheKey(t *testing.T) {
	for _, u := range []string{"restage-no-such-user", "root"} {
		c, err := LoadEnvironment(writeConfig(t, sed(t, physicalSample, `s/port     = 5433/port = 5433\nuser = "`+u+`"/`)))
		if err != nil {
			t.Fatal(err)
		}
		_, err = c.physical(nil)
		if !errors.Is(err, ErrConfig) || !strings.Contains(err.Error(), `cluster.user "`+u+`"`) {
			t.Errorf("user %s: err = %v, want a config error naming cluster.user", u, err)
		}
	}
}
