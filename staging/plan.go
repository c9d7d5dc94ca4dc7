package staging

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"strconv"

	"github.com/restage/restage/dbrestore"
	"github.com/restage/restage/schema"
)

// Plan is a dry run: it says which backup a rebuild would take, which release it would
// build and which migrations would run, and changes nothing (it takes no lock, restores
// nothing, builds no release, stops nothing). Migrations are listed against the backup's
// schema level, read from its copy of the version table when the catalog can
// (dbrestore.DirCatalog.TableRows); else against the live database, or all of them when
// there is none yet.
//
// A dry run delivers no report and writes no history; its error says why the real run
// would not start (the same error the run would give). One thing it does change: a
// cutover record left by a run killed during its cutover is repaired first (under the
// lock), as the real run would, so that the plan describes a staging that serves.
func (r *Rebuilder) Plan(ctx context.Context) (*Report, error) {
	if err := r.refuseProduction("dry run"); err != nil {
		return nil, err
	}
	ru := r.begin(KindRebuild)
	ru.dry = true
	repaired, err := ru.planRepair(ctx)
	if err == nil {
		err = ru.plan(ctx)
	}
	ru.rep.Outcome = OutcomePlanned
	if err != nil {
		ru.rep.Outcome = OutcomeFailed
	}
	switch {
	case ru.rep.State != "":
	case repaired:
		ru.rep.State = "a killed run's cutover repaired (see the notes); nothing else changed (dry run)"
	default:
		ru.rep.State = "untouched (dry run)"
	}
	return ru.finish(ctx, err)
}

// planRepair repairs from a cutover record, holding the lock meanwhile, and says whether
// it did; without a record it does nothing and takes no lock.
func (ru *run) planRepair(ctx context.Context) (bool, error) {
	in, err := ru.r.readIntent()
	if err != nil || in == nil {
		return false, err
	}
	l, err := AcquireExclusive(ctx, ru.r.cfg.LockFile, LockOptions{})
	if err != nil {
		return false, fmt.Errorf("a cutover record of run %s is there, but the lock is held (the run may still be under way): %w", in.Run, err)
	}
	defer l.Release()
	return true, ru.repair(ctx)
}

func (ru *run) plan(ctx context.Context) error {
	if ru.r.cfg.Strategy == Physical {
		return ru.physicalPlan(ctx)
	}
	if ru.r.cfg.Backups == nil {
		if err := ru.guard(ctx); err != nil {
			return err
		}
		return ru.planCode(ctx, ru.r.cfg.Database)
	}
	wait := ru.r.cfg.Backup
	wait.Wait = 0 // look once
	if err := ru.fetchBackup(ctx, wait); err != nil {
		return err
	}
	return ru.planCode(ctx, ru.r.cfg.Database)
}

// tableReader is a catalog that reads small tables from its backups (DirCatalog).
type tableReader interface {
	TableRows(ctx context.Context, b *dbrestore.Backup, table string) ([][]*string, error)
}

// planCode describes the release that would be built and the migrations that would run
// against the backup (when one was fetched), else against database.
func (ru *run) planCode(ctx context.Context, database string) error {
	if err := ru.planRelease(ctx); err != nil {
		return err
	}
	return ru.step(ctx, "schema", func(ctx context.Context) (string, error) {
		tree, err := ru.r.cfg.Source.Open(ctx)
		if err != nil {
			return "", err
		}
		if tree.Close != nil {
			defer tree.Close()
		}
		dir := filepath.Join(tree.Dir, ru.r.cfg.Migrations)
		st, against, err := ru.planSchema(ctx, dir, database)
		if err != nil {
			return "", err
		}
		info := &SchemaInfo{From: st.Version, To: st.Latest}
		for _, m := range st.Pending {
			info.Pending = append(info.Pending, MigrationTime{Version: m.Version, Name: m.Name})
		}
		ru.rep.Schema = info
		return fmt.Sprintf("%s would run against %s (%d -> %d)", plural(len(st.Pending), "migration"), against, st.Version, st.Latest), nil
	})
}

// planRelease describes the release that would be built.
func (ru *run) planRelease(ctx context.Context) error {
	return ru.step(ctx, "release", func(ctx context.Context) (string, error) {
		rev, err := ru.r.cfg.Source.Describe(ctx)
		if err != nil {
			return "", err
		}
		ru.rep.Release = &ReleaseInfo{ID: "(not built)", Revision: rev.String()}
		return "would build a release from " + rev.String(), nil
	})
}

// planSchema returns the schema status the schema step would start from, and what it is
// the status of.
func (ru *run) planSchema(ctx context.Context, dir, database string) (*schema.Status, string, error) {
	if tr, ok := ru.r.cfg.Backups.(tableReader); ok && ru.backup != nil {
		table := "schema_migrations"
		if t, ok := ru.r.cfg.Schema.(interface{ Table() string }); ok {
			table = t.Table()
		}
		folder, err := schema.ReadFolder(dir)
		if err != nil {
			return nil, "", err
		}
		what := "the backup " + ru.backup.Name()
		rows, err := tr.TableRows(ctx, ru.backup, table)
		switch {
		case errors.Is(err, dbrestore.ErrNoTable):
			st, err := folder.StatusAt(0, false, false, what)
			return st, what + " (no " + table + " table in it)", err
		case err != nil:
			return nil, "", err
		}
		version, has, dirty, err := versionRow(rows)
		if err != nil {
			return nil, "", fmt.Errorf("%s: version table %s: %w", what, table, err)
		}
		st, err := folder.StatusAt(version, has, dirty, what)
		return st, what, err
	}
	live, err := ru.r.cfg.Databases.Exists(ctx, database)
	if err != nil {
		return nil, "", err
	}
	if !live {
		// No live database yet: list every migration of the release.
		folder, err := schema.ReadFolder(dir)
		if err != nil {
			return nil, "", err
		}
		st, err := folder.StatusAt(0, false, false, "an empty database")
		return st, "an empty database", err
	}
	st, err := ru.r.cfg.Schema.Status(ctx, schema.Target{DSN: ru.r.cfg.DSN(database), Dir: dir})
	return st, database, err
}

// versionRow reads golang-migrate's version table: no row, or one (version, dirty), where
// version -1 means none.
func versionRow(rows [][]*string) (version uint, has, dirty bool, err error) {
	switch {
	case len(rows) == 0:
		return 0, false, false, nil
	case len(rows) > 1:
		return 0, false, false, fmt.Errorf("want one row (version, dirty), found %d", len(rows))
	case len(rows[0]) != 2 || rows[0][0] == nil || rows[0][1] == nil:
		return 0, false, false, fmt.Errorf("want one row (version, dirty), found %d columns or a NULL", len(rows[0]))
	}
	v, err := strconv.ParseInt(*rows[0][0], 10, 64)
	if err != nil {
		return 0, false, false, fmt.Errorf("version %q: %w", *rows[0][0], err)
	}
	dirty = *rows[0][1] == "t"
	if v < 0 {
		return 0, false, dirty, nil
	}
	return uint(v), true, dirty, nil
}
