package train

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/restage/restage/codesync"
	"github.com/restage/restage/internal/gitcred"
	"github.com/restage/restage/internal/redact"
	"github.com/restage/restage/staging"
)

// Status is where the train and every environment stand.
type Status struct {
	Repo        string `json:"repo"` // credentials removed
	Devel       string `json:"devel"`
	Staging     string `json:"staging"`
	DevelHead   string `json:"devel_head,omitempty"`
	StagingHead string `json:"staging_head,omitempty"`
	// DevelNotOnStaging counts devel's commits the staging branch lacks (the next cut's).
	DevelNotOnStaging *int `json:"devel_not_on_staging,omitempty"`
	// StagingNotOnProduction counts the staging branch's commits that production's live
	// release lacks (the next promote's); nil when no production environment is deployed.
	StagingNotOnProduction *int `json:"staging_not_on_production,omitempty"`
	// LastCut is the newest cut of the train's history (state_dir/cuts.jsonl), without
	// its commits; nil: none.
	LastCut      *CutReport          `json:"last_cut,omitempty"`
	Environments []EnvironmentStatus `json:"environments"`
	Problems     []string            `json:"problems,omitempty"`
}

// EnvironmentStatus is one environment's standing.
type EnvironmentStatus struct {
	Config      string   `json:"config"`
	Environment string   `json:"environment"`
	Role        string   `json:"role"`
	Release     string   `json:"release,omitempty"` // the live release's id
	Commit      string   `json:"commit,omitempty"`
	Ref         string   `json:"ref,omitempty"`  // the branch (or ref) it was built from
	Tags        []string `json:"tags,omitempty"` // tags of the repository naming the commit
	// Schema is the live database's patch level (nil: unknown), Latest the release's.
	Schema  *uint   `json:"schema,omitempty"`
	Latest  *uint   `json:"latest,omitempty"`
	Dirty   bool    `json:"dirty,omitempty"`
	LastRun *RunRef `json:"last_run,omitempty"`
	// BehindDevel counts devel's commits its live commit lacks.
	BehindDevel *int     `json:"behind_devel,omitempty"`
	Problems    []string `json:"problems,omitempty"`
}

// RunRef is an environment's last run.
type RunRef struct {
	ID      string          `json:"id"`
	Kind    string          `json:"kind"`
	Outcome staging.Outcome `json:"outcome"`
	Started time.Time       `json:"started"`
	Total   float64         `json:"total_seconds"`
	Error   string          `json:"error,omitempty"`
}

