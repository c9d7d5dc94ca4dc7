package historypage

import (
	"bytes"
	"cmp"
	"fmt"
	"html"
	"html/template"
	"image/color"
	"slices"
	"strconv"
	"strings"
	"time"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/font"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/text"
	"gonum.org/v1/plot/vg"
	"gonum.org/v1/plot/vg/draw"
	"gonum.org/v1/plot/vg/vgsvg"

	"github.com/restage/restage/staging"
)

// The plots' sizes, in points; the page scales them to its width.
const (
	wideWidth   = vg.Length(900)
	wideHeight  = vg.Length(300)
	halfWidth   = vg.Length(440)
	halfHeight  = vg.Length(260)
	legendWidth = vg.Length(118)
)

// sans is the plots' typeface: Liberation Sans, whose metrics gonum/plot measures
// with; browsers without it use Arial or Helvetica, which share its metrics.
var sans = font.Font{Typeface: "Liberation", Variant: "Sans"}

// Colours of the plots.
var (
	colorOK     = rgb(0x59a14f)
	colorFailed = rgb(0xe15759)
	colorLine   = rgb(0x4e79a7)
	colorGrid   = color.Gray{Y: 0xe4}
	colorOther  = rgb(0xc9c9c9)
)

// stepColors gives every step of the flows a colour of its own, so that a step keeps
// its colour from page to page; other names take the spare colours in turn.
var stepColors = map[string]color.Color{
	"lock": rgb(0xd7b5a6), "repair": rgb(0xfabfd2), "backup": rgb(0x9c755f), "verify": rgb(0x76b7b2),
	"guard": rgb(0xd37295), "clean": rgb(0xbab0ac), "restore": rgb(0x4e79a7), "clones": rgb(0xb07aa1),
	"release": rgb(0xedc948), "schema": rgb(0xf28e2b), "stop": rgb(0x8cd17d), "cutover": rgb(0x59a14f),
	"start": rgb(0x499894), "rollback": rgb(0xe15759), "restart": rgb(0xff9da7), "prune": rgb(0xd4a6c8),
	"database": rgb(0x4e79a7), "check": rgb(0x86bcb6), "copy": rgb(0xa0cbe8),
}

var spareColors = []color.Color{rgb(0x79706e), rgb(0xf1ce63), rgb(0xa0cbe8), rgb(0xffbe7d), rgb(0x8cd17d)}

// stepOrder is the order steps stack in, bottom up: the order of the flows.
var stepOrder = []string{"backup", "lock", "repair", "guard", "verify", "clean", "database", "restore", "clones",
	"release", "check", "copy", "schema", "stop", "cutover", "start", "rollback", "restart", "prune"}

// otherSteps gathers the steps too short to see on their own.
const otherSteps = "other steps"

func rgb(v uint32) color.RGBA {
	return color.RGBA{R: uint8(v >> 16), G: uint8(v >> 8), B: uint8(v), A: 0xff}
}

// plotAll draws the page's plots of runs (at least one).
func plotAll(runs []*staging.Report, opts Options) ([]*figure, error) {
	labels := make([]string, len(runs))
	for i, rep := range runs {
		labels[i] = rep.Started.In(opts.Location).Format("Jan 2")
	}
	var figs []*figure
	for _, f := range []func() (*figure, error){
		func() (*figure, error) { return stepsPlot(runs, labels) },
		func() (*figure, error) { return downtimePlot(runs, labels) },
		func() (*figure, error) { return throughputPlot(runs, labels) },
		func() (*figure, error) { return migrationsPlot(runs, opts.Slowest) },
	} {
		fig, err := f()
		if err != nil {
			return nil, fmt.Errorf("historypage: plot: %w", err)
		}
		figs = append(figs, fig)
	}
	return figs, nil
}

// unit is the unit a plot shows durations in.
type unit struct {
	name string
	size time.Duration
}

func (u unit) of(d time.Duration) float64 { return float64(d) / float64(u.size) }

// unitFor picks seconds, minutes or hours for durations up to longest.
func unitFor(longest time.Duration) unit {
	switch {
	case longest >= 3*time.Hour:
		return unit{"hours", time.Hour}
	case longest >= 3*time.Minute:
		return unit{"minutes", time.Minute}
	}
	return unit{"seconds", time.Second}
}

