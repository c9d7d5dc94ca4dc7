package physical

import (
	"archive/tar"
	"compress/gzip"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/restage/restage/internal/atomicfile"
	"github.com/restage/restage/internal/childenv"
)

// BaseManifestSuffix ends the name of a base backup's manifest, beside its folder
// (dump catalogs, which read *.manifest.json, ignore it).
const BaseManifestSuffix = ".basebackup.json"

// baseBackupPrefix starts the name of every base backup BaseBackup writes.
const baseBackupPrefix = "basebackup-"

// BaseManifest describes a pg_basebackup in a backup folder. It is written after the
// backup is complete, so a backup without a manifest is never taken.
type BaseManifest struct {
	Kind             string    `json:"kind"`                     // "basebackup"
	Format           string    `json:"format"`                   // "tar" (gzip) or "plain"
	Backup           string    `json:"backup"`                   // its folder, beside the manifest
	Created          time.Time `json:"created"`                  // when it finished
	Size             int64     `json:"size"`                     // bytes of its files
	SHA256           string    `json:"sha256"`                   // of the sorted "path sha256" lines of its files
	SystemIdentifier uint64    `json:"system_identifier,string"` // the source cluster's
	ServerVersion    string    `json:"server_version"`
}

// BaseBackupOptions say what BaseBackup takes.
type BaseBackupOptions struct {
	// DSN reaches production as a user with the REPLICATION attribute; give its password
	// through PGPASSWORD or ~/.pgpass, never in the DSN. Required.
	DSN string
	// Dir is the existing backup folder. Required.
	Dir string
	// Plain writes the data directory as files rather than gzipped tar files.
	Plain bool
	// BinDir holds pg_basebackup; "": the newest /usr/lib/postgresql/*/bin.
	BinDir string
	// Keep keeps the newest Keep base backups, and removes what killed ones left
	// (untouched for a day); 0: all.
	Keep int
	// Logger; nil: slog.Default().
	Logger *slog.Logger
}

// BaseBackup runs pg_basebackup (WAL streamed into the backup, fast checkpoint) into a
// temporary folder in opts.Dir, then publishes it under its name and writes its
// manifest last. It returns the manifest's path.
func BaseBackup(ctx context.Context, opts BaseBackupOptions) (string, error) {
	if err := opts.resolve(); err != nil {
		return "", err
	}
	log := opts.Logger
	if log == nil {
		log = slog.Default()
	}
	m, err := describeSource(ctx, opts.DSN)
	if err != nil {
		return "", err
	}
	m.Format = "tar"
	if opts.Plain {
		m.Format = "plain"
	}
	name := baseBackupPrefix + time.Now().UTC().Format("20060102T150405Z")
	tmp := filepath.Join(opts.Dir, ".tmp-"+name)
	start := time.Now()
	// pg_basebackup gives what it writes production's modes (0750 and 0640 for a
	// group-readable data directory): the folder is made first, for restage's user alone,
	// and everything in it made so once it is written, as a dump is.
	if err := os.Mkdir(tmp, 0o700); err != nil {
		return "", fmt.Errorf("physical: %w", err)
	}
	err = runBaseBackup(ctx, opts, tmp, &m)
	if err == nil {
		err = ownerOnly(tmp)
	}
	if err != nil {
		_ = os.RemoveAll(tmp)
		return "", err
	}
	m.Backup, m.Created = name, time.Now().UTC()
	final := filepath.Join(opts.Dir, name)
	if err := os.Rename(tmp, final); err != nil {
		_ = os.RemoveAll(tmp)
		return "", fmt.Errorf("physical: %w", err)
	}
	data, _ := json.MarshalIndent(m, "", "  ")
	mpath := final + BaseManifestSuffix
	if err := atomicfile.WriteFile(mpath, append(data, '\n'), 0o644); err != nil {
		return "", fmt.Errorf("physical: %w", err)
	}
	log.Info("base backup written", "backup", final, "size", m.Size, "duration", time.Since(start).Round(time.Millisecond))
	if opts.Keep > 0 {
		if err := pruneBase(opts.Dir, opts.Keep); err != nil {
			return mpath, err
		}
	}
	return mpath, nil
}

