package dbrestore

import (
	"context"
	"errors"
	"path/filepath"
	"time"

	"github.com/restage/restage/dbrestore/mask"
	"github.com/restage/restage/internal/cmderr"
)

// Format is a pg_dump output format.
type Format string

// The dump formats restage writes and reads.
const (
	FormatCustom    Format = "custom"    // one file (pg_dump -Fc)
	FormatDirectory Format = "directory" // a folder, written in parallel (pg_dump -Fd -j N)
)

// Manifest describes a backup. It is written as JSON beside the dump, after the dump is
// complete, so a dump without a manifest is never taken for a complete backup.
type Manifest struct {
	Database         string    `json:"database"`                 // source database name
	Format           Format    `json:"format"`                   // custom or directory
	Dump             string    `json:"dump"`                     // dump file or folder name, beside the manifest
	Created          time.Time `json:"created"`                  // when pg_dump's snapshot was taken
	Size             int64     `json:"size"`                     // bytes of the dump (all files for directory format)
	SHA256           string    `json:"sha256"`                   // hex; for directory format, of the sorted "name sha256" lines
	SystemIdentifier uint64    `json:"system_identifier,string"` // source server's pg_control_system().system_identifier
	ServerVersion    string    `json:"server_version"`           // source server's version
	PgDumpVersion    string    `json:"pg_dump_version"`          // pg_dump --version
	// RowCounts holds exact per-table row counts ("schema.table") taken in the dump's
	// snapshot; empty when counts were not asked for.
	RowCounts map[string]int64 `json:"row_counts,omitempty"`
}

// Backup is a complete backup on disk: a dump and its manifest.
type Backup struct {
	Path         string   // the dump file (custom) or folder (directory)
	ManifestPath string   // the manifest's file, beside the dump
	Manifest     Manifest // what the manifest says

	verified bool // Verify passed in this process; Restore then skips re-reading the dump
	toc      *toc // its table of contents, read by Verify
}

// Name returns the dump's base name.
func (b *Backup) Name() string { return filepath.Base(b.Path) }

// Age returns how old the backup was at now.
func (b *Backup) Age(now time.Time) time.Duration { return now.Sub(b.Manifest.Created) }

// Catalog finds production backups in a folder and checks them.
type Catalog interface {
	// Wait returns the newest complete backup that opts asks for, polling until one
	// appears, opts.Wait passes or ctx ends.
	Wait(ctx context.Context, opts WaitOptions) (*Backup, error)
	// Verify checks the dump's size and checksum against its manifest and that
	// pg_restore --list reads its table of contents. Nothing is destroyed before it passes.
	Verify(ctx context.Context, b *Backup) error
	// SourceIDs returns the distinct system_identifiers of the source servers of every
	// backup in the catalog (any database), sorted: production's identities, for flows
	// that restore no backup but must refuse production all the same.
	SourceIDs(ctx context.Context) ([]uint64, error)
}

// WaitOptions says which backup to wait for.
type WaitOptions struct {
	Database string        // required: the source database's name
	MaxAge   time.Duration // refuse backups older than this; 0: any age
	Wait     time.Duration // poll this long for a backup young enough; 0: look once
	Poll     time.Duration // interval between looks; 0: 10s
}

// Restorer restores backups into databases of the staging server.
type Restorer interface {
	// Restore restores b into opts.Target, refusing a server that is the backup's source
	// or otherwise known as production, a backup that names no source (ErrCorrupt), and
	// protected names. A failed or cancelled restore drops the half-built target.
	Restore(ctx context.Context, b *Backup, opts RestoreOptions) (*RestoreResult, error)
}

// Admin manages whole databases on the staging server. Every operation that changes
// one refuses the production server (ErrProduction, by system_identifier), protected
// names (ErrProtected) and names over MaxNameLen bytes (ErrNameTooLong), and, failing
// closed, any server while no production identity is known (ErrNoProduction); a
// refused operation changes nothing. dbrestoretest.Admin checks these promises.
type Admin interface {
	// Exists reports whether a database called name exists.
	Exists(ctx context.Context, name string) (bool, error)
	// Drop drops name after terminating its connections; a missing database is not an error.
	Drop(ctx context.Context, name string) error
	// Rename renames from to to after terminating from's connections. to must not
	// exist (ErrExists), from must (ErrNotFound).
	Rename(ctx context.Context, from, to string) error
	// Swap renames live to prev (when live exists) and next to live, in one transaction.
	// next must exist (ErrNotFound) and prev must not (ErrExists).
	Swap(ctx context.Context, live, next, prev string) error
	// Clone creates name as a template copy of template (STRATEGY FILE_COPY), replacing
	// an existing name; a missing template is ErrNotFound.
	Clone(ctx context.Context, template, name string) error
	// AllowConnections lets clients connect to name again, the repair after a run was
	// killed while it refused them for a rename or drop; a missing database is no error.
	AllowConnections(ctx context.Context, name string) error
}

