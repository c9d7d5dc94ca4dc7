package historypage_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/restage/restage/staging"
	"github.com/restage/restage/staging/historypage"
	"github.com/restage/restage/staging/historypage/historytest"
)

// plotTitles are the titles the plots draw, in the page's order.
var plotTitles = []string{"Step durations per night", "Downtime per night", "Restore throughput per night", "Slowest migrations"}

// record runs nights recorded rebuilds in a new folder and reads their history back
// as the page does.
func record(t testing.TB, nights int) (*historytest.Recording, []*staging.Report) {
	t.Helper()
	rec, err := historytest.Record(context.Background(), historytest.Options{Dir: t.TempDir(), Nights: nights})
	if err != nil {
		t.Fatal(err)
	}
	reports, err := staging.History(rec.StateDir)
	if err != nil {
		t.Fatal(err)
	}
	if len(reports) != nights {
		t.Fatalf("the history holds %d runs, want %d", len(reports), nights)
	}
	return rec, reports
}

// options are the page's options for a recording: UTC, stamped an hour after its last
// run, so that the page is the same each time.
func options(reports []*staging.Report) historypage.Options {
	opts := historypage.Options{Location: time.UTC}
	if len(reports) > 0 {
		last := reports[len(reports)-1]
		opts.Now = func() time.Time { return last.Started.Add(last.Total + time.Hour) }
	}
	return opts
}

func render(t testing.TB, reports []*staging.Report, opts historypage.Options) string {
	t.Helper()
	var b bytes.Buffer
	if err := historypage.Render(&b, reports, opts); err != nil {
		t.Fatal(err)
	}
	return b.String()
}

var (
	svgRE   = regexp.MustCompile(`<svg class="plot" role="img" aria-label="([^"]*)"`)
	rowRE   = regexp.MustCompile(`<tr class="(ok|failed|rolledback|broken|other)"`)
	fetchRE = regexp.MustCompile(`(?i)<script|<link|<img|<iframe|<object|<embed|\s(src|srcset|href|xlink:href|action|poster)\s*=|url\(|@import`)
)

// plotsIn returns the labels of the page's plots, in order.
func plotsIn(page string) []string {
	var labels []string
	for _, m := range svgRE.FindAllStringSubmatch(page, -1) {
		labels = append(labels, m[1])
	}
	return labels
}

// textY returns the height at which the plots draw the text label (up is more).
func textY(t testing.TB, page, label string) float64 {
	t.Helper()
	m := regexp.MustCompile(`<text x="[^"]*" y="([^"]*)"[^>]*>` + regexp.QuoteMeta(label) + `</text>`).FindStringSubmatch(page)
	if m == nil {
		t.Fatalf("no SVG text %q", label)
	}
	y, err := strconv.ParseFloat(m[1], 64)
	if err != nil {
		t.Fatal(err)
	}
	return -y
}

// checkSelfContained fails when the page would load anything: the only URLs it may
// hold are the SVG namespaces' names and the reports' own text.
func checkSelfContained(t testing.TB, page string) {
	t.Helper()
	if m := fetchRE.FindString(page); m != "" {
		t.Errorf("the page loads something: %q", m)
	}
}