// resolve checks o and makes its folders absolute: pg_basebackup runs in "/", so a
// relative folder would be its own, not the caller's; and it creates a missing one (with
// its parents), where Dir must exist.
func (o *BaseBackupOptions) resolve() error {
	if o.DSN == "" || o.Dir == "" {
		return errors.New("physical: BaseBackupOptions.DSN and Dir are required")
	}
	if dsnHasPassword(o.DSN) {
		return errors.New("physical: the DSN holds a password: give it through PGPASSWORD or ~/.pgpass instead (pg_basebackup's command line is public)")
	}
	dir, err := filepath.Abs(o.Dir)
	if err != nil {
		return fmt.Errorf("physical: backup folder: %w", err)
	}
	if fi, err := os.Stat(dir); err != nil {
		return fmt.Errorf("physical: backup folder: %w", err)
	} else if !fi.IsDir() {
		return fmt.Errorf("physical: backup folder %s is not a folder", dir)
	}
	o.Dir = dir
	if o.BinDir == "" {
		o.BinDir = newestBinDir()
	} else if o.BinDir, err = filepath.Abs(o.BinDir); err != nil {
		return fmt.Errorf("physical: BinDir: %w", err)
	}
	return nil
}

// describeSource reads production's identity and version for the manifest, and refuses
// a cluster with tablespaces before anything is written: a plain pg_basebackup writes a
// tablespace at its production path on this host, and a restore of one would follow
// those paths.
func describeSource(ctx context.Context, dsn string) (BaseManifest, error) {
	m := BaseManifest{Kind: "basebackup"}
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		return m, fmt.Errorf("physical: connect: %w", err)
	}
	defer conn.Close(context.WithoutCancel(ctx))
	var sysid int64
	if err := conn.QueryRow(ctx, "SELECT system_identifier, current_setting('server_version') FROM pg_control_system()").Scan(&sysid, &m.ServerVersion); err != nil {
		return m, fmt.Errorf("physical: %w", err)
	}
	m.SystemIdentifier = uint64(sysid)
	rows, _ := conn.Query(ctx, "SELECT spcname || ' at ' || pg_tablespace_location(oid) FROM pg_tablespace WHERE pg_tablespace_location(oid) <> '' ORDER BY spcname")
	spaces, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return m, fmt.Errorf("physical: %w", err)
	}
	if len(spaces) > 0 {
		return m, fmt.Errorf("physical: production has %w: %s", ErrTablespace, strings.Join(spaces, ", "))
	}
	return m, nil
}

// runBaseBackup runs pg_basebackup into tmp and fills in m's checksum and size. It runs
// as restage's user, with libpq's settings and the password from PGPASSWORD (or
// ~/.pgpass), never on its command line.
func runBaseBackup(ctx context.Context, opts BaseBackupOptions, tmp string, m *BaseManifest) error {
	argv := []string{filepath.Join(opts.BinDir, "pg_basebackup"), "-d", opts.DSN, "-D", tmp, "-X", "stream", "-c", "fast", "-w"}
	if !opts.Plain {
		argv = append(argv, "-F", "tar", "-z")
	}
	self := &owner{home: os.Getenv("HOME"), name: os.Getenv("USER"),
		pass: slices.Concat(childenv.LibPQ, childenv.LibPQTarget, []string{"PGPASSWORD"})}
	if _, err := self.run(ctx, argv); err != nil {
		return fmt.Errorf("physical: pg_basebackup: %w", err)
	}
	if !opts.Plain {
		if extra, _ := filepath.Glob(filepath.Join(tmp, "[0-9]*.tar.gz")); len(extra) > 0 {
			return fmt.Errorf("physical: production has %w (%d created during the backup)", ErrTablespace, len(extra))
		}
	}
	var err error
	m.SHA256, m.Size, err = treeSum(tmp)
	return err
}

// ownerOnly makes the folders under dir (dir too) 0700 and its files 0600, following no
// symbolic link.
func ownerOnly(dir string) error {
	err := filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
		switch {
		case err != nil:
			return err
		case d.IsDir():
			return os.Chmod(p, 0o700)
		case d.Type().IsRegular():
			return os.Chmod(p, 0o600)
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("physical: make the base backup private: %w", err)
	}
	return nil
}

// kvPassword finds a password setting in a keyword/value DSN (password=x,
// password = 'x y') or in a URL's query (?password=x, &password=x).
var kvPassword = regexp.MustCompile(`(?i)(?:^|[\s?&])password\s*=`)

// dsnHasPassword says whether dsn (a URL or keyword/value) carries a password. It errs
// on the side of yes: a DSN it cannot parse as a URL is read as keyword/value, and an
// option's value that spells "password=" counts.
func dsnHasPassword(dsn string) bool {
	if u, err := url.Parse(dsn); err == nil && u.User != nil {
		if _, has := u.User.Password(); has {
			return true
		}
	}
	if u, err := url.Parse(dsn); err == nil && u.Query().Has("password") {
		return true
	}
	return kvPassword.MatchString(dsn)
}

