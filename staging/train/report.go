package train

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/restage/restage/internal/safefile"
)

// Outcome is how a cut ended.
type Outcome string

// Outcomes of a cut.
const (
	OutcomeOK      Outcome = "ok"
	OutcomeRefused Outcome = "refused" // a rule refused the cut: nothing changed
	OutcomeFailed  Outcome = "failed"  // git or the check could not run: nothing changed (a push is atomic)
)

// Commit is one commit a cut brought from devel into staging.
type Commit struct {
	ID      string    `json:"id"`
	Author  string    `json:"author"`
	Time    time.Time `json:"time"`
	Subject string    `json:"subject"`
}

// CheckResult is the check's run.
type CheckResult struct {
	Command  []string      `json:"command"`
	Duration time.Duration `json:"duration_ns"`
	Output   string        `json:"output,omitempty"` // its tail
	Error    string        `json:"error,omitempty"`
}

// CutReport is what a cut did (or why it refused), delivered under the train's topic
// and appended to state_dir/cuts.jsonl.
type CutReport struct {
	ID          string        `json:"id"`
	Started     time.Time     `json:"started"`
	Total       time.Duration `json:"total_ns"`
	Outcome     Outcome       `json:"outcome"`
	Repo        string        `json:"repo"` // credentials removed
	Devel       string        `json:"devel"`
	Staging     string        `json:"staging"`
	Tag         string        `json:"tag"`
	Commit      string        `json:"commit"`             // devel's head: staging's new head
	Replaced    string        `json:"replaced,omitempty"` // staging's head before ("": first cut)
	Commits     []Commit      `json:"commits,omitempty"`  // devel -> staging, newest first
	MoreCommits int           `json:"more_commits,omitempty"`
	Check       *CheckResult  `json:"check,omitempty"`
	Error       string        `json:"error,omitempty"`
	Notes       []string      `json:"notes,omitempty"`
	RequestedBy string        `json:"requested_by,omitempty"`
}

// Subject is the report's one-line summary.
func (r *CutReport) Subject() string {
	if r.Outcome == OutcomeOK {
		return fmt.Sprintf("cut %s OK: %s %s -> %s (%s from %s)", r.Tag, r.Staging, orNone(short(r.Replaced)),
			short(r.Commit), commits(len(r.Commits)+r.MoreCommits), r.Devel)
	}
	return fmt.Sprintf("cut %s %s: %s", r.Tag, r.Outcome, firstLine(r.Error))
}

// Text renders the report for mail and terminals.
func (r *CutReport) Text() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s\n\n", r.Subject())
	fmt.Fprintf(&b, "repository:  %s\noutcome:     %s\n", r.Repo, r.Outcome)
	if r.RequestedBy != "" {
		fmt.Fprintf(&b, "requested by: %s\n", r.RequestedBy)
	}
	fmt.Fprintf(&b, "started:     %s\ntotal:       %s\n", r.Started.Format(time.RFC3339), r.Total.Round(time.Millisecond))
	fmt.Fprintf(&b, "tag:         %s\n", r.Tag)
	fmt.Fprintf(&b, "%-12s %s\n", r.Devel+":", orNone(r.Commit))
	if r.Outcome == OutcomeOK {
		fmt.Fprintf(&b, "%-12s %s (was %s)\n", r.Staging+":", r.Commit, orNone(r.Replaced))
	} else {
		fmt.Fprintf(&b, "%-12s %s (unchanged)\n", r.Staging+":", orNone(r.Replaced))
	}
	if c := r.Check; c != nil {
		fmt.Fprintf(&b, "check:       %s (%s)", strings.Join(c.Command, " "), c.Duration.Round(time.Millisecond))
		if c.Error != "" {
			fmt.Fprintf(&b, " FAILED: %s", c.Error)
		}
		b.WriteString("\n")
		if c.Error != "" && c.Output != "" {
			for _, l := range strings.Split(strings.TrimRight(c.Output, "\n"), "\n") {
				fmt.Fprintf(&b, "             | %s\n", l)
			}
		}
	}
	if r.Error != "" {
		fmt.Fprintf(&b, "\n%s: %s\nnothing changed: %s, %s and the tags are as they were\n", strings.ToUpper(string(r.Outcome)), r.Error, r.Devel, r.Staging)
	}
	for _, n := range r.Notes {
		fmt.Fprintf(&b, "note: %s\n", n)
	}
	if len(r.Commits) > 0 {
		verb := "went"
		if r.Outcome != OutcomeOK {
			verb = "would go"
		}
		fmt.Fprintf(&b, "\n%s %s from %s into %s:\n", commits(len(r.Commits)+r.MoreCommits), verb, r.Devel, r.Staging)
		for _, c := range r.Commits {
			fmt.Fprintf(&b, "  %s %s (%s)\n", short(c.ID), c.Subject, c.Author)
		}
		if r.MoreCommits > 0 {
			fmt.Fprintf(&b, "  ... and %d more\n", r.MoreCommits)
		}
	}
	return b.String()
}

func orNone(s string) string {
	if s == "" {
		return "(none)"
	}
	return s
}

// firstLine returns s up to its first line break, without the colon that introduces
// the lines after it.
func firstLine(s string) string {
	l, rest, more := strings.Cut(s, "\n")
	if more && strings.TrimSpace(rest) != "" {
		l = strings.TrimSuffix(strings.TrimSpace(l), ":")
	}
	return l
}

// commits returns "1 commit" or "n commits".
func commits(n int) string {
	if n == 1 {
		return "1 commit"
	}
	return fmt.Sprintf("%d commits", n)
}

// CutsFile is the cuts' history in the train's state folder: one JSON report a line.
const CutsFile = "cuts.jsonl"

// appendCut appends rep to stateDir/cuts.jsonl (0600 in a 0700 folder, never through a
// symlink); no state folder, no history.
func appendCut(stateDir string, rep *CutReport) error {
	if stateDir == "" {
		return nil
	}
	if err := safefile.MkdirPrivate(stateDir); err != nil {
		return err
	}
	line, err := json.Marshal(rep)
	if err != nil {
		return err
	}
	f, err := os.OpenFile(filepath.Join(stateDir, CutsFile), os.O_WRONLY|os.O_APPEND|os.O_CREATE|syscall.O_NOFOLLOW, 0o600)
	if err != nil {
		return err
	}
	if _, err := f.Write(append(line, '\n')); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// lastCut returns the newest cut of stateDir's cuts.jsonl, without its commits; nil
// when there is none.
func lastCut(stateDir string) (*CutReport, error) {
	if stateDir == "" {
		return nil, nil
	}
	f, err := os.OpenFile(filepath.Join(stateDir, CutsFile), os.O_RDONLY|syscall.O_NOFOLLOW, 0)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	defer f.Close()
	data, err := io.ReadAll(f)
	if err != nil {
		return nil, err
	}
	lines := strings.Split(strings.TrimSpace(string(data)), "\n")
	for i := len(lines) - 1; i >= 0; i-- {
		var rep CutReport
		if json.Unmarshal([]byte(lines[i]), &rep) == nil && rep.ID != "" {
			rep.Commits, rep.MoreCommits = nil, 0
			return &rep, nil
		}
	}
	return nil, nil
}
