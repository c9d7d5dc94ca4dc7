package dbrestore

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/restage/restage/internal/atomicfile"
	"github.com/restage/restage/internal/redact"
)

// DumpOptions are the per-call options of Dump.
type DumpOptions struct {
	// DSN is the database to back up: a postgres:// URL or keyword=value string. Its
	// password reaches pg_dump through PGPASSWORD, never its command line. Required.
	DSN string
	// Dir is the existing folder the dump and manifest are written to. Required.
	Dir string
	// Format is the dump format. "": custom, or directory when Jobs > 1.
	Format Format
	// Jobs is pg_dump -j (directory format only). 0: 1.
	Jobs int
	// Counts records exact per-table row counts, taken in the dump's snapshot, in the
	// manifest, so that a restore can prove it lost nothing.
	Counts bool
	// Keep, when positive, removes this database's complete backups beyond the newest
	// Keep once the new one is in place (see DirCatalog.Prune). 0: keep all.
	Keep int
	// Compress is pg_dump --compress (e.g. "6", "zstd:3" with pg_dump 16+). "": pg_dump's default.
	Compress string
	// Args are extra pg_dump arguments, e.g. "--exclude-table-data=sessions".
	Args []string
	// LockWaitTimeout bounds each wait for a table lock on the source, pg_dump's
	// (--lock-wait-timeout) and the row counts' (lock_timeout): a dump that meets a lock
	// held longer (a migration, VACUUM FULL) fails instead of waiting, which would keep
	// the locks it holds already and so queue DDL, and the traffic behind it, on
	// production. 0: DefaultLockWaitTimeout.
	LockWaitTimeout time.Duration
}

// DefaultLockWaitTimeout is DumpOptions.LockWaitTimeout's default.
const DefaultLockWaitTimeout = 30 * time.Second

func (o *DumpOptions) validate() error {
	if o.DSN == "" {
		return errors.New("dbrestore: DumpOptions.DSN is required")
	}
	if o.Dir == "" {
		return errors.New("dbrestore: DumpOptions.Dir is required")
	}
	if o.Jobs < 0 || o.Keep < 0 || o.LockWaitTimeout < 0 {
		return errors.New("dbrestore: DumpOptions.Jobs, Keep and LockWaitTimeout must not be negative")
	}
	if o.LockWaitTimeout == 0 {
		o.LockWaitTimeout = DefaultLockWaitTimeout
	}
	if o.Jobs == 0 {
		o.Jobs = 1
	}
	switch o.Format {
	case "":
		o.Format = FormatCustom
		if o.Jobs > 1 {
			o.Format = FormatDirectory
		}
	case FormatCustom:
		if o.Jobs > 1 {
			return errors.New("dbrestore: pg_dump -j needs the directory format")
		}
	case FormatDirectory:
	default:
		return fmt.Errorf("dbrestore: unknown dump format %q", o.Format)
	}
	for _, a := range o.Args {
		for _, long := range []string{"--file", "--format", "--jobs", "--snapshot", "--dbname", "--lock-wait-timeout"} {
			if a == long || strings.HasPrefix(a, long+"=") {
				return fmt.Errorf("dbrestore: DumpOptions.Args must not set %s (Dump sets it)", long)
			}
		}
		for _, short := range []string{"-f", "-F", "-j", "-d"} {
			if strings.HasPrefix(a, short) && !strings.HasPrefix(a, "--") {
				return fmt.Errorf("dbrestore: DumpOptions.Args must not set %s (Dump sets it)", short)
			}
		}
	}
	st, err := os.Stat(o.Dir)
	if err != nil {
		return fmt.Errorf("dbrestore: backup folder: %w", err)
	}
	if !st.IsDir() {
		return fmt.Errorf("dbrestore: backup folder %s is not a folder", o.Dir)
	}
	return nil
}

// Dump backs up one database with pg_dump into opts.Dir and writes its Manifest beside it.
// pg_dump runs in a snapshot exported from a REPEATABLE READ transaction that Dump holds
// open meanwhile, so the row counts (opts.Counts) describe exactly the dumped data. Dump
// and manifest are written under ".tmp-" names and renamed into place, the manifest last,
// so a catalog never sees a half-written backup. On failure nothing but the temporary
// files is touched, and those are removed.
func Dump(ctx context.Context, cfg Config, opts DumpOptions) (*Backup, error) {
	if err := opts.validate(); err != nil {
		return nil, err
	}
	cs, err := parseConnString(opts.DSN)
	if err != nil {
		return nil, fmt.Errorf("dbrestore: DumpOptions.DSN: %w", err)
	}
	secret := connPassword(cs)
	b, err := dump(ctx, cfg, opts, cs)
	return b, redact.Error(err, secret)
}

