package staging

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/restage/restage/codesync"
	"github.com/restage/restage/internal/atomicfile"
	"github.com/restage/restage/internal/redact"
	"github.com/restage/restage/internal/safefile"
)

// IntentFile is the name, in the state folder, of the record of a cutover under way.
const IntentFile = "cutover.json"

// Phases of a cutover, in order, as its intent record says.
const (
	phaseStopping   = "stopping"   // the service is being (or was) stopped
	phaseMigrating  = "migrating"  // a promote's migrations run on the live database
	phaseSwapping   = "swapping"   // database names are being changed
	phaseSwapped    = "swapped"    // the new database is live, the old one kept as prev
	phaseActivating = "activating" // `current` is being moved to the new release
	phaseActivated  = "activated"  // `current` points at the new release
	// A rollback put the names (and `current`) back as before the cutover; only the
	// service may still need starting (its restart failed, or the run died before it).
	phaseRolledBack = "rolledback"
)

// intent records a cutover under way, so that a run killed during it (kill -9, power
// loss) leaves a trace that the next run repairs from: it is written before the
// service is stopped, updated before and after each change, and removed once the
// service is healthy again, on the new environment or the old one.
type intent struct {
	Run     string    `json:"run"` // the report ID of the run that wrote it
	Kind    string    `json:"kind"`
	PID     int       `json:"pid"`
	Started time.Time `json:"started"`
	Phase   string    `json:"phase"`
	Live    string    `json:"live"`           // the live database
	Next    string    `json:"next,omitempty"` // the database swapped in; "": none (a deploy keeping its database, inplace)
	Prev    string    `json:"prev"`
	Old     string    `json:"old"`    // where a previous prev steps aside during the cutover
	Failed  string    `json:"failed"` // where a rollback puts the new database
	HadLive bool      `json:"had_live"`
	HadPrev bool      `json:"had_prev"` // prev existed and was (or is being) renamed to old
	Release string    `json:"release"`  // the release being activated
	// Strategy physical: the slot switched in, and the slot live before ("": none).
	Slot    string `json:"slot,omitempty"`
	SlotWas string `json:"slot_was,omitempty"`
	// A promote: migrations began on the live database (phase migrating, and every
	// phase after it), which was at patch level SchemaFrom; the release goes to SchemaTo.
	Migrated   bool `json:"migrated,omitempty"`
	SchemaFrom uint `json:"schema_from,omitempty"`
	SchemaTo   uint `json:"schema_to,omitempty"`
}

// intentPath is where the intent record lives: the state folder, else beside the lock.
func (r *Rebuilder) intentPath() string {
	if r.cfg.StateDir != "" {
		return filepath.Join(r.cfg.StateDir, IntentFile)
	}
	return r.cfg.LockFile + "." + IntentFile
}

// record writes the intent record with the given phase (0600, atomically, never through
// a symlink).
func (ru *run) record(in *intent, phase string) error {
	in.Phase = phase
	data, err := json.MarshalIndent(in, "", "  ")
	if err != nil {
		return err
	}
	path := ru.r.intentPath()
	if err := mkdirPrivate(filepath.Dir(path)); err != nil {
		return fmt.Errorf("cutover record: %w", err)
	}
	if err := atomicfile.WriteFile(path, data, 0o600); err != nil {
		return fmt.Errorf("cutover record: %w", err)
	}
	ru.intent = in
	return nil
}

// clearIntent removes the intent record once the service is healthy again.
func (ru *run) clearIntent() {
	if ru.intent == nil {
		return
	}
	path := ru.r.intentPath()
	if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
		ru.log.Error("could not remove the cutover record; the next run will repair from it", keyErr, err)
		return
	}
	_ = atomicfile.SyncDir(filepath.Dir(path))
	ru.intent = nil
}

// readIntent returns the intent record left by a killed run, or nil.
func (r *Rebuilder) readIntent() (*intent, error) {
	f, err := os.OpenFile(r.intentPath(), os.O_RDONLY|syscall.O_NOFOLLOW, 0)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("cutover record: %w", err)
	}
	defer f.Close()
	// A record planted by another user is never followed.
	if err := safefile.CheckPrivateDir(filepath.Dir(r.intentPath())); err != nil {
		return nil, fmt.Errorf("cutover record: %w", err)
	}
	var in intent
	if err := json.NewDecoder(f).Decode(&in); err != nil {
		return nil, fmt.Errorf("cutover record %s: %w", r.intentPath(), err)
	}
	if in.Live == "" || in.Prev == "" || in.Old == "" || in.Failed == "" {
		return nil, fmt.Errorf("cutover record %s: names missing", r.intentPath())
	}
	if err := r.ownIntent(&in); err != nil {
		return nil, fmt.Errorf("cutover record %s: %w", r.intentPath(), err)
	}
	return &in, nil
}