// treeSum returns the SHA-256 of the sorted "path sha256" lines of the files under dir,
// and their total size.
func treeSum(dir string) (string, int64, error) {
	var lines []string
	var size int64
	err := filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
		if err != nil || !d.Type().IsRegular() {
			return err
		}
		f, err := os.Open(p)
		if err != nil {
			return err
		}
		defer f.Close()
		h := sha256.New()
		n, err := io.Copy(h, f)
		if err != nil {
			return err
		}
		size += n
		rel, _ := filepath.Rel(dir, p)
		lines = append(lines, rel+" "+hex.EncodeToString(h.Sum(nil)))
		return nil
	})
	if err != nil {
		return "", 0, fmt.Errorf("physical: checksum %s: %w", dir, err)
	}
	sort.Strings(lines)
	sum := sha256.Sum256([]byte(strings.Join(lines, "\n")))
	return hex.EncodeToString(sum[:]), size, nil
}

// baseManifests returns the complete base backups in dir, oldest first.
func baseManifests(dir string) ([]BaseManifest, error) {
	paths, err := filepath.Glob(filepath.Join(dir, "*"+BaseManifestSuffix))
	if err != nil {
		return nil, err
	}
	var out []BaseManifest
	for _, p := range paths {
		if strings.HasPrefix(filepath.Base(p), ".") {
			continue
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return nil, fmt.Errorf("physical: %w", err)
		}
		var m BaseManifest
		if err := json.Unmarshal(b, &m); err != nil || m.Kind != "basebackup" {
			return nil, fmt.Errorf("%w: %s: not a base backup manifest", ErrCorrupt, p)
		}
		// A manifest names the backup beside it that its own name names ("." or "..", or
		// another tool's file, would be removed whole by a prune).
		if m.Backup+BaseManifestSuffix != filepath.Base(p) || !strings.HasPrefix(m.Backup, baseBackupPrefix) {
			return nil, fmt.Errorf("%w: %s: names the backup %q, not %q", ErrCorrupt, p, m.Backup,
				strings.TrimSuffix(filepath.Base(p), BaseManifestSuffix))
		}
		if _, err := os.Stat(filepath.Join(dir, m.Backup)); err != nil {
			return nil, fmt.Errorf("%w: %s: its backup %s is missing", ErrCorrupt, p, m.Backup)
		}
		out = append(out, m)
	}
	slices.SortFunc(out, func(a, b BaseManifest) int { return a.Created.Compare(b.Created) })
	return out, nil
}

// staleBaseAfter is how long a base backup's leftover (a .tmp- folder, or a folder
// without its manifest) stays untouched before a prune removes it.
const staleBaseAfter = 24 * time.Hour

// pruneBase removes the base backups in dir beyond the newest keep (the manifest
// first), then the leftovers of killed ones untouched for staleBaseAfter: each holds a
// copy of production's cluster.
func pruneBase(dir string, keep int) error {
	ms, err := baseManifests(dir)
	if err != nil {
		return err
	}
	for len(ms) > keep {
		m := ms[0]
		ms = ms[1:]
		if err := os.Remove(filepath.Join(dir, m.Backup+BaseManifestSuffix)); err != nil {
			return err
		}
		if err := os.RemoveAll(filepath.Join(dir, m.Backup)); err != nil {
			return err
		}
	}
	return pruneBaseLeftovers(dir, time.Now().Add(-staleBaseAfter))
}

// pruneBaseLeftovers removes from dir what base backups killed mid-way left, when
// nothing in it changed since before: a ".tmp-basebackup-<stamp>" folder, or a
// "basebackup-<stamp>" folder without its manifest (killed between the rename and
// the manifest). Other names are left alone.
func pruneBaseLeftovers(dir string, before time.Time) error {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return fmt.Errorf("physical: %w", err)
	}
	var errs []error
	for _, e := range entries {
		name := e.Name()
		stamp, ok := strings.CutPrefix(strings.TrimPrefix(name, ".tmp-"), baseBackupPrefix)
		if !ok || !e.IsDir() {
			continue
		}
		if _, err := time.Parse("20060102T150405Z", stamp); err != nil {
			continue
		}
		p := filepath.Join(dir, name)
		if !strings.HasPrefix(name, ".tmp-") {
			if _, err := os.Lstat(p + BaseManifestSuffix); !errors.Is(err, os.ErrNotExist) {
				continue // published, or its manifest unreadable: baseManifests' business
			}
		}
		if !treeOlder(p, before) {
			continue // perhaps a backup still being written
		}
		if err := os.RemoveAll(p); err != nil {
			errs = append(errs, fmt.Errorf("physical: %w", err))
		}
	}
	return errors.Join(errs...)
}