func newPlot(title, yLabel string) *plot.Plot {
	p := plot.New()
	p.Title.Text = title
	p.Title.TextStyle.Font = font.From(sans, 13)
	p.Title.Padding = 10
	for _, a := range []*plot.Axis{&p.X, &p.Y} {
		a.Label.TextStyle.Font = font.From(sans, 10)
		a.Tick.Label.Font = font.From(sans, 9)
		a.Color, a.Tick.Color = color.Gray{Y: 0x66}, color.Gray{Y: 0x66}
		a.Tick.Label.Color = color.Gray{Y: 0x33}
	}
	p.Y.Label.Text = yLabel
	p.Y.Tick.Marker = plainTicks
	grid := plotter.NewGrid()
	grid.Vertical.Color = nil
	grid.Horizontal.Color = colorGrid
	grid.Horizontal.Dashes = nil
	p.Add(grid)
	return p
}

func newLegend() *plot.Legend {
	l := plot.NewLegend()
	l.TextStyle.Font = font.From(sans, 9)
	l.Top, l.Left = true, true
	l.ThumbnailWidth = 10
	l.Padding = 3
	return &l
}

// runAxis makes the X axis of a plot width wide the runs, 0 to len(labels)-1,
// labelled with their dates: as many as fit, the newest run's always.
func runAxis(p *plot.Plot, labels []string, width vg.Length) {
	n := len(labels)
	fit := max(1, int((width-70)/42)) // "Mar 30" in 9 points, and a gap
	every := max(1, (n+fit-1)/fit)
	p.X.Tick.Marker = plot.TickerFunc(func(_, _ float64) []plot.Tick {
		ticks := make([]plot.Tick, n)
		for i, l := range labels {
			ticks[i].Value = float64(i)
			if (n-1-i)%every == 0 {
				ticks[i].Label = l
			}
		}
		return ticks
	})
	p.X.Min, p.X.Max = -0.6, float64(n)-0.4
}

// plainTicks are gonum/plot's default ticks, labelled without trailing zeros.
var plainTicks = plot.TickerFunc(func(lo, hi float64) []plot.Tick {
	ticks := plot.DefaultTicks{}.Ticks(lo, hi)
	for i, t := range ticks {
		if t.Label != "" {
			ticks[i].Label = strconv.FormatFloat(t.Value, 'f', -1, 64)
		}
	}
	return ticks
})

// barWidth is the width of one run's bar in a plot of the given width.
func barWidth(runs int, width vg.Length) vg.Length {
	return min(28, max(1, (width-60)/vg.Length(runs)*0.7))
}

// stepSeries returns the steps shown on their own, in stacking order, and the series
// of every step name: itself, or otherSteps for steps too short to be seen.
func stepSeries(runs []*staging.Report) (names []string, series map[string]string, grand time.Duration) {
	sums := map[string]time.Duration{}
	var seen []string
	for _, rep := range runs {
		for _, s := range rep.Steps {
			if _, ok := sums[s.Name]; !ok {
				seen = append(seen, s.Name)
			}
			sums[s.Name] += s.Duration
			grand += s.Duration
		}
	}
	rank := func(name string) int {
		if i := slices.Index(stepOrder, name); i >= 0 {
			return i
		}
		return len(stepOrder) + slices.Index(seen, name)
	}
	slices.SortStableFunc(seen, func(a, b string) int { return cmp.Compare(rank(a), rank(b)) })
	series = map[string]string{}
	other := false
	for _, name := range seen {
		if sums[name]*100 >= grand*15/10 { // 1.5% of all the time
			series[name] = name
			names = append(names, name)
		} else {
			series[name] = otherSteps
			other = true
		}
	}
	if other {
		names = append(names, otherSteps)
	}
	return names, series, grand
}