// Status reads where every environment of the config stands (its live release and
// commit, the branch and tags of that commit, its schema level, its last run) and how
// far devel is ahead of staging and staging of production. It changes nothing.
func (t *Train) Status(ctx context.Context) (*Status, error) {
	st := &Status{Repo: redact.String(t.cfg.Repo, gitcred.Secrets(t.cfg.Repo)...), Devel: t.cfg.Devel, Staging: t.cfg.Staging}
	work, err := os.MkdirTemp("", "restage-status-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(work)
	g := t.newGit(work)
	fetched := false
	if _, err := g.run(ctx, "init", "-q", "--bare"); err != nil {
		return nil, err
	}
	if _, err := g.run(ctx, "fetch", "-q", "--tags", "--", g.remote(), "+refs/heads/*:refs/heads/*"); err != nil {
		st.Problems = append(st.Problems, "repository: "+err.Error())
	} else {
		fetched = true
		st.DevelHead, _ = g.run(ctx, "rev-parse", "-q", "--verify", "refs/heads/"+t.cfg.Devel)
		st.StagingHead, _ = g.run(ctx, "rev-parse", "-q", "--verify", "refs/heads/"+t.cfg.Staging)
		if st.DevelHead != "" && st.StagingHead != "" {
			st.DevelNotOnStaging = count(ctx, g, st.StagingHead, st.DevelHead)
		}
	}
	if last, err := lastCut(t.cfg.StateDir); err != nil {
		st.Problems = append(st.Problems, "cuts: "+err.Error())
	} else {
		st.LastCut = last
	}
	for _, path := range t.cfg.Environments {
		es := EnvironmentStatus{Config: path}
		t.environment(ctx, path, &es)
		if fetched && es.Commit != "" {
			if tags, err := g.run(ctx, "tag", "--points-at", es.Commit); err == nil && tags != "" {
				es.Tags = strings.Split(tags, "\n")
			}
			if st.DevelHead != "" {
				es.BehindDevel = count(ctx, g, es.Commit, st.DevelHead)
			}
			if es.Role == staging.RoleProduction && st.StagingHead != "" {
				st.StagingNotOnProduction = count(ctx, g, es.Commit, st.StagingHead)
			}
		}
		st.Environments = append(st.Environments, es)
	}
	return st, nil
}

// count returns how many commits of to are not in from (nil: unknown, e.g. from is not
// in the repository).
func count(ctx context.Context, g *git, from, to string) *int {
	out, err := g.run(ctx, "rev-list", "--count", to, "^"+from, "--")
	if err != nil {
		return nil
	}
	n, err := strconv.Atoi(out)
	if err != nil {
		return nil
	}
	return &n
}

func (t *Train) environment(ctx context.Context, path string, es *EnvironmentStatus) {
	c, err := LoadEnvironment(path, t.cfg.Drivers)
	if err != nil {
		es.Problems = append(es.Problems, redact.String(err.Error()))
		return
	}
	es.Environment, es.Role = c.Environment, c.Role
	if es.Role == "" {
		es.Role = staging.RoleStaging
	}
	opts := staging.OpenOptions{Logger: t.quiet()}
	if c.Code.Source == "" && c.Code.Git == "" {
		// An experimental environment whose deploys name their code (experimental
		// -source or -git): Open wants a source, which status never builds from.
		opts.Source = noSource{}
	}
	rb, err := OpenEnvironment(c, opts)
	if err != nil {
		es.Problems = append(es.Problems, redact.String(err.Error()))
		return
	}
	defer rb.Close()
	s := rb.Standing(ctx)
	es.Problems = append(es.Problems, s.Problems...)
	if s.Release != nil {
		es.Release, es.Commit, es.Ref = s.Release.ID, s.Release.Revision.Commit, s.Release.Revision.Ref
	}
	if s.Schema != nil {
		v, l := s.Schema.Version, s.Schema.Latest
		es.Schema, es.Latest, es.Dirty = &v, &l, s.Schema.Dirty
	}
	if r := s.LastRun; r != nil {
		es.LastRun = &RunRef{ID: r.ID, Kind: r.Kind, Outcome: r.Outcome, Started: r.Started, Total: r.Total.Seconds(), Error: r.Error}
	}
}

// noSource is the code source status opens an environment without [code] source or git
// with: it only reads where the environment stands, and never builds a release.
type noSource struct{}

var errNoSource = errors.New("this environment's deploys name their code (experimental -source or -git)")

func (noSource) Describe(context.Context) (codesync.Revision, error) {
	return codesync.Revision{}, errNoSource
}
func (noSource) Open(context.Context) (*codesync.Tree, error) { return nil, errNoSource }

// Text renders the status for a terminal.
func (s *Status) Text() string {
	var b strings.Builder
	fmt.Fprintf(&b, "repository %s\n", s.Repo)
	fmt.Fprintf(&b, "  %-8s %s\n  %-8s %s\n", s.Devel, orNone(short(s.DevelHead)), s.Staging, orNone(short(s.StagingHead)))
	fmt.Fprintf(&b, "  %s commits not on %s: %s\n", s.Devel, s.Staging, num(s.DevelNotOnStaging))
	fmt.Fprintf(&b, "  %s commits not on production: %s\n", s.Staging, num(s.StagingNotOnProduction))
	if c := s.LastCut; c != nil {
		fmt.Fprintf(&b, "  last cut: %s %s at %s (%s -> %s)\n", c.Tag, c.Outcome, c.Started.Format(time.RFC3339), orNone(short(c.Replaced)), short(c.Commit))
	}
	for _, p := range s.Problems {
		fmt.Fprintf(&b, "  problem: %s\n", p)
	}
	for _, e := range s.Environments {
		name := e.Environment
		if name == "" {
			name = e.Config
		}
		fmt.Fprintf(&b, "\n%s (%s)\n", name, orNone(e.Role))
		if e.Release == "" {
			b.WriteString("  release:  (none)\n")
		} else {
			ref := e.Ref
			if len(e.Tags) > 0 {
				ref += ", tag " + strings.Join(e.Tags, ", ")
			}
			fmt.Fprintf(&b, "  release:  %s, commit %s (%s)\n", e.Release, orNone(short(e.Commit)), orNone(ref))
		}
		if e.Schema != nil {
			fmt.Fprintf(&b, "  schema:   patch level %d (release knows %d)", *e.Schema, *e.Latest)
			if e.Dirty {
				b.WriteString(", DIRTY")
			}
			b.WriteString("\n")
		} else {
			b.WriteString("  schema:   (unknown)\n")
		}
		if r := e.LastRun; r != nil {
			fmt.Fprintf(&b, "  last run: %s %s at %s (%s)", r.Kind, r.Outcome, r.Started.Format(time.RFC3339), time.Duration(r.Total*float64(time.Second)).Round(time.Second))
			if r.Error != "" {
				fmt.Fprintf(&b, ": %s", firstLine(r.Error))
			}
			b.WriteString("\n")
		} else {
			b.WriteString("  last run: (none)\n")
		}
		if e.BehindDevel != nil {
			fmt.Fprintf(&b, "  %s commits not on it: %d\n", s.Devel, *e.BehindDevel)
		}
		for _, p := range e.Problems {
			fmt.Fprintf(&b, "  problem: %s\n", p)
		}
	}
	return b.String()
}

func num(n *int) string {
	if n == nil {
		return "(unknown)"
	}
	return strconv.Itoa(*n)
}
