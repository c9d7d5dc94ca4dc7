package physical

import (
	"context"
	"errors"
	"time"

	"github.com/restage/restage/dbrestore"
	"github.com/restage/restage/internal/cmderr"
)

// BackupSet is one physical backup of production's cluster, as its source describes it.
type BackupSet struct {
	Label            string    // the source's name for it (pgBackRest: "20261202-065649F")
	Type             string    // full, diff, incr (pgBackRest), base (pg_basebackup)
	Started, Stopped time.Time // the backup ran between these; Stopped is its consistent point
	Size             int64     // bytes of the cluster it restores
	RepoSize         int64     // bytes of it in the repository (compressed), 0: unknown
	SystemIdentifier uint64    // the source cluster's system_identifier: production's
	Version          string    // the source's PostgreSQL major version
}

// Age returns how old the backup's consistent point was at now.
func (b *BackupSet) Age(now time.Time) time.Duration { return now.Sub(b.Stopped) }

// Source is where physical backups of production come from: pgBackRest here; WAL-G or
// Barman would be one more implementation. A source only reads its repository.
type Source interface {
	// Latest returns the newest backup set that can be restored, ErrNoBackup (from
	// dbrestore) when there is none, ErrCorrupt when the repository reports a problem.
	Latest(ctx context.Context) (*BackupSet, error)
	// Verify checks set before anything is written for it (Clusters.Restore calls it
	// before it stops or empties the idle slot): ErrChecksum when the set does not match
	// what its source recorded, ErrTablespace when it holds tablespaces restage cannot
	// restore. A source that checks each file as it restores it may return nil.
	Verify(ctx context.Context, set *BackupSet) error
	// Restore writes set into dir, a data directory to be, set up to recover to the
	// set's consistent point and promote, with archiving off. With opts.Delta, dir may
	// hold an earlier copy of which only the files that differ are replaced.
	Restore(ctx context.Context, set *BackupSet, dir string, opts RestoreOptions) error
	// Origin is what the source knows of production's server (from its own
	// configuration), for refusing production as a target; zero fields: unknown.
	Origin() Origin
}

// RestoreOptions are the per-call options of Source.Restore.
type RestoreOptions struct {
	Delta bool // copy only the files that differ from what dir holds
	// ByTime, with Delta, trusts a file whose size and modification time match the
	// backup's (else each file is read for its checksum): the caller has given every
	// file it changed since the last restore a time no backup holds.
	ByTime bool
	// Verified: the caller has had Verify accept set just before, so Restore need not
	// check it again (a base backup is not read twice).
	Verified bool
}

// Origin is where production's cluster lives, as far as a source knows.
type Origin struct {
	Host string // "" or a local name: this host
	Port int    // 0: unknown
	Dir  string // its data directory on its host, "": unknown
}

// Errors callers test with errors.Is, besides dbrestore's ErrNoBackup, ErrTooOld,
// ErrCorrupt and ErrProduction, which this package returns too.
var (
	// ErrNotOurs: a data directory without restage's marker for this environment; it is
	// never stopped, started, moved or deleted.
	ErrNotOurs = errors.New("data directory not created by restage for this environment")
	// ErrForeign: the live cluster holds databases this environment does not manage.
	ErrForeign = errors.New("the live cluster holds databases this environment does not manage")
	// ErrSlot: a slot is not in the state an operation needs (e.g. not running).
	ErrSlot = errors.New("cluster slot")
	// ErrGuard: a connection reached a server whose data directory is not the slot's.
	ErrGuard = errors.New("not restage's cluster")
	// ErrSettings: a setting restage controls itself was given.
	ErrSettings = errors.New("setting controlled by restage")
	// ErrTablespace: a base backup of a cluster with tablespaces, which restage neither
	// takes nor restores (their paths are production's); pgBackRest's restore maps them.
	ErrTablespace = errors.New("tablespaces in a base backup (take a pgBackRest backup: its restore maps them into the slot)")
)

// Re-exported for callers of this package alone.
var (
	ErrNoBackup   = dbrestore.ErrNoBackup
	ErrTooOld     = dbrestore.ErrTooOld
	ErrCorrupt    = dbrestore.ErrCorrupt
	ErrChecksum   = dbrestore.ErrChecksum
	ErrProduction = dbrestore.ErrProduction
)

// CommandError is a failed external program (pgbackrest, pg_ctl).
type CommandError = cmderr.Error