// Guard is the production guard of a staging server: what it knows of production's
// identities decides whether Admin and Restorer may change anything. Identities once
// given are kept for every later operation.
type Guard interface {
	// GuardProduction notes ids (zeros are ignored) as production servers' identities,
	// then refuses with ErrProduction when this server is one of the production
	// identities known, and with ErrNoProduction when none is known.
	GuardProduction(ctx context.Context, ids ...uint64) error
	// GuardSource refuses a backup whose manifest names no source server (ErrCorrupt),
	// then is GuardProduction with that source.
	GuardSource(ctx context.Context, b *Backup) error
}

// RestoreOptions are the per-call options of Restore.
type RestoreOptions struct {
	Target  string // required: the database to create and restore into
	Replace bool   // drop Target first when it exists (a leftover of a crashed run)
	Jobs    int    // pg_restore -j; 0: 2
	// KeepOwners restores ownership and privileges; by default --no-owner --no-acl.
	KeepOwners bool
	// PostRestore lists SQL files run in order on the restored database, each in a
	// transaction (e.g. sanitising), as ServerConfig.Role when set. They run after the row counts were compared (the
	// counts prove the restore complete; sanitising may delete rows) and before ANALYZE.
	PostRestore []string
	// KeepOldRows leaves the tables the PostRestore files updated or deleted rows of as
	// the files left them. By default they are rewritten (mask.Rewrite: VACUUM FULL of
	// them, their TOAST tables and indexes, every populated materialized view refreshed,
	// their statistics analyzed again and the statistics catalogs rewritten): an UPDATE
	// leaves each old row version, a value the file replaced (production's, when it
	// masks), in the table's pages until VACUUM reuses the space. A rewrite costs about a
	// copy of those tables; set it for files that only sanitise what is not personal.
	KeepOldRows bool
	// SkipRowCounts skips comparing the manifest's row counts with the restored tables.
	SkipRowCounts bool
	// Progress, when set, receives progress events while pg_restore runs.
	Progress func(Progress)
	// Mask, when set, masks personal data while the data loads (see maskedRestore):
	// a backup with a column that needs a decision and has none fails before any row
	// is loaded (mask.ErrUnmasked), as does a rule naming a column it lacks (mask.ErrRule).
	Mask *mask.Rules
}

// Progress is one restore progress event.
type Progress struct {
	Done  int    // objects restored so far
	Total int    // objects in the dump's table of contents
	Item  string // the object just started, e.g. "TABLE DATA public.bug"
}

// RestoreResult describes a finished restore.
type RestoreResult struct {
	Database    string           // the target restored into
	Objects     int              // table of contents entries restored
	Restore     time.Duration    // pg_restore itself
	PostRestore time.Duration    // post-restore SQL files
	Analyze     time.Duration    // ANALYZE of every table (with the row counts when there are no files)
	RowCounts   map[string]int64 // compared counts, when the manifest had them
	Output      string           // tail of pg_restore's and the SQL files' messages
	Mask        *mask.Result     // what masking did, with RestoreOptions.Mask
	// Notices says, for each post-restore file that raised any, how many server notices
	// it raised ("sanitize.sql: 2 server notices (NOTICE 1, WARNING 1), their text
	// withheld"): their text may quote production's rows (Notices), so none is kept.
	Notices []string
}

// Errors callers test with errors.Is.
var (
	ErrNoBackup   = errors.New("no complete backup")
	ErrTooOld     = errors.New("backup too old")
	ErrChecksum   = errors.New("backup checksum mismatch")
	ErrCorrupt    = errors.New("backup unreadable")
	ErrProduction = errors.New("refusing to touch the production server")
	// ErrOtherServer: a restore connection (RestoreDSN, or the admin DSN resolved again)
	// reached another server than the admin connection the guard checked.
	ErrOtherServer      = errors.New("restore connection reaches another server than the admin DSN")
	ErrNoProduction     = errors.New("no production system_identifier known")
	ErrProtected        = errors.New("refusing to touch a protected database")
	ErrNotFound         = errors.New("database does not exist")
	ErrExists           = errors.New("database already exists")
	ErrNameTooLong      = errors.New("database name longer than 63 bytes")
	ErrRowCountMismatch = errors.New("restored row counts differ from the backup's")
	ErrNoTable          = errors.New("table not in the backup") // TableRows: the backup holds no data of the table
	// ErrStatsHidden: Sessions or Replicas asked as a role that cannot see other users'
	// sessions and standbys (neither a superuser nor in pg_read_all_stats).
	ErrStatsHidden = errors.New("other users' activity is hidden from this role")
)

// CommandError is a failed external program (pg_dump, pg_restore): its argv with
// passwords removed, its exit status (-1: not started, or killed by a signal) and the
// tail of its standard error. It is the command-failure error all of restage's packages
// share (internal/cmderr), so that errors.As with any package's CommandError finds it.
type CommandError = cmderr.Error
