package dbrestore

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/restage/restage/internal/safefile"
	"github.com/restage/restage/progress"
)

// Backup file names. A backup of database "launchpad_prod" taken at 2026-11-25 03:00:00.123
// UTC is the dump "launchpad_prod-20261125T030000.123Z.dump" (a file in custom format, a
// folder in directory format) and the manifest "launchpad_prod-20261125T030000.123Z.manifest.json".
// Characters other than letters, digits, '_' and '-' in the database name are written as
// %XX. While being written, both carry the prefix ".tmp-"; the catalog never looks at those
// and trusts only manifests, so the database name in the manifest is what counts.
const (
	tmpPrefix      = ".tmp-"
	dumpSuffix     = ".dump"
	manifestSuffix = ".manifest.json"
	stampLayout    = "20060102T150405.000Z"
	defaultPoll    = 10 * time.Second
)

// backupBase returns the file name stem for a backup of database taken at t.
func backupBase(database string, t time.Time) string {
	return escapeName(database) + "-" + t.UTC().Format(stampLayout)
}

// escapeName writes a database name with only letters, digits, '_' and '-', the other
// bytes as %XX.
func escapeName(database string) string {
	var b strings.Builder
	for i := 0; i < len(database); i++ {
		c := database[i]
		if c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '-' {
			b.WriteByte(c)
		} else {
			fmt.Fprintf(&b, "%%%02X", c)
		}
	}
	return b.String()
}

// parseBase splits a backup file name ("<escaped db>-<stamp>.dump" or ".manifest.json")
// into the escaped database name and the time stamp.
func parseBase(name string) (string, time.Time, bool) {
	switch {
	case strings.HasSuffix(name, manifestSuffix):
		name = strings.TrimSuffix(name, manifestSuffix)
	case strings.HasSuffix(name, dumpSuffix):
		name = strings.TrimSuffix(name, dumpSuffix)
	default:
		return "", time.Time{}, false
	}
	i := strings.LastIndexByte(name, '-')
	if i < 0 {
		return "", time.Time{}, false
	}
	t, err := time.Parse(stampLayout, name[i+1:])
	if err != nil {
		return "", time.Time{}, false
	}
	return name[:i], t, true
}

// DirCatalog is a Catalog over a folder of dumps and manifests written by Dump.
type DirCatalog struct {
	dir string
	cfg Config
	now func() time.Time
}

var _ Catalog = (*DirCatalog)(nil)

// NewCatalog returns a catalog of the backups in dir, which must exist.
func NewCatalog(dir string, cfg Config) (*DirCatalog, error) {
	if dir == "" {
		return nil, errors.New("dbrestore: backup folder not set")
	}
	st, err := os.Stat(dir)
	if err != nil {
		return nil, fmt.Errorf("dbrestore: backup folder: %w", err)
	}
	if !st.IsDir() {
		return nil, fmt.Errorf("dbrestore: backup folder %s is not a folder", dir)
	}
	return &DirCatalog{dir: dir, cfg: cfg, now: time.Now}, nil
}

// Dir returns the catalog's folder.
func (c *DirCatalog) Dir() string { return c.dir }

// scan is what one look at the folder found for one database.
type scan struct {
	backups      []*Backup // complete backups of the database, newest first
	noManifest   int       // dumps (of any database) without a manifest
	badManifests []string  // manifests that could not be read
}

// List returns the complete backups of database in the folder, newest first. A backup is
// complete when its manifest names a dump that exists beside it; temporary files, dumps
// without a manifest and manifests without a dump are ignored.
func (c *DirCatalog) List(database string) ([]*Backup, error) {
	s, err := c.scan(database)
	if err != nil {
		return nil, err
	}
	return s.backups, nil
}