// treeOlder says whether nothing under path was modified at or after t.
func treeOlder(path string, t time.Time) bool {
	older := true
	_ = filepath.WalkDir(path, func(_ string, d os.DirEntry, err error) error {
		if err != nil {
			return nil
		}
		if info, err := d.Info(); err == nil && !info.ModTime().Before(t) {
			older = false
			return filepath.SkipAll
		}
		return nil
	})
	return older
}

// BaseBackupDir is the Source of base backups that BaseBackup wrote into a folder: the
// newest complete one (manifest present), its checksum verified before it is restored.
type BaseBackupDir struct {
	Dir  string // required: the backup folder
	User string // owns the restored files; "": postgres when root
}

var _ Source = (*BaseBackupDir)(nil)

// Latest implements Source.
func (d *BaseBackupDir) Latest(ctx context.Context) (*BackupSet, error) {
	ms, err := baseManifests(d.Dir)
	if err != nil {
		return nil, err
	}
	if len(ms) == 0 {
		return nil, fmt.Errorf("%w: no base backup in %s", ErrNoBackup, d.Dir)
	}
	m := ms[len(ms)-1]
	major, _, _ := strings.Cut(m.ServerVersion, ".")
	return &BackupSet{Label: m.Backup, Type: "base-" + m.Format, Started: m.Created, Stopped: m.Created, Size: m.Size,
		SystemIdentifier: m.SystemIdentifier, Version: major}, nil
}

// Verify implements Source: the backup's files match its manifest (size and SHA-256)
// and it holds no tablespace.
func (d *BaseBackupDir) Verify(_ context.Context, set *BackupSet) error {
	m, err := d.manifest(set)
	if err != nil {
		return err
	}
	return d.verify(m)
}

// manifest returns the manifest of set.
func (d *BaseBackupDir) manifest(set *BackupSet) (BaseManifest, error) {
	ms, err := baseManifests(d.Dir)
	if err != nil {
		return BaseManifest{}, err
	}
	i := slices.IndexFunc(ms, func(m BaseManifest) bool { return m.Backup == set.Label })
	if i < 0 {
		return BaseManifest{}, fmt.Errorf("%w: base backup %s is gone", ErrNoBackup, set.Label)
	}
	return ms[i], nil
}

func (d *BaseBackupDir) verify(m BaseManifest) error {
	src := filepath.Join(d.Dir, m.Backup)
	sum, size, err := treeSum(src)
	if err != nil {
		return err
	}
	if sum != m.SHA256 || size != m.Size {
		return fmt.Errorf("%w: base backup %s: its files do not match its manifest", ErrChecksum, m.Backup)
	}
	if err := checkNoTablespaces(src, m.Format); err != nil {
		return fmt.Errorf("physical: base backup %s: %w", m.Backup, err)
	}
	return nil
}

// Restore implements Source: it checks the backup against its manifest (unless
// opts.Verified), then unpacks (tar) or copies (plain) it into dir, which must not
// exist or be empty; with the WAL streamed into it, PostgreSQL recovers to its end on
// the first start. Delta is not supported: every restore is a full copy.
func (d *BaseBackupDir) Restore(ctx context.Context, set *BackupSet, dir string, opts RestoreOptions) error {
	m, err := d.manifest(set)
	if err != nil {
		return err
	}
	if !opts.Verified {
		if err := d.verify(m); err != nil {
			return err
		}
	}
	src := filepath.Join(d.Dir, m.Backup)
	o, err := lookupOwner(d.User)
	if err != nil {
		return fmt.Errorf("physical: %w", err)
	}
	if err := os.RemoveAll(dir); err != nil {
		return fmt.Errorf("physical: %w", err)
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("physical: %w", err)
	}
	total := int64(0) // a tar backup's size says nothing of the files it unpacks to
	if m.Format == "plain" {
		total = m.Size
	}
	defer watchSize(ctx, dir, total, 250*time.Millisecond)()
	if m.Format == "plain" {
		err = copyTree(ctx, src, dir)
	} else {
		err = untar(ctx, filepath.Join(src, "base.tar.gz"), dir)
		if err == nil {
			err = untar(ctx, filepath.Join(src, "pg_wal.tar.gz"), filepath.Join(dir, "pg_wal"))
		}
	}
	if err != nil {
		return fmt.Errorf("physical: restore %s: %w", m.Backup, err)
	}
	return chownTree(o, dir)
}

