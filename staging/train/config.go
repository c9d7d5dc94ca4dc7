package train

import (
	"fmt"
	"strings"
	"time"

	"github.com/restage/restage/internal/gitcred"
	"github.com/restage/restage/internal/runas"
	"github.com/restage/restage/staging"
)

// Config is the train's TOML config (train.toml, DESIGN.md): the repository the
// environments build from, its branches, the weekly tag, the check that gates a cut, the
// environments' configs (for status and cut -now) and where its reports go. Load it
// with Load; zero values are the documented defaults.
type Config struct {
	// Drivers are the notify targets the config may name; nil: staging.DefaultDrivers().
	Drivers *staging.Drivers `toml:"-"`

	Repo    string `toml:"repo"`    // required: a local (bare) repository or any URL git can push to
	Devel   string `toml:"devel"`   // the development branch; "": "devel"
	Staging string `toml:"staging"` // the staging branch; "": "staging"
	// Tag is the weekly tag's pattern: %Y year, %V ISO week, %m month, %d day, %% a
	// percent sign; with %V, %Y is the ISO week's year (so a tag names one week).
	// "": "staging-%Y-W%V".
	Tag string `toml:"tag"`
	// Check is a command (argv, no shell) run in devel's tree; a failure refuses the
	// cut. Empty: no check.
	Check []string `toml:"check"`
	// CheckTimeout bounds the check; "": 30m.
	CheckTimeout staging.Duration `toml:"check_timeout"`
	// CheckUser runs the check as that user (the train as root): its uid, groups, HOME,
	// USER and LOGNAME; devel's tree is given to it. "": the train's user, whose rights
	// devel's code then has, the scratch clone the cut pushes from with the repository's
	// credentials among them (its config may send the push through a proxy of its own).
	CheckUser string `toml:"check_user"`
	// GitTimeout bounds each git command; "": 10m.
	GitTimeout staging.Duration `toml:"git_timeout"`
	// Environments are the environments' config files (production.toml, staging.toml,
	// experimental.toml), relative to this file's folder: status reports each; cut
	// -now rebuilds those whose role is staging.
	Environments []string `toml:"environments"`
	// StateDir holds the cuts' history (cuts.jsonl) and the spool of undelivered
	// reports; required when [notify] names a target.
	StateDir string `toml:"state_dir"`
	// Notify is as an environment's [notify]; the topic defaults to "release-train".
	Notify staging.NotifyConfig `toml:"notify"`

	dir string // the config file's folder
}

// Defaults.
const (
	DefaultDevel        = "devel"
	DefaultStaging      = "staging"
	DefaultTag          = "staging-%Y-W%V"
	DefaultTopic        = "release-train"
	DefaultCheckTimeout = 30 * time.Minute
	DefaultGitTimeout   = 10 * time.Minute
)

// Load reads and checks a train config strictly: unknown keys, bad values and missing
// required keys are errors (wrapping staging.ErrConfig) naming the key. Relative paths
// are made absolute against the file's folder.
func Load(path string) (*Config, error) { return LoadWith(path, nil) }

// LoadWith is Load with the program's drivers (nil: staging.DefaultDrivers()).
func LoadWith(path string, drivers *staging.Drivers) (*Config, error) {
	c := Config{Drivers: drivers}
	dir, err := staging.DecodeFile(path, &c)
	if err != nil {
		return nil, err
	}
	c.dir = dir
	if !gitcred.IsURL(c.Repo) {
		c.Repo = staging.ResolvePath(dir, c.Repo)
	}
	c.StateDir = staging.ResolvePath(dir, c.StateDir)
	for i, e := range c.Environments {
		c.Environments[i] = staging.ResolvePath(dir, e)
	}
	if err := c.Validate(); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return &c, nil
}