func (c *DirCatalog) scan(database string) (*scan, error) {
	entries, err := os.ReadDir(c.dir)
	if err != nil {
		return nil, fmt.Errorf("dbrestore: backup folder: %w", err)
	}
	s := &scan{}
	claimed := map[string]bool{}
	var dumps []string
	for _, e := range entries {
		name := e.Name()
		if strings.HasPrefix(name, ".") {
			continue // temporary or hidden
		}
		if !strings.HasSuffix(name, manifestSuffix) {
			dumps = append(dumps, name)
			continue
		}
		b, err := readManifest(filepath.Join(c.dir, name))
		if err != nil {
			s.badManifests = append(s.badManifests, name)
			c.cfg.logger().Warn("dbrestore: unreadable manifest ignored", logKeyFile, name, logKeyError, err)
			continue
		}
		if _, err := os.Stat(b.Path); err != nil {
			continue // a manifest without its dump (pruned, or copied alone)
		}
		claimed[filepath.Base(b.Path)] = true
		if b.Manifest.Database == database {
			s.backups = append(s.backups, b)
		}
	}
	for _, d := range dumps {
		if !claimed[d] && (strings.HasSuffix(d, dumpSuffix)) {
			s.noManifest++
		}
	}
	sort.SliceStable(s.backups, func(i, j int) bool {
		return s.backups[i].Manifest.Created.After(s.backups[j].Manifest.Created)
	})
	return s, nil
}

// readManifest reads a manifest and resolves its dump beside it.
func readManifest(path string) (*Backup, error) {
	data, err := safefile.ReadFile(path, 1<<20) // a regular file, not a planted FIFO or link
	if err != nil {
		return nil, err
	}
	var m Manifest
	if err := json.Unmarshal(data, &m); err != nil {
		return nil, fmt.Errorf("%w: manifest %s: %v", ErrCorrupt, filepath.Base(path), err)
	}
	if m.Database == "" || m.Dump == "" || m.Created.IsZero() {
		return nil, fmt.Errorf("%w: manifest %s lacks database, dump or created", ErrCorrupt, filepath.Base(path))
	}
	if m.Dump != filepath.Base(m.Dump) || strings.HasPrefix(m.Dump, ".") {
		return nil, fmt.Errorf("%w: manifest %s names dump %q outside its folder", ErrCorrupt, filepath.Base(path), m.Dump)
	}
	if m.Format != FormatCustom && m.Format != FormatDirectory {
		return nil, fmt.Errorf("%w: manifest %s has unknown format %q", ErrCorrupt, filepath.Base(path), m.Format)
	}
	if m.SystemIdentifier == 0 {
		// The source's identity is what the production guard refuses: a backup without it
		// would switch the guard off.
		return nil, fmt.Errorf("%w: manifest %s lacks system_identifier", ErrCorrupt, filepath.Base(path))
	}
	return &Backup{Path: filepath.Join(filepath.Dir(path), m.Dump), ManifestPath: path, Manifest: m}, nil
}

// SourceIDs returns the distinct system_identifiers of the source servers of every
// manifest in the folder, of any database and whether or not its dump is still there,
// sorted. Corrupt manifests are ignored (and logged); a manifest that cannot be read for
// another reason is an error, since a production identity could hide in it.
func (c *DirCatalog) SourceIDs(ctx context.Context) ([]uint64, error) {
	entries, err := os.ReadDir(c.dir)
	if err != nil {
		return nil, fmt.Errorf("dbrestore: backup folder: %w", err)
	}
	var ids []uint64
	for _, e := range entries {
		if err := ctx.Err(); err != nil {
			return nil, fmt.Errorf("dbrestore: source ids: %w", context.Cause(ctx))
		}
		name := e.Name()
		if strings.HasPrefix(name, ".") || !strings.HasSuffix(name, manifestSuffix) {
			continue
		}
		b, err := readManifest(filepath.Join(c.dir, name))
		switch {
		case errors.Is(err, ErrCorrupt):
			c.cfg.logger().Warn("dbrestore: unreadable manifest ignored", logKeyFile, name, logKeyError, err)
			continue
		case err != nil:
			return nil, fmt.Errorf("dbrestore: source ids: %w", err)
		}
		if !slices.Contains(ids, b.Manifest.SystemIdentifier) {
			ids = append(ids, b.Manifest.SystemIdentifier)
		}
	}
	slices.Sort(ids)
	return ids, nil
}

// Latest returns the newest complete backup of database, or an error wrapping ErrNoBackup
// that says what the folder holds.
func (c *DirCatalog) Latest(database string) (*Backup, error) {
	s, err := c.scan(database)
	if err != nil {
		return nil, err
	}
	if len(s.backups) == 0 {
		return nil, c.noBackupError(database, s)
	}
	return s.backups[0], nil
}

