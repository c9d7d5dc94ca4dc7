package dbrestore

import (
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/restage/restage/dbrestore/pgtest"
	"github.com/restage/restage/internal/testutil"
)

// BenchmarkRestore compares Server.Restore with a bare `pg_restore -j 2` of the same
// backup into the same staging server, in the same run. The dataset is pgbench -i -s
// $RESTAGE_BENCH_SCALE (default 20, about 760 MB) plus an indexed table of 50000 rows per
// scale unit and 20 smaller ones (250 to 5000 rows per scale unit). Run it with:
//
//	go test ./dbrestore -run '^$' -bench BenchmarkRestore -benchtime 1x -timeout 60m
//
// Each of $RESTAGE_BENCH_ROUNDS rounds (default 2) restores twice with each tool,
// alternating (bare, restage, restage, bare), and reports:
//   - time-ratio: restage's whole Restore (create, pg_restore, row count check, ANALYZE)
//     over bare (create + pg_restore); time-ratio-vs-analyzed: over bare plus
//     vacuumdb --analyze-only -j 2; pgrestore-ratio: restage's pg_restore phase alone;
//   - extra-s: what restage adds to pg_restore (create, table of contents, row counts,
//     ANALYZE) per restore;
//   - peak-go-MiB: the most memory the Go runtime held (heap, stacks, runtime) during
//     restage's restores, sampled every 5 ms; peak-heap-MiB: the heap's peak;
//     peak-rss-MiB: the test process's peak resident set (VmHWM, reset before each).
func BenchmarkRestore(b *testing.B) {
	prod, staging := servers(b)
	ctx := testCtx(b)
	scale, rounds := benchEnv(b, "RESTAGE_BENCH_SCALE", 20), benchEnv(b, "RESTAGE_BENCH_ROUNDS", 2)
	start := time.Now()
	db, dbBytes := benchDataset(b, prod, scale)
	b.Logf("dataset: %d MB in %s", dbBytes>>20, time.Since(start).Round(time.Second))

	start = time.Now()
	backup := dumpOf(b, prod, db, DumpOptions{Counts: true})
	b.Logf("manifest row counts: %v", backup.Manifest.RowCounts)
	b.Logf("dump: %d MB in %s", backup.Manifest.Size>>20, time.Since(start).Round(time.Second))
	cat, err := NewCatalog(filepath.Dir(backup.Path), Config{})
	if err != nil {
		b.Fatal(err)
	}
	start = time.Now()
	if err := cat.Verify(ctx, backup); err != nil {
		b.Fatal(err)
	}
	verify := time.Since(start)

	srv := newServer(b, staging, ServerConfig{Logger: slog.New(slog.DiscardHandler)})
	pgRestore, err := (Config{}).tool("pg_restore")
	if err != nil {
		b.Fatal(err)
	}
	vacuumdb, err := (Config{}).tool("vacuumdb")
	if err != nil {
		b.Fatal(err)
	}
	// bare restores with pg_restore alone, then runs vacuumdb --analyze-only -j 2 (the
	// ANALYZE restage includes), returning both times.
	bare := func() (time.Duration, time.Duration) {
		b.Helper()
		name := dbName(b, staging, "bench_bare")
		start := time.Now()
		staging.Exec(b, "postgres", "CREATE DATABASE "+ident(name)+" TEMPLATE template0")
		cmd := exec.CommandContext(ctx, pgRestore, "-j", "2", "--no-owner", "--no-acl", "--exit-on-error",
			"-d", staging.DSN(name), backup.Path)
		if out, err := cmd.CombinedOutput(); err != nil {
			b.Fatalf("bare pg_restore: %v\n%s", err, out)
		}
		d := time.Since(start)
		start = time.Now()
		cmd = exec.CommandContext(ctx, vacuumdb, "--analyze-only", "-j", "2", "-q", "-d", staging.DSN(name))
		if out, err := cmd.CombinedOutput(); err != nil {
			b.Fatalf("vacuumdb: %v\n%s", err, out)
		}
		a := time.Since(start)
		dropQuietly(staging, name)
		return d, a
	}
	var peakGo, peakHeap, peakRSS uint64
	restage := func() (time.Duration, *RestoreResult) {
		b.Helper()
		name := dbName(b, staging, "bench_restage")
		runtime.GC()
		testutil.ResetPeakRSS()
		stop := sampleMemory(&peakGo, &peakHeap)
		start := time.Now()
		res, err := srv.Restore(ctx, backup, RestoreOptions{Target: name, Jobs: 2})
		d := time.Since(start)
		stop()
		peakRSS = max(peakRSS, testutil.PeakRSS())
		if err != nil {
			b.Fatal(err)
		}
		dropQuietly(staging, name)
		return d, res
	}
	checkpoint := func() { staging.Exec(b, "postgres", "CHECKPOINT") }

	// Warm-up, not counted: a fresh cluster's first big restore also creates its WAL
	// segments, which later ones recycle.
	checkpoint()
	warm, _ := bare()
	b.Logf("warm-up (not counted): bare pg_restore -j 2: %s", warm.Round(time.Millisecond))
	var bareTotal, analyzeTotal, restageTotal, phaseTotal, extraTotal time.Duration
	b.ResetTimer()
	for i := 0; i < b.N*rounds; i++ {
		for _, order := range []string{"bare", "restage", "restage", "bare"} {
			checkpoint()
			if order == "bare" {
				d, a := bare()
				bareTotal += d
				analyzeTotal += a
				b.Logf("bare pg_restore -j 2: %s (then vacuumdb --analyze-only -j 2: %s)", d.Round(time.Millisecond), a.Round(time.Millisecond))
				continue
			}
			d, res := restage()
			restageTotal += d
			phaseTotal += res.Restore
			extraTotal += d - res.Restore - res.PostRestore
			b.Logf("restage Restore: %s (pg_restore %s, row counts of %d tables + ANALYZE %s)",
				d.Round(time.Millisecond), res.Restore.Round(time.Millisecond), len(res.RowCounts), res.Analyze.Round(time.Millisecond))
		}
	}
	n := float64(2 * b.N * rounds)
	b.StopTimer()
	b.ReportMetric(float64(dbBytes)/1e6, "dataset-MB")
	b.ReportMetric(verify.Seconds(), "verify-s")
	b.ReportMetric(bareTotal.Seconds()/n, "bare-s")
	b.ReportMetric(restageTotal.Seconds()/n, "restage-s")
	b.ReportMetric(restageTotal.Seconds()/bareTotal.Seconds(), "time-ratio")
	b.ReportMetric(restageTotal.Seconds()/(bareTotal+analyzeTotal).Seconds(), "time-ratio-vs-analyzed")
	b.ReportMetric(phaseTotal.Seconds()/bareTotal.Seconds(), "pgrestore-ratio")
	b.ReportMetric(extraTotal.Seconds()/n, "extra-s")
	b.ReportMetric(float64(peakGo)/(1<<20), "peak-go-MiB")
	b.ReportMetric(float64(peakHeap)/(1<<20), "peak-heap-MiB")
	b.ReportMetric(float64(peakRSS)/(1<<20), "peak-rss-MiB")
}

