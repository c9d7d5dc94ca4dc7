package historypage

import (
	_ "embed"
	"fmt"
	"html/template"
	"io"
	"math"
	"slices"
	"strings"
	"time"

	"github.com/restage/restage/staging"
)

//go:embed page.html
var pageHTML string

var pageTemplate = template.Must(template.New("page").Parse(pageHTML))

// view is what the template shows.
type view struct {
	Title       string
	Generated   string
	Environment string
	Warnings    []string
	Runs        int // in the history
	Shown       int // in the table and plots
	Summary     []stat
	Plots       []*figure
	Rows        []row
}

// stat is one figure of the summary.
type stat struct {
	Label, Value, Note string
}

// figure is one plot: its SVG, or why there is none.
type figure struct {
	Title   string
	Caption string
	Wide    bool
	SVG     template.HTML // gonum/plot's output
	Empty   string        // shown instead when there is nothing to plot
}

// row is one run in the table.
type row struct {
	ID, Date, Kind, Strategy    string
	Outcome, OutcomeClass       string
	Total, Downtime             string
	BackupAge, BackupSize       string
	Backup                      string // its name, as a tooltip
	Release, Revision, Previous string
	Schema, Migrations          string
	FailedStep, Error           string
	ErrorShort                  string
}

func render(w io.Writer, all []*staging.Report, opts Options, warnings []string) error {
	runs := all
	if len(runs) > opts.Runs {
		runs = runs[len(runs)-opts.Runs:]
	}
	v := &view{
		Title:     opts.Title,
		Generated: opts.Now().In(opts.Location).Format("2006-01-02 15:04 MST"),
		Warnings:  warnings,
		Runs:      len(all),
		Shown:     len(runs),
	}
	if len(runs) > 0 {
		v.Environment = runs[len(runs)-1].Environment
	}
	if v.Title == "" {
		v.Title = "restage history"
		if v.Environment != "" {
			v.Title = v.Environment + " history"
		}
	}
	if len(runs) > 0 {
		v.Summary = summary(runs, opts)
		plots, err := plotAll(runs, opts)
		if err != nil {
			return err
		}
		v.Plots = plots
	}
	for i := len(runs) - 1; i >= 0; i-- {
		v.Rows = append(v.Rows, newRow(runs[i], opts.Location))
	}
	return pageTemplate.Execute(w, v)
}

func newRow(rep *staging.Report, loc *time.Location) row {
	r := row{
		ID: rep.ID, Date: rep.Started.In(loc).Format("2006-01-02 15:04"), Kind: rep.Kind, Strategy: string(rep.Strategy),
		Outcome: string(rep.Outcome), OutcomeClass: outcomeClass(rep.Outcome),
		Total: duration(rep.Total), Downtime: "—",
		BackupAge: "—", BackupSize: "—", Release: "—", Schema: "—", FailedStep: rep.FailedStep, Error: rep.Error,
	}
	if rep.Downtime > 0 {
		r.Downtime = duration(rep.Downtime)
	}
	if b := rep.Backup; b != nil {
		r.BackupAge, r.BackupSize, r.Backup = duration(b.Age.Round(time.Minute)), bytesGB(b.Size), b.Name
	}
	if rel := rep.Release; rel != nil {
		r.Release, r.Revision, r.Previous = rel.ID, rel.Revision, rel.Previous
	}
	if s := rep.Schema; s != nil {
		r.Schema = fmt.Sprintf("%d → %d", s.From, s.To)
		if s.From == s.To {
			r.Schema = fmt.Sprintf("%d", s.To)
		}
		switch n := len(s.Migrations); n {
		case 0:
		case 1:
			r.Migrations = "1 migration"
		default:
			r.Migrations = fmt.Sprintf("%d migrations", n)
		}
	}
	r.ErrorShort = r.Error
	if runes := []rune(r.Error); len(runes) > 140 {
		r.ErrorShort = string(runes[:140]) + "…"
	}
	return r
}

func outcomeClass(o staging.Outcome) string {
	switch o {
	case staging.OutcomeOK:
		return "ok"
	case staging.OutcomeFailed:
		return "failed"
	case staging.OutcomeRolledBack:
		return "rolledback"
	case staging.OutcomeBroken:
		return "broken"
	}
	return "other"
}

