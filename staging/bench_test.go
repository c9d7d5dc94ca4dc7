package staging_test

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/restage/restage/dbrestore"
	"github.com/restage/restage/dbrestore/pgtest"
	"github.com/restage/restage/internal/testutil"
	"github.com/restage/restage/staging/stagingtest"
)

// benchSizes are the numbers of bugs of the benchmark datasets (people: a tenth,
// comments: twice as many). RESTAGE_BENCH_BUGS="200000,2000000" overrides them.
func benchSizes() []int {
	sizes := []int{100_000, 1_000_000}
	if s := os.Getenv("RESTAGE_BENCH_BUGS"); s != "" {
		sizes = nil
		for _, f := range strings.Split(s, ",") {
			var n int
			fmt.Sscan(f, &n)
			sizes = append(sizes, n)
		}
	}
	return sizes
}

func newestDump(tb testing.TB, dir string) string {
	tb.Helper()
	dumps, _ := filepath.Glob(filepath.Join(dir, "*.dump"))
	sort.Strings(dumps)
	if len(dumps) == 0 {
		tb.Fatal("no dump")
	}
	return dumps[len(dumps)-1]
}

func timed(tb testing.TB, name string, args ...string) time.Duration {
	tb.Helper()
	start := time.Now()
	if out, err := exec.Command(name, args...).CombinedOutput(); err != nil {
		tb.Fatalf("%s %v: %v\n%s", name, args, err, out)
	}
	return time.Since(start)
}

// BenchmarkRebuild compares, on the same data in one run: the downtime of a swap
// rebuild and of an in-place one (at two database sizes: swap's must not grow), and a
// swap rebuild's total time with the sum of the bare tools doing the same work:
// pg_restore -j 2, cp -a of the code tree, and psql running the migrations.
//
//	go test -run '^$' -bench Rebuild -benchtime 1x ./staging
func BenchmarkRebuild(b *testing.B) {
	for _, bugs := range benchSizes() {
		b.Run(fmt.Sprintf("bugs=%d", bugs), func(b *testing.B) {
			w := newWorld(b, stagingtest.Options{People: max(bugs/10, 100), Bugs: bugs})
			mustRun(b, w) // the first rebuild: from here on, each one replaces a live staging
			dump := newestDump(b, w.BackupDir)
			st, _ := os.Stat(dump)
			b.Logf("dump %s: %d MiB", filepath.Base(dump), st.Size()>>20)
			var swapDown, swapTotal, inplaceDown, baseline, analyzed time.Duration
			for i := 0; i < b.N; i++ {
				rep := mustRun(b, w)
				var steps []string
				for _, s := range rep.Steps {
					steps = append(steps, fmt.Sprintf("%s %.2fs", s.Name, s.Duration.Seconds()))
				}
				b.Logf("swap rebuild %.2fs: %s", rep.Total.Seconds(), strings.Join(steps, ", "))
				swapDown += rep.Downtime
				swapTotal += rep.Total
				baseline += bareTools(b, w, dump, false)
				analyzed += bareTools(b, w, dump, true)
			}
			cfg, _ := os.ReadFile(w.ConfigPath)
			inplace := strings.Replace(string(cfg), `strategy     = "swap"`, `strategy     = "inplace"`, 1)
			if err := os.WriteFile(w.ConfigPath, []byte(inplace), 0o644); err != nil {
				b.Fatal(err)
			}
			for i := 0; i < b.N; i++ {
				inplaceDown += mustRun(b, w).Downtime
			}
			n := float64(b.N)
			b.ReportMetric(swapDown.Seconds()/n, "swap-downtime-s")
			b.ReportMetric(inplaceDown.Seconds()/n, "inplace-downtime-s")
			b.ReportMetric(swapTotal.Seconds()/n, "swap-total-s")
			b.ReportMetric(baseline.Seconds()/n, "bare-tools-s")
			b.ReportMetric(swapTotal.Seconds()/baseline.Seconds(), "total/bare-tools")
			b.ReportMetric(analyzed.Seconds()/n, "bare-tools+analyze-s")
			b.ReportMetric(swapTotal.Seconds()/analyzed.Seconds(), "total/bare-tools+analyze")
		})
	}
}

