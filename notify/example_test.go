package notify_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"time"

	"github.com/restage/restage/notify"
)

// Wiring the [notify] section: every target in its own spool under state_dir, so a
// target that was down gets its missed reports first on the next run, and the others
// get nothing twice.
func ExampleSpoolEach() {
	stateDir, err := os.MkdirTemp("", "restage-example-")
	if err != nil {
		panic(err)
	}
	defer os.RemoveAll(stateDir)
	logger := slog.New(slog.DiscardHandler)

	stdout, err := notify.NewWriter(notify.WriterConfig{Out: os.Stdout})
	if err != nil {
		panic(err)
	}
	email, err := notify.NewSMTP(notify.SMTPConfig{
		Addr:    "127.0.0.1:1", // nothing listens here: the report is spooled
		From:    "staging@example.org",
		To:      []string{"error-reports@example.org"},
		Timeout: 10 * time.Second, Logger: logger,
	})
	if err != nil {
		panic(err)
	}
	n, err := notify.SpoolEach(filepath.Join(stateDir, "spool"),
		map[string]notify.Notifier{"email": email, "stdout": stdout}, logger)
	if err != nil {
		panic(err)
	}

	err = n.Notify(context.TODO(), &notify.Message{
		ID: "20261125-0300", Environment: "staging", Topic: "staging-rebuild",
		Status: notify.StatusOK, Subject: "staging rebuilt from launchpad_prod",
		Body: "Downtime 4s.\n", Time: time.Date(2026, 11, 25, 3, 0, 0, 0, time.UTC),
	})
	fmt.Println("spooled:", errors.Is(err, notify.ErrSpooled))
	// Output:
	// Subject: [staging-rebuild] staging rebuilt from launchpad_prod
	// Environment: staging
	// Topic: staging-rebuild
	// Status: ok
	// Time: 2026-11-25T03:00:00Z
	// ID: 20261125-0300
	//
	// Downtime 4s.
	// ------------------------------------------------------------------------
	// spooled: true
}
