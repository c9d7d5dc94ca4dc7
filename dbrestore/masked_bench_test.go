package dbrestore

import (
	"log/slog"
	"path/filepath"
	"runtime"
	"testing"
	"time"

	"github.com/restage/restage/dbrestore/mask"
	"github.com/restage/restage/internal/testutil"
)

// BenchmarkRestoreMasked compares a Restore that masks the largest table's text column
// (pgbench_accounts.filler, rule text, streamed through the COPY masker) with the same
// Restore without masking, of the same backup into the same staging server, in the same
// run. The dataset is BenchmarkRestore's. Run it with:
//
//	go test ./dbrestore -run '^$' -bench BenchmarkRestoreMasked -benchtime 1x -timeout 60m
//
// Each of $RESTAGE_BENCH_ROUNDS rounds (default 2) restores twice each way, alternating
// (plain, masked, masked, plain), and reports time-ratio (masked over plain), the
// masked table's load (mask-s), and the test process's peak resident set during each
// kind of restore (VmHWM, reset before each), in MiB.
func BenchmarkRestoreMasked(b *testing.B) {
	prod, staging := servers(b)
	ctx := testCtx(b)
	scale, rounds := benchEnv(b, "RESTAGE_BENCH_SCALE", 20), benchEnv(b, "RESTAGE_BENCH_ROUNDS", 2)
	db, dbBytes := benchDataset(b, prod, scale)
	backup := dumpOf(b, prod, db, DumpOptions{Counts: true})
	b.Logf("dataset: %d MB, dump %d MB", dbBytes>>20, backup.Manifest.Size>>20)
	cat, err := NewCatalog(filepath.Dir(backup.Path), Config{})
	if err != nil {
		b.Fatal(err)
	}
	if err := cat.Verify(ctx, backup); err != nil {
		b.Fatal(err)
	}
	rules, err := mask.New(mask.Config{Columns: map[string]string{"public.pgbench_accounts.filler": "text"}},
		func(string) string { return "bench key" })
	if err != nil {
		b.Fatal(err)
	}
	srv := newServer(b, staging, ServerConfig{Logger: slog.New(slog.DiscardHandler)})
	restore := func(rules *mask.Rules) (time.Duration, uint64, *RestoreResult) {
		b.Helper()
		name := dbName(b, staging, "bench_mask")
		staging.Exec(b, "postgres", "CHECKPOINT")
		runtime.GC()
		testutil.ResetPeakRSS()
		start := time.Now()
		res, err := srv.Restore(ctx, backup, RestoreOptions{Target: name, Jobs: 2, Mask: rules})
		d := time.Since(start)
		rss := testutil.PeakRSS()
		if err != nil {
			b.Fatal(err)
		}
		if rules != nil {
			if n := staging.QueryInt(b, name, "SELECT count(*) FROM pgbench_accounts WHERE filler ~ '^ *$'"); n != 0 {
				b.Fatalf("%d fillers left unmasked", n)
			}
		}
		dropQuietly(staging, name)
		return d, rss, res
	}
	warm, _, _ := restore(nil)
	b.Logf("warm-up (not counted): %s", warm.Round(time.Millisecond))
	var plain, masked, maskLoad time.Duration
	var plainRSS, maskedRSS uint64
	b.ResetTimer()
	for i := 0; i < b.N*rounds; i++ {
		for _, m := range []bool{false, true, true, false} {
			if !m {
				d, rss, _ := restore(nil)
				plain += d
				plainRSS = max(plainRSS, rss)
				b.Logf("plain Restore: %s, peak RSS %d MiB", d.Round(time.Millisecond), rss>>20)
				continue
			}
			d, rss, res := restore(rules)
			masked += d
			maskedRSS = max(maskedRSS, rss)
			maskLoad += res.Mask.Duration
			b.Logf("masked Restore: %s (masked table loaded in %s, %d values), peak RSS %d MiB", d.Round(time.Millisecond),
				res.Mask.Duration.Round(time.Millisecond), res.Mask.Columns[0].Rows, rss>>20)
		}
	}
	b.StopTimer()
	n := float64(2 * b.N * rounds)
	b.ReportMetric(float64(dbBytes)/1e6, "dataset-MB")
	b.ReportMetric(plain.Seconds()/n, "plain-s")
	b.ReportMetric(masked.Seconds()/n, "masked-s")
	b.ReportMetric(masked.Seconds()/plain.Seconds(), "time-ratio")
	b.ReportMetric(maskLoad.Seconds()/n, "mask-s")
	b.ReportMetric(float64(plainRSS)/(1<<20), "plain-rss-MiB")
	b.ReportMetric(float64(maskedRSS)/(1<<20), "masked-rss-MiB")
}