// bareTools does a rebuild's work with the standard tools and returns how long it took;
// with analyze, vacuumdb --analyze-only runs before the migrations (as restage analyzes
// after its restore), so that they run with statistics.
func bareTools(b *testing.B, w *stagingtest.World, dump string, analyze bool) time.Duration {
	b.Helper()
	db := "bench_bare"
	w.Staging.Exec(b, "postgres", "DROP DATABASE IF EXISTS "+db)
	tree := filepath.Join(w.Dir, "bench-tree")
	_ = os.RemoveAll(tree)
	start := time.Now()
	w.Staging.Exec(b, "postgres", "CREATE DATABASE "+db+" TEMPLATE template0")
	elapsed := time.Since(start)
	elapsed += timed(b, "pg_restore", "-j", "2", "--no-owner", "--no-acl", "--exit-on-error", "-d", w.Staging.DSN(db), dump)
	if analyze {
		elapsed += timed(b, "vacuumdb", "--analyze-only", "-q", "-d", w.Staging.DSN(db))
	}
	elapsed += timed(b, "cp", "-a", w.Source, tree)
	for _, m := range []string{"4_bug_importance.up.sql", "5_bug_heat.up.sql"} {
		elapsed += timed(b, "psql", "-q", "-v", "ON_ERROR_STOP=1", "-d", w.Staging.DSN(db), "-f", filepath.Join(w.Source, "migrations", m))
	}
	w.Staging.Exec(b, "postgres", "DROP DATABASE "+db)
	return elapsed
}

// BenchmarkExperimentalClone compares making experimental's database as a template
// copy of the night's restore with a second restore of the same backup (target ≤ 0.3×).
//
//	go test -run '^$' -bench ExperimentalClone -benchtime 1x ./staging
func BenchmarkExperimentalClone(b *testing.B) {
	for _, bugs := range benchSizes() {
		b.Run(fmt.Sprintf("bugs=%d", bugs), func(b *testing.B) {
			w := newWorld(b, stagingtest.Options{People: max(bugs/10, 100), Bugs: bugs})
			ctx := context.Background()
			srv, err := dbrestore.NewServer(dbrestore.ServerConfig{AdminDSN: w.Staging.AdminDSN(), Logger: discard()})
			if err != nil {
				b.Fatal(err)
			}
			cat, err := dbrestore.NewCatalog(w.BackupDir, dbrestore.Config{Logger: discard()})
			if err != nil {
				b.Fatal(err)
			}
			backup, err := cat.Wait(ctx, dbrestore.WaitOptions{Database: w.ProdDB})
			if err != nil {
				b.Fatal(err)
			}
			opts := dbrestore.RestoreOptions{Target: "bench_next", Replace: true, Jobs: 2}
			if _, err := srv.Restore(ctx, backup, opts); err != nil {
				b.Fatal(err)
			}
			var clone, restore time.Duration
			for i := 0; i < b.N; i++ {
				start := time.Now()
				if err := srv.Clone(ctx, "bench_next", "bench_clone"); err != nil {
					b.Fatal(err)
				}
				clone += time.Since(start)
				start = time.Now()
				opts.Target = "bench_second"
				if _, err := srv.Restore(ctx, backup, opts); err != nil {
					b.Fatal(err)
				}
				restore += time.Since(start)
			}
			b.ReportMetric(clone.Seconds()/float64(b.N), "clone-s")
			b.ReportMetric(restore.Seconds()/float64(b.N), "second-restore-s")
			b.ReportMetric(clone.Seconds()/restore.Seconds(), "clone/restore")
		})
	}
}

