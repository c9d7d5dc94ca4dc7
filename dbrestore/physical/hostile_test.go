package physical_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/restage/restage/dbrestore/physical"
	"github.com/restage/restage/dbrestore/physical/physicaltest"
	"github.com/restage/restage/internal/testutil"
)

// The promises of a physical rebuild tried the way a careless operator or a hostile
// file would break them: configuration files that the backup brings or that a setting
// includes, a data directory replaced by a link, pgBackRest options in its own config.

// asPostgres runs argv as the postgres user (PostgreSQL's programs refuse root) and
// returns its output and error.
func asPostgres(t *testing.T, argv ...string) (string, error) {
	t.Helper()
	cmd := exec.Command(argv[0], argv[1:]...)
	if os.Geteuid() == 0 {
		u, err := user.Lookup("postgres")
		if err != nil {
			t.Fatal(err)
		}
		uid, _ := strconv.Atoi(u.Uid)
		gid, _ := strconv.Atoi(u.Gid)
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}}
	}
	cmd.Dir = "/"
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// foreignCluster makes a cluster restage did not create, running unless stopped, and
// returns its data directory.
func foreignCluster(t *testing.T, bin string, running bool) string {
	t.Helper()
	d, err := os.MkdirTemp("", "restage-foreign-")
	if err != nil {
		t.Fatal(err)
	}
	data := filepath.Join(d, "data")
	t.Cleanup(func() {
		_, _ = asPostgres(t, filepath.Join(bin, "pg_ctl"), "stop", "-D", data, "-m", "immediate", "-s")
		os.RemoveAll(d)
	})
	chownPostgres(t, d)
	if out, err := asPostgres(t, filepath.Join(bin, "initdb"), "-D", data, "-U", "postgres", "--auth=trust", "--no-sync"); err != nil {
		t.Fatalf("initdb: %v\n%s", err, out)
	}
	port, err := testutil.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	appendFile(t, filepath.Join(data, "postgresql.conf"), "port = "+strconv.Itoa(port)+"\nunix_socket_directories = '"+d+"'\nfsync = off\nlisten_addresses = ''\n")
	appendFile(t, filepath.Join(data, "FOREIGN"), "not restage's\n")
	chownPostgres(t, d)
	if running {
		if out, err := asPostgres(t, filepath.Join(bin, "pg_ctl"), "start", "-D", data, "-l", filepath.Join(d, "log"), "-w", "-s"); err != nil {
			t.Fatalf("start the foreign cluster: %v\n%s", err, out)
		}
	}
	return data
}

func chownPostgres(t *testing.T, path string) {
	t.Helper()
	if os.Geteuid() != 0 {
		return
	}
	u, err := user.Lookup("postgres")
	if err != nil {
		t.Fatal(err)
	}
	uid, _ := strconv.Atoi(u.Uid)
	gid, _ := strconv.Atoi(u.Gid)
	_ = filepath.Walk(path, func(p string, _ os.FileInfo, _ error) error { return os.Lchown(p, uid, gid) })
}

func appendFile(t *testing.T, path, text string) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_APPEND|os.O_WRONLY|os.O_CREATE, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.WriteString(text); err != nil {
		t.Fatal(err)
	}
}

// restored restores the world's newest backup into its idle slot.
func (w *world) restored(t *testing.T) (*physical.BackupSet, *physical.Slot) {
	t.Helper()
	ctx := context.Background()
	set, err := w.src.Latest(ctx)
	if err != nil {
		t.Fatal(err)
	}
	slot, err := w.cl.Restore(ctx, w.src, set, true)
	if err != nil {
		t.Fatal(err)
	}
	return set, slot
}

// sideOfNewBackup takes a full backup of production, restores it into the world's idle
// slot and starts that slot on the side port.
func (w *world) sideOfNewBackup(t *testing.T) *physical.Slot {
	t.Helper()
	ctx := context.Background()
	if err := w.prod.Backup(ctx, "full"); err != nil {
		t.Fatal(err)
	}
	_, slot := w.restored(t)
	if err := w.cl.StartSide(ctx, slot); err != nil {
		t.Fatal(err)
	}
	return slot
}