// benchEnv returns the positive integer the environment variable key holds, or def.
func benchEnv(b *testing.B, key string, def int) int {
	s := os.Getenv(key)
	if s == "" {
		return def
	}
	n, err := strconv.Atoi(s)
	if err != nil || n < 1 {
		b.Fatalf("%s=%q: want a positive integer", key, s)
	}
	return n
}

// benchDataset makes the benchmark's production database: pgbench -i -s scale, an
// indexed table of 50000 rows per scale unit and 20 smaller ones. It returns the
// database and its size in bytes.
func benchDataset(b *testing.B, prod *pgtest.Server, scale int) (string, int64) {
	binDir, err := pgtest.BinDir()
	if err != nil {
		b.Fatal(err)
	}
	db := prod.Database(b)
	gen := exec.CommandContext(testCtx(b), filepath.Join(binDir, "pgbench"), "-i", "-q", "-s", strconv.Itoa(scale),
		"-h", prod.Host, "-p", strconv.Itoa(prod.Port), "-U", prod.User, db)
	if out, err := gen.CombinedOutput(); err != nil {
		b.Fatalf("pgbench -i: %v\n%s", err, out)
	}
	prod.Exec(b, db, fmt.Sprintf(`
CREATE TABLE extra AS
  SELECT g AS id, md5(g::text) AS h, timestamptz '2026-01-01' + g * interval '1 second' AS at, repeat('x', 40) AS pad
  FROM generate_series(1, %d) g;
ALTER TABLE extra ADD PRIMARY KEY (id);
CREATE INDEX extra_h ON extra (h);
CREATE INDEX extra_at ON extra (at);`, scale*50000))
	// Many smaller indexed tables, as real schemas have.
	var more strings.Builder
	for i := 1; i <= 20; i++ {
		fmt.Fprintf(&more, `
CREATE TABLE t%[1]d AS SELECT g AS id, md5((g * %[1]d)::text) AS h, g %% 100 AS k, repeat('z', 30) AS pad
  FROM generate_series(1, %[2]d) g;
ALTER TABLE t%[1]d ADD PRIMARY KEY (id);
CREATE INDEX ON t%[1]d (h);
CREATE INDEX ON t%[1]d (k);`, i, i*scale*250)
	}
	prod.Exec(b, db, more.String())
	return db, prod.QueryInt(b, db, "SELECT pg_database_size(current_database())")
}

// sampleMemory records the Go runtime's peak memory until the returned stop is called.
func sampleMemory(peakGo, peakHeap *uint64) (stop func()) {
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	sample := func() {
		var ms runtime.MemStats
		runtime.ReadMemStats(&ms)
		*peakGo = max(*peakGo, ms.Sys-ms.HeapReleased)
		*peakHeap = max(*peakHeap, ms.HeapAlloc)
	}
	go func() {
		defer wg.Done()
		t := time.NewTicker(5 * time.Millisecond)
		defer t.Stop()
		for {
			sample()
			select {
			case <-done:
				return
			case <-t.C:
			}
		}
	}()
	return func() { close(done); wg.Wait(); sample() }
}
