package cron_test

import (
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/restage/restage/internal/testutil"
	"github.com/restage/restage/staging"
	"github.com/restage/restage/staging/cron"
	"github.com/restage/restage/staging/cron/crontest"
)

const head = `
environment = "staging"
lock_file   = "run/staging.lock"
state_dir   = "state"
`

func writeConfig(t testing.TB, text string) string {
	t.Helper()
	return testutil.WriteTemp(t, "staging-cron.toml", text)
}

func TestLoadIssueExample(t *testing.T) {
	path := writeConfig(t, `
environment  = "staging"
enabled      = true                    # false: no job runs at all
lock_file    = "/run/restage/staging.lock"   # the rebuild's lock
state_dir    = "/var/lib/restage/cron"
control      = "/srv/www/cron.ini"     # optional: a path or an http(s) URL
control_fail = "open"                  # or "closed"

[notify]                               # as in DESIGN.md; topic defaults to "<environment>-cron"

[[job]]
name     = "expire-sessions"
schedule = "*/5 * * * *"
command  = ["/srv/staging/current/cronscripts/expire-sessions"]
timeout  = "10m"
env      = { LP_ENV = "staging" }
dir      = "/srv/staging/current"     # working folder (default: the config file's folder)
`)
	cfg, err := cron.Load(path)
	if err != nil {
		t.Fatal(err)
	}
	j := cfg.Jobs[0]
	if cfg.Environment != "staging" || *cfg.Enabled != true || cfg.LockFile != "/run/restage/staging.lock" ||
		cfg.Control != "/srv/www/cron.ini" || cfg.ControlFail != "open" || cfg.Dir != filepath.Dir(path) ||
		j.Name != "expire-sessions" || j.Schedule != "*/5 * * * *" || j.Timeout.Duration != 10*time.Minute ||
		j.Env["LP_ENV"] != "staging" || j.Dir != "/srv/staging/current" || len(j.Command) != 1 {
		t.Fatalf("%+v", cfg)
	}
	r, err := cron.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if r.Topic() != "staging-cron" {
		t.Fatalf("topic %q", r.Topic())
	}
}

func TestLoadResolvesRelativePaths(t *testing.T) {
	path := writeConfig(t, head+`
[[job]]
name = "where"
schedule = "* * * * *"
command = ["true"]
dir = "work"
`)
	dir := filepath.Dir(path)
	cfg, err := cron.Load(path)
	if err != nil {
		t.Fatal(err)
	}
	exe, _ := os.Executable()
	if err := os.Mkdir(filepath.Join(dir, "work"), 0o755); err != nil {
		t.Fatal(err)
	}
	cfg.Jobs[0].Command = []string{exe, "cwd", filepath.Join(dir, "cwd")}
	cfg.Jobs[0].Env = map[string]string{crontest.HelperEnv: "1"}
	cfg.Logger = slog.New(slog.DiscardHandler)
	sum := runOnce(t, newRunner(t, cfg), at(0))
	if outcomes(sum) != "where=ok" {
		t.Fatalf("%s: %v", outcomes(sum), sum.Jobs[0].Err)
	}
	if data, _ := os.ReadFile(filepath.Join(dir, "cwd")); string(data) != filepath.Join(dir, "work") {
		t.Fatalf("ran in %q", data)
	}
	for _, p := range []string{"run/staging.lock", "state/state.json"} {
		if !crontest.Exists(filepath.Join(dir, p)) {
			t.Errorf("%s not under the config's folder", p)
		}
	}
}

