package staging

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"

	"github.com/restage/restage/schema"
)

// ErrNoClone is returned by a deploy asked to refresh the database when no waiting
// clone exists.
var ErrNoClone = errors.New("no waiting clone to refresh the database from")

// DeployOptions are the per-call options of Deploy.
type DeployOptions struct {
	// RefreshDB requires the waiting clone "<Database>_next" (left by the nightly
	// rebuild's clones) and swaps it in. Without it, a waiting clone is still used when
	// there is one, and the current database is kept (and upgraded) otherwise.
	RefreshDB bool
	// RequestedBy names who asked for the deploy (e.g. $USER), for the report.
	RequestedBy string
}

// Deploy rolls out the configured source without restoring a backup: code, schema and
// restart, with the same lock, cutover, health gate, rollback and report as Run. When
// the nightly rebuild left a clone "<Database>_next", it is upgraded with the new
// release's migrations and swapped in at the cutover; otherwise the live database is
// kept: it is copied and the copy upgraded while the service is stopped (only when
// there are migrations to run), so a failing migration leaves it as it was. A release
// whose migrations are behind the live database is refused, and so is a Rebuilder whose
// role is production or, named explicitly, staging (ErrRole): a branch deployed onto
// staging would bypass the release train.
func (r *Rebuilder) Deploy(ctx context.Context, opts DeployOptions) (*Report, error) {
	if err := r.refuseProduction("deploy"); err != nil {
		return nil, err
	}
	if r.cfg.Role == RoleStaging {
		return nil, fmt.Errorf("%w: %s is a staging environment (role = %q): the nightly rebuilds it with the staging branch; deploys go to an environment with role %q (or none)",
			ErrRole, r.cfg.Environment, RoleStaging, RoleExperimental)
	}
	ru := r.begin(KindDeploy)
	ru.rep.RequestedBy = opts.RequestedBy
	return ru.locked(ctx, func(ctx context.Context) error { return ru.deploy(ctx, opts) })
}

// deploy is Deploy's run: the release built, and the database the waiting clone
// upgraded, the live one as it is, or a copy of it upgraded, then the cutover.
func (ru *run) deploy(ctx context.Context, opts DeployOptions) error {
	if ru.r.cfg.Strategy == Physical {
		ru.rep.State = "untouched"
		return fmt.Errorf("%w: deploys need a logical strategy (swap or inplace); strategy physical only rebuilds", ErrConfig)
	}
	db := ru.r.cfg.Databases
	live, next, work := ru.r.cfg.Database, ru.r.next(), ru.r.working()
	if err := ru.guard(ctx); err != nil {
		ru.rep.State = ru.untouched()
		return err
	}
	if err := ru.clean(ctx); err != nil {
		ru.rep.State = ru.untouched()
		return err
	}
	waiting, err := ru.claimClone(ctx, opts)
	if err != nil {
		ru.rep.State = ru.untouched()
		return err
	}
	if err := ru.build(ctx); err != nil {
		ru.abandon(ctx, ifThen(waiting, work))
		ru.rep.State = ru.untouched()
		return err
	}
	if waiting {
		if err := ru.upgrade(ctx, work); err != nil {
			// The clone is used up (possibly dirty); the next nightly makes a fresh one.
			ru.abandon(ctx, work)
			ru.rep.State = ru.untouched() + "; the waiting clone " + next + " was used up"
			return err
		}
		return ru.cutover(ctx, work, nil)
	}

	// Keep the live database: check the release is not behind it before stopping anything.
	st, err := ru.checkLive(ctx)
	if err != nil {
		ru.abandon(ctx, "")
		ru.rep.State = ru.untouched()
		return err
	}
	if len(st.Pending) == 0 {
		ru.rep.Schema = &SchemaInfo{From: st.Version, To: st.Version}
		return ru.cutover(ctx, "", nil)
	}
	// Copy the live database while the service is stopped and upgrade the copy, so a
	// failing migration leaves the live one as it was.
	return ru.cutover(ctx, work, func(ctx context.Context) error {
		err := ru.step(ctx, "copy", func(ctx context.Context) (string, error) {
			return bounded(ctx, ru.r.cfg.Timeouts.Restore, "database.restore_timeout", func(ctx context.Context) (string, error) {
				return live + " -> " + work, db.Clone(ctx, live, work)
			})
		})
		if err != nil {
			return err
		}
		return ru.upgrade(ctx, work)
	})
}

