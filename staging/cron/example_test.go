package cron_test

import (
	"context"
	"fmt"
	"log"
	"log/slog"
	"os"
	"path/filepath"
	"time"

	"github.com/restage/restage/notify"
	"github.com/restage/restage/staging/cron"
)

// The entry system cron starts every minute: load the job table, run what is due.
func ExampleRunner_RunOnce() {
	dir, _ := os.MkdirTemp("", "cron-example")
	defer os.RemoveAll(dir)
	config := filepath.Join(dir, "staging-cron.toml")
	os.WriteFile(config, []byte(`
environment = "staging"
lock_file   = "staging.lock"   # the rebuild's lock (relative: beside this file)
state_dir   = "cron-state"

[[job]]
name     = "say-hello"
schedule = "*/5 * * * *"
command  = ["echo", "hello from cron"]
timeout  = "1m"

[[job]]
name     = "broken"
schedule = "0 * * * *"
command  = ["sh", "-c", "echo 'cannot reach the database' >&2; exit 2"]
`), 0o644)

	cfg, err := cron.Load(config)
	if err != nil {
		log.Fatal(err) // errors.Is(err, staging.ErrConfig): exit status 2
	}
	cfg.Logger = slog.New(slog.DiscardHandler)
	cfg.Notifier = notifierFunc(func(ctx context.Context, m *notify.Message) error {
		fmt.Printf("report [%s] %s\n", m.Topic, m.Subject)
		return nil
	})
	r, err := cron.New(cfg)
	if err != nil {
		log.Fatal(err)
	}
	sum, err := r.RunOnce(context.Background(), time.Date(2026, 11, 25, 3, 0, 0, 0, time.UTC))
	if err != nil {
		log.Fatal(err)
	}
	for _, j := range sum.Jobs {
		fmt.Printf("%s: %s: %s", j.Job, j.Outcome, j.Output)
	}
	// Output:
	// report [staging-cron] cron job broken: exit status 2
	// say-hello: ok: hello from cron
	// broken: failed: cannot reach the database
}