// ownIntent refuses a record that names other databases than this environment's
// cutover writes: another environment's (two given one state_dir, or a record copied
// with a config), or from before database.name changed. Its repair would swap and
// drop the databases it names.
func (r *Rebuilder) ownIntent(in *intent) error {
	ok := in.Live == r.cfg.Database && in.Prev == r.prev() && in.Old == r.old() && in.Failed == r.failed() &&
		(in.Next == "" || in.Next == r.next() || in.Next == r.working())
	if ok {
		return nil
	}
	return fmt.Errorf("it names the database %q (with %q, %q, %q, %q), not this environment's %q: refused, nothing repaired; "+
		"repair with the config of the environment that wrote it, or remove it once its databases, release and service are checked by hand",
		in.Live, in.Next, in.Prev, in.Old, in.Failed, r.cfg.Database)
}

// repair puts staging back as it was before a cutover that a killed run left half
// done, following its intent record: connections allowed again on every database it
// names, names as they were before the cutover, `current` back on the release before,
// the service started and healthy. It runs (holding the lock) before anything else and
// reports what it did; without a record it does nothing.
func (ru *run) repair(ctx context.Context) error {
	in, err := ru.r.readIntent()
	if err != nil || in == nil {
		return err
	}
	ctx, cancel := ru.critical(ctx)
	defer cancel()
	ru.intent = in
	err = ru.step(ctx, "repair", func(ctx context.Context) (string, error) {
		did, err := ru.repairFrom(ctx, in)
		return strings.Join(did, "; "), err
	})
	how := fmt.Sprintf("killed during phase %q", in.Phase)
	if in.Phase == phaseRolledBack {
		how = "rolled back but not healthy again (its restart failed, or it was killed before)"
	}
	if err != nil {
		ru.rep.Outcome = OutcomeBroken
		ru.rep.State = fmt.Sprintf("a %s %s (run %s) could not be repaired: %s; the %s environment %s needs an operator (the record is %s)",
			in.Kind, how, in.Run, redact.String(err.Error()), ru.r.role(), ru.r.cfg.Environment, ru.r.intentPath())
		if in.Migrated {
			ru.rep.State += "; " + ru.migratedText(in, "the repair could not start it")
		}
		return err
	}
	ru.note("repaired the cutover of run %s (%s, pid %d) in the %s environment %s, %s: %s",
		in.Run, in.Kind, in.PID, ru.r.role(), ru.r.cfg.Environment, how, ru.rep.Steps[len(ru.rep.Steps)-1].Detail)
	if in.Migrated {
		ru.note("%s", ru.migratedText(in, "the repair started it again"))
	}
	ru.clearIntent()
	return nil
}

// migratedText says what a promote killed once its migrations began left: the live
// database's schema possibly ahead of the previous release, and what to decide.
func (ru *run) migratedText(in *intent, started string) string {
	return fmt.Sprintf("THE SCHEMA MAY BE AHEAD OF THE PREVIOUS RELEASE: run %s was killed after migrations began on the %s environment %s's live database %s "+
		"(patch level %d before, release %s goes to %d), and the previous release expects %d (%s). Check schema_migrations (version, dirty flag) first. "+
		"restage never reverses migrations on %s; the operator must decide: let the promote finish them (it runs again now, and refuses a dirty version, which must be repaired by hand), "+
		"fix forward (merge the fix into the staging branch, let staging's nightly run it, promote again), or reverse the migrations that ran by hand (their .down.sql files, newest first) to keep the previous release",
		in.Run, ru.r.role(), ru.r.cfg.Environment, in.Live, in.SchemaFrom, in.Release, in.SchemaTo, in.SchemaFrom, started, ru.r.role())
}