// claimClone is a deploy's database step: it says whether the nightly left a waiting
// clone, and claims it (renamed to the working name) when there is one.
func (ru *run) claimClone(ctx context.Context, opts DeployOptions) (bool, error) {
	db := ru.r.cfg.Databases
	live, next, work := ru.r.cfg.Database, ru.r.next(), ru.r.working()
	var waiting bool
	err := ru.step(ctx, "database", func(ctx context.Context) (string, error) {
		var err error
		if waiting, err = db.Exists(ctx, next); err != nil {
			return "", err
		}
		if opts.RefreshDB && !waiting {
			return "", fmt.Errorf("%w: %s does not exist (the nightly rebuild makes it when its clones list %q)", ErrNoClone, next, live)
		}
		if !waiting && !ru.hadLive {
			return "", fmt.Errorf("no database %s and no waiting clone %s: run the nightly rebuild with clones = [%q] first", live, next, live)
		}
		if !waiting {
			return "keeping the database " + live, nil
		}
		// Claim the clone, so that a nightly rebuild running meanwhile can leave a new
		// one without touching this one.
		if err := db.Rename(ctx, next, work); err != nil {
			return "", err
		}
		return "refreshing the database from the waiting clone " + next, nil
	})
	return waiting, err
}

// checkLive is a deploy's check step when it keeps the live database.
func (ru *run) checkLive(ctx context.Context) (*schema.Status, error) {
	var st *schema.Status
	err := ru.step(ctx, "check", func(ctx context.Context) (string, error) {
		var err error
		st, err = ru.liveStatus(ctx, "", ": deploy a branch that has its migrations, or refresh the database from the nightly clone (-refresh-db)")
		if err != nil {
			return "", err
		}
		if len(st.Pending) > 0 && ru.r.cfg.MigrationDSN != nil {
			// The migrations run on a copy once the service is stopped: their login is
			// checked now, so that a refused one stops nothing.
			if _, err := ru.r.cfg.MigrationDSN(ctx, ru.r.cfg.Database); err != nil {
				return "", err
			}
		}
		return fmt.Sprintf("%s at %d, release at %d: %s to run", ru.r.cfg.Database, st.Version, st.Latest, plural(len(st.Pending), "migration")), nil
	})
	return st, err
}

// liveStatus reads the live database's schema status against the release's migrations,
// as role when it is not "", and refuses a dirty database and one ahead of the release
// (hint, appended to that error, says what to do).
func (ru *run) liveStatus(ctx context.Context, role, hint string) (*schema.Status, error) {
	live := ru.r.cfg.Database
	st, err := ru.r.cfg.Schema.Status(ctx, schema.Target{
		DSN: ru.r.cfg.DSN(live), Dir: filepath.Join(ru.release.Dir, ru.r.cfg.Migrations), Role: role})
	if err != nil {
		return nil, err
	}
	if st.Dirty {
		return nil, fmt.Errorf("%w: %s is dirty at version %d", schema.ErrDirty, live, st.Version)
	}
	if st.Version > st.Latest {
		return nil, fmt.Errorf("%w: %s's %s is at %d, release %s knows %d%s",
			schema.ErrAhead, ru.r.cfg.Environment, live, st.Version, ru.release.ID, st.Latest, hint)
	}
	return st, nil
}

func ifThen(cond bool, s string) string {
	if cond {
		return s
	}
	return ""
}