func TestRenderThirtyNights(t *testing.T) {
	_, reports := record(t, 30)
	page := render(t, reports, options(reports))

	if got := plotsIn(page); strings.Join(got, "|") != strings.Join(plotTitles, "|") {
		t.Errorf("plots %q, want %q", got, plotTitles)
	}
	for _, title := range plotTitles { // drawn by gonum/plot, inside the SVG
		if !strings.Contains(page, ">"+title+"</text>") {
			t.Errorf("no SVG text %q", title)
		}
	}
	// gonum/plot draws: paths for the bars and the line, text for the ticks and legends.
	if n := strings.Count(page, "<path "); n < 200 {
		t.Errorf("%d SVG paths, want the bars of 30 nights", n)
	}
	for _, want := range []string{
		">restore</text>", ">schema</text>", ">verify</text>", ">other steps</text>", // the steps' legend
		">ok</text>", ">failed</text>", // the downtime's
		">MB/s</text>", ">minutes</text>", ">seconds</text>",
		">2204 bugtask_status_backfill (5 runs)</text>", // the slowest migration, first
		">Mar 30</text>", // the newest night's tick
	} {
		if !strings.Contains(page, want) {
			t.Errorf("the plots have no %s", want)
		}
	}
	// The slowest migration is drawn at the top: the highest label (gonum/plot's y
	// grows upwards; the SVG's text elements give -y).
	if slow, fast := textY(t, page, "2204 bugtask_status_backfill (5 runs)"), textY(t, page, "2205 add_branch_merge_queue (5 runs)"); slow <= fast {
		t.Errorf("the slowest migration is drawn at height %g, below the fastest at %g", slow, fast)
	}

	rows := rowRE.FindAllStringSubmatch(page, -1)
	if len(rows) != 30 {
		t.Fatalf("%d table rows, want 30", len(rows))
	}
	var outcomes []string
	for _, r := range rows {
		outcomes = append(outcomes, r[1])
	}
	// Newest first: nights 25 (schema), 17 (health) and 9 (restore) failed.
	for i, want := range map[int]string{0: "ok", 30 - 25: "failed", 30 - 17: "rolledback", 30 - 9: "failed", 29: "ok"} {
		if outcomes[i] != want {
			t.Errorf("row %d is %s, want %s (%v)", i, outcomes[i], want, outcomes)
		}
	}
	for _, want := range []string{
		"<td>2026-03-30 03:", "<td>2026-03-01 03:", // dates, newest and oldest
		"No space left on device", // the failed restore's error
		"2208 → 2210",             // schema from -> to
		"2 migrations",
		"43.0 GB",                         // a backup's size
		"1h3",                             // its age, about 1h30m
		"20260330T03", "(was 20260329T03", // releases, with the one replaced
		"<td>rebuild <small>swap</small></td>",   // kind and strategy
		"27 ok of 30", "2 failed, 1 rolled back", // the summary
		"<title>staging history</title>",
		"generated 2026-03-30 ",
	} {
		if !strings.Contains(page, want) {
			t.Errorf("the page has no %q", want)
		}
	}
	checkSelfContained(t, page)
}

func TestRenderRuns(t *testing.T) {
	_, reports := record(t, 30)
	opts := options(reports)
	opts.Runs, opts.Title = 7, "nights"
	page := render(t, reports, opts)
	if n := len(rowRE.FindAllString(page, -1)); n != 7 {
		t.Errorf("%d rows, want the newest 7", n)
	}
	for _, want := range []string{"the newest 7 of 30 runs", "<title>nights</title>", "<td>2026-03-24 03:"} {
		if !strings.Contains(page, want) {
			t.Errorf("no %q", want)
		}
	}
	if strings.Contains(page, "<td>2026-03-23 03:") {
		t.Error("a run older than the newest 7 is shown")
	}
}