// Validate checks the config as Load does (for configs built in Go too) and fills in
// the defaults; every problem is named by its key, in an error wrapping
// staging.ErrConfig.
func (c *Config) Validate() error {
	var p []string
	if c.Repo == "" {
		p = append(p, "missing required key repo")
	}
	if c.Devel == "" {
		c.Devel = DefaultDevel
	}
	if c.Staging == "" {
		c.Staging = DefaultStaging
	}
	if c.Tag == "" {
		c.Tag = DefaultTag
	}
	if c.Devel == c.Staging {
		p = append(p, fmt.Sprintf("devel and staging are both %q: want two branches", c.Devel))
	}
	for _, b := range []struct{ key, name string }{{"devel", c.Devel}, {"staging", c.Staging}} {
		if !validRefName(b.name) {
			p = append(p, fmt.Sprintf("%s %q: not a branch name", b.key, b.name))
		}
	}
	if name, err := ExpandTag(c.Tag, time.Date(2026, 12, 28, 0, 0, 0, 0, time.UTC)); err != nil {
		p = append(p, "tag: "+err.Error())
	} else if !validRefName(name) {
		p = append(p, fmt.Sprintf("tag %q: %q is not a tag name", c.Tag, name))
	}
	if len(c.Check) > 0 && c.Check[0] == "" {
		p = append(p, "check: want a program and its arguments")
	}
	if c.CheckUser != "" {
		if err := runas.Check(c.CheckUser); err != nil {
			p = append(p, "check_user: "+err.Error())
		}
	}
	if len(c.Notify.Targets) > 0 && c.StateDir == "" {
		p = append(p, "missing required key state_dir (to spool the reports [notify] cannot deliver)")
	}
	if c.Notify.Topic == "" {
		c.Notify.Topic = DefaultTopic
	}
	if c.CheckTimeout.Duration == 0 {
		c.CheckTimeout.Duration = DefaultCheckTimeout
	}
	if c.GitTimeout.Duration == 0 {
		c.GitTimeout.Duration = DefaultGitTimeout
	}
	if len(p) > 0 {
		return fmt.Errorf("%w: %s", staging.ErrConfig, strings.Join(p, "; "))
	}
	return nil
}

// validRefName is a cheap check of git's ref name rules (git check-ref-format has the
// last word when the ref is pushed).
func validRefName(s string) bool {
	if s == "" || strings.HasPrefix(s, "-") || strings.HasPrefix(s, "/") || strings.HasSuffix(s, "/") ||
		strings.HasSuffix(s, ".") || strings.HasSuffix(s, ".lock") || strings.Contains(s, "..") ||
		strings.Contains(s, "@{") || strings.Contains(s, "//") || s == "@" {
		return false
	}
	for _, r := range s {
		if r < 0x20 || r == 0x7f || strings.ContainsRune(" ~^:?*[\\", r) {
			return false
		}
	}
	return true
}

// ExpandTag returns the tag the pattern names at t: %Y the year (the ISO week's year
// when the pattern has %V), %V the ISO week (two digits), %m the month, %d the day,
// %% a percent sign. Any other % sequence is an error.
func ExpandTag(pattern string, t time.Time) (string, error) {
	isoYear, week := t.ISOWeek()
	year := t.Year()
	if strings.Contains(pattern, "%V") {
		year = isoYear
	}
	var b strings.Builder
	for i := 0; i < len(pattern); i++ {
		if pattern[i] != '%' {
			b.WriteByte(pattern[i])
			continue
		}
		if i+1 == len(pattern) {
			return "", fmt.Errorf("%q ends with a lone %%", pattern)
		}
		i++
		switch pattern[i] {
		case 'Y':
			fmt.Fprintf(&b, "%04d", year)
		case 'V':
			fmt.Fprintf(&b, "%02d", week)
		case 'm':
			fmt.Fprintf(&b, "%02d", int(t.Month()))
		case 'd':
			fmt.Fprintf(&b, "%02d", t.Day())
		case '%':
			b.WriteByte('%')
		default:
			return "", fmt.Errorf("%q: unknown %%%c (want %%Y, %%V, %%m, %%d or %%%%)", pattern, pattern[i])
		}
	}
	return b.String(), nil
}
