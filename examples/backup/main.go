// Command backup is the production side of restage: it backs up one PostgreSQL database
// with pg_dump into a folder and writes the JSON manifest restage's catalog trusts, both
// under temporary names renamed into place, then keeps the newest -keep backups.
//
//	backup -dsn URL -dir DIR [-jobs N] [-keep N] [-counts] [-format custom|directory] [-compress SPEC] [-lock-wait-timeout D] [-bindir DIR] [-v]
//	backup -basebackup [-plain] -dsn URL -dir DIR [-keep N] [-bindir DIR] [-v]
//
// With -basebackup it takes a pg_basebackup of the whole cluster instead (WAL streamed
// into it; gzipped tar files, or -plain files), for a staging environment with
// strategy "physical" and [backup] type = "basebackup"; the DSN's user needs the
// REPLICATION attribute.
//
// Give the password through PGPASSWORD or ~/.pgpass: a -dsn holding one is a usage error
// (exit 2), since other users of the machine read a command line in the process list.
// restage never puts it on pg_dump's command line, nor in logs or messages.
//
// Exit status: 0 a complete backup was written (and old ones pruned), or -h; 1 it was not
// (the message says why; no partial backup is left), or pruning failed; 2 usage error.
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"time"

	"github.com/restage/restage/dbrestore"
	"github.com/restage/restage/dbrestore/physical"
	"github.com/restage/restage/examples/internal/cli"
)

func main() { cli.Main("backup", run, nil) }

// dsnHasPassword says whether dsn carries a password; a DSN that cannot be parsed counts
// as one unless it cannot hold one (the dump then fails on it, naming no part of it).
func dsnHasPassword(dsn string) bool {
	has, err := dbrestore.HasPassword(dsn)
	return has || err != nil && strings.Contains(strings.ToLower(dsn), "password")
}

// params are the command line's, checked.
type params struct {
	dump        dbrestore.DumpOptions
	binDir      string
	verbose     bool
	base, plain bool
}

// run parses args, takes the backup and prints where it is.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	p, err := parse(args, stderr)
	if err != nil {
		return err
	}
	level := slog.LevelWarn
	if p.verbose {
		level = slog.LevelInfo
	}
	logger := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: level}))
	if p.base {
		return baseBackup(ctx, p, logger, stdout)
	}
	return dump(ctx, p, logger, stdout)
}