// TestRenderEmptyAndShort: histories with nothing or little to plot are clear pages.
func TestRenderEmptyAndShort(t *testing.T) {
	t.Run("empty", func(t *testing.T) {
		page := render(t, nil, historypage.Options{})
		if !strings.Contains(page, "No runs yet") || strings.Contains(page, "<svg") || strings.Contains(page, "<table") {
			t.Errorf("empty history:\n%s", page)
		}
		checkSelfContained(t, page)
	})
	t.Run("one night", func(t *testing.T) {
		_, reports := record(t, 1)
		page := render(t, reports, options(reports))
		if got := plotsIn(page); len(got) != 3 {
			t.Errorf("plots %q, want all but the migrations'", got)
		}
		if !strings.Contains(page, "No migration was applied in these runs.") || len(rowRE.FindAllString(page, -1)) != 1 {
			t.Error("one night: no word on the missing migrations, or not one row")
		}
	})
	t.Run("nothing measured", func(t *testing.T) {
		// Runs that failed at once: no restore, no downtime, no time in any step.
		at := time.Date(2026, 3, 1, 3, 0, 0, 0, time.UTC)
		reports := []*staging.Report{
			{ID: "a", Environment: "staging", Kind: "rebuild", Outcome: staging.OutcomeFailed, Started: at,
				Steps:      []*staging.Step{{Name: "lock", Status: "ok"}, {Name: "backup", Status: "failed", Error: "no backup"}},
				FailedStep: "backup", Error: "no backup newer than 20h"},
			{ID: "b", Environment: "staging", Kind: "deploy", Outcome: staging.OutcomeBroken, Started: at.Add(time.Hour)},
		}
		page := render(t, reports, historypage.Options{Location: time.UTC})
		for _, want := range []string{"No step of these runs took measurable time.", "No restore finished in these runs.",
			"No migration was applied in these runs.", "0 ok of 2", "no run shown succeeded", "no backup newer than 20h"} {
			if !strings.Contains(page, want) {
				t.Errorf("no %q", want)
			}
		}
		if got := plotsIn(page); len(got) != 1 || got[0] != "Downtime per night" {
			t.Errorf("plots %q, want the downtime's only", got)
		}
	})
}

func TestNewNeedsStateDir(t *testing.T) {
	if _, err := historypage.New(historypage.Config{}); !errors.Is(err, staging.ErrConfig) {
		t.Errorf("New without StateDir: %v, want ErrConfig", err)
	}
}

