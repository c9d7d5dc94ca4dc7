// Package historypage renders an environment's history of runs (staging.History) as
// one self-contained HTML page: a summary, a table of the runs (date, kind, outcome,
// total, downtime, backup age and size, release, schema from -> to, failed step) and
// plots drawn server-side as inline SVG with gonum/plot: step durations per night
// (stacked), downtime per night, restore throughput per night and the slowest
// migrations. The page loads nothing (no scripts, no fonts, no images, no network):
// it can be mailed, archived or opened from disk.
//
// From a state folder, into a file or served live (each request reads the history
// again):
//
//	page, err := historypage.New(historypage.Config{StateDir: cfg.StateDir})
//	if err != nil {
//		return err
//	}
//	if err := page.WriteFile("/var/www/staging-history.html"); err != nil {
//		return err
//	}
//	http.Handle("/", page) // or page.Serve(ctx, listener)
//
// From reports at hand (a test, another program's own history):
//
//	err := historypage.Render(w, reports, historypage.Options{Runs: 30})
//
// The examples/history program is this package behind a command line.
package historypage
