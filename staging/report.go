package staging

import (
	"fmt"
	"strings"
	"time"
)

// Outcome is how a run ended.
type Outcome string

// Outcomes.
const (
	OutcomeOK         Outcome = "ok"
	OutcomeFailed     Outcome = "failed"      // failed before the cutover: staging untouched
	OutcomeRolledBack Outcome = "rolled back" // failed after the cutover: put back as it was
	OutcomeBroken     Outcome = "broken"      // failed, and staging could not be put back
	OutcomeLocked     Outcome = "locked"      // another run holds the lock; nothing done
	OutcomePlanned    Outcome = "planned"     // dry run
)

// The kinds of run, in Report.Kind and Event.Kind.
const (
	KindRebuild = "rebuild" // Run: staging rebuilt from production's backup
	KindDeploy  = "deploy"  // Deploy: a branch's code on the live database
	KindPromote = "promote" // Promote: the release train's release on production
)

// Step is one step of a run.
type Step struct {
	Name     string        `json:"name"`
	Started  time.Time     `json:"started"`
	Duration time.Duration `json:"-"`      // in JSON: duration_seconds
	Status   string        `json:"status"` // ok, failed, skipped
	Detail   string        `json:"detail,omitempty"`
	Error    string        `json:"error,omitempty"`
	Output   string        `json:"output,omitempty"` // tail of the step's log
}

// BackupInfo names the backup a rebuild used.
type BackupInfo struct {
	Name     string        `json:"name"`
	Path     string        `json:"path"`
	Database string        `json:"database"`
	Created  time.Time     `json:"created"`
	Age      time.Duration `json:"-"`    // how old it was when the run took it; in JSON: age_seconds
	Size     int64         `json:"size"` // bytes
}

// MigrationTime is one applied migration and how long it took.
type MigrationTime struct {
	Version  uint          `json:"version"`
	Name     string        `json:"name"`
	Duration time.Duration `json:"-"` // in JSON: duration_seconds
	// SHA256 is the hex SHA-256 of the .up file that ran (unreadableFile when it could
	// not be read after it ran): a promote runs on production only the files staging ran.
	// "": not known (a run of an older restage, or a pending migration).
	SHA256 string `json:"sha256,omitempty"`
}

// SchemaInfo is the schema step's outcome.
type SchemaInfo struct {
	From       uint            `json:"from"`
	To         uint            `json:"to"`
	Migrations []MigrationTime `json:"migrations"`
	Pending    []MigrationTime `json:"pending,omitempty"` // dry run: would run
}

// ReleaseInfo names the release a run built and the one it replaced.
type ReleaseInfo struct {
	ID       string `json:"id"`
	Revision string `json:"revision"`
	Commit   string `json:"commit,omitempty"` // the revision's commit id (git)
	Previous string `json:"previous,omitempty"`
}

// Report is what a run did, delivered by notify and appended to the history. Its JSON
// (MarshalJSON) is a line of the history: durations in seconds.
type Report struct {
	ID          string        `json:"id"`
	Environment string        `json:"environment"`
	Kind        string        `json:"kind"` // KindRebuild, KindDeploy or KindPromote
	Strategy    Strategy      `json:"strategy"`
	Outcome     Outcome       `json:"outcome"`
	Started     time.Time     `json:"started"`
	Total       time.Duration `json:"-"` // in JSON: total_seconds
	Downtime    time.Duration `json:"-"` // service stopped until healthy again; in JSON: downtime_seconds
	Backup      *BackupInfo   `json:"backup,omitempty"`
	Release     *ReleaseInfo  `json:"release,omitempty"`
	Schema      *SchemaInfo   `json:"schema,omitempty"`
	Mask        *MaskInfo     `json:"mask,omitempty"` // what masking did, or the columns it lacked rules for
	Steps       []*Step       `json:"steps"`
	FailedStep  string        `json:"failed_step,omitempty"`
	Error       string        `json:"error,omitempty"`
	State       string        `json:"state"` // what state staging is in now
	Notes       []string      `json:"notes,omitempty"`
	RequestedBy string        `json:"requested_by,omitempty"`
	Log         string        `json:"-"` // the run's full log, attached to the mail
}

