package codesync

import (
	"log/slog"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// benchTree generates ~30,000 files (~300 MB) in 30×20 folders, sizes 2-18 KiB.
func benchTree(b *testing.B) (dir string, files int, bytes int64) {
	b.Helper()
	dir = filepath.Join(b.TempDir(), "src")
	rng := rand.New(rand.NewChaCha8([32]byte{1}))
	buf := make([]byte, 18<<10)
	for i := range 30 {
		for j := range 20 {
			sub := filepath.Join(dir, "pkg"+strconv.Itoa(i), "mod"+strconv.Itoa(j))
			if err := os.MkdirAll(sub, 0o755); err != nil {
				b.Fatal(err)
			}
			for k := range 50 {
				n := 2<<10 + rng.IntN(16<<10)
				for p := 0; p < n; p += 8 {
					v := rng.Uint64()
					for q := 0; q < 8 && p+q < n; q++ {
						buf[p+q] = byte(v >> (8 * q))
					}
				}
				mode := os.FileMode(0o644)
				if k%10 == 0 {
					mode = 0o755
				}
				if err := os.WriteFile(filepath.Join(sub, "f"+strconv.Itoa(k)+".py"), buf[:n], mode); err != nil {
					b.Fatal(err)
				}
				files++
				bytes += int64(n)
			}
		}
	}
	return dir, files, bytes
}

// BenchmarkRelease compares, in the same run on the same generated tree: a first release
// (nothing to link from) with `cp -a`, and an unchanged re-release with `cp -a` and with
// `rsync -a --link-dest`. Run: go test -run '^$' -bench Release -benchtime 3x ./codesync
func BenchmarkRelease(b *testing.B) {
	src, files, size := benchTree(b)
	b.Logf("tree: %d files, %d MB", files, size>>20)
	rsync, rsyncErr := exec.LookPath("rsync")
	if rsyncErr != nil {
		b.Logf("rsync not installed: skipping the rsync --link-dest comparison")
	}
	work := b.TempDir()
	var cpT, firstT, againT, rsyncT time.Duration
	timed := func(f func()) time.Duration {
		unix.Sync() // start each phase without the previous one's dirty pages
		start := time.Now()
		f()
		return time.Since(start)
	}
	run := func(name string, args ...string) {
		if out, err := exec.CommandContext(b.Context(), name, args...).CombinedOutput(); err != nil {
			b.Fatalf("%s %v: %v\n%s", name, args, err, out)
		}
	}
	n := 0
	for b.Loop() {
		n++
		b.StopTimer()
		os.RemoveAll(filepath.Join(work, "cp"))
		os.RemoveAll(filepath.Join(work, "rs"))
		os.RemoveAll(filepath.Join(work, "base"))
		os.MkdirAll(filepath.Join(work, "base"), 0o755)
		s := newBenchSyncer(b, filepath.Join(work, "base"))
		b.StartTimer()

		cpT += timed(func() { run("cp", "-a", src, filepath.Join(work, "cp")) })
		var first *Release
		firstT += timed(func() { first = build(b, s, dirSource(b, src)) })
		var again *Release
		againT += timed(func() { again = build(b, s, dirSource(b, src)) })
		if first.Files != files || again.Linked != files {
			b.Fatalf("first release %d files, re-release %d linked; want %d", first.Files, again.Linked, files)
		}
		if rsyncErr == nil {
			rsyncT += timed(func() {
				run(rsync, "-a", "--link-dest="+first.Dir, src+"/", filepath.Join(work, "rs")+"/")
			})
		}
	}
	sec := func(d time.Duration) float64 { return d.Seconds() / float64(n) }
	b.ReportMetric(sec(cpT), "cp-a-s/op")
	b.ReportMetric(sec(firstT), "first-s/op")
	b.ReportMetric(sec(againT), "rerelease-s/op")
	b.ReportMetric(firstT.Seconds()/cpT.Seconds(), "first/cp-a")
	b.ReportMetric(againT.Seconds()/cpT.Seconds(), "rerelease/cp-a")
	if rsyncErr == nil {
		b.ReportMetric(sec(rsyncT), "rsync-link-dest-s/op")
		b.ReportMetric(againT.Seconds()/rsyncT.Seconds(), "rerelease/rsync")
	}
}

func newBenchSyncer(b *testing.B, base string) *SymlinkSyncer {
	b.Helper()
	workers, _ := strconv.Atoi(os.Getenv("RESTAGE_BENCH_WORKERS")) // tuning knob; 0: default
	s, err := New(Config{
		Releases: filepath.Join(base, "releases"),
		Current:  filepath.Join(base, "current"),
		Workers:  workers,
		Logger:   slog.New(slog.DiscardHandler),
	})
	if err != nil {
		b.Fatal(err)
	}
	return s
}