// summary is the figures above the plots, over the runs shown.
func summary(runs []*staging.Report, opts Options) []stat {
	var (
		ok                   int
		totals, downs        []time.Duration
		downtime, maxDown    time.Duration
		lastOK               *staging.Report
		rates                []float64
		newestBackup         *staging.BackupInfo
		byOutcome            = map[staging.Outcome]int{}
		outcomes             []string
		oldestShown, newestS = runs[0].Started, runs[len(runs)-1].Started
	)
	for _, rep := range runs {
		byOutcome[rep.Outcome]++
		downtime += rep.Downtime
		maxDown = max(maxDown, rep.Downtime)
		if rep.Backup != nil {
			newestBackup = rep.Backup
		}
		if r, ok := throughput(rep); ok {
			rates = append(rates, r)
		}
		if rep.Outcome == staging.OutcomeOK {
			ok++
			lastOK = rep
			totals = append(totals, rep.Total)
			downs = append(downs, rep.Downtime)
		}
	}
	for _, o := range []staging.Outcome{staging.OutcomeFailed, staging.OutcomeRolledBack, staging.OutcomeBroken} {
		if n := byOutcome[o]; n > 0 {
			outcomes = append(outcomes, fmt.Sprintf("%d %s", n, o))
		}
	}
	note := "all ok"
	if len(outcomes) > 0 {
		note = strings.Join(outcomes, ", ")
	}
	stats := []stat{{Label: "runs", Value: fmt.Sprintf("%d ok of %d", ok, len(runs)), Note: note}}
	if lastOK != nil {
		stats = append(stats, stat{Label: "last success", Value: lastOK.Started.In(opts.Location).Format("Jan 2 15:04"),
			Note: "in " + duration(lastOK.Total) + ", down " + duration(lastOK.Downtime)})
	} else {
		stats = append(stats, stat{Label: "last success", Value: "none", Note: "no run shown succeeded"})
	}
	if len(totals) > 0 {
		stats = append(stats, stat{Label: "median rebuild", Value: duration(median(totals)), Note: "of the successful runs"})
		stats = append(stats, stat{Label: "median downtime", Value: duration(median(downs)), Note: "longest " + duration(maxDown)})
	}
	stats = append(stats, stat{Label: "downtime in all", Value: duration(downtime),
		Note: fmt.Sprintf("%s to %s", oldestShown.In(opts.Location).Format("Jan 2"), newestS.In(opts.Location).Format("Jan 2"))})
	if len(rates) > 0 {
		stats = append(stats, stat{Label: "restore", Value: fmt.Sprintf("%.0f MB/s", median(rates)), Note: "median throughput"})
	}
	if newestBackup != nil {
		stats = append(stats, stat{Label: "newest backup", Value: bytesGB(newestBackup.Size), Note: newestBackup.Database})
	}
	return stats
}

// median returns the median of xs (the mean of the middle two for an even count);
// xs is not reordered.
func median[T time.Duration | float64](xs []T) T {
	s := slices.Clone(xs)
	slices.Sort(s)
	n := len(s)
	if n%2 == 1 {
		return s[n/2]
	}
	return (s[n/2-1] + s[n/2]) / 2
}

// duration formats d for people: 1h27m, 16m58s, 17.1s, 270ms.
func duration(d time.Duration) string {
	switch {
	case d <= 0:
		return "0s"
	case d >= time.Hour:
		return strings.TrimSuffix(d.Round(time.Minute).String(), "0s")
	case d >= time.Minute:
		return d.Round(time.Second).String()
	case d >= time.Second:
		return fmt.Sprintf("%.1fs", d.Seconds())
	}
	return d.Round(time.Millisecond).String()
}

// bytesGB formats n bytes in decimal units, as the throughput's MB/s is.
func bytesGB(n int64) string {
	f := float64(n)
	switch {
	case f >= 1e12:
		return fmt.Sprintf("%.2f TB", f/1e12)
	case f >= 1e9:
		return fmt.Sprintf("%.1f GB", f/1e9)
	case f >= 1e6:
		return fmt.Sprintf("%.1f MB", f/1e6)
	case f >= 1e3:
		return fmt.Sprintf("%.1f kB", f/1e3)
	}
	return fmt.Sprintf("%d B", n)
}

// throughput is the run's restore throughput in MB/s: the backup's size over the
// restore step's duration, for a run whose restore step succeeded.
func throughput(rep *staging.Report) (float64, bool) {
	if rep.Backup == nil || rep.Backup.Size <= 0 {
		return 0, false
	}
	for _, s := range rep.Steps {
		if s.Name == "restore" && s.Status == "ok" && s.Duration > 0 {
			r := float64(rep.Backup.Size) / 1e6 / s.Duration.Seconds()
			return r, !math.IsInf(r, 0) && !math.IsNaN(r)
		}
	}
	return 0, false
}
