package physical_test

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/restage/restage/dbrestore/pgtest"
	"github.com/restage/restage/dbrestore/physical"
	"github.com/restage/restage/dbrestore/physical/physicaltest"
	"github.com/restage/restage/internal/testutil"
)

// BenchmarkPhysicalRefresh compares, on the same data in the same run, a physical
// refresh (pgbackrest restore of a full backup into a slot + recovery + start on the
// side port, the cluster with PostgreSQL's default fsync) with a bare `pg_restore -j 2`
// of a pg_dump -Fc of that database into a fresh database, on a throwaway server (fsync
// off) and on a server with PostgreSQL's default durability; the same refresh with
// [backup] sync_once (pgbackrest under eatmydata, one syncfs) when eatmydata is
// installed; then delta refreshes
// (incremental backups restored with --delta over the previous copy) with a full one,
// after a pgbench run changed about 5% of the rows and after 5% of every table's rows
// changed (scattered: the worst case for a file-level delta); and the cutover (stop the
// live cluster, stop the prepared one, start it on the live port). The data are
// dbrestore's BenchmarkRestore's: pgbench -i at each scale of $RESTAGE_BENCH_SCALES
// (default "5,20") plus an indexed table of 50000 rows per scale unit and 20 smaller
// ones (250 to 5000 rows per scale unit; about 760 MB at scale 20).
// Run it with:
//
//	go test ./dbrestore/physical -run '^$' -bench BenchmarkPhysicalRefresh -benchtime 1x -timeout 60m
func BenchmarkPhysicalRefresh(b *testing.B) {
	bin := physicaltest.Require(b)
	scales := os.Getenv("RESTAGE_BENCH_SCALES")
	if scales == "" {
		scales = "5,20"
	}
	for _, s := range strings.Split(scales, ",") {
		scale, err := strconv.Atoi(strings.TrimSpace(s))
		if err != nil {
			b.Fatal(err)
		}
		b.Run(fmt.Sprintf("scale=%d", scale), func(b *testing.B) {
			for range b.N {
				benchRefresh(b, bin, scale)
			}
		})
	}
}

func timed(b *testing.B, what string, fn func() error) time.Duration {
	b.Helper()
	start := time.Now()
	if err := fn(); err != nil {
		b.Fatalf("%s: %v", what, err)
	}
	d := time.Since(start)
	b.Logf("%s: %s", what, d.Round(time.Millisecond))
	return d
}

