package codesync

import (
	"context"
	"errors"
	"time"

	"github.com/restage/restage/internal/cmderr"
)

// Source delivers a code tree.
type Source interface {
	// Describe says what Open would deliver, without copying anything (used by dry runs).
	Describe(ctx context.Context) (Revision, error)
	// Open makes the tree available as a local folder until the Tree is closed.
	Open(ctx context.Context) (*Tree, error)
}

// Revision says what a source delivered.
type Revision struct {
	Source string `json:"source"`           // folder path or repository (credentials removed)
	Ref    string `json:"ref,omitempty"`    // branch, tag or commit asked for (git)
	Commit string `json:"commit,omitempty"` // commit id (git)
}

// String returns "source", "source@ref" or "source@ref (commit)".
func (r Revision) String() string {
	s := r.Source
	if r.Ref != "" {
		s += "@" + r.Ref
	}
	if r.Commit != "" && r.Commit != r.Ref {
		s += " (" + r.Commit + ")"
	}
	return s
}

// Tree is a source's code, readable as a local folder.
type Tree struct {
	Dir      string
	Revision Revision
	// Close releases the folder (a git export is removed); nil when there is nothing to release.
	Close func() error
}

// State is a release's state, recorded in its metadata file.
type State string

// Release states.
const (
	StateBuilt  State = "built"  // complete, not (yet) activated
	StateActive State = "active" // the one `current` points at
	StateFailed State = "failed" // rolled back or never fit to go live; not counted by Prune
)

// Release is a complete release folder under the releases folder.
type Release struct {
	ID       string    `json:"id"` // sorts by creation time
	Dir      string    `json:"-"`  // releases/<id>
	Revision Revision  `json:"revision"`
	Created  time.Time `json:"created"`
	State    State     `json:"state"`
	Files    int       `json:"files"`  // regular files in the tree
	Linked   int       `json:"linked"` // of which hard-linked from the previous release
	// Activated is when `current` was last pointed at the release (zero: never).
	Activated time.Time `json:"activated,omitzero"`
}

// Syncer builds releases and switches the `current` symlink between them.
type Syncer interface {
	// Build copies src into releases/<id>.partial, installs overlays, and renames it to
	// releases/<id> when complete. Leftover .partial folders of crashed runs are removed first.
	Build(ctx context.Context, src Source) (*Release, error)
	// Activate points `current` at r atomically and returns the release it pointed at
	// before (nil when there was none). It is all or nothing: on an error, current is
	// what it was before (unless the error says that putting it back failed too).
	Activate(ctx context.Context, r *Release) (previous *Release, err error)
	// Current returns the release `current` points at, or an error wrapping ErrNoRelease
	// when current is absent or points at none of the releases.
	Current(ctx context.Context) (*Release, error)
	// Rollback marks the active release failed and points `current` back at the newest
	// good release before it, preferring one that has been active before over one that was
	// only built (removing `current` when there is none), which it returns.
	Rollback(ctx context.Context) (*Release, error)
	// Discard marks a release that never went live failed, so Prune removes it first.
	// Should `current` point at r (an activation that could not be undone), Discard rolls
	// it back first, as Rollback does.
	Discard(ctx context.Context, r *Release) error
	// Prune removes releases beyond the configured number of good ones, never the active
	// release nor the newest good one.
	Prune(ctx context.Context) error
}

// Errors callers test with errors.Is.
var (
	ErrNoSource        = errors.New("source does not exist")
	ErrNotDir          = errors.New("not a folder")
	ErrExternalSymlink = errors.New("symlink points outside the tree")
	ErrCurrentNotLink  = errors.New("current exists and is not a symlink")
	ErrCrossFilesystem = errors.New("releases folder and current are on different filesystems")
	ErrNoRelease       = errors.New("no release")
	ErrNoRevision      = errors.New("no such revision")
	ErrConfig          = errors.New("invalid codesync configuration")
	// ErrUnsafeTree: a git tree holds what no checkout can (a name twice, an entry under a
	// symlink, a path leaving the tree); nothing of it is written outside the export.
	ErrUnsafeTree = errors.New("unsafe git tree")
	ErrTimeout    = errors.New("timed out") // a git command ran longer than GitSource.Timeout
)

// CommandError is a failed external program (git): its argv (credentials removed), its
// exit status (-1: not started or killed) and the tail of its standard error. It is the
// command-failure error all of restage's packages share (internal/cmderr), so that
// errors.As with any package's CommandError finds it.
type CommandError = cmderr.Error
