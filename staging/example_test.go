package staging_test

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"time"

	"github.com/restage/restage/codesync"
	"github.com/restage/restage/dbrestore"
	"github.com/restage/restage/notify"
	"github.com/restage/restage/schema"
	"github.com/restage/restage/staging"
	"github.com/restage/restage/svcctl"
)

// A nightly rebuild from a config file, as examples/nightly does it.
func ExampleOpen() {
	ctx := context.Background()
	cfg, err := staging.LoadEnvironment("/etc/restage/staging.toml")
	if err != nil {
		fmt.Fprintln(os.Stderr, err) // names the bad key
		os.Exit(staging.ExitUsage)
	}
	rb, err := staging.Open(cfg, staging.OpenOptions{})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(staging.ExitUsage)
	}
	report, err := rb.Run(ctx)
	rb.Close()
	fmt.Print(report.Text()) // also mailed, and appended to state_dir/history.jsonl
	os.Exit(staging.ExitStatus(err))
}

// A branch rolled out to the experimental environment, as examples/experimental does it.
func ExampleRebuilder_Deploy() {
	cfg, err := staging.LoadEnvironment("/etc/restage/experimental.toml")
	if err != nil {
		panic(err)
	}
	rb, err := staging.Open(cfg, staging.OpenOptions{})
	if err != nil {
		panic(err)
	}
	defer rb.Close()
	report, err := rb.Deploy(context.Background(), staging.DeployOptions{RefreshDB: true, RequestedBy: os.Getenv("USER")})
	fmt.Println(report.Subject(), err)
}

// A rebuild program written in Go rather than TOML: the parts built by hand and given
// to New, which checks them all at once (errors name each missing part).
func ExampleNew() {
	log := staging.CaptureLogger(slog.Default()) // the parts' lines reach the report too
	backups, err := dbrestore.NewCatalog("/srv/backups", dbrestore.Config{Logger: log})
	if err != nil {
		panic(err)
	}
	db, err := dbrestore.NewServer(dbrestore.ServerConfig{
		AdminDSN: "postgres://postgres@staging-db/postgres", Protect: []string{"launchpad_prod"},
		Role: "launchpad_owner", Logger: log})
	if err != nil {
		panic(err)
	}
	src, err := codesync.NewDirSource("/srv/build/launchpad")
	if err != nil {
		panic(err)
	}
	releases, err := codesync.New(codesync.Config{Releases: "/srv/staging/releases", Current: "/srv/staging/current",
		Overlay: map[string]string{"robots.txt": "/etc/restage/robots-staging.txt"}, Logger: log})
	if err != nil {
		panic(err)
	}
	migrations, err := schema.New(schema.Config{Logger: log})
	if err != nil {
		panic(err)
	}
	service, err := svcctl.NewSystemd(svcctl.SystemdConfig{Unit: "launchpad.service", Logger: log})
	if err != nil {
		panic(err)
	}
	mail, err := notify.NewSMTP(notify.SMTPConfig{Addr: "127.0.0.1:25", From: "staging@example.org",
		To: []string{"error-reports@example.org"}, Logger: log})
	if err != nil {
		panic(err)
	}
	rb, err := staging.New(staging.Config{
		Environment: "staging",
		Backups:     backups, Databases: db, DSN: db.DSN,
		Source: src, Releases: releases, Schema: migrations,
		Service: service, Health: svcctl.HTTPCheck{URL: "http://127.0.0.1:8080/+health"},
		Notifier: mail,
		Options: staging.Options{
			Database: "launchpad_staging", Backup: dbrestore.WaitOptions{Database: "launchpad_prod", MaxAge: 20 * time.Hour},
			Migrations: "database/migrations", SchemaRole: "launchpad_owner",
			LockFile: "/run/restage/staging.lock", StateDir: "/var/lib/restage/staging", Logger: log,
		},
	})
	if err != nil {
		panic(err)
	}
	defer rb.Close()
	report, err := rb.Run(context.Background())
	fmt.Print(report.Text())
	os.Exit(staging.ExitStatus(err))
}