func TestPageWriteFile(t *testing.T) {
	rec, reports := record(t, 3)
	page, err := historypage.New(historypage.Config{StateDir: rec.StateDir, Options: options(reports)})
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "history.html")
	if err := page.WriteFile(path); err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if want := render(t, reports, options(reports)); string(data) != want {
		t.Error("the file is not the page of the history")
	}
	if fi, err := os.Stat(path); err != nil || fi.Mode().Perm() != 0o644 {
		t.Errorf("mode %v (%v), want 0644", fi.Mode(), err)
	}

	// A state folder without a history yet is an empty page, not an error.
	empty, err := historypage.New(historypage.Config{StateDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	if err := empty.WriteFile(path); err != nil {
		t.Fatal(err)
	}
	if data, _ := os.ReadFile(path); !strings.Contains(string(data), "No runs yet") {
		t.Errorf("no history: %s", data)
	}
}

// TestPageDamagedHistory: a history whose end cannot be read shows the runs before
// it, with a warning.
func TestPageDamagedHistory(t *testing.T) {
	rec, reports := record(t, 3)
	f, err := os.OpenFile(filepath.Join(rec.StateDir, staging.HistoryFile), os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteString("{\"id\": \"cut short by a cra\n"); err != nil {
		t.Fatal(err)
	}
	f.Close()
	page, err := historypage.New(historypage.Config{StateDir: rec.StateDir, Options: options(reports), Logger: discard})
	if err != nil {
		t.Fatal(err)
	}
	var b bytes.Buffer
	if err := page.Render(&b); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(b.String(), `<p class="warning">`) || len(rowRE.FindAllString(b.String(), -1)) != 3 {
		t.Errorf("damaged history: no warning, or not the 3 runs:\n%s", b.String())
	}
}

// TestPageServe: the page served over HTTP is rebuilt for each request.
func TestPageServe(t *testing.T) {
	dir := t.TempDir()
	page, err := historypage.New(historypage.Config{StateDir: filepath.Join(dir, "state"), Logger: discard})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(page)
	defer srv.Close()

	get := func(method, path string) (*http.Response, string) {
		t.Helper()
		req, err := http.NewRequest(method, srv.URL+path, nil)
		if err != nil {
			t.Fatal(err)
		}
		resp, err := srv.Client().Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		body, err := io.ReadAll(resp.Body)
		if err != nil {
			t.Fatal(err)
		}
		return resp, string(body)
	}

	resp, body := get("GET", "/")
	if resp.StatusCode != 200 || !strings.Contains(body, "No runs yet") {
		t.Fatalf("before any run: %s\n%s", resp.Status, body)
	}
	if ct := resp.Header.Get("Content-Type"); ct != "text/html; charset=utf-8" {
		t.Errorf("Content-Type %q", ct)
	}
	if csp := resp.Header.Get("Content-Security-Policy"); !strings.HasPrefix(csp, "default-src 'none'") {
		t.Errorf("Content-Security-Policy %q", csp)
	}

	first := time.Date(2026, 3, 1, 3, 0, 0, 0, time.UTC)
	if _, err := historytest.Record(context.Background(), historytest.Options{Dir: dir, Nights: 2, First: first}); err != nil {
		t.Fatal(err)
	}
	_, body = get("GET", "/")
	if n := len(rowRE.FindAllString(body, -1)); n != 2 || len(plotsIn(body)) != 4 {
		t.Errorf("after 2 runs: %d rows and plots %q", n, plotsIn(body))
	}
	if _, err := historytest.Record(context.Background(), historytest.Options{Dir: dir, Nights: 3, First: first.AddDate(0, 0, 2)}); err != nil {
		t.Fatal(err)
	}
	resp, body = get("GET", "/index.html")
	if n := len(rowRE.FindAllString(body, -1)); resp.StatusCode != 200 || n != 5 {
		t.Errorf("after 5 runs: %s, %d rows", resp.Status, n)
	}

	if resp, body := get("HEAD", "/"); resp.StatusCode != 200 || body != "" {
		t.Errorf("HEAD: %s, %d bytes", resp.Status, len(body))
	}
	if resp, _ := get("GET", "/other"); resp.StatusCode != 404 {
		t.Errorf("GET /other: %s", resp.Status)
	}
	if resp, _ := get("POST", "/"); resp.StatusCode != 405 || resp.Header.Get("Allow") != "GET, HEAD" {
		t.Errorf("POST: %s, Allow %q", resp.Status, resp.Header.Get("Allow"))
	}
}

// TestPageServeListener: Serve answers on its listener until its context ends, then
// returns nil.
func TestPageServeListener(t *testing.T) {
	page, err := historypage.New(historypage.Config{StateDir: t.TempDir(), Logger: discard})
	if err != nil {
		t.Fatal(err)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- page.Serve(ctx, l) }()
	resp, err := http.Get("http://" + l.Addr().String() + "/")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || !strings.Contains(string(body), "No runs yet") {
		t.Errorf("GET: %s\n%s", resp.Status, body)
	}
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("Serve after its context ended: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Serve did not return after its context ended")
	}
	if _, err := http.Get("http://" + l.Addr().String() + "/"); err == nil {
		t.Error("the listener still answers")
	}
}

// TestPageServeConcurrent: requests rendered at once (run it with -race).
func TestPageServeConcurrent(t *testing.T) {
	rec, _ := record(t, 8)
	page, err := historypage.New(historypage.Config{StateDir: rec.StateDir, Logger: discard})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(page)
	defer srv.Close()
	errs := make(chan error, 4)
	for range 4 {
		go func() {
			resp, err := srv.Client().Get(srv.URL)
			if err != nil {
				errs <- err
				return
			}
			body, err := io.ReadAll(resp.Body)
			resp.Body.Close()
			if err == nil && (resp.StatusCode != 200 || len(plotsIn(string(body))) != 4) {
				err = errors.New("GET: " + resp.Status + ", plots " + strings.Join(plotsIn(string(body)), ", "))
			}
			errs <- err
		}()
	}
	for range 4 {
		if err := <-errs; err != nil {
			t.Error(err)
		}
	}
}