// repairFrom puts the environment back as it was before the run in, killed, changed
// anything: the service stopped, connections allowed again, the databases and the
// release put back, the service started.
func (ru *run) repairFrom(ctx context.Context, in *intent) ([]string, error) {
	if ru.r.cfg.Strategy == Physical {
		return ru.repairPhysical(ctx, in)
	}
	db := ru.r.cfg.Databases
	var did []string
	ids, err := ru.productionIDs(ctx)
	if err != nil {
		return did, err
	}
	// A production Rebuilder's databases refuse every change (a promote's cutover renames
	// nothing): only its release is put back.
	if ru.r.cfg.Role != RoleProduction {
		if err := db.GuardProduction(ctx, ids...); err != nil {
			return did, err
		}
	}
	// The killed run may have started the service on the new release: stop it first.
	if err := ru.r.cfg.Service.Stop(ctx); err != nil {
		return did, fmt.Errorf("stop the service: %w", err)
	}
	for _, name := range []string{in.Live, in.Next, in.Prev, in.Old, in.Failed} {
		if name == "" {
			continue
		}
		if err := db.AllowConnections(ctx, name); err != nil {
			return did, err
		}
	}
	did = append(did, "connections allowed")
	more, err := ru.repairDatabases(ctx, in)
	did = append(did, more...)
	if err != nil {
		return did, err
	}
	more, err = ru.repairRelease(ctx, in)
	did = append(did, more...)
	if err != nil {
		return did, err
	}
	if err := ru.startService(ctx); err != nil {
		return did, fmt.Errorf("start the service: %w", err)
	}
	return append(did, "service started"+map[bool]string{true: ", healthy", false: ""}[ru.r.cfg.Health != nil]), nil
}

// repairDatabases puts the swap strategy's database names back as they were before
// the killed run in: the previous database live again when the swap had happened,
// next dropped, old renamed back to prev. It returns what it did.
func (ru *run) repairDatabases(ctx context.Context, in *intent) ([]string, error) {
	db := ru.r.cfg.Databases
	var did []string
	exists := func(name string) (bool, error) { return db.Exists(ctx, name) }
	// After a rollback the names are as before the cutover: swapping them again would
	// put the database of the night before back live and drop the previous one.
	swapped := in.Phase != phaseStopping && in.Phase != phaseSwapping && in.Phase != phaseRolledBack
	if in.Phase == phaseSwapping && in.Next != "" {
		// The swap consumes next: if it is gone, the swap's transaction committed.
		ok, err := exists(in.Next)
		if err != nil {
			return did, err
		}
		swapped = !ok
	}
	if in.Next == "" {
		swapped = false
	}
	if swapped {
		if in.HadLive {
			if err := db.Swap(ctx, in.Live, in.Prev, in.Failed); err != nil {
				return did, fmt.Errorf("database: %w", err)
			}
			did = append(did, in.Live+" is the previous database again")
			if err := db.Drop(ctx, in.Failed); err != nil {
				return did, fmt.Errorf("database: %w", err)
			}
		} else {
			if err := db.Drop(ctx, in.Live); err != nil {
				return did, fmt.Errorf("database: %w", err)
			}
			did = append(did, "dropped "+in.Live+" (there was none before)")
		}
	}
	if !swapped && in.Next != "" {
		ok, err := exists(in.Next)
		if err != nil {
			return did, err
		}
		if ok {
			if err := db.Drop(ctx, in.Next); err != nil {
				return did, fmt.Errorf("database: %w", err)
			}
			did = append(did, "dropped "+in.Next+", prepared by the killed run")
		}
	}
	if in.HadPrev {
		oldThere, err := exists(in.Old)
		if err != nil {
			return did, err
		}
		prevThere, err := exists(in.Prev)
		if err != nil {
			return did, err
		}
		if oldThere && !prevThere {
			if err := db.Rename(ctx, in.Old, in.Prev); err != nil {
				return did, fmt.Errorf("database: %w", err)
			}
			did = append(did, in.Old+" is "+in.Prev+" again")
		}
	}
	return did, nil
}

// repairRelease puts `current` back on the release before in's, when the killed run
// had moved it.
func (ru *run) repairRelease(ctx context.Context, in *intent) ([]string, error) {
	if in.Phase != phaseActivating && in.Phase != phaseActivated && in.Phase != phaseRolledBack {
		return nil, nil
	}
	cur, err := ru.r.cfg.Releases.Current(ctx)
	if err != nil && !errors.Is(err, codesync.ErrNoRelease) {
		return nil, fmt.Errorf("release: %w", err)
	}
	if cur == nil || cur.ID != in.Release {
		return nil, nil
	}
	back, err := ru.r.cfg.Releases.Rollback(ctx)
	if err != nil {
		return nil, fmt.Errorf("release: %w", err)
	}
	if back != nil {
		return []string{"current -> " + back.ID}, nil
	}
	return []string{"current removed (there was no release before)"}, nil
}

// mkdirPrivate creates dir (and its parents) as 0700 folders when missing, refusing a
// symlink planted at its path.
func mkdirPrivate(dir string) error { return safefile.MkdirPrivate(dir) }