func TestConfigErrors(t *testing.T) {
	job := func(s string) string { return head + "[[job]]\n" + s }
	ok := "name = \"a\"\nschedule = \"* * * * *\"\ncommand = [\"true\"]\n"
	for _, tc := range []struct{ name, text, want string }{
		{"unknown top-level key", head + "enabled_jobs = 3\n", "unknown key enabled_jobs"},
		{"unknown job key", job(ok + "comand = [\"x\"]\n"), "unknown key job.comand"},
		{"bad timeout", job(ok + "timeout = \"ten minutes\"\n"), "ten minutes"},
		{"bad enabled", head + "enabled = \"yes\"\n", "enabled"},
		{"four fields", job("name = \"a\"\nschedule = \"*/5 * * *\"\ncommand = [\"true\"]\n"), `job "a": schedule "*/5 * * *"`},
		{"bad minute", job("name = \"a\"\nschedule = \"61 * * * *\"\ncommand = [\"true\"]\n"), `job "a": schedule "61 * * * *"`},
		{"every", job("name = \"a\"\nschedule = \"@every 5m\"\ncommand = [\"true\"]\n"), "@every is not supported"},
		{"zone only", job("name = \"a\"\nschedule = \"CRON_TZ=UTC\"\ncommand = [\"true\"]\n"), `job "a": schedule`},
		{"bad zone", job("name = \"a\"\nschedule = \"CRON_TZ=Nowhere/Else * * * * *\"\ncommand = [\"true\"]\n"), `job "a": schedule`},
		{"duplicate", job(ok + "[[job]]\n" + ok), `job "a": duplicate job name`},
		{"empty command", job("name = \"a\"\nschedule = \"* * * * *\"\ncommand = []\n"), `job "a": missing required key command`},
		{"no command", job("name = \"a\"\nschedule = \"* * * * *\"\n"), `job "a": missing required key command`},
		{"empty program", job("name = \"a\"\nschedule = \"* * * * *\"\ncommand = [\"\"]\n"), `job "a": command: empty program name`},
		{"no name", job("schedule = \"* * * * *\"\ncommand = [\"true\"]\n"), "job[0]: missing required key name"},
		{"bad name", job("name = \"a b\"\nschedule = \"* * * * *\"\ncommand = [\"true\"]\n"), `job "a b": bad name`},
		{"DEFAULT", job("name = \"DEFAULT\"\nschedule = \"* * * * *\"\ncommand = [\"true\"]\n"), `job "DEFAULT": bad name`},
		{"no schedule", job("name = \"a\"\ncommand = [\"true\"]\n"), `job "a": missing required key schedule`},
		{"bad env", job(ok + "env = { \"A=B\" = \"x\" }\n"), `job "a": env: bad variable name`},
		{"control_fail", head + "control_fail = \"maybe\"\n", `control_fail "maybe"`},
		{"control scheme", head + "control = \"ftp://example.org/cron.ini\"\n", "control \"ftp://"},
		{"no environment", "lock_file = \"l\"\nstate_dir = \"s\"\n", "missing required key environment"},
		{"no lock_file", "environment = \"s\"\nstate_dir = \"s\"\n", "missing required key lock_file"},
		{"no state_dir", "environment = \"s\"\nlock_file = \"l\"\n", "missing required key state_dir"},
		{"syntax", head + "[[job]\n", "staging-cron.toml"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := cron.Load(writeConfig(t, tc.text))
			if !errors.Is(err, staging.ErrConfig) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want ErrConfig naming %q", err, tc.want)
			}
		})
	}
	// New validates too, before anything runs.
	if _, err := cron.New(cron.Config{Environment: "s", LockFile: "l", StateDir: "s",
		Jobs: []cron.Job{{Name: "a", Schedule: "* * *", Command: []string{"true"}}}}); !errors.Is(err, staging.ErrConfig) {
		t.Fatalf("New: %v", err)
	}
}

func TestScheduleTimeZone(t *testing.T) {
	e := newEnv(t)
	// 12:00 UTC is 13:00 in Paris (CET in November).
	r := newRunner(t, e.config(
		crontest.Job(t, "paris", "CRON_TZ=Europe/Paris 0 13 * * *", "append", e.path("a"), "run"),
		crontest.Job(t, "utc-noon", "0 12 * * *", "append", e.path("b"), "run"),
	))
	if got := outcomes(runOnce(t, r, at(0))); got != "paris=ok utc-noon=ok" {
		t.Fatalf("%s", got)
	}
}

// validateSchedule runs spec through Config.Validate, as a config file's would be.
func validateSchedule(spec string) error {
	cfg := cron.Config{Environment: "s", LockFile: "l", StateDir: "s",
		Jobs: []cron.Job{{Name: "a", Schedule: spec, Command: []string{"true"}}}}
	return cfg.Validate()
}

// Schedules that made robfig/cron panic (its issues 470 and 554, and a tab after the
// zone) are config errors naming the key: the parser returns errors, and nothing
// recovers from a panic any more.
func TestScheduleInputsThatPanickedAreErrors(t *testing.T) {
	for _, spec := range []string{"TZ=0", "TZ=TZ=TZ=", "TZ=", "CRON_TZ=", "CRON_TZ=UTC\t*", "CRON_TZ=UTC\t* * * * *",
		"TZ= * * * * *", "CRON_TZ=UTC\t@every 5m", "@every", "@reboot", "H * * * *", "0 0 L * *", "*/0 * * * *"} {
		err := validateSchedule(spec)
		if !errors.Is(err, staging.ErrConfig) || !strings.Contains(err.Error(), `job "a": schedule`) {
			t.Errorf("schedule %q: err = %v, want a config error naming the job's schedule", spec, err)
		}
	}
}