func (c *DirCatalog) noBackupError(database string, s *scan) error {
	msg := fmt.Sprintf("no complete %s backup in %s", database, c.dir)
	var notes []string
	if s.noManifest > 0 {
		notes = append(notes, fmt.Sprintf("%d dump(s) without a manifest", s.noManifest))
	}
	if len(s.badManifests) > 0 {
		notes = append(notes, fmt.Sprintf("unreadable manifest(s): %s", strings.Join(s.badManifests, ", ")))
	}
	if len(notes) > 0 {
		msg += " (" + strings.Join(notes, "; ") + ")"
	}
	return fmt.Errorf("dbrestore: %w: %s", ErrNoBackup, msg)
}

// Wait returns the newest complete backup of opts.Database no older than opts.MaxAge,
// looking every opts.Poll until one appears, opts.Wait has passed or ctx ends. Its errors
// wrap ErrNoBackup or ErrTooOld and say what was found, e.g. "newest launchpad_prod backup
// is 26h old (…), max_age 20h".
func (c *DirCatalog) Wait(ctx context.Context, opts WaitOptions) (*Backup, error) {
	if opts.Database == "" {
		return nil, errors.New("dbrestore: WaitOptions.Database is required")
	}
	if opts.MaxAge < 0 || opts.Wait < 0 || opts.Poll < 0 {
		return nil, errors.New("dbrestore: WaitOptions durations must not be negative")
	}
	poll := opts.Poll
	if poll == 0 {
		poll = defaultPoll
	}
	start := c.now()
	deadline := start.Add(opts.Wait)
	log := c.cfg.logger()
	logged := false
	for {
		b, err := c.look(opts)
		if err == nil {
			log.Info("dbrestore: backup found", logKeyDatabase, opts.Database, logKeyBackup, b.Name(),
				"created", b.Manifest.Created, "age", fmtAge(b.Age(c.now())))
			return b, nil
		}
		if !errors.Is(err, ErrNoBackup) && !errors.Is(err, ErrTooOld) {
			return nil, err // a missing or unreadable folder: waiting will not help
		}
		remaining := deadline.Sub(c.now())
		if remaining <= 0 {
			if opts.Wait > 0 {
				return nil, fmt.Errorf("%w (waited %s)", err, fmtAge(opts.Wait))
			}
			return nil, err
		}
		if !logged {
			log.Info("dbrestore: waiting for a backup", logKeyDatabase, opts.Database, "reason", err.Error(),
				"wait", opts.Wait.String())
			logged = true
		}
		t := time.NewTimer(min(poll, remaining))
		select {
		case <-ctx.Done():
			t.Stop()
			return nil, fmt.Errorf("%w; stopped waiting: %w", err, context.Cause(ctx))
		case <-t.C:
		}
	}
}

// look is one look for a backup young enough.
func (c *DirCatalog) look(opts WaitOptions) (*Backup, error) {
	s, err := c.scan(opts.Database)
	if err != nil {
		return nil, err
	}
	if len(s.backups) == 0 {
		return nil, c.noBackupError(opts.Database, s)
	}
	b := s.backups[0]
	if opts.MaxAge > 0 {
		if age := b.Age(c.now()); age > opts.MaxAge {
			return nil, fmt.Errorf("dbrestore: %w: newest %s backup is %s old (%s, created %s), max_age %s",
				ErrTooOld, opts.Database, fmtAge(age), b.Name(), b.Manifest.Created.UTC().Format(time.RFC3339), fmtAge(opts.MaxAge))
		}
	}
	return b, nil
}

// fmtAge formats a duration for people: "26h", "26h5m", "45m", "30s".
func fmtAge(d time.Duration) string {
	if d < 0 {
		return "-" + fmtAge(-d)
	}
	if d < time.Minute {
		return d.Round(time.Second).String()
	}
	d = d.Round(time.Minute)
	h, m := int(d/time.Hour), int((d%time.Hour)/time.Minute)
	switch {
	case h == 0:
		return fmt.Sprintf("%dm", m)
	case m == 0:
		return fmt.Sprintf("%dh", h)
	default:
		return fmt.Sprintf("%dh%dm", h, m)
	}
}