func stepsPlot(runs []*staging.Report, labels []string) (*figure, error) {
	fig := &figure{Title: "Step durations per night", Wide: true,
		Caption: "Each run's steps, stacked in the order they run; steps too short to see are gathered as “other steps”."}
	names, series, grand := stepSeries(runs)
	if grand <= 0 {
		fig.Empty = "No step of these runs took measurable time."
		return fig, nil
	}
	var longest time.Duration
	for _, rep := range runs {
		var sum time.Duration
		for _, s := range rep.Steps {
			sum += s.Duration
		}
		longest = max(longest, sum)
	}
	u := unitFor(longest)
	p := newPlot(fig.Title, u.name)
	legend := newLegend()
	width := barWidth(len(runs), wideWidth-legendWidth)
	var bars []*plotter.BarChart
	spare := 0
	for _, name := range names {
		vals := make(plotter.Values, len(runs))
		for i, rep := range runs {
			for _, s := range rep.Steps {
				if series[s.Name] == name {
					vals[i] += u.of(s.Duration)
				}
			}
		}
		b, err := plotter.NewBarChart(vals, width)
		if err != nil {
			return nil, err
		}
		b.LineStyle.Width = 0
		switch c, ok := stepColors[name]; {
		case ok:
			b.Color = c
		case name == otherSteps:
			b.Color = colorOther
		default:
			b.Color = spareColors[spare%len(spareColors)]
			spare++
		}
		if len(bars) > 0 {
			b.StackOn(bars[len(bars)-1])
		}
		p.Add(b)
		bars = append(bars, b)
	}
	for i := len(bars) - 1; i >= 0; i-- { // top of the stack first, as drawn
		legend.Add(names[i], bars[i])
	}
	runAxis(p, labels, wideWidth-legendWidth)
	p.Y.Min = 0
	return fig.drawSVG(p, wideWidth, wideHeight, legend)
}

func downtimePlot(runs []*staging.Report, labels []string) (*figure, error) {
	fig := &figure{Title: "Downtime per night",
		Caption: "From the service's stop until it answered healthy again; red: the run failed (a rolled-back run's downtime includes the rollback)."}
	var longest time.Duration
	for _, rep := range runs {
		longest = max(longest, rep.Downtime)
	}
	u := unitFor(longest)
	ok, failed := make(plotter.Values, len(runs)), make(plotter.Values, len(runs))
	anyFailed := false
	for i, rep := range runs {
		if rep.Outcome == staging.OutcomeOK {
			ok[i] = u.of(rep.Downtime)
		} else {
			failed[i] = u.of(rep.Downtime)
			anyFailed = anyFailed || rep.Downtime > 0
		}
	}
	p := newPlot(fig.Title, u.name)
	width := barWidth(len(runs), halfWidth-legendWidth)
	legend := newLegend()
	for _, s := range []struct {
		name  string
		vals  plotter.Values
		color color.Color
		show  bool
	}{{"ok", ok, colorOK, true}, {"failed", failed, colorFailed, anyFailed}} {
		b, err := plotter.NewBarChart(s.vals, width)
		if err != nil {
			return nil, err
		}
		b.LineStyle.Width = 0
		b.Color = s.color
		p.Add(b)
		if s.show {
			legend.Add(s.name, b)
		}
	}
	runAxis(p, labels, halfWidth-legendWidth)
	p.Y.Min = 0
	if longest <= 0 {
		p.Y.Max = 1
	}
	return fig.drawSVG(p, halfWidth, halfHeight, legend)
}

func throughputPlot(runs []*staging.Report, labels []string) (*figure, error) {
	fig := &figure{Title: "Restore throughput per night",
		Caption: "The backup's size over the restore step's duration (MB = 10⁶ bytes), for runs whose restore finished."}
	var xys plotter.XYs
	top := 0.0
	for i, rep := range runs {
		if r, ok := throughput(rep); ok {
			xys = append(xys, plotter.XY{X: float64(i), Y: r})
			top = max(top, r)
		}
	}
	if len(xys) == 0 {
		fig.Empty = "No restore finished in these runs."
		return fig, nil
	}
	p := newPlot(fig.Title, "MB/s")
	line, points, err := plotter.NewLinePoints(xys)
	if err != nil {
		return nil, err
	}
	line.Color, line.Width = colorLine, 1.5
	points.Color, points.Shape, points.Radius = colorLine, draw.CircleGlyph{}, 2.5
	p.Add(line, points)
	runAxis(p, labels, halfWidth)
	p.Y.Min, p.Y.Max = 0, top*1.15
	return fig.drawSVG(p, halfWidth, halfHeight, nil)
}

// migrationTime is one migration's longest run over the history.
type migrationTime struct {
	version uint
	name    string
	longest time.Duration
	runs    int
}

func slowestMigrations(runs []*staging.Report, n int) []migrationTime {
	byKey := map[string]*migrationTime{}
	var all []*migrationTime
	for _, rep := range runs {
		if rep.Schema == nil {
			continue
		}
		for _, m := range rep.Schema.Migrations {
			key := fmt.Sprintf("%d_%s", m.Version, m.Name)
			mt := byKey[key]
			if mt == nil {
				mt = &migrationTime{version: m.Version, name: m.Name}
				byKey[key] = mt
				all = append(all, mt)
			}
			mt.longest = max(mt.longest, m.Duration)
			mt.runs++
		}
	}
	slices.SortStableFunc(all, func(a, b *migrationTime) int {
		return cmp.Or(cmp.Compare(b.longest, a.longest), cmp.Compare(a.version, b.version))
	})
	var out []migrationTime
	for _, mt := range all[:min(n, len(all))] {
		out = append(out, *mt)
	}
	return out
}

