package cron

import (
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"time"

	cronspec "github.com/netresearch/go-cron"

	"github.com/restage/restage/internal/runas"
	"github.com/restage/restage/notify"
	"github.com/restage/restage/staging"
)

// Defaults of the zero values in Config and Job.
const (
	DefaultTimeout   = time.Hour
	DefaultTailBytes = 16 << 10
	DefaultLogBytes  = 64 << 20
	DefaultKillDelay = 5 * time.Second
	// ControlTimeout bounds fetching a control URL when Config.HTTPClient is nil.
	ControlTimeout = 5 * time.Second
)

// Control file failure policies (Config.ControlFail).
const (
	FailOpen   = "open"   // a control file that cannot be read, with no good copy, enables every job
	FailClosed = "closed" // a control file that cannot be read, with no good copy, disables every job
)

// Config is the cron runner's TOML config (the key names are the toml tags) plus the
// wiring set in code. Load reads it strictly; New validates it again.
type Config struct {
	// Environment names the lock owner's jobs, the reports and the default topic. Required.
	Environment string `toml:"environment"`
	// Enabled false: no job runs at all (the last-run time still advances, so turning
	// it back on does not catch up the whole pause). nil: true.
	Enabled *bool `toml:"enabled"`
	// LockFile is the rebuild's lock, held shared by every running job. Required.
	LockFile string `toml:"lock_file"`
	// StateDir keeps state.json (last-run times), per-job lock files, the output of
	// each job's last run (jobs/<name>.log) and the last good copy of the control file
	// (ControlCopyFile). Files are 0600, folders the runner makes 0700. Required.
	StateDir string `toml:"state_dir"`
	// Control is an optional control file: a local path or an http(s) URL.
	Control string `toml:"control"`
	// ControlFail says what a control file that cannot be read or parsed means when
	// there was never a good one (otherwise the last copy that parsed is used):
	// FailOpen (""), every job enabled, or FailClosed, every job disabled.
	ControlFail string `toml:"control_fail"`
	// Notify is where failures are reported; the topic defaults to "<environment>-cron".
	// The runner itself only uses Notify.Topic: build Notifier from the rest.
	Notify staging.NotifyConfig `toml:"notify"`
	// Metrics is [metrics]: textfile is where the runner's Prometheus metrics are
	// written after every run; "": "<state_dir>/cron.prom".
	Metrics staging.MetricsSection `toml:"metrics"`
	// Jobs is the job table ([[job]]).
	Jobs []Job `toml:"job"`

	// Dir is the folder relative paths are resolved against (Load sets it to the config
	// file's folder); "": the current folder. It is also the default working folder.
	Dir string `toml:"-"`
	// Notifier receives a report for every failed or timed-out job; nil: only logged.
	// If it keeps undelivered reports (a Flush(ctx) error method, as notify's spool
	// has), every run ends with a Flush, so that they go out once the target is back.
	Notifier notify.Notifier `toml:"-"`
	// Logger receives one line per job started, skipped or finished; nil: slog.Default().
	Logger *slog.Logger `toml:"-"`
	// HTTPClient fetches a control URL; nil: a client with a ControlTimeout timeout.
	HTTPClient *http.Client `toml:"-"`
	// TailBytes is how much of a job's output a report keeps; 0: DefaultTailBytes.
	TailBytes int `toml:"-"`
	// LogBytes bounds a job's log (state_dir/jobs/<name>.log): output past it is left
	// out, but for the tail the report keeps, written after a line saying how much was
	// left out; 0: DefaultLogBytes.
	LogBytes int64 `toml:"-"`
	// KillDelay is the time between SIGTERM and SIGKILL for a job past its timeout;
	// 0: DefaultKillDelay.
	KillDelay time.Duration `toml:"-"`
	// Now is the clock of the daemon (Run); nil: time.Now. RunOnce takes the time.
	Now func() time.Time `toml:"-"`
}

// Job is one [[job]] entry.
type Job struct {
	// Name identifies the job in logs, reports, the control file and the lock's
	// holder records: letters, digits, '.', '_' and '-'. Required, unique.
	Name string `toml:"name"`
	// Schedule is a standard 5-field cron expression ("*/5 * * * *"), optionally
	// prefixed by CRON_TZ=<zone>, or a descriptor such as @hourly or @daily (not
	// @every). Without CRON_TZ it is read in the time zone of the time given to RunOnce.
	// As in cron(8), a job whose day of month and day of week are both restricted runs
	// on the days that match either; a day field that begins with '*' ("*/2") counts as
	// unrestricted, so the days then match both. A range may wrap around ("0 22-2 * * *": 22:00 to
	// 02:00; "FRI-MON").
	Schedule string `toml:"schedule"`
	// Command is the argv, run without a shell. A bare name is looked up in PATH; a
	// relative path is relative to Dir. Required.
	Command []string `toml:"command"`
	// Timeout bounds one run; past it the job's process group gets SIGTERM, then
	// SIGKILL after KillDelay. 0: DefaultTimeout.
	Timeout staging.Duration `toml:"timeout"`
	// Env is the job's own environment, added to the few variables it gets from the
	// runner's (PATH, HOME, USER, LOGNAME, LANG, LANGUAGE, TZ, TMPDIR, LC_*: never the
	// rest, which may hold secrets) and before RESTAGE_ENVIRONMENT, RESTAGE_CRON_JOB,
	// RESTAGE_LOCK_FD and RESTAGE_JOB_LOCK_FD, which it cannot override.
	Env map[string]string `toml:"env"`
	// Dir is the working folder; "": Config.Dir. Relative paths are against Config.Dir.
	Dir string `toml:"dir"`
	// User runs the job as that user (the runner as root): its uid, groups, HOME, USER
	// and LOGNAME (before Env). "": the runner's user, whose rights the job's code (the
	// release's) then has: the runner's state_dir, its reports, and whatever else that
	// user reads (with the nightly run as the same user, production's backups).
	User string `toml:"user"`
}