// BenchmarkNightlyVsPgRestore is the measure of the logical path: production's
// database holds pgbench's tables at scale $RESTAGE_BENCH_PGBENCH_SCALE (default 30,
// about 450 MB) besides a small bug tracker, so that the migrations cost little; a whole
// swap rebuild (wait, verify, restore with its row counts and ANALYZE, release, schema,
// cutover, health gate, prune, report) is compared with a bare `pg_restore -j 2` of the
// same dump into a database created for it (CREATE DATABASE counted, as restage's is) on
// the same server, alternately (each round's first side alternates), in the same run;
// nightly/bare is the ratio of the totals, nightly/bare-median-round the median of the
// rounds' ratios (the upper one for an even count). peak-rss-MiB is the test process's peak
// resident set during the rebuilds (the harness included; the servers and pg_restore are
// other processes).
//
//	go test -run '^$' -bench NightlyVsPgRestore -benchtime 2x -timeout 60m ./staging
func BenchmarkNightlyVsPgRestore(b *testing.B) {
	scale := 30
	if s := os.Getenv("RESTAGE_BENCH_PGBENCH_SCALE"); s != "" {
		fmt.Sscan(s, &scale)
	}
	w := newWorld(b, stagingtest.Options{People: 500, Bugs: 5000})
	bin, err := pgtest.BinDir()
	if err != nil {
		b.Fatal(err)
	}
	if out, err := exec.Command(filepath.Join(bin, "pgbench"), "-i", "-q", "-s", fmt.Sprint(scale), w.Production.DSN(w.ProdDB)).CombinedOutput(); err != nil {
		b.Fatalf("pgbench -i: %v\n%s", err, out)
	}
	ctx := context.Background()
	if _, err := w.Backup(ctx); err != nil {
		b.Fatal(err)
	}
	mustRun(b, w) // the first rebuild: from here on, each one replaces a live staging
	dump := newestDump(b, w.BackupDir)
	st, _ := os.Stat(dump)
	b.Logf("dump %s: %d MiB", filepath.Base(dump), st.Size()>>20)
	var total, bare time.Duration
	var peakRSS uint64
	var ratios []float64
	nightly := func() time.Duration {
		runtime.GC()
		testutil.ResetPeakRSS()
		rep := mustRun(b, w)
		peakRSS = max(peakRSS, testutil.PeakRSS())
		var steps []string
		for _, s := range rep.Steps {
			steps = append(steps, fmt.Sprintf("%s %.2fs", s.Name, s.Duration.Seconds()))
		}
		b.Logf("swap rebuild %.2fs: %s", rep.Total.Seconds(), strings.Join(steps, ", "))
		for _, s := range rep.Steps {
			if s.Name == "restore" || s.Name == "prune" {
				b.Logf("%s: %s", s.Name, s.Detail)
			}
		}
		return rep.Total
	}
	bareRestore := func() time.Duration {
		w.Staging.Exec(b, "postgres", "DROP DATABASE IF EXISTS bench_bare")
		start := time.Now()
		w.Staging.Exec(b, "postgres", "CREATE DATABASE bench_bare TEMPLATE template0")
		d := time.Since(start)
		d += timed(b, "pg_restore", "-j", "2", "--no-owner", "--no-acl", "--exit-on-error", "-d", w.Staging.DSN("bench_bare"), dump)
		b.Logf("bare CREATE DATABASE + pg_restore -j 2: %.2fs", d.Seconds())
		w.Staging.Exec(b, "postgres", "DROP DATABASE bench_bare")
		return d
	}
	for i := range b.N {
		// Each round's first run follows the other side's last: alternate who goes first.
		var n, d time.Duration
		if i%2 == 0 {
			n, d = nightly(), bareRestore()
		} else {
			d, n = bareRestore(), nightly()
		}
		total += n
		bare += d
		ratios = append(ratios, n.Seconds()/d.Seconds())
	}
	n := float64(b.N)
	b.ReportMetric(total.Seconds()/n, "nightly-s")
	b.ReportMetric(bare.Seconds()/n, "bare-pg_restore-s")
	b.ReportMetric(total.Seconds()/bare.Seconds(), "nightly/bare")
	sort.Float64s(ratios)
	b.ReportMetric(ratios[len(ratios)/2], "nightly/bare-median-round")
	b.ReportMetric(float64(peakRSS)/(1<<20), "peak-rss-MiB")
}