// Verify checks b's size and SHA-256 against its manifest (ErrChecksum) and that
// pg_restore --list reads its table of contents (ErrCorrupt).
func (c *DirCatalog) Verify(ctx context.Context, b *Backup) error {
	return verifyBackup(ctx, c.cfg, b)
}

func verifyBackup(ctx context.Context, cfg Config, b *Backup) error {
	if b == nil {
		return errors.New("dbrestore: no backup to verify")
	}
	start := time.Now()
	size, sum, err := checksum(ctx, b.Path, b.Manifest.Format, progress.NewCounter(ctx, b.Manifest.Size))
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("dbrestore: %w: %s: %w", ErrCorrupt, b.Name(), err)
		}
		return fmt.Errorf("dbrestore: verify %s: %w", b.Name(), err)
	}
	if size != b.Manifest.Size {
		return fmt.Errorf("dbrestore: %w: %s is %d bytes, its manifest says %d (truncated or changed)",
			ErrChecksum, b.Name(), size, b.Manifest.Size)
	}
	if !strings.EqualFold(sum, b.Manifest.SHA256) {
		return fmt.Errorf("dbrestore: %w: %s has SHA-256 %s, its manifest says %s", ErrChecksum, b.Name(), sum, b.Manifest.SHA256)
	}
	toc, err := listTOC(ctx, cfg, b.Path)
	if err != nil {
		return err
	}
	cfg.logger().Info("dbrestore: backup verified", logKeyBackup, b.Name(), "bytes", size, logKeyObjects, len(toc.entries),
		logKeyDuration, time.Since(start).Round(time.Millisecond))
	b.verified, b.toc = true, toc
	return nil
}

// checksum returns the size and SHA-256 of a dump. For a directory dump the size is the
// sum of its files' sizes and the checksum is the SHA-256 of the lines "name sha256\n",
// sorted by name, one per file in the folder; anything in it but a regular file (a
// symbolic link pg_restore would follow, a FIFO, a folder) is refused, as is a folder
// that is itself a link. The bytes hashed are counted in pc (nil: not counted).
func checksum(ctx context.Context, path string, format Format, pc *progress.Counter) (int64, string, error) {
	if format != FormatDirectory {
		return fileChecksum(ctx, path, pc)
	}
	if st, err := os.Lstat(path); err != nil {
		return 0, "", err
	} else if !st.IsDir() {
		return 0, "", fmt.Errorf("%s is not a folder (%s): refused", path, st.Mode().Type())
	}
	entries, err := os.ReadDir(path)
	if err != nil {
		return 0, "", err
	}
	var names []string
	for _, e := range entries {
		if !e.Type().IsRegular() {
			return 0, "", fmt.Errorf("%s in the dump %s is not a regular file (%s): refused", e.Name(), path, e.Type())
		}
		names = append(names, e.Name())
	}
	sort.Strings(names)
	var total int64
	h := sha256.New()
	for _, n := range names {
		size, sum, err := fileChecksum(ctx, filepath.Join(path, n), pc)
		if err != nil {
			return 0, "", err
		}
		total += size
		fmt.Fprintf(h, "%s %s\n", n, sum)
	}
	return total, hex.EncodeToString(h.Sum(nil)), nil
}

// fileChecksum hashes the regular file at path (a FIFO or a symbolic link planted there
// is refused, not waited on nor followed).
func fileChecksum(ctx context.Context, path string, pc *progress.Counter) (int64, string, error) {
	f, err := safefile.OpenRegular(path)
	if err != nil {
		return 0, "", err
	}
	defer f.Close()
	h := sha256.New()
	n, err := io.CopyBuffer(h, progress.CountingReader(&ctxReader{ctx: ctx, r: f}, pc), make([]byte, 1<<20))
	if err != nil {
		return 0, "", err
	}
	return n, hex.EncodeToString(h.Sum(nil)), nil
}

// ctxReader stops reading when ctx ends.
type ctxReader struct {
	ctx context.Context
	r   io.Reader
}

// Read reads from the underlying reader, or returns ctx's error once ctx ended.
func (r *ctxReader) Read(p []byte) (int, error) {
	if err := r.ctx.Err(); err != nil {
		return 0, err
	}
	return r.r.Read(p)
}