// running reports whether a server runs from data (pg_ctl status).
func running(t *testing.T, bin, data string) bool {
	t.Helper()
	_, err := asPostgres(t, filepath.Join(bin, "pg_ctl"), "status", "-D", data)
	return err == nil
}

func setting(t *testing.T, cl *physical.Clusters, s *physical.Slot, name string) string {
	t.Helper()
	ctx := context.Background()
	conn, err := cl.Conn(ctx, s, "postgres", false)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	var v string
	if err := conn.QueryRow(ctx, "SELECT current_setting($1)", name).Scan(&v); err != nil {
		t.Fatal(err)
	}
	return v
}

// A file that the restored cluster's own configuration includes (production's
// postgresql.conf may include one, and the file may exist on staging) cannot turn
// archiving back on, nor move the server: restage's settings are on its command line.
// Production's repository receives nothing.
func TestIncludedSettingsCannotArchiveIntoProduction(t *testing.T) {
	w := newWorld(t, true)
	ctx := context.Background()
	evilDir, err := os.MkdirTemp("", "restage-include-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(evilDir) })
	if err := os.Chmod(evilDir, 0o755); err != nil {
		t.Fatal(err)
	}
	_, slot := w.restored(t)
	evil := filepath.Join(evilDir, "archive.conf")
	appendFile(t, evil, "archive_mode = on\narchive_command = 'pgbackrest --config="+w.prod.Config+" --stanza="+physicaltest.Stanza+
		" --pg1-path="+slot.Data+" archive-push %p'\nport = 1\nunix_socket_directories = '"+evilDir+"'\n")
	appendFile(t, filepath.Join(slot.Data, "postgresql.conf"), "include = '"+evil+"'\n")
	before, err := w.prod.ArchiveListing()
	if err != nil {
		t.Fatal(err)
	}
	if err := w.cl.StartSide(ctx, slot); err != nil {
		t.Fatal(err)
	}
	if _, err := w.cl.Neutralize(ctx, slot, physical.NeutralizeOptions{From: "shop", To: "shop_staging"}); err != nil {
		t.Fatalf("Neutralize: %v", err)
	}
	if v := setting(t, w.cl, slot, "archive_mode"); v != "off" {
		t.Errorf("archive_mode = %s on the restored cluster", v)
	}
	if err := w.cl.Stop(ctx, slot); err != nil {
		t.Fatal(err)
	}
	after, err := w.prod.ArchiveListing()
	if err != nil {
		t.Fatal(err)
	}
	if strings.Join(after, "\n") != strings.Join(before, "\n") {
		t.Fatalf("production's WAL archive changed:\nbefore:\n%s\nafter:\n%s", strings.Join(before, "\n"), strings.Join(after, "\n"))
	}
}

// A data_directory line in the slot's configuration (the backup may bring one) does not
// make restage start another cluster: the server runs from the slot's data directory.
func TestDataDirectoryLineCannotMoveTheServer(t *testing.T) {
	bin := physicaltest.Require(t)
	w := newWorld(t, true)
	ctx := context.Background()
	_, slot := w.restored(t)
	foreign := foreignCluster(t, bin, false)
	appendFile(t, filepath.Join(slot.Data, "postgresql.conf"), "data_directory = '"+foreign+"'\n")
	if err := w.cl.StartSide(ctx, slot); err != nil {
		t.Fatal(err)
	}
	if running(t, bin, foreign) {
		t.Fatal("restage started a cluster it did not create")
	}
	if v := setting(t, w.cl, slot, "data_directory"); v != slot.Data {
		t.Fatalf("the slot's server runs from %s", v)
	}
}

// A slot whose data directory was replaced by a link to another cluster is not
// restage's: the clean step does not stop that cluster, and the next restore refuses
// it rather than write production's backup over it.
func TestLinkedDataDirectoryIsNotOurs(t *testing.T) {
	bin := physicaltest.Require(t)
	w := newWorld(t, true)
	ctx := context.Background()
	set, slot := w.restored(t)
	foreign := foreignCluster(t, bin, true)
	if err := os.RemoveAll(slot.Data); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(foreign, slot.Data); err != nil {
		t.Fatal(err)
	}
	_, err := w.cl.Repair(ctx)
	if !running(t, bin, foreign) {
		t.Fatalf("the clean step stopped a cluster restage did not create (err %v)", err)
	}
	_, err = w.cl.Restore(ctx, w.src, set, true)
	if !errors.Is(err, physical.ErrNotOurs) || !strings.Contains(err.Error(), "symbolic link") {
		t.Fatalf("restore into a linked data directory: %v", err)
	}
	if !running(t, bin, foreign) {
		t.Fatal("the restore stopped a cluster restage did not create")
	}
	if _, err := os.Stat(filepath.Join(foreign, "FOREIGN")); err != nil {
		t.Fatalf("the foreign data directory was overwritten: %v", err)
	}
}

// A tablespace-map (or link-map, link-all) in pgBackRest's own config does not put a
// restored tablespace on production's path: restage's restore resets them, and the
// tablespace stays in the slot. Production's tablespace is untouched by what staging
// does.
func TestConfigTablespaceMapIsIgnored(t *testing.T) {
	bin := physicaltest.Require(t)
	ctx := context.Background()
	prod, ts := productionWithTablespace(t)
	fi, err := os.Stat(prod.Dir)
	if err != nil {
		t.Fatal(err)
	}
	st := fi.Sys().(*syscall.Stat_t)
	if err := prod.Backup(ctx, "full"); err != nil {
		t.Fatal(err)
	}
	orig, err := os.ReadFile(prod.Config)
	if err != nil {
		t.Fatal(err)
	}
	conf := prod.Config + ".staging"
	hostile := string(orig) + "\n[global:restore]\ntablespace-map=ts=" + ts + "\nlink-all=y\n"
	if err := os.WriteFile(conf, []byte(hostile), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Chown(conf, int(st.Uid), int(st.Gid)); err != nil {
		t.Fatal(err)
	}
	plain, err := physical.NewPgBackRest(physical.PgBackRestConfig{Stanza: physicaltest.Stanza, Config: prod.Config})
	if err != nil {
		t.Fatal(err)
	}
	src, err := physical.NewPgBackRest(physical.PgBackRestConfig{Stanza: physicaltest.Stanza, Config: conf})
	if err != nil {
		t.Fatal(err)
	}
	cl, _ := newClusters(t, bin, map[string]string{"fsync": "off"})
	before := listing(t, ts)
	set, err := src.Latest(ctx)
	if err != nil {
		t.Fatal(err)
	}
	// A first restore with production's config, then a delta (which writes into folders
	// that hold files) with the hostile one.
	if _, err := cl.Restore(ctx, plain, set, true); err != nil {
		t.Fatal(err)
	}
	slot, err := cl.Restore(ctx, src, set, true)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cl.Stop(context.Background(), slot) })
	links, err := os.ReadDir(filepath.Join(slot.Data, "pg_tblspc"))
	if err != nil || len(links) != 1 {
		t.Fatalf("pg_tblspc: %v, %v", links, err)
	}
	target, err := filepath.EvalSymlinks(filepath.Join(slot.Data, "pg_tblspc", links[0].Name()))
	if err != nil || !strings.HasPrefix(target, slot.Dir+"/") {
		t.Fatalf("the restored tablespace is at %s (%v), outside the slot %s", target, err, slot.Dir)
	}
	if err := cl.StartSide(ctx, slot); err != nil {
		t.Fatal(err)
	}
	if err := cl.Exec(ctx, slot, "shop", "DROP TABLE item; CHECKPOINT"); err != nil {
		t.Fatal(err)
	}
	if after := listing(t, ts); after != before {
		t.Fatalf("production's tablespace changed:\nbefore:\n%s\nafter:\n%s", before, after)
	}
	conn, err := pgx.Connect(ctx, prod.DSN("shop"))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	var n int
	if err := conn.QueryRow(ctx, "SELECT count(*) FROM item").Scan(&n); err != nil || n != 1000 {
		t.Fatalf("production's item: %d rows, %v", n, err)
	}
}