// Subject is the report's one-line summary.
func (rep *Report) Subject() string {
	what := rep.Kind
	if rep.Release != nil && rep.Release.Revision != "" && rep.Kind == KindDeploy {
		what += " of " + rep.Release.Revision
	}
	switch rep.Outcome {
	case OutcomeOK:
		return fmt.Sprintf("%s %s OK in %s (downtime %s)", rep.Environment, what, round(rep.Total), round(rep.Downtime))
	case OutcomePlanned:
		return fmt.Sprintf("%s %s dry run", rep.Environment, what)
	default:
		if rep.FailedStep == "" {
			return fmt.Sprintf("%s %s %s", rep.Environment, what, rep.Outcome)
		}
		return fmt.Sprintf("%s %s %s at step %s", rep.Environment, what, rep.Outcome, rep.FailedStep)
	}
}

// plural returns "1 migration" or "n migrations": n and noun, with an s unless n is 1.
func plural(n int, noun string) string {
	if n == 1 {
		return "1 " + noun
	}
	return fmt.Sprintf("%d %ss", n, noun)
}

func round(d time.Duration) time.Duration {
	switch {
	case d >= time.Minute:
		return d.Round(time.Second)
	case d >= time.Second:
		return d.Round(10 * time.Millisecond)
	default:
		return d.Round(time.Millisecond)
	}
}

// Text renders the report as plain text for mail and terminals.
func (rep *Report) Text() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s\n\n", rep.Subject())
	fmt.Fprintf(&b, "environment: %s\nkind:        %s\nstrategy:    %s\noutcome:     %s\n", rep.Environment, rep.Kind, rep.Strategy, rep.Outcome)
	if rep.RequestedBy != "" {
		fmt.Fprintf(&b, "requested by: %s\n", rep.RequestedBy)
	}
	fmt.Fprintf(&b, "started:     %s\ntotal:       %s\ndowntime:    %s\n", rep.Started.Format(time.RFC3339), round(rep.Total), round(rep.Downtime))
	if rep.Backup != nil {
		fmt.Fprintf(&b, "backup:      %s (%s, created %s, %s old, %s)\n", rep.Backup.Name, rep.Backup.Database,
			rep.Backup.Created.Format(time.RFC3339), round(rep.Backup.Age), humanBytes(rep.Backup.Size))
	}
	if rep.Release != nil {
		fmt.Fprintf(&b, "release:     %s from %s", rep.Release.ID, rep.Release.Revision)
		if rep.Release.Previous != "" {
			fmt.Fprintf(&b, " (was %s)", rep.Release.Previous)
		}
		b.WriteString("\n")
	}
	if s := rep.Schema; s != nil {
		fmt.Fprintf(&b, "schema:      %d -> %d\n", s.From, s.To)
		for _, m := range s.Migrations {
			fmt.Fprintf(&b, "  applied %d_%s in %s\n", m.Version, m.Name, round(m.Duration))
		}
		for _, m := range s.Pending {
			fmt.Fprintf(&b, "  would apply %d_%s\n", m.Version, m.Name)
		}
	}
	rep.Mask.text(&b)
	switch {
	case rep.Error != "" && rep.FailedStep != "":
		fmt.Fprintf(&b, "\nFAILED at step %s: %s\n", rep.FailedStep, rep.Error)
	case rep.Error != "":
		fmt.Fprintf(&b, "\nFAILED: %s\n", rep.Error)
	}
	fmt.Fprintf(&b, "\nstate now: %s\n", rep.State)
	for _, n := range rep.Notes {
		fmt.Fprintf(&b, "note: %s\n", n)
	}
	b.WriteString("\nsteps:\n")
	for _, s := range rep.Steps {
		fmt.Fprintf(&b, "  %-10s %-7s %9s", s.Name, s.Status, round(s.Duration))
		if s.Detail != "" {
			fmt.Fprintf(&b, "  %s", s.Detail)
		}
		b.WriteString("\n")
		if s.Error != "" {
			fmt.Fprintf(&b, "             error: %s\n", s.Error)
		}
		if s.Output != "" && s.Status == "failed" {
			for _, line := range strings.Split(strings.TrimRight(s.Output, "\n"), "\n") {
				fmt.Fprintf(&b, "             | %s\n", line)
			}
		}
	}
	return b.String()
}

func humanBytes(n int64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := int64(unit), 0
	for m := n / unit; m >= unit; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(n)/float64(div), "KMGTPE"[exp])
}
