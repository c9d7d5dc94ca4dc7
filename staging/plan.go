package staging

import (
	"context"
	"fmt"
	"path/filepath"

	"github.com/restage/restage/schema"
)

// Plan is a dry run: it says which backup a rebuild would take, which release it would
// build and which migrations would run, and changes nothing (it takes no lock, restores
// nothing, builds no release, stops nothing). Migrations are listed against the live
// database, or all of them when there is none yet.
func (r *Rebuilder) Plan(ctx context.Context) (*Report, error) {
	ru := r.begin("rebuild")
	ru.rep.Outcome = OutcomePlanned
	err := ru.plan(ctx)
	if err != nil {
		ru.rep.Outcome = OutcomeFailed
	}
	ru.rep.State = "untouched (dry run)"
	return ru.finish(ctx, err)
}

func (ru *run) plan(ctx context.Context) error {
	if ru.r.cfg.Backups != nil {
		wait := ru.r.cfg.Backup
		wait.Wait = 0 // look once
		if err := ru.fetchBackup(ctx, wait); err != nil {
			return err
		}
	}
	return ru.planCode(ctx, ru.r.cfg.Database)
}

// planCode describes the release that would be built and the migrations that would run
// against database.
func (ru *run) planCode(ctx context.Context, database string) error {
	err := ru.step(ctx, "release", func(ctx context.Context) (string, error) {
		rev, err := ru.r.cfg.Source.Describe(ctx)
		if err != nil {
			return "", err
		}
		ru.rep.Release = &ReleaseInfo{ID: "(not built)", Revision: rev.String()}
		return "would build a release from " + rev.String(), nil
	})
	if err != nil {
		return err
	}
	return ru.step(ctx, "schema", func(ctx context.Context) (string, error) {
		live, err := ru.r.cfg.Databases.Exists(ctx, database)
		if err != nil {
			return "", err
		}
		tree, err := ru.r.cfg.Source.Open(ctx)
		if err != nil {
			return "", err
		}
		if tree.Close != nil {
			defer tree.Close()
		}
		dir := filepath.Join(tree.Dir, ru.r.cfg.Migrations)
		against := database
		var st *schema.Status
		if live {
			st, err = ru.r.cfg.Schema.Status(ctx, schema.Target{DSN: ru.r.cfg.DSN(database), Dir: dir})
		} else {
			// No live database yet: list every migration of the release.
			against = "an empty database"
			st, err = folderStatus(dir)
		}
		if err != nil {
			return "", err
		}
		info := &SchemaInfo{From: st.Version, To: st.Latest}
		for _, m := range st.Pending {
			info.Pending = append(info.Pending, MigrationTime{Version: m.Version, Name: m.Name})
		}
		ru.rep.Schema = info
		return fmt.Sprintf("%d migrations would run against %s (%d -> %d)", len(st.Pending), against, st.Version, st.Latest), nil
	})
}

// folderStatus is the status of an empty database against the migrations in dir.
func folderStatus(dir string) (*schema.Status, error) {
	f, err := schema.ReadFolder(dir)
	if err != nil {
		return nil, err
	}
	return &schema.Status{Latest: f.Latest(), Pending: f.Migrations}, nil
}
