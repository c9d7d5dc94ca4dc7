package historypage

import (
	"strings"
	"testing"
	"time"

	"github.com/restage/restage/staging"
)

func TestDuration(t *testing.T) {
	for d, want := range map[time.Duration]string{
		0: "0s", -time.Second: "0s", 270 * time.Millisecond: "270ms", 17130 * time.Millisecond: "17.1s",
		16*time.Minute + 58400*time.Millisecond: "16m58s", time.Hour + 26*time.Minute + 40*time.Second: "1h27m",
		3 * time.Hour: "3h0m",
	} {
		if got := duration(d); got != want {
			t.Errorf("duration(%v) = %q, want %q", d, got, want)
		}
	}
}

func TestBytesGB(t *testing.T) {
	for n, want := range map[int64]string{0: "0 B", 999: "999 B", 1500: "1.5 kB", 38_204_000_000: "38.2 GB", 2_500_000_000_000: "2.50 TB"} {
		if got := bytesGB(n); got != want {
			t.Errorf("bytesGB(%d) = %q, want %q", n, got, want)
		}
	}
}

func TestThroughput(t *testing.T) {
	rep := &staging.Report{Backup: &staging.BackupInfo{Size: 60e9}, Steps: []*staging.Step{
		{Name: "verify", Status: "ok", Duration: time.Minute},
		{Name: "restore", Status: "ok", Duration: 1000 * time.Second},
	}}
	if r, ok := throughput(rep); !ok || r != 60 {
		t.Errorf("throughput = %v, %v; want 60 MB/s", r, ok)
	}
	rep.Steps[1].Status = "failed"
	if _, ok := throughput(rep); ok {
		t.Error("a failed restore has a throughput")
	}
	rep.Steps[1].Status, rep.Steps[1].Duration = "ok", 0
	if _, ok := throughput(rep); ok {
		t.Error("a restore of no time has a throughput")
	}
	if _, ok := throughput(&staging.Report{}); ok {
		t.Error("a run without a backup has a throughput")
	}
}

func TestStepSeries(t *testing.T) {
	runs := []*staging.Report{{Steps: []*staging.Step{
		{Name: "lock", Duration: time.Millisecond}, {Name: "custom", Duration: 5 * time.Minute},
		{Name: "restore", Duration: 10 * time.Minute}, {Name: "backup", Duration: time.Minute},
		{Name: "cutover", Duration: time.Second},
	}}}
	names, series, grand := stepSeries(runs)
	if got := strings.Join(names, ","); got != "backup,restore,custom,other steps" {
		t.Errorf("series %s: want the flow's order, unknown steps after, short ones as other steps", got)
	}
	if series["lock"] != otherSteps || series["cutover"] != otherSteps || series["restore"] != "restore" {
		t.Errorf("series %v", series)
	}
	if grand != 16*time.Minute+time.Second+time.Millisecond {
		t.Errorf("grand total %v", grand)
	}
}

func TestSlowestMigrations(t *testing.T) {
	m := func(v uint, name string, d time.Duration) staging.MigrationTime {
		return staging.MigrationTime{Version: v, Name: name, Duration: d}
	}
	runs := []*staging.Report{
		{Schema: &staging.SchemaInfo{Migrations: []staging.MigrationTime{m(1, "a", time.Minute), m(2, "b", 3*time.Minute)}}},
		{},
		{Schema: &staging.SchemaInfo{Migrations: []staging.MigrationTime{m(1, "a", 4*time.Minute), m(3, "c", time.Second)}}},
	}
	got := slowestMigrations(runs, 2)
	if len(got) != 2 || got[0].version != 1 || got[0].longest != 4*time.Minute || got[0].runs != 2 || got[1].version != 2 {
		t.Errorf("slowest 2: %+v; want a (4m, 2 runs), then b", got)
	}
}

func TestUnitFor(t *testing.T) {
	for d, want := range map[time.Duration]string{0: "seconds", 2 * time.Minute: "seconds", 3 * time.Minute: "minutes", 5 * time.Hour: "hours"} {
		if got := unitFor(d).name; got != want {
			t.Errorf("unitFor(%v) = %s, want %s", d, got, want)
		}
	}
}