// Production's data directory and port under pgBackRest's older option names (db-path,
// db-port) are production's all the same: a staging cluster there is refused.
func TestOriginUnderOlderNames(t *testing.T) {
	bin := physicaltest.Require(t)
	conf := filepath.Join(t.TempDir(), "pgbackrest.conf")
	text := "[global]\nrepo1-path=/srv/pgbackrest\n\n[main]\ndb-path=/var/lib/postgresql/15/main\ndb-port=5433\n"
	if err := os.WriteFile(conf, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	src, err := physical.NewPgBackRest(physical.PgBackRestConfig{Stanza: "main", Config: conf})
	if err != nil {
		t.Fatal(err)
	}
	if o := src.Origin(); o.Dir != "/var/lib/postgresql/15/main" || o.Port != 5433 {
		t.Fatalf("origin %+v", o)
	}
	for _, cfg := range []physical.ClustersConfig{
		{Environment: "staging", Dir: "/var/lib/postgresql/15/main", Port: 6543, BinDir: bin},
		{Environment: "staging", Dir: "/srv/restage/pg", Port: 5433, BinDir: bin},
	} {
		cl, err := physical.NewClusters(cfg)
		if err != nil {
			t.Fatal(err)
		}
		if err := cl.CheckOrigin(src.Origin()); !errors.Is(err, physical.ErrProduction) {
			t.Errorf("%s port %d: %v", cfg.Dir, cfg.Port, err)
		}
	}
}

// Production's user mappings (postgres_fdw here, pointing at production itself) do not
// survive the neutralize step: SQL on the restored cluster that writes to a foreign
// table (a post-restore file, a migration, the service) cannot reach production.
func TestUserMappingsCannotReachProduction(t *testing.T) {
	w := newWorld(t, false)
	ctx := context.Background()
	for _, db := range []string{"shop", "reports"} {
		if err := w.prod.Exec(ctx, db, fmt.Sprintf(`CREATE EXTENSION postgres_fdw;
CREATE TABLE landed (id int);
CREATE SERVER prodsrv FOREIGN DATA WRAPPER postgres_fdw OPTIONS (host '127.0.0.1', port '%d', dbname '%s');
CREATE USER MAPPING FOR postgres SERVER prodsrv OPTIONS (user 'postgres');
CREATE USER MAPPING FOR PUBLIC SERVER prodsrv OPTIONS (user 'postgres');
CREATE FOREIGN TABLE remote (id int) SERVER prodsrv OPTIONS (table_name 'landed');`, w.prod.Port, db)); err != nil {
			t.Fatal(err)
		}
	}
	slot := w.sideOfNewBackup(t)
	detail, err := w.cl.Neutralize(ctx, slot, physical.NeutralizeOptions{From: "shop", To: "shop_staging", Keep: []string{"reports"}})
	if err != nil {
		t.Fatalf("Neutralize: %v", err)
	}
	for _, want := range []string{"postgres@prodsrv, public@prodsrv in reports", "postgres@prodsrv, public@prodsrv in shop_staging"} {
		if !strings.Contains(detail, want) {
			t.Errorf("the detail does not say %q: %s", want, detail)
		}
	}
	for _, db := range []string{"shop_staging", "reports"} {
		if n := w.count(t, slot, false, db, "SELECT count(*) FROM pg_user_mappings"); n != 0 {
			t.Errorf("%d user mapping(s) left in %s", n, db)
		}
		conn, err := w.cl.Conn(ctx, slot, db, false)
		if err != nil {
			t.Fatal(err)
		}
		_, err = conn.Exec(ctx, "INSERT INTO remote VALUES (42)")
		conn.Close(ctx)
		if err == nil || !strings.Contains(err.Error(), "user mapping not found") {
			t.Errorf("insert into a foreign table in %s: %v, want a missing user mapping", db, err)
		}
	}
	for _, db := range []string{"shop", "reports"} {
		conn, err := pgx.Connect(ctx, w.prod.DSN(db))
		if err != nil {
			t.Fatal(err)
		}
		var n int
		err = conn.QueryRow(ctx, "SELECT count(*) FROM landed").Scan(&n)
		conn.Close(ctx)
		if err != nil || n != 0 {
			t.Fatalf("production's %s.landed: %d row(s), %v", db, n, err)
		}
	}
}

// Production's configuration (or a file it includes, or pgBackRest's recovery-option)
// may name a recovery_end_command: run at the end of the restored cluster's recovery on
// staging, a cleanup of production's WAL archive (pg_archivecleanup on a shared folder)
// would delete what production's backups need. restage pins it empty on the command
// line, with archive_cleanup_command.
func TestRecoveryCommandsFromTheBackupDoNotRun(t *testing.T) {
	w := newWorld(t, true)
	ctx := context.Background()
	marks, err := os.MkdirTemp("", "restage-recovery-end-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(marks) })
	if err := os.Chmod(marks, 0o777); err != nil {
		t.Fatal(err)
	}
	_, slot := w.restored(t)
	for _, f := range []string{"postgresql.conf", "postgresql.auto.conf"} {
		appendFile(t, filepath.Join(slot.Data, f), "recovery_end_command = 'touch "+filepath.Join(marks, f)+"'\n"+
			"archive_cleanup_command = 'touch "+filepath.Join(marks, f+".cleanup")+"'\n")
	}
	if err := w.cl.StartSide(ctx, slot); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"recovery_end_command", "archive_cleanup_command"} {
		if v := setting(t, w.cl, slot, name); v != "" {
			t.Errorf("%s = %q on the restored cluster", name, v)
		}
	}
	if err := w.cl.Stop(ctx, slot); err != nil {
		t.Fatal(err)
	}
	ran, err := os.ReadDir(marks)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range ran {
		t.Errorf("a command of the backup's configuration ran on staging (it wrote %s)", e.Name())
	}
}

// Production's pg_cron jobs (its library in shared_preload_libraries, its jobs in the
// backup's database) never run on staging: not at the restored cluster's first start on
// the side port, before the neutralize step, nor on the live port after the cutover and
// a restart. A job connects to its nodename and nodeport, localhost and production's
// port here, so a job run by staging's launcher would write into production. pg_cron
// itself still works on staging.
func TestCronJobsDoNotRunOnStaging(t *testing.T) {
	bin := physicaltest.Require(t)
	physicaltest.RequireLibrary(t, bin, "pg_cron", "postgresql-%s-cron")
	ctx := context.Background()
	prod := physicaltest.Start(t, physicaltest.Options{Settings: []string{
		"shared_preload_libraries = 'pg_cron'", "cron.database_name = 'shop'"}})
	for _, sql := range []string{"CREATE DATABASE shop", "CREATE DATABASE billing"} {
		if err := prod.Exec(ctx, "postgres", sql); err != nil {
			t.Fatal(err)
		}
	}
	// @reboot jobs run as soon as a launcher starts: production is restarted once they
	// exist, and they run there first (two rows in ran, which the backup holds). (Ending
	// the launcher alone was not enough: in one CI run, no job ran.)
	if err := prod.Exec(ctx, "shop", `CREATE EXTENSION pg_cron;
CREATE TABLE ran (what text, at timestamptz DEFAULT now());
SELECT cron.schedule('@reboot', $$INSERT INTO ran (what) VALUES ('reboot')$$);
SELECT cron.schedule('reboot2', '@reboot', $$INSERT INTO ran (what) VALUES ('reboot2')$$);`); err != nil {
		t.Fatal(err)
	}
	if out, err := asPostgres(t, filepath.Join(bin, "pg_ctl"), "restart", "-D", prod.Data, "-m", "fast", "-w", "-s",
		"-l", filepath.Join(prod.Dir, "server.log")); err != nil {
		t.Fatalf("restart production: %v\n%s", err, out)
	}
	ran := func(dsn string) int {
		t.Helper()
		conn, err := pgx.Connect(ctx, dsn)
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close(ctx)
		var n int
		if err := conn.QueryRow(ctx, "SELECT count(*) FROM ran").Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n
	}
	for i := 0; ran(prod.DSN("shop")) < 2; i++ {
		if i == 300 {
			t.Fatal("production's @reboot jobs did not run")
		}
		time.Sleep(100 * time.Millisecond)
	}
	w := worldOf(t, bin, prod)
	slot := w.sideOfNewBackup(t)
	time.Sleep(2 * time.Second) // a launcher starts its @reboot jobs within a second
	launchers := "SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'pg_cron launcher'"
	if n := w.count(t, slot, false, "postgres", launchers); n != 0 {
		t.Errorf("a pg_cron launcher runs on the restored cluster before the neutralize step")
	}
	if n := ran(prod.DSN("shop")); n != 2 {
		t.Errorf("production's ran: %d rows after the side start, 2 before", n)
	}
	detail, err := w.cl.Neutralize(ctx, slot, physical.NeutralizeOptions{From: "shop", To: "shop_staging"})
	t.Logf("neutralize: %s", detail)
	if err != nil {
		t.Fatalf("Neutralize: %v", err)
	}
	if !strings.Contains(detail, "disabled 2 pg_cron jobs in shop_staging") {
		t.Errorf("the detail does not say the jobs were disabled: %s", detail)
	}
	if n := w.count(t, slot, false, "shop_staging", "SELECT count(*) FROM cron.job WHERE active"); n != 0 {
		t.Errorf("%d active pg_cron job(s) on staging", n)
	}
	// The extension works on the side cluster (a migration may schedule a job).
	if err := w.cl.Exec(ctx, slot, "shop_staging", "SELECT cron.unschedule(cron.schedule('0 0 1 1 *', 'SELECT 1'))"); err != nil {
		t.Errorf("pg_cron on the neutralized cluster: %v", err)
	}
	if _, err := w.cl.Switch(ctx, slot); err != nil {
		t.Fatal(err)
	}
	// A reboot: the live cluster stops, and the next run's clean step starts it again.
	if err := w.cl.Stop(ctx, slot); err != nil {
		t.Fatal(err)
	}
	if _, err := w.cl.Repair(ctx); err != nil {
		t.Fatal(err)
	}
	// The launcher of the live cluster reads shop_staging's (inactive) jobs.
	var n int64
	for range 300 {
		if n = w.count(t, slot, true, "postgres", launchers+" AND datname = 'shop_staging'"); n == 1 {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	if n != 1 {
		t.Errorf("no pg_cron launcher on shop_staging on the live cluster")
	}
	time.Sleep(3 * time.Second) // a launcher starts its @reboot jobs within a second
	if n := ran(prod.DSN("shop")); n != 2 {
		t.Errorf("production's ran: %d rows, 2 before staging ran its jobs", n)
	}
	if n := ran(w.cl.LiveDSN(slot, "shop_staging")); n != 2 {
		t.Errorf("staging's ran: %d rows, the backup's 2", n)
	}
}

// A pglogical subscription of production's (here in shop, its provider production's
// billing) never runs on staging: its apply worker would connect to the provider and
// consume production's slot. Not at the first start on the side port, nor after the
// neutralize step, which disables it without reaching the provider, nor on the live port.
func TestPglogicalSubscriptionsDoNotRunOnStaging(t *testing.T) {
	bin := physicaltest.Require(t)
	physicaltest.RequireLibrary(t, bin, "pglogical", "postgresql-%s-pglogical")
	ctx := context.Background()
	prod := physicaltest.Start(t, physicaltest.Options{Settings: []string{"shared_preload_libraries = 'pglogical'"}})
	for _, sql := range []string{"CREATE DATABASE shop", "CREATE DATABASE billing"} {
		if err := prod.Exec(ctx, "postgres", sql); err != nil {
			t.Fatal(err)
		}
	}
	dsn := func(db string) string {
		return fmt.Sprintf("host=127.0.0.1 port=%d dbname=%s user=postgres", prod.Port, db)
	}
	if err := prod.Exec(ctx, "billing", fmt.Sprintf(`CREATE EXTENSION pglogical;
SELECT pglogical.create_node(node_name := 'provider', dsn := '%s');
CREATE TABLE item (id int PRIMARY KEY);
SELECT pglogical.replication_set_add_table('default', 'item');`, dsn("billing"))); err != nil {
		t.Fatal(err)
	}
	if err := prod.Exec(ctx, "shop", fmt.Sprintf(`CREATE EXTENSION pglogical;
SELECT pglogical.create_node(node_name := 'subscriber', dsn := '%s');
CREATE TABLE item (id int PRIMARY KEY);
SELECT pglogical.create_subscription(subscription_name := 'sub1', provider_dsn := '%s',
	synchronize_structure := false, synchronize_data := false);`, dsn("shop"), dsn("billing"))); err != nil {
		t.Fatal(err)
	}
	// pglogical's supervisor may miss a database whose node is new: restarted, it starts
	// a manager for each.
	if out, err := asPostgres(t, filepath.Join(bin, "pg_ctl"), "restart", "-D", prod.Data, "-m", "fast", "-w", "-s",
		"-l", filepath.Join(prod.Dir, "server.log")); err != nil {
		t.Fatalf("restart production: %v\n%s", err, out)
	}
	conn, err := pgx.Connect(ctx, prod.DSN("postgres"))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	walsenders := func() int {
		t.Helper()
		var n int
		if err := conn.QueryRow(ctx, "SELECT count(*) FROM pg_replication_slots WHERE active").Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n
	}
	for i := 0; walsenders() != 1; i++ {
		if i == 600 {
			b, _ := os.ReadFile(filepath.Join(prod.Dir, "server.log"))
			t.Fatalf("production's subscription does not replicate; its log:\n%s", b)
		}
		time.Sleep(100 * time.Millisecond)
	}
	if err := prod.Backup(ctx, "full"); err != nil {
		t.Fatal(err)
	}
	// Production stops its own subscriber: whoever uses the slot now is staging.
	if err := prod.Exec(ctx, "shop", "SELECT pglogical.alter_subscription_disable('sub1', true)"); err != nil {
		t.Fatal(err)
	}
	for i := 0; walsenders() != 0; i++ {
		if i == 600 {
			t.Fatal("production's subscription still replicates")
		}
		time.Sleep(100 * time.Millisecond)
	}
	quiet := func(when string) {
		t.Helper()
		for range 30 { // pglogical starts an apply worker within a second or two
			if n := walsenders(); n != 0 {
				t.Fatalf("%s: staging uses production's replication slot", when)
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
	w := worldOf(t, bin, prod)
	_, slot := w.restored(t)
	if err := w.cl.StartSide(ctx, slot); err != nil {
		t.Fatal(err)
	}
	quiet("the side start")
	detail, err := w.cl.Neutralize(ctx, slot, physical.NeutralizeOptions{From: "shop", To: "shop_staging", Keep: []string{"billing"}})
	if err != nil {
		t.Fatalf("Neutralize: %v", err)
	}
	if !strings.Contains(detail, "disabled pglogical subscriptions sub1 in shop_staging") {
		t.Errorf("the detail does not say the subscription was disabled: %s", detail)
	}
	quiet("after the neutralize step")
	if _, err := w.cl.Switch(ctx, slot); err != nil {
		t.Fatal(err)
	}
	quiet("on the live port")
	if n := w.count(t, slot, true, "postgres", "SELECT count(*) FROM pg_stat_activity WHERE backend_type LIKE 'pglogical%'"); n == 0 {
		t.Errorf("pglogical does not run on the live cluster")
	}
}

// A physical copy brings production's roles with their password verifiers. An md5
// verifier is all md5 authentication needs, so MD5Roles names the roles that have one,
// and NeutralizeOptions.ClearPasswords removes every role's password.
func TestClearPasswords(t *testing.T) {
	w := newWorld(t, false)
	ctx := context.Background()
	if err := w.prod.Exec(ctx, "postgres", `SET password_encryption = 'md5';
CREATE ROLE legacy LOGIN PASSWORD 'legacy-secret';
SET password_encryption = 'scram-sha-256';
CREATE ROLE "app user" LOGIN PASSWORD 'app-secret';
CREATE ROLE nopass LOGIN;`); err != nil {
		t.Fatal(err)
	}
	slot := w.sideOfNewBackup(t)
	md5, err := w.cl.MD5Roles(ctx, slot)
	if err != nil || strings.Join(md5, ",") != "legacy" {
		t.Fatalf("MD5Roles = %v, %v; want [legacy]", md5, err)
	}
	detail, err := w.cl.Neutralize(ctx, slot, physical.NeutralizeOptions{From: "shop", To: "shop_staging", ClearPasswords: true})
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(detail, "removed the passwords of roles app user, legacy") {
		t.Errorf("detail: %s", detail)
	}
	if n := w.count(t, slot, false, "postgres", "SELECT count(*) FROM pg_authid WHERE rolpassword IS NOT NULL"); n != 0 {
		t.Errorf("%d roles keep a password", n)
	}
	if md5, err := w.cl.MD5Roles(ctx, slot); err != nil || len(md5) != 0 {
		t.Errorf("MD5Roles after clearing = %v, %v", md5, err)
	}
}

// A backup's postgresql.conf may hold production's credentials: a standby's
// primary_conninfo with the replication password, a cloud key in a command. restage
// sets those settings itself; the restored slot's postgresql.conf, and the files it
// includes from the data directory, keep none of their lines, so the values are neither
// on staging's disk nor in pg_file_settings.
func TestConfigCredentialsStayOffStaging(t *testing.T) {
	bin := physicaltest.Require(t)
	prod := physicaltest.Start(t, physicaltest.Options{Settings: []string{
		"primary_conninfo = 'host=127.0.0.1 port=1 user=replicator password=repl-secret-42'",
		"  restore_command   'fetch --key key-secret-43 %f %p'",
		"archive_cleanup_command='clean --key key-secret-44'"}})
	secrets := []string{"repl-secret-42", "key-secret-43", "key-secret-44", "repl-secret-45", "key-secret-46"}
	// Files postgresql.conf includes from the data directory hold them too (read at the
	// next start; the backup copies them as they are).
	if err := os.MkdirAll(filepath.Join(prod.Data, "conf.d", "more"), 0o755); err != nil {
		t.Fatal(err)
	}
	for name, text := range map[string]string{
		"conf.d/replica.conf":      "primary_conninfo='host=127.0.0.1 port=1 user=replicator password=repl-secret-45'\ninclude_if_exists = 'more/archive.conf'\n",
		"conf.d/more/archive.conf": "archive_command = 'push --key key-secret-46 %p'\n",
	} {
		if err := os.WriteFile(filepath.Join(prod.Data, name), []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	f, err := os.OpenFile(filepath.Join(prod.Data, "postgresql.conf"), os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteString("include_dir 'conf.d'   # production's own\n"); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	conf, err := os.ReadFile(filepath.Join(prod.Data, "postgresql.conf"))
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range secrets[:3] {
		if !strings.Contains(string(conf), s) {
			t.Fatalf("production's postgresql.conf lacks %s: the test proves nothing", s)
		}
	}
	w := worldOf(t, bin, prod)
	slot := w.sideOfNewBackup(t)
	err = filepath.WalkDir(slot.Dir, func(p string, d os.DirEntry, err error) error {
		if err != nil || !d.Type().IsRegular() {
			return err
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		for _, s := range secrets {
			if strings.Contains(string(b), s) {
				t.Errorf("%s holds production's %s", p, s)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if n := w.count(t, slot, false, "postgres", "SELECT count(*) FROM pg_file_settings WHERE setting LIKE '%secret%'"); n != 0 {
		t.Errorf("pg_file_settings shows %d of production's credentials", n)
	}
}