// toc is a dump's table of contents as pg_restore --list prints it.
type toc struct {
	entries []tocEntry
	byID    map[int]int // dump id → index in entries
}

type tocEntry struct {
	id   int
	oid  uint32 // the object's OID (the table's, for TABLE DATA)
	desc string // e.g. "TABLE DATA"
	rest string // schema, name and owner as printed
}

// tocDescs are the multi-word descriptions pg_restore prints; the first that prefixes an
// entry's text is its description.
var tocDescs = []string{
	"TABLE DATA", "SEQUENCE SET", "SEQUENCE OWNED BY", "MATERIALIZED VIEW DATA", "MATERIALIZED VIEW",
	"FK CONSTRAINT", "CHECK CONSTRAINT", "DEFAULT ACL", "LARGE OBJECT", "BLOB", "BLOBS", "BLOB METADATA",
	"FOREIGN TABLE", "FOREIGN DATA WRAPPER", "FOREIGN SERVER", "USER MAPPING", "TEXT SEARCH CONFIGURATION",
	"TEXT SEARCH DICTIONARY", "TEXT SEARCH PARSER", "TEXT SEARCH TEMPLATE", "EVENT TRIGGER", "ACCESS METHOD",
	"OPERATOR CLASS", "OPERATOR FAMILY", "PUBLICATION TABLE", "PUBLICATION TABLES IN SCHEMA", "ROW SECURITY",
	"SHELL TYPE", "TABLE ATTACH", "INDEX ATTACH", "STATISTICS DATA", "DEFAULT",
}

// listTOC runs pg_restore --list on a dump; failures wrap ErrCorrupt.
func listTOC(ctx context.Context, cfg Config, path string) (*toc, error) {
	bin, err := cfg.tool("pg_restore")
	if err != nil {
		return nil, err
	}
	t := &toc{byID: map[int]int{}}
	p := &proc{path: bin, args: []string{"--list", path}, stdout: func(line string) {
		if e, ok := parseTOCLine(line); ok {
			t.byID[e.id] = len(t.entries)
			t.entries = append(t.entries, e)
		}
	}}
	if err := p.run(ctx); err != nil {
		if ctx.Err() != nil {
			return nil, fmt.Errorf("dbrestore: pg_restore --list %s: %w", filepath.Base(path), err)
		}
		return nil, fmt.Errorf("dbrestore: %w: pg_restore --list %s: %w", ErrCorrupt, filepath.Base(path), err)
	}
	return t, nil
}

// parseTOCLine parses "3365; 0 16391 TABLE DATA public pgbench_accounts postgres".
func parseTOCLine(line string) (tocEntry, bool) {
	if line == "" || line[0] == ';' {
		return tocEntry{}, false
	}
	idStr, rest, ok := strings.Cut(line, "; ")
	if !ok {
		return tocEntry{}, false
	}
	id, err := strconv.Atoi(idStr)
	if err != nil {
		return tocEntry{}, false
	}
	f := strings.SplitN(rest, " ", 3)
	if len(f) < 3 {
		return tocEntry{}, false
	}
	oid, _ := strconv.ParseUint(f[1], 10, 32)
	e := tocEntry{id: id, oid: uint32(oid)}
	text := f[2]
	for _, d := range tocDescs {
		if strings.HasPrefix(text, d+" ") {
			e.desc, e.rest = d, text[len(d)+1:]
			return e, true
		}
	}
	e.desc, e.rest, _ = strings.Cut(text, " ")
	return e, true
}

// mappingName names a USER MAPPING entry as "user@server" (its text is "- USER MAPPING
// <user> SERVER <server> <owner>"), as DropUserMappings names the mappings it drops.
func (e tocEntry) mappingName() string {
	text := strings.TrimPrefix(e.rest, "- USER MAPPING ")
	user, rest, ok := strings.Cut(text, " SERVER ")
	if !ok {
		return text
	}
	server, _, _ := strings.Cut(rest, " ")
	return user + "@" + server
}

// label is how progress events name an entry, e.g. "TABLE DATA public pgbench_accounts".
func (e tocEntry) label() string {
	rest := e.rest
	if i := strings.LastIndexByte(rest, ' '); i > 0 {
		rest = rest[:i] // the owner
	}
	return e.desc + " " + rest
}