var jobName = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]*$`)

// Load reads the config file at path strictly (unknown keys and bad values are errors
// naming the key), resolves relative paths against its folder and validates it. Every
// error wraps staging.ErrConfig.
func Load(path string) (Config, error) {
	var cfg Config
	dir, err := staging.DecodeFile(path, &cfg)
	if err != nil {
		return Config{}, err
	}
	cfg.Dir = dir
	if err := cfg.Validate(); err != nil {
		return Config{}, fmt.Errorf("%s: %w", path, err)
	}
	return cfg, nil
}

// Validate checks the config without touching anything: required keys, job names
// (present, valid, unique), cron expressions, commands, env names and control_fail.
// Errors wrap staging.ErrConfig and name the key and the job.
func (c *Config) Validate() error {
	bad := func(format string, args ...any) error {
		return fmt.Errorf("%w: "+format, append([]any{staging.ErrConfig}, args...)...)
	}
	switch {
	case c.Environment == "":
		return bad("missing required key environment")
	case c.LockFile == "":
		return bad("missing required key lock_file")
	case c.StateDir == "":
		return bad("missing required key state_dir")
	}
	switch c.ControlFail {
	case "", FailOpen, FailClosed:
	default:
		return bad("control_fail %q: want %q or %q", c.ControlFail, FailOpen, FailClosed)
	}
	if problem := c.Metrics.Problem(); problem != "" {
		return bad("%s", problem)
	}
	if strings.Contains(c.Control, "://") {
		u, err := url.Parse(c.Control)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return bad("control %q: want a local path or an http(s) URL", c.Control)
		}
	}
	seen := make(map[string]int, len(c.Jobs))
	for i, j := range c.Jobs {
		where := fmt.Sprintf("job[%d]", i)
		if j.Name != "" {
			where = fmt.Sprintf("job %q", j.Name)
		}
		switch {
		case j.Name == "":
			return bad("%s: missing required key name", where)
		case !jobName.MatchString(j.Name) || j.Name == "DEFAULT":
			return bad("%s: bad name (want letters, digits, '.', '_', '-'; not DEFAULT)", where)
		}
		if prev, dup := seen[j.Name]; dup {
			return bad("%s: duplicate job name (job[%d] and job[%d])", where, prev, i)
		}
		seen[j.Name] = i
		if j.Schedule == "" {
			return bad("%s: missing required key schedule", where)
		}
		if _, err := parseSchedule(j.Schedule); err != nil {
			return bad("%s: schedule %q: %v", where, j.Schedule, err)
		}
		if len(j.Command) == 0 {
			return bad("%s: missing required key command", where)
		}
		if j.Command[0] == "" {
			return bad("%s: command: empty program name", where)
		}
		for k := range j.Env {
			if k == "" || strings.ContainsAny(k, "=\x00") {
				return bad("%s: env: bad variable name %q", where, k)
			}
		}
		if j.User != "" {
			if err := runas.Check(j.User); err != nil {
				return bad("%s: user: %v", where, err)
			}
		}
	}
	return nil
}

// enabled reports the environment-level switch.
func (c *Config) enabled() bool { return c.Enabled == nil || *c.Enabled }

// scheduleOptions are the fields and syntax of Job.Schedule: the five standard fields
// and descriptors. Day of month and day of week are AND-ed (go-cron's default) unless
// both are restricted: see dayFieldsOR.
const scheduleOptions = cronspec.Minute | cronspec.Hour | cronspec.Dom | cronspec.Month | cronspec.Dow |
	cronspec.Descriptor

// dayFieldsOR reports whether a schedule's day of month and day of week are OR-ed, as
// cron(8) (Vixie cron, cronie) decides it: when neither field's text begins with '*'
// ("0 0 1 * MON": the 1st and every Monday). A field that begins with '*' counts as
// unrestricted even with a step, so "0 0 */2 * FRI" runs on the Fridays that are odd
// days of the month, not on every odd day and every Friday.
func dayFieldsOR(fields []string) bool {
	return len(fields) == 5 && !strings.HasPrefix(fields[2], "*") && !strings.HasPrefix(fields[4], "*")
}

// parseSchedule parses a cron expression (see Job.Schedule), refusing @every (it
// depends on when the runner started, not on the clock).
func parseSchedule(spec string) (cronspec.Schedule, error) {
	f := strings.Fields(spec)
	if len(f) > 0 && (strings.HasPrefix(f[0], "TZ=") || strings.HasPrefix(f[0], "CRON_TZ=")) {
		f = f[1:]
	}
	if len(f) > 0 && strings.HasPrefix(f[0], "@every") {
		return nil, errors.New("@every is not supported: use a 5-field expression such as \"*/5 * * * *\"")
	}
	opts := scheduleOptions
	if dayFieldsOR(f) {
		opts |= cronspec.DowOrDom
	}
	p, err := cronspec.TryNewParser(opts)
	if err != nil {
		return nil, err
	}
	return p.Parse(spec)
}