// dump backs up the database cs names: pg_dump in a snapshot this process holds open,
// the row counts in the same snapshot, then the dump read back (checksum, table of
// contents) and published with its manifest.
func dump(ctx context.Context, cfg Config, opts DumpOptions, cs *connString) (*Backup, error) {
	log := cfg.logger()
	pgDump, err := cfg.tool("pg_dump")
	if err != nil {
		return nil, err
	}
	dumpVersion, err := toolVersion(ctx, pgDump)
	if err != nil {
		return nil, fmt.Errorf("dbrestore: pg_dump --version: %w", err)
	}
	start := time.Now()

	snap, err := openSnapshot(ctx, cs, opts.LockWaitTimeout)
	if err != nil {
		return nil, err
	}
	defer snap.close(ctx)
	m := snap.manifest
	m.Format = opts.Format
	m.PgDumpVersion = strings.TrimPrefix(dumpVersion, "pg_dump (PostgreSQL) ")

	files, err := newBackupFiles(opts.Dir, &m)
	if err != nil {
		return nil, err
	}
	defer files.removeTemporaries()
	if err := files.createDump(opts.Format); err != nil {
		return nil, err
	}
	log.Info("dbrestore: dump started", logKeyDatabase, m.Database, logKeyDSN, cs.Redacted(),
		"format", string(opts.Format), "jobs", opts.Jobs, logKeyFile, files.dump)
	counts, err := snap.dump(ctx, pgDump, cs, opts, files.tmpDump)
	if err != nil {
		return nil, err
	}
	snap.close(ctx)
	if err := files.ownerOnly(opts.Format); err != nil {
		return nil, err
	}

	entries, err := readBack(ctx, cfg, &m, files.tmpDump, counts)
	if err != nil {
		return nil, err
	}
	if err := files.publish(m); err != nil {
		return nil, err
	}
	b := &Backup{Path: files.dump, ManifestPath: files.manifest, Manifest: m}
	log.Info("dbrestore: dump complete", logKeyDatabase, m.Database, logKeyFile, files.dump, "bytes", m.Size,
		logKeyObjects, entries, "tables_counted", len(m.RowCounts), logKeyDuration, time.Since(start).Round(time.Millisecond))

	if opts.Keep > 0 {
		cat := &DirCatalog{dir: opts.Dir, cfg: cfg, now: time.Now}
		if _, err := cat.Prune(PruneOptions{Database: m.Database, Keep: opts.Keep}); err != nil {
			return b, err
		}
	}
	return b, nil
}

// snapshot is a read-only REPEATABLE READ transaction on the source whose snapshot
// pg_dump imports, so that the rows it counts are the rows dumped.
type snapshot struct {
	conn     *pgx.Conn
	tx       pgx.Tx
	id       string   // pg_export_snapshot()
	manifest Manifest // the source's identity: Database, ServerVersion, SystemIdentifier, Created
}

// openSnapshot connects to the source, exports a snapshot and reads the source's
// identity in it; the transaction waits at most lockWait for a lock. The caller must
// close it.
func openSnapshot(ctx context.Context, cs *connString, lockWait time.Duration) (*snapshot, error) {
	conn, err := pgx.Connect(ctx, cs.String())
	if err != nil {
		return nil, fmt.Errorf("dbrestore: connect to source %s: %w", cs.withoutPassword().String(), err)
	}
	s := &snapshot{conn: conn}
	s.tx, err = conn.BeginTx(ctx, pgx.TxOptions{IsoLevel: pgx.RepeatableRead, AccessMode: pgx.ReadOnly})
	if err != nil {
		s.close(ctx)
		return nil, fmt.Errorf("dbrestore: begin snapshot transaction: %w", err)
	}
	if _, err := s.tx.Exec(ctx, "SELECT set_config('lock_timeout', $1, true)", millis(lockWait)); err != nil {
		s.close(ctx)
		return nil, fmt.Errorf("dbrestore: set lock_timeout: %w", err)
	}
	var sysid int64
	err = s.tx.QueryRow(ctx, `SELECT current_database(), current_setting('server_version'),
		(SELECT system_identifier FROM pg_control_system()), pg_export_snapshot()`).
		Scan(&s.manifest.Database, &s.manifest.ServerVersion, &sysid, &s.id)
	if err != nil {
		s.close(ctx)
		return nil, fmt.Errorf("dbrestore: export snapshot: %w", err)
	}
	if sysid == 0 {
		// A manifest without its source's identity is corrupt (the guard needs it).
		s.close(ctx)
		return nil, errors.New("dbrestore: the source server reports system_identifier 0")
	}
	s.manifest.Created = time.Now().UTC()
	s.manifest.SystemIdentifier = uint64(sysid)
	return s, nil
}