// PruneOptions says which backups Prune removes.
type PruneOptions struct {
	Database string // required
	Keep     int    // complete backups kept, newest first; must be at least 1
	// StaleAfter removes this database's temporary files (of crashed dumps) untouched for
	// this long; 0: 24h.
	StaleAfter time.Duration
}

// Prune removes the complete backups of opts.Database beyond the newest opts.Keep (the
// manifest first, so a half-removed backup is never taken for complete) and stale
// temporary files of that database. A manifest that names another dump than the one its
// own name goes with (planted, or copied under another name) is an error, and neither
// it nor that dump is removed. It returns the names it removed.
func (c *DirCatalog) Prune(opts PruneOptions) ([]string, error) {
	if opts.Database == "" {
		return nil, errors.New("dbrestore: PruneOptions.Database is required")
	}
	if opts.Keep < 1 {
		return nil, errors.New("dbrestore: PruneOptions.Keep must be at least 1")
	}
	stale := opts.StaleAfter
	if stale <= 0 {
		stale = 24 * time.Hour
	}
	s, err := c.scan(opts.Database)
	if err != nil {
		return nil, err
	}
	var removed []string
	var errs []error
	for _, b := range s.backups[min(opts.Keep, len(s.backups)):] {
		if !ownDump(b) {
			// Another tool's file, or another backup's dump, named by a planted or
			// copied manifest: never removed.
			errs = append(errs, fmt.Errorf("%s names the dump %q, not its own: neither removed",
				filepath.Base(b.ManifestPath), b.Manifest.Dump))
			continue
		}
		if err := os.Remove(b.ManifestPath); err != nil {
			errs = append(errs, err)
			continue
		}
		if err := os.RemoveAll(b.Path); err != nil {
			errs = append(errs, err)
		}
		removed = append(removed, b.Name())
	}
	// Temporary files of crashed dumps of this database.
	entries, err := os.ReadDir(c.dir)
	if err != nil {
		errs = append(errs, err)
	}
	want := escapeName(opts.Database)
	for _, e := range entries {
		name := e.Name()
		if !strings.HasPrefix(name, tmpPrefix) {
			continue
		}
		if db, _, ok := parseBase(strings.TrimPrefix(name, tmpPrefix)); !ok || db != want {
			continue
		}
		path := filepath.Join(c.dir, name)
		if newestMtime(path).After(c.now().Add(-stale)) {
			continue // perhaps a dump still being written
		}
		if err := os.RemoveAll(path); err != nil {
			errs = append(errs, err)
			continue
		}
		removed = append(removed, name)
	}
	if len(removed) > 0 {
		c.cfg.logger().Info("dbrestore: pruned backups", logKeyDatabase, opts.Database, "removed", strings.Join(removed, ", "))
	}
	if err := errors.Join(errs...); err != nil {
		return removed, fmt.Errorf("dbrestore: prune: %w", err)
	}
	return removed, nil
}

// ownDump says whether b's manifest names the dump Dump wrote beside it: the same stem
// as the manifest's own name, with the database's escaped name and a time stamp.
func ownDump(b *Backup) bool {
	stem, ok := strings.CutSuffix(b.Manifest.Dump, dumpSuffix)
	if !ok || filepath.Base(b.ManifestPath) != stem+manifestSuffix {
		return false
	}
	db, _, ok := parseBase(b.Manifest.Dump)
	return ok && db == escapeName(b.Manifest.Database)
}

// newestMtime returns the newest modification time in a file or folder tree.
func newestMtime(path string) time.Time {
	var newest time.Time
	_ = filepath.WalkDir(path, func(_ string, d fs.DirEntry, err error) error {
		if err != nil {
			return nil
		}
		if info, err := d.Info(); err == nil && info.ModTime().After(newest) {
			newest = info.ModTime()
		}
		return nil
	})
	return newest
}

// logBackup returns log attributes describing b.
func logBackup(b *Backup) slog.Attr {
	return slog.Group(logKeyBackup, "name", b.Name(), logKeyDatabase, b.Manifest.Database,
		"created", b.Manifest.Created.UTC().Format(time.RFC3339))
}
