package staging

import (
	"context"
	"errors"
	"io/fs"
	"path/filepath"

	"github.com/restage/restage/codesync"
	"github.com/restage/restage/internal/redact"
	"github.com/restage/restage/schema"
)

// Standing is where an environment stands: the release `current` points at, the live
// database's patch level against that release's migrations, and the last run in its
// history. Parts that could not be read are nil, with the reason in Problems.
type Standing struct {
	Environment string
	Role        string            // staging, experimental or production
	Release     *codesync.Release // the live release; nil: none yet
	Schema      *schema.Status    // the live database against the live release's migrations
	LastRun     *Report           // the newest run of its history (without the log)
	Problems    []string          // what could not be read, and why
}

// Standing reads where the environment stands. It changes nothing (it takes no lock,
// and on production it only reads the version table).
func (r *Rebuilder) Standing(ctx context.Context) *Standing {
	st := &Standing{Environment: r.cfg.Environment, Role: r.cfg.Role}
	if st.Role == "" {
		st.Role = RoleStaging
	}
	rel, err := r.cfg.Releases.Current(ctx)
	switch {
	case errors.Is(err, codesync.ErrNoRelease):
	case err != nil:
		st.Problems = append(st.Problems, "release: "+redact.String(err.Error()))
	default:
		st.Release = rel
		s, err := r.cfg.Schema.Status(ctx, schema.Target{DSN: r.cfg.DSN(r.cfg.Database),
			Dir: filepath.Join(rel.Dir, r.cfg.Migrations), Role: r.cfg.SchemaRole})
		if err != nil {
			st.Problems = append(st.Problems, "schema: "+redact.String(err.Error()))
		} else {
			st.Schema = s
		}
	}
	if r.cfg.StateDir != "" {
		runs, err := History(r.cfg.StateDir)
		switch {
		case errors.Is(err, fs.ErrNotExist):
		case err != nil && !errors.Is(err, ErrHistoryCorrupt):
			st.Problems = append(st.Problems, "history: "+redact.String(err.Error()))
		}
		if len(runs) > 0 {
			st.LastRun = runs[len(runs)-1]
		}
	}
	return st
}