func migrationsPlot(runs []*staging.Report, n int) (*figure, error) {
	fig := &figure{Title: "Slowest migrations", Wide: true,
		Caption: "Each migration's longest run on staging, and how many runs applied it (until the release train took it to production)."}
	slow := slowestMigrations(runs, n)
	if len(slow) == 0 {
		fig.Empty = "No migration was applied in these runs."
		return fig, nil
	}
	u := unitFor(slow[0].longest)
	k := len(slow)
	vals := make(plotter.Values, k)
	names := make([]string, k)
	ends := make(plotter.XYs, k)
	tags := make([]string, k)
	for i, m := range slow { // the slowest at the top: the last bar
		j := k - 1 - i
		vals[j] = u.of(m.longest)
		runsWord := "runs"
		if m.runs == 1 {
			runsWord = "run"
		}
		names[j] = fmt.Sprintf("%d %s (%d %s)", m.version, m.name, m.runs, runsWord)
		ends[j] = plotter.XY{X: vals[j], Y: float64(j)}
		tags[j] = duration(m.longest)
	}
	p := newPlot(fig.Title, "")
	p.X.Label.Text = u.name
	p.X.Tick.Marker = plainTicks
	bars, err := plotter.NewBarChart(vals, 13)
	if err != nil {
		return nil, err
	}
	bars.Horizontal = true
	bars.LineStyle.Width = 0
	bars.Color = stepColors["schema"]
	labels, err := plotter.NewLabels(plotter.XYLabels{XYs: ends, Labels: tags})
	if err != nil {
		return nil, err
	}
	for i := range labels.TextStyle {
		labels.TextStyle[i] = text.Style{Font: font.From(sans, 9), Color: color.Gray{Y: 0x33}, YAlign: draw.YCenter, Handler: plot.DefaultTextHandler}
	}
	labels.Offset = vg.Point{X: 4}
	p.Add(bars, labels)
	p.NominalY(names...)
	p.Y.Tick.Label.Font = font.From(sans, 9)
	p.X.Min = 0
	p.X.Max = vals[k-1] * 1.12 // room for the last label
	p.Y.Min, p.Y.Max = -0.6, float64(k)-0.4
	// The vertical grid helps read a horizontal bar's length.
	p.Add(&plotter.Grid{Vertical: draw.LineStyle{Color: colorGrid, Width: vg.Points(0.5)}})
	return fig.drawSVG(p, wideWidth, 60+vg.Length(k)*20, nil)
}

// drawSVG draws p, w by h (and legend, when given, in a strip on the right), into fig.SVG
// as an SVG element for the page: gonum/plot's document without its XML prolog,
// labelled with the title for screen readers, its typeface given fallbacks. It returns
// fig.
func (fig *figure) drawSVG(p *plot.Plot, w, h vg.Length, legend *plot.Legend) (*figure, error) {
	c := vgsvg.New(w, h)
	dc := draw.New(c)
	dc.SetColor(color.White)
	dc.Fill(dc.Rectangle.Path())
	if legend != nil {
		p.Draw(draw.Crop(dc, 0, -legendWidth, 0, 0))
		legend.Draw(draw.Crop(dc, w-legendWidth+12, 0, 0, -34))
	} else {
		p.Draw(dc)
	}
	var b bytes.Buffer
	if _, err := c.WriteTo(&b); err != nil {
		return fig, err
	}
	s := b.String()
	i := strings.Index(s, "<svg")
	if i < 0 {
		return fig, fmt.Errorf("no <svg> element in gonum/plot's output")
	}
	s = strings.Replace(s[i:], "<svg ", `<svg class="plot" role="img" aria-label="`+html.EscapeString(fig.Title)+`" `, 1)
	s = strings.ReplaceAll(s, "font-family:Liberation Sans;", "font-family:Liberation Sans,Arimo,Arial,Helvetica,sans-serif;")
	fig.SVG = template.HTML(s) // gonum/plot escapes the text it writes
	return fig, nil
}
