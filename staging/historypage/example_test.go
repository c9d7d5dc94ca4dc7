package historypage_test

import (
	"context"
	"fmt"
	"net"
	"os"
	"strings"
	"time"

	"github.com/restage/restage/staging"
	"github.com/restage/restage/staging/historypage"
)

// The page of an environment's history, written to a file and served live, as
// examples/history does.
func ExampleNew() {
	cfg, err := staging.LoadEnvironment("/etc/restage/staging.toml")
	if err != nil {
		panic(err)
	}
	page, err := historypage.New(historypage.Config{StateDir: cfg.StateDir, Options: historypage.Options{Runs: 90}})
	if err != nil {
		panic(err)
	}
	if err := page.WriteFile("/var/www/staging-history.html"); err != nil {
		panic(err)
	}
	l, err := net.Listen("tcp", "127.0.0.1:8090")
	if err != nil {
		panic(err)
	}
	_ = page.Serve(context.Background(), l) // rebuilt for each request
}

// The page of reports at hand.
func ExampleRender() {
	night := time.Date(2026, 3, 30, 3, 0, 0, 0, time.UTC)
	reports := []*staging.Report{{
		ID: "20260330T030000Z-1a2b3c", Environment: "staging", Kind: "rebuild", Strategy: staging.Swap,
		Outcome: staging.OutcomeOK, Started: night, Total: 21 * time.Minute, Downtime: 17 * time.Second,
		Backup: &staging.BackupInfo{Name: "launchpad_prod-20260330T013000Z.dump", Age: 90 * time.Minute, Size: 43e9},
		Steps: []*staging.Step{
			{Name: "verify", Status: "ok", Duration: 95 * time.Second},
			{Name: "restore", Status: "ok", Duration: 16 * time.Minute},
			{Name: "schema", Status: "ok", Duration: 3 * time.Minute},
			{Name: "cutover", Status: "ok", Duration: 300 * time.Millisecond},
		},
		Schema: &staging.SchemaInfo{From: 2208, To: 2209, Migrations: []staging.MigrationTime{
			{Version: 2209, Name: "spph_sourcepackagename_idx", Duration: 3 * time.Minute}}},
	}}
	var page strings.Builder
	if err := historypage.Render(&page, reports, historypage.Options{Location: time.UTC}); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return
	}
	fmt.Println(strings.Count(page.String(), `<svg class="plot"`), "plots")
	fmt.Println(strings.Contains(page.String(), "45 MB/s")) // 43 GB restored in 16 minutes
	// Output:
	// 4 plots
	// true
}
