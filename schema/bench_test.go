package schema_test

import (
	"context"
	"fmt"
	"log/slog"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/golang-migrate/migrate/v4"
	_ "github.com/golang-migrate/migrate/v4/database/pgx/v5"
	_ "github.com/golang-migrate/migrate/v4/source/file"

	"github.com/restage/restage/schema"
)

// BenchmarkUpgrade compares MigrateUpgrader.Upgrade (one Steps(1) per migration, each timed,
// then the final check) with golang-migrate's own Up() on the same 100 small migrations, in
// the same run. It reports ns per Upgrade and the ratio to Up() as x-migrate-up.
func BenchmarkUpgrade(b *testing.B) {
	const n = 100
	f := newFixture(b)
	files := map[string]string{}
	for i := 1; i <= n; i++ {
		files[fmt.Sprintf("%03d_t%d.up.sql", i, i)] = fmt.Sprintf("CREATE TABLE t%d (id bigint PRIMARY KEY, v text);\nINSERT INTO t%d SELECT g, 'x' FROM generate_series(1, 100) g;\n", i, i)
	}
	f.write(b, files)
	u := newUpgrader(b, schema.Config{Logger: discard()})
	ctx := context.Background()
	reset := func() {
		f.srv.Exec(b, f.db, "DROP SCHEMA public CASCADE; CREATE SCHEMA public")
	}
	u8 := strings.Replace(f.srv.DSN(f.db), "postgres://", "pgx5://", 1)
	src := "file://" + filepath.ToSlash(f.dir)

	var ours, theirs time.Duration
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		b.StopTimer()
		reset()
		b.StartTimer()
		start := time.Now()
		res, err := u.Upgrade(ctx, f.target())
		ours += time.Since(start)
		if err != nil || len(res.Applied) != n {
			b.Fatalf("Upgrade: %v", err)
		}

		b.StopTimer()
		reset()
		start = time.Now()
		m, err := migrate.New(src, u8)
		if err != nil {
			b.Fatal(err)
		}
		if err := m.Up(); err != nil {
			b.Fatal(err)
		}
		m.Close()
		theirs += time.Since(start)
		b.StartTimer()
	}
	b.ReportMetric(float64(ours.Nanoseconds())/float64(b.N), "ns/upgrade")
	b.ReportMetric(float64(theirs.Nanoseconds())/float64(b.N), "ns/migrate-up")
	b.ReportMetric(float64(ours)/float64(theirs), "x-migrate-up")
}

func discard() *slog.Logger { return slog.New(slog.DiscardHandler) }