// millis writes a positive duration in whole milliseconds, at least 1 (PostgreSQL reads
// 0 as no timeout).
func millis(d time.Duration) string {
	return strconv.FormatInt(max(d.Milliseconds(), 1), 10)
}

// close ends the snapshot's transaction and connection; it may be called more than once.
func (s *snapshot) close(ctx context.Context) {
	if s.conn == nil {
		return
	}
	ctx = context.WithoutCancel(ctx)
	if s.tx != nil {
		_ = s.tx.Rollback(ctx) // read-only
	}
	_ = s.conn.Close(ctx)
	s.conn = nil
}

// dump runs pg_dump into file in the snapshot while counting the rows of every user table
// in it (opts.Counts), and returns the counts by table OID.
func (s *snapshot) dump(ctx context.Context, pgDump string, cs *connString, opts DumpOptions, file string) (map[uint32]tableCount, error) {
	args := []string{"--dbname", cs.withoutPassword().String(), "--snapshot", s.id, "--file", file,
		"--lock-wait-timeout=" + millis(opts.LockWaitTimeout)}
	if opts.Format == FormatDirectory {
		args = append(args, "--format=directory", "--jobs", strconv.Itoa(opts.Jobs))
	} else {
		args = append(args, "--format=custom")
	}
	if opts.Compress != "" {
		args = append(args, "--compress", opts.Compress)
	}
	args = append(args, opts.Args...)
	p := &proc{path: pgDump, args: args, env: passwordEnv(cs), secrets: []string{connPassword(cs)}}

	type counted struct {
		byOID map[uint32]tableCount
		err   error
	}
	countsDone := make(chan counted, 1)
	countCtx, cancelCounts := context.WithCancel(ctx)
	defer cancelCounts()
	if opts.Counts {
		go func() {
			c, err := countTables(countCtx, s.tx)
			countsDone <- counted{c, err}
		}()
	}
	dumpErr := p.run(ctx)
	if dumpErr != nil {
		cancelCounts()
	}
	var counts counted
	if opts.Counts {
		counts = <-countsDone
	}
	if dumpErr != nil {
		return nil, fmt.Errorf("dbrestore: pg_dump %s: %w", s.manifest.Database, dumpErr)
	}
	if counts.err != nil {
		return nil, fmt.Errorf("dbrestore: count rows of %s: %w", s.manifest.Database, counts.err)
	}
	return counts.byOID, nil
}

// readBack reads what pg_dump wrote to file into m: its size and checksum, and, with
// counts, the row count of every table whose data the dump holds. It returns the number
// of entries in the dump's table of contents.
func readBack(ctx context.Context, cfg Config, m *Manifest, file string, counts map[uint32]tableCount) (int, error) {
	var err error
	m.Size, m.SHA256, err = checksum(ctx, file, m.Format, nil)
	if err != nil {
		return 0, fmt.Errorf("dbrestore: checksum of the dump: %w", err)
	}
	t, err := listTOC(ctx, cfg, file)
	if err != nil {
		return 0, fmt.Errorf("dbrestore: the new dump: %w", err)
	}
	if counts == nil {
		return len(t.entries), nil
	}
	m.RowCounts = map[string]int64{}
	for _, e := range t.entries {
		if e.desc != "TABLE DATA" {
			continue
		}
		c, ok := counts[e.oid]
		if !ok {
			// An extension's configuration table, dumped with its own filter.
			cfg.logger().Debug("dbrestore: table data not counted", "item", e.label())
			continue
		}
		m.RowCounts[c.key] = c.rows
	}
	return len(t.entries), nil
}

// backupFiles are the paths of a new backup: the dump and its manifest, and the
// temporaries (".tmp-" names) they are written under until published.
type backupFiles struct {
	dir                   string
	dump, tmpDump         string
	manifest, tmpManifest string
	published             bool
}

// newBackupFiles names the files of the backup m describes in dir and sets m.Dump,
// refusing when any of them exists.
func newBackupFiles(dir string, m *Manifest) (*backupFiles, error) {
	base := backupBase(m.Database, m.Created)
	m.Dump = base + dumpSuffix
	f := &backupFiles{
		dir:         dir,
		dump:        filepath.Join(dir, m.Dump),
		tmpDump:     filepath.Join(dir, tmpPrefix+m.Dump),
		manifest:    filepath.Join(dir, base+manifestSuffix),
		tmpManifest: filepath.Join(dir, tmpPrefix+base+manifestSuffix),
	}
	for _, p := range []string{f.dump, f.tmpDump, f.manifest, f.tmpManifest} {
		if _, err := os.Lstat(p); err == nil {
			return nil, fmt.Errorf("dbrestore: %s already exists", p)
		}
	}
	return f, nil
}