// parse reads the flags and refuses what does not go together.
func parse(args []string, stderr io.Writer) (*params, error) {
	fs := cli.NewFlagSet("backup", stderr,
		"-dsn URL -dir DIR [-jobs N] [-keep N] [-counts] [-format custom|directory] [-compress SPEC] [-lock-wait-timeout D] [-bindir DIR] [-v]",
		"-basebackup [-plain] -dsn URL -dir DIR [-keep N] [-bindir DIR] [-v]")
	var (
		p      params
		opts   = &p.dump
		format string
	)
	fs.BoolVar(&p.base, "basebackup", false, "take a pg_basebackup of the whole cluster (strategy physical, [backup] type = \"basebackup\")")
	fs.BoolVar(&p.plain, "plain", false, "with -basebackup: the data directory as files, not gzipped tar files")
	fs.StringVar(&opts.DSN, "dsn", "", "database to back up (postgres:// URL or key=value; its password in PGPASSWORD or ~/.pgpass, never here)")
	fs.StringVar(&opts.Dir, "dir", "", "existing folder for the dump and its manifest")
	fs.IntVar(&opts.Jobs, "jobs", 1, "parallel pg_dump jobs (more than 1 uses the directory format)")
	fs.IntVar(&opts.Keep, "keep", 0, "keep the newest N backups of this database (0: keep all)")
	fs.BoolVar(&opts.Counts, "counts", false, "record exact per-table row counts from the dump's snapshot")
	fs.StringVar(&format, "format", "", "custom or directory (default: custom, directory with -jobs > 1)")
	fs.StringVar(&opts.Compress, "compress", "", "pg_dump --compress value (default: pg_dump's)")
	fs.DurationVar(&opts.LockWaitTimeout, "lock-wait-timeout", dbrestore.DefaultLockWaitTimeout, "fail rather than wait longer for a table lock on production (a dump waiting holds the locks it has, queueing DDL and the traffic behind it)")
	fs.StringVar(&p.binDir, "bindir", "", "folder holding pg_dump (default: PATH, then the newest /usr/lib/postgresql/*/bin)")
	fs.BoolVar(&p.verbose, "v", false, "log progress")
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	switch {
	case opts.DSN == "":
		return nil, fs.Usagef("-dsn is required")
	case dsnHasPassword(opts.DSN):
		return nil, fs.Usagef("-dsn holds a password, which every user of this machine can read in the process list for as long as the backup runs: give it through PGPASSWORD or ~/.pgpass (PGPASSFILE) instead")
	case opts.Dir == "":
		return nil, fs.Usagef("-dir is required")
	case opts.Jobs < 1 || opts.Keep < 0 || opts.LockWaitTimeout <= 0:
		return nil, fs.Usagef("-jobs must be at least 1, -keep not negative and -lock-wait-timeout positive")
	case p.plain && !p.base:
		return nil, fs.Usagef("-plain goes with -basebackup")
	case format != "" && format != string(dbrestore.FormatCustom) && format != string(dbrestore.FormatDirectory):
		return nil, fs.Usagef("-format %q: want custom or directory", format)
	case format == string(dbrestore.FormatCustom) && opts.Jobs > 1:
		return nil, fs.Usagef("-jobs %d writes the directory format, not -format custom", opts.Jobs)
	}
	if p.base {
		// pg_dump's flags would be silently ignored by a base backup.
		var dumpOnly []string
		fs.Visit(func(f *flag.Flag) {
			switch f.Name {
			case "jobs", "counts", "format", "compress", "lock-wait-timeout":
				dumpOnly = append(dumpOnly, "-"+f.Name)
			}
		})
		if len(dumpOnly) > 0 {
			return nil, fs.Usagef("%s: pg_dump's, not -basebackup's", strings.Join(dumpOnly, ", "))
		}
	}
	opts.Format = dbrestore.Format(format)
	return &p, nil
}

// baseBackup is -basebackup: pg_basebackup of the cluster, then -keep.
func baseBackup(ctx context.Context, p *params, logger *slog.Logger, stdout io.Writer) error {
	start := time.Now()
	mpath, err := physical.BaseBackup(ctx, physical.BaseBackupOptions{DSN: p.dump.DSN, Dir: p.dump.Dir, Plain: p.plain,
		BinDir: p.binDir, Keep: p.dump.Keep, Logger: logger})
	if err != nil && mpath == "" {
		return fmt.Errorf("no base backup written: %w", err)
	}
	fmt.Fprintf(stdout, "base backup complete in %s\n  manifest: %s\n", time.Since(start).Round(time.Millisecond), mpath)
	if err != nil {
		return fmt.Errorf("base backup written, but removing old ones failed: %w", err)
	}
	return nil
}

// dump is pg_dump of the database, its manifest, then -keep.
func dump(ctx context.Context, p *params, logger *slog.Logger, stdout io.Writer) error {
	start := time.Now()
	b, err := dbrestore.Dump(ctx, dbrestore.Config{BinDir: p.binDir, Logger: logger}, p.dump)
	if err != nil && b == nil {
		return fmt.Errorf("no backup written: %w", err)
	}
	m := b.Manifest
	fmt.Fprintf(stdout, "backup of %s complete in %s\n  dump:     %s (%s, %d bytes)\n  manifest: %s\n  sha256:   %s\n",
		m.Database, time.Since(start).Round(time.Millisecond), b.Path, m.Format, m.Size, b.ManifestPath, m.SHA256)
	if len(m.RowCounts) > 0 {
		fmt.Fprintf(stdout, "  tables counted: %d\n", len(m.RowCounts))
	}
	if err != nil {
		return fmt.Errorf("backup written, but removing old backups failed: %w", err)
	}
	return nil
}