// checkNoTablespaces refuses a base backup in folder src that holds tablespaces: in a
// plain one, the links of pg_tblspc point at production's tablespace paths (a cluster
// restored from it would write there); in a tar one, a tar file per tablespace beside
// base.tar.gz (and a tablespace_map in it, which untar refuses).
func checkNoTablespaces(src, format string) error {
	var found []string
	if format == "plain" {
		entries, err := os.ReadDir(filepath.Join(src, "pg_tblspc"))
		if err != nil && !errors.Is(err, os.ErrNotExist) {
			return err
		}
		for _, e := range entries {
			target, err := os.Readlink(filepath.Join(src, "pg_tblspc", e.Name()))
			if err != nil {
				target = "not a link"
			}
			found = append(found, "pg_tblspc/"+e.Name()+" -> "+target)
		}
		if fi, err := os.Lstat(filepath.Join(src, "tablespace_map")); err == nil && fi.Size() > 0 {
			found = append(found, "tablespace_map")
		}
	} else {
		tars, _ := filepath.Glob(filepath.Join(src, "[0-9]*.tar.gz"))
		for _, t := range tars {
			found = append(found, filepath.Base(t))
		}
	}
	if len(found) > 0 {
		return fmt.Errorf("%w: %s; nothing restored (restage never follows production's tablespace paths)", ErrTablespace, strings.Join(found, ", "))
	}
	return nil
}

// Origin implements Source: a base backup folder does not say where production runs.
func (d *BaseBackupDir) Origin() Origin { return Origin{} }

// untar unpacks the gzipped tar file into dir, refusing paths that leave it.
func untar(ctx context.Context, file, dir string) error {
	f, err := os.Open(file)
	if err != nil {
		return err
	}
	defer f.Close()
	gz, err := gzip.NewReader(f)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	tr := tar.NewReader(gz)
	for {
		if err := ctx.Err(); err != nil {
			return err
		}
		h, err := tr.Next()
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return err
		}
		name := filepath.Clean(h.Name)
		if filepath.IsAbs(name) || name == ".." || strings.HasPrefix(name, "../") {
			return fmt.Errorf("%s: path %q leaves the data directory", file, h.Name)
		}
		if name == "tablespace_map" && h.Size > 0 {
			// PostgreSQL would link pg_tblspc to the paths it names: production's. (Every
			// tar base backup has one; it is empty without tablespaces.)
			return fmt.Errorf("%s: %w: its tablespace_map names some", file, ErrTablespace)
		}
		p := filepath.Join(dir, name)
		switch h.Typeflag {
		case tar.TypeDir:
			if err := os.MkdirAll(p, 0o700); err != nil {
				return err
			}
		case tar.TypeReg:
			if err := os.MkdirAll(filepath.Dir(p), 0o700); err != nil {
				return err
			}
			if err := writeFile(p, tr); err != nil {
				return err
			}
		case tar.TypeSymlink:
			return fmt.Errorf("%s: symlink %s (tablespaces or a linked pg_wal are not restored from a base backup)", file, h.Name)
		}
	}
}

// copyTree copies the regular files and folders under src into dst.
func copyTree(ctx context.Context, src, dst string) error {
	return filepath.WalkDir(src, func(p string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		rel, _ := filepath.Rel(src, p)
		to := filepath.Join(dst, rel)
		switch {
		case d.IsDir():
			return os.MkdirAll(to, 0o700)
		case d.Type().IsRegular():
			in, err := os.Open(p)
			if err != nil {
				return err
			}
			defer in.Close()
			return writeFile(to, in)
		default:
			return fmt.Errorf("%s: not a file or folder (tablespaces are not supported)", p)
		}
	})
}

// writeFile writes what r holds to the file p (mode 0600), replacing its content.
func writeFile(p string, r io.Reader) error {
	out, err := os.OpenFile(p, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return err
	}
	_, err = io.Copy(out, r)
	if cerr := out.Close(); err == nil {
		err = cerr
	}
	return err
}

func chownTree(o *owner, dir string) error {
	if o.cred == nil {
		return nil
	}
	return filepath.WalkDir(dir, func(p string, _ os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		return o.chown(p)
	})
}