// createDump creates the temporary dump for pg_dump to write into, readable by its owner
// alone (a dump is the whole database; pg_dump would create it as the umask allows): a
// file (0600), which pg_dump truncates and keeps the mode of, or an empty folder (0700).
func (f *backupFiles) createDump(format Format) error {
	if format == FormatDirectory {
		if err := os.Mkdir(f.tmpDump, 0o700); err != nil {
			return fmt.Errorf("dbrestore: %w", err)
		}
		return nil
	}
	file, err := os.OpenFile(f.tmpDump, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return fmt.Errorf("dbrestore: %w", err)
	}
	return file.Close()
}

// ownerOnly makes the files pg_dump wrote into a directory-format dump readable by
// their owner alone (0600): pg_dump creates them as the umask allows, and a folder
// copied elsewhere keeps its files' modes, not its own.
func (f *backupFiles) ownerOnly(format Format) error {
	if format != FormatDirectory {
		return nil // a custom-format file, created 0600 by createDump
	}
	entries, err := os.ReadDir(f.tmpDump)
	if err != nil {
		return fmt.Errorf("dbrestore: %w", err)
	}
	for _, e := range entries {
		if !e.Type().IsRegular() {
			continue
		}
		if err := os.Chmod(filepath.Join(f.tmpDump, e.Name()), 0o600); err != nil {
			return fmt.Errorf("dbrestore: %w", err)
		}
	}
	return nil
}

// publish puts the dump in place, then its manifest m, so that a catalog never sees a
// manifest without its complete dump, and makes both durable.
func (f *backupFiles) publish(m Manifest) error {
	data, err := json.MarshalIndent(m, "", "  ")
	if err != nil {
		return err
	}
	if err := writeFileSync(f.tmpManifest, append(data, '\n')); err != nil {
		return fmt.Errorf("dbrestore: write manifest: %w", err)
	}
	if err := os.Rename(f.tmpDump, f.dump); err != nil {
		return fmt.Errorf("dbrestore: %w", err)
	}
	if err := os.Rename(f.tmpManifest, f.manifest); err != nil {
		_ = os.RemoveAll(f.dump)
		return fmt.Errorf("dbrestore: %w", err)
	}
	f.published = true
	if err := atomicfile.SyncDir(f.dir); err != nil {
		return fmt.Errorf("dbrestore: sync backup folder: %w", err)
	}
	return nil
}

// removeTemporaries removes what an unpublished backup left.
func (f *backupFiles) removeTemporaries() {
	if !f.published {
		_ = os.RemoveAll(f.tmpDump)
		_ = os.Remove(f.tmpManifest)
	}
}

type tableCount struct {
	key  string // "schema.table"
	rows int64
}

// userTablesSQL lists the tables whose data pg_dump may dump: ordinary tables (including
// partitions) outside the system schemas that no extension owns.
const userTablesSQL = `
SELECT c.oid, n.nspname, c.relname
FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE c.relkind = 'r' AND c.relpersistence <> 't'
  AND n.nspname <> 'information_schema' AND n.nspname NOT LIKE 'pg\_%'
  AND NOT EXISTS (SELECT 1 FROM pg_depend d
                  WHERE d.classid = 'pg_class'::regclass AND d.objid = c.oid AND d.deptype = 'e')
ORDER BY n.nspname, c.relname`

type userTable struct {
	oid          uint32
	schema, name string
}

func (t userTable) key() string { return t.schema + "." + t.name }

func listUserTables(ctx context.Context, q interface {
	Query(context.Context, string, ...any) (pgx.Rows, error)
}) ([]userTable, error) {
	rows, err := q.Query(ctx, userTablesSQL)
	if err != nil {
		return nil, err
	}
	return pgx.CollectRows(rows, func(r pgx.CollectableRow) (userTable, error) {
		var t userTable
		err := r.Scan(&t.oid, &t.schema, &t.name)
		return t, err
	})
}

// countTables counts the rows of every user table in tx's snapshot.
func countTables(ctx context.Context, tx pgx.Tx) (map[uint32]tableCount, error) {
	tables, err := listUserTables(ctx, tx)
	if err != nil {
		return nil, err
	}
	out := make(map[uint32]tableCount, len(tables))
	for _, t := range tables {
		var n int64
		if err := tx.QueryRow(ctx, "SELECT count(*) FROM "+pgx.Identifier{t.schema, t.name}.Sanitize()).Scan(&n); err != nil {
			return nil, fmt.Errorf("%s: %w", t.key(), err)
		}
		out[t.oid] = tableCount{key: t.key(), rows: n}
	}
	return out, nil
}

func writeFileSync(path string, data []byte) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
	if err != nil {
		return err
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}