// FuzzSchedule: no schedule makes Validate panic, and one it accepts yields due minutes
// after the time asked, whole minutes, or none at all. (go test runs the seeds.)
func FuzzSchedule(f *testing.F) {
	for _, s := range []string{"* * * * *", "*/5 * * * *", "0 3 * * MON-FRI", "0 0 1 * MON", "0 22-2 * * *", "@hourly",
		"CRON_TZ=Europe/Paris 0 13 * * *", "TZ=0", "TZ=TZ=TZ=", "CRON_TZ=UTC\t*", "0 0 31 2 *", "60 * * * *", "1-2-3 * * * *"} {
		f.Add(s)
	}
	from := time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC)
	f.Fuzz(func(t *testing.T, spec string) {
		if validateSchedule(spec) != nil {
			return
		}
		e := newEnv(t)
		r, err := cron.New(e.config(cron.Job{Name: "a", Schedule: spec, Command: []string{"true"}}))
		if err != nil {
			t.Fatalf("Validate accepted %q, New did not: %v", spec, err)
		}
		sts, err := r.Status(t.Context(), from)
		if err != nil || len(sts) != 1 {
			t.Fatalf("Status: %v %v", sts, err)
		}
		if next := sts[0].Next; !next.IsZero() && (!next.After(from) || next.Second() != 0) {
			t.Fatalf("schedule %q: next %v after %v", spec, next, from)
		}
	})
}

// The days and ranges of a schedule mean what they mean to cron(8): a restricted day
// of month and day of week are OR-ed (go-cron's default is AND), a day field that begins
// with '*' is unrestricted even with a step (so the days are AND-ed), and a range may
// wrap.
func TestScheduleSemantics(t *testing.T) {
	day := func(d, h int) time.Time { return time.Date(2026, 11, d, h, 0, 0, 0, time.UTC) }
	for _, tc := range []struct {
		spec     string
		from     time.Time
		wantNext time.Time
	}{
		// Wednesday 25 November: the next Monday (30th) comes before the next 1st.
		{"0 0 1 * MON", day(25, 12), day(30, 0)},
		{"0 0 1 * MON", day(30, 0), time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC)},
		{"0 0 * * MON", day(25, 12), day(30, 0)},
		{"0 0 1 * *", day(25, 12), time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC)},
		// From 22:00 through 02:00.
		{"0 22-2 * * *", day(25, 12), day(25, 22)},
		{"0 22-2 * * *", day(25, 23), day(26, 0)},
		{"0 22-2 * * *", day(26, 2), day(26, 22)},
		// Friday to Monday, from Tuesday 24 November.
		{"0 0 * * FRI-MON", day(24, 12), day(27, 0)},
		{"0 0 * * FRI-MON", day(30, 0), time.Date(2026, 12, 4, 0, 0, 0, 0, time.UTC)},
		// "*/2" begins with '*': the odd days that are Fridays (11 December), not
		// every odd day and every Friday (4 December). Spelled "1-31/2", it is restricted.
		{"0 0 */2 * FRI", time.Date(2026, 12, 3, 12, 0, 0, 0, time.UTC), time.Date(2026, 12, 11, 0, 0, 0, 0, time.UTC)},
		{"0 0 1-31/2 * FRI", time.Date(2026, 12, 3, 12, 0, 0, 0, time.UTC), time.Date(2026, 12, 4, 0, 0, 0, 0, time.UTC)},
		// The same for the day of week: the 13th when it is a Sunday, Tuesday, Thursday
		// or Saturday (Sunday 13 December), not Saturday 5 December.
		{"0 0 13 * */2", time.Date(2026, 12, 3, 12, 0, 0, 0, time.UTC), time.Date(2026, 12, 13, 0, 0, 0, 0, time.UTC)},
	} {
		e := newEnv(t)
		r := newRunner(t, e.config(cron.Job{Name: "a", Schedule: tc.spec, Command: []string{"true"}}))
		sts, err := r.Status(t.Context(), tc.from)
		if err != nil || len(sts) != 1 {
			t.Fatalf("Status: %v %v", sts, err)
		}
		if got := sts[0].Next; !got.Equal(tc.wantNext) {
			t.Errorf("%q after %s: next %s, want %s", tc.spec, tc.from.Format(time.DateTime), got.Format(time.DateTime), tc.wantNext.Format(time.DateTime))
		}
	}
}