func benchRefresh(b *testing.B, bin string, scale int) {
	ctx := context.Background()
	prod := physicaltest.Start(b, physicaltest.Options{})
	if err := prod.Exec(ctx, "postgres", "CREATE DATABASE bench"); err != nil {
		b.Fatal(err)
	}
	timed(b, "pgbench -i", func() error {
		out, err := exec.CommandContext(ctx, filepath.Join(bin, "pgbench"), "-i", "-q", "-s", strconv.Itoa(scale), prod.DSN("bench")).CombinedOutput()
		if err != nil {
			return fmt.Errorf("%w\n%s", err, out)
		}
		return nil
	})
	timed(b, "indexed tables", func() error {
		sql := fmt.Sprintf(`
CREATE TABLE extra AS
  SELECT g AS id, md5(g::text) AS h, timestamptz '2026-01-01' + g * interval '1 second' AS at, repeat('x', 40) AS pad
  FROM generate_series(1, %d) g;
ALTER TABLE extra ADD PRIMARY KEY (id);
CREATE INDEX extra_h ON extra (h);
CREATE INDEX extra_at ON extra (at);`, scale*50000)
		for i := 1; i <= 20; i++ {
			sql += fmt.Sprintf(`
CREATE TABLE t%[1]d AS SELECT g AS id, md5((g * %[1]d)::text) AS h, g %% 100 AS k, repeat('z', 30) AS pad
  FROM generate_series(1, %[2]d) g;
ALTER TABLE t%[1]d ADD PRIMARY KEY (id);
CREATE INDEX ON t%[1]d (h);
CREATE INDEX ON t%[1]d (k);`, i, i*scale*250)
		}
		return prod.Exec(ctx, "bench", sql)
	})
	var size int64
	if err := func() error {
		p := &pgtest.Server{Host: "127.0.0.1", Port: prod.Port, User: "postgres"}
		size = p.QueryInt(b, "bench", "SELECT pg_database_size('bench')")
		return nil
	}(); err != nil {
		b.Fatal(err)
	}
	b.Logf("database: %d MB", size>>20)
	timed(b, "pgbackrest full backup", func() error { return prod.Backup(ctx, "full") })
	dump := filepath.Join(b.TempDir(), "bench.dump")
	timed(b, "pg_dump -Fc", func() error {
		out, err := exec.CommandContext(ctx, filepath.Join(bin, "pg_dump"), "-Fc", "-f", dump, prod.DSN("bench")).CombinedOutput()
		if err != nil {
			return fmt.Errorf("%w\n%s", err, out)
		}
		return nil
	})

	// Bare logical restores, the better of two each: into a throwaway server (fsync and
	// full_page_writes off, as the other benchmarks' servers) and into a server with
	// PostgreSQL's default durability, as a staging server runs.
	bareRestore := func(what string, settings ...string) time.Duration {
		srv, err := pgtest.StartLocalWith(ctx, bin, settings...)
		if err != nil {
			b.Fatal(err)
		}
		defer srv.Stop()
		best := time.Duration(0)
		for i := range 2 {
			db := fmt.Sprintf("bare%d", i)
			srv.Exec(b, "postgres", "CREATE DATABASE "+db+" TEMPLATE template0")
			d := timed(b, what, func() error {
				out, err := exec.CommandContext(ctx, filepath.Join(bin, "pg_restore"), "-j", "2", "--no-owner", "--no-acl",
					"--exit-on-error", "-d", srv.DSN(db), dump).CombinedOutput()
				if err != nil {
					return fmt.Errorf("%w\n%s", err, out)
				}
				return nil
			})
			srv.Exec(b, "postgres", "DROP DATABASE "+db)
			if best == 0 || d < best {
				best = d
			}
		}
		return best
	}
	bare := bareRestore("bare pg_restore -j 2 (fsync off)")
	durable := bareRestore("bare pg_restore -j 2 (fsync on)", "fsync=on", "full_page_writes=on")

	src, err := physical.NewPgBackRest(physical.PgBackRestConfig{Stanza: physicaltest.Stanza, Config: prod.Config})
	if err != nil {
		b.Fatal(err)
	}
	parent, err := os.MkdirTemp("", "restage-bench-")
	if err != nil {
		b.Fatal(err)
	}
	_ = os.Chmod(parent, 0o711)
	b.Cleanup(func() { os.RemoveAll(parent) })
	port, _ := testutil.FreePort()
	side, _ := testutil.FreePort()
	dir := filepath.Join(parent, "pg")
	cl, err := physical.NewClusters(physical.ClustersConfig{Environment: "bench", Dir: dir, Port: port, SidePort: side, BinDir: bin,
		Settings: map[string]string{"shared_buffers": "128MB"}}) // fsync on: a staging cluster's setting
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() {
		for _, n := range []string{"a", "b"} {
			_ = cl.Stop(context.Background(), &physical.Slot{Name: n, Dir: filepath.Join(dir, n), Data: filepath.Join(dir, n, "data")})
		}
	})
	refreshWith := func(src *physical.PgBackRest, what string, delta bool) (*physical.Slot, time.Duration) {
		set, err := src.Latest(ctx)
		if err != nil {
			b.Fatal(err)
		}
		var slot *physical.Slot
		d := timed(b, what, func() error {
			var err error
			if slot, err = cl.Restore(ctx, src, set, delta); err != nil {
				return err
			}
			return cl.StartSide(ctx, slot)
		})
		return slot, d
	}
	refresh := func(what string, delta bool) (*physical.Slot, time.Duration) { return refreshWith(src, what, delta) }
	slot, full := refresh("physical refresh (full)", false)
	if err := cl.Discard(ctx, slot); err != nil {
		b.Fatal(err)
	}
	_, full2 := refresh("physical refresh (full, again)", false)
	if full2 < full {
		full = full2
	}
	if err := cl.Discard(ctx, slot); err != nil {
		b.Fatal(err)
	}
	// The same under eatmydata, with one syncfs ([backup] sync_once), the better of two.
	var once time.Duration
	if _, err := exec.LookPath("eatmydata"); err == nil {
		quick, err := physical.NewPgBackRest(physical.PgBackRestConfig{Stanza: physicaltest.Stanza, Config: prod.Config, SyncOnce: true})
		if err != nil {
			b.Fatal(err)
		}
		for range 2 {
			_, d := refreshWith(quick, "physical refresh (full, sync once)", false)
			if once == 0 || d < once {
				once = d
			}
			if err := cl.Discard(ctx, slot); err != nil {
				b.Fatal(err)
			}
		}
	}
	// A day's writes: pgbench transactions (each updates an account, a teller and a
	// branch and inserts a history row) changing about 5% of the database's rows; the
	// other tables take no writes, as most of a production database on most days.
	txns := scale * 5000
	timed(b, fmt.Sprintf("pgbench -t %d (5%% of the rows changed), incremental backup", txns), func() error {
		out, err := exec.CommandContext(ctx, filepath.Join(bin, "pgbench"), "-n", "-c", "2", "-j", "2",
			"-t", strconv.Itoa(txns/2), prod.DSN("bench")).CombinedOutput()
		if err != nil {
			return fmt.Errorf("%w\n%s", err, out)
		}
		return prod.Backup(ctx, "incr")
	})
	slot, delta := refresh("physical refresh (delta, after pgbench)", true)
	if err := cl.Discard(ctx, slot); err != nil {
		b.Fatal(err)
	}
	// The worst case for pgBackRest's file-level delta: 5% of every table's rows,
	// scattered over all their pages, so that nearly every file changes.
	timed(b, "5% of every table's rows changed, incremental backup", func() error {
		sql := "UPDATE pgbench_accounts SET abalance = abalance + 1 WHERE aid % 20 = 0;\n" +
			"UPDATE extra SET pad = 'changed' WHERE id % 20 = 0;\n"
		for i := 1; i <= 20; i++ {
			sql += fmt.Sprintf("UPDATE t%d SET pad = 'changed' WHERE id %% 20 = 0;\n", i)
		}
		if err := prod.Exec(ctx, "bench", sql); err != nil {
			return err
		}
		return prod.Backup(ctx, "incr")
	})
	slot, scattered := refresh("physical refresh (delta, after scattered changes)", true)

	// Cutover: the first switch brings slot a live; then b is prepared and switched in.
	if _, err := cl.Switch(ctx, slot); err != nil {
		b.Fatal(err)
	}
	next, _ := refresh("physical refresh into b", true)
	cutover := timed(b, "cutover", func() error { _, err := cl.Switch(ctx, next); return err })

	b.ReportMetric(float64(size>>20), "db-MB")
	b.ReportMetric(bare.Seconds(), "bare-pg_restore-s")
	b.ReportMetric(durable.Seconds(), "bare-durable-s")
	b.ReportMetric(full.Seconds(), "physical-s")
	b.ReportMetric(full.Seconds()/bare.Seconds(), "physical/bare")
	b.ReportMetric(full.Seconds()/durable.Seconds(), "physical/bare-durable")
	if once > 0 {
		b.ReportMetric(once.Seconds(), "sync-once-s")
		b.ReportMetric(once.Seconds()/bare.Seconds(), "sync-once/bare")
		b.ReportMetric(once.Seconds()/durable.Seconds(), "sync-once/bare-durable")
	}
	b.ReportMetric(delta.Seconds(), "delta-s")
	b.ReportMetric(delta.Seconds()/full.Seconds(), "delta/full")
	b.ReportMetric(scattered.Seconds()/full.Seconds(), "scattered-delta/full")
	b.ReportMetric(cutover.Seconds(), "cutover-s")
}
