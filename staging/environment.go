package staging

import (
	"fmt"
	"net/url"
	"strings"

	"github.com/restage/restage/codesync"
)

// EnvironmentConfig is an environment's TOML config file, as DESIGN.md defines it
// (nightly and experimental read it). Load it with LoadEnvironment; Open wires it.
type EnvironmentConfig struct {
	Environment string          `toml:"environment"`
	LockFile    string          `toml:"lock_file"`
	StateDir    string          `toml:"state_dir"`
	CronWait    Duration        `toml:"cron_wait"` // wait for running cron jobs; "": 10m
	Backup      BackupSection   `toml:"backup"`
	Database    DatabaseSection `toml:"database"`
	Code        CodeSection     `toml:"code"`
	Schema      SchemaSection   `toml:"schema"`
	Service     ServiceSection  `toml:"service"`
	Notify      NotifyConfig    `toml:"notify"`

	path string // the file it was loaded from
	dir  string // its folder, for relative paths
}

// BackupSection is [backup].
type BackupSection struct {
	Dir      string   `toml:"dir"`
	Database string   `toml:"database"`
	Wait     Duration `toml:"wait"`
	MaxAge   Duration `toml:"max_age"`
	Poll     Duration `toml:"poll"` // "": 10s
}

// DatabaseSection is [database].
type DatabaseSection struct {
	AdminDSN    string   `toml:"admin_dsn"`
	Name        string   `toml:"name"`
	Strategy    string   `toml:"strategy"`
	Jobs        int      `toml:"jobs"`
	Protect     []string `toml:"protect"`
	PostRestore []string `toml:"post_restore"`
	Clones      []string `toml:"clones"`
	KeepOwners  bool     `toml:"keep_owners"`
	BinDir      string   `toml:"bin_dir"` // PostgreSQL client programs; "": PATH, then /usr/lib/postgresql/*/bin
}

// CodeSection is [code].
type CodeSection struct {
	Source   string            `toml:"source"` // a folder
	Git      string            `toml:"git"`    // or a git repository ...
	Ref      string            `toml:"ref"`    // ... at this ref
	Releases string            `toml:"releases"`
	Current  string            `toml:"current"`
	Keep     int               `toml:"keep"`
	Exclude  []string          `toml:"exclude"`
	Overlay  map[string]string `toml:"overlay"`
	// HardLinks links files unchanged since the previous release; nil: true. False
	// copies every file (for programs that write into their own code tree).
	HardLinks *bool `toml:"hard_links"`
	// Compare is how unchanged files are found: "auto" (default), "stat" or "content".
	Compare string `toml:"compare"`
	// Workers is how many files are copied at once; 0: 4.
	Workers int `toml:"workers"`
	// Sync flushes a release to disk before it is put in place.
	Sync bool `toml:"sync"`
	// AllowExternalSymlinks lets symlinks that point outside the tree through.
	AllowExternalSymlinks bool `toml:"allow_external_symlinks"`
}

// codesyncCompare maps [code] compare to codesync's.
var codesyncCompare = map[string]codesync.Compare{
	"": codesync.CompareAuto, "auto": codesync.CompareAuto,
	"stat": codesync.CompareStat, "content": codesync.CompareContent,
}

// SchemaSection is [schema].
type SchemaSection struct {
	Migrations string `toml:"migrations"` // inside the release
}

// ServiceSection is [service].
type ServiceSection struct {
	Type          string   `toml:"type"` // process | command | systemd | docker
	Command       []string `toml:"command"`
	Dir           string   `toml:"dir"`
	Env           []string `toml:"env"`
	Pidfile       string   `toml:"pidfile"`
	LogFile       string   `toml:"log_file"`
	StopTimeout   Duration `toml:"stop_timeout"`
	StartWait     Duration `toml:"start_wait"` // how long a process must stay up to count as started; "": 1s, or 200ms with a health_url
	Start         []string `toml:"start"`      // command type
	Stop          []string `toml:"stop"`       // command type
	Status        []string `toml:"status"`     // command type
	Unit          string   `toml:"unit"`       // systemd type
	Container     string   `toml:"container"`  // docker type
	HealthURL     string   `toml:"health_url"`
	HealthTimeout Duration `toml:"health_timeout"`
}

// LoadEnvironment reads and checks an environment's config: unknown keys, bad values
// and missing required keys are errors (wrapping ErrConfig) naming the key. Relative
// paths are made absolute against the file's folder.
func LoadEnvironment(path string) (*EnvironmentConfig, error) {
	var c EnvironmentConfig
	dir, err := DecodeFile(path, &c)
	if err != nil {
		return nil, err
	}
	c.path, c.dir = path, dir
	if err := c.check(); err != nil {
		return nil, err
	}
	c.resolve()
	return &c, nil
}

func (c *EnvironmentConfig) errorf(format string, args ...any) error {
	return fmt.Errorf("%w: %s: %s", ErrConfig, c.path, fmt.Sprintf(format, args...))
}

func (c *EnvironmentConfig) check() error {
	if err := missing(c.path,
		"environment", c.Environment, "lock_file", c.LockFile, "state_dir", c.StateDir,
		"database.admin_dsn", c.Database.AdminDSN, "database.name", c.Database.Name,
		"code.releases", c.Code.Releases, "code.current", c.Code.Current,
		"service.type", c.Service.Type,
	); err != nil {
		return err
	}
	switch {
	case c.Code.Source == "" && c.Code.Git == "":
		return c.errorf("missing required key code.source (or code.git)")
	case c.Code.Source != "" && c.Code.Git != "":
		return c.errorf("code.source and code.git are exclusive")
	case c.Code.Git != "" && c.Code.Ref == "":
		return c.errorf("missing required key code.ref (with code.git)")
	}
	switch c.Database.Strategy {
	case "", string(Swap), string(InPlace):
	default:
		return c.errorf("database.strategy %q: want %q or %q", c.Database.Strategy, Swap, InPlace)
	}
	if c.Database.Jobs < 0 {
		return c.errorf("database.jobs %d: want a positive number", c.Database.Jobs)
	}
	if c.Code.Keep < 0 {
		return c.errorf("code.keep %d: want a positive number", c.Code.Keep)
	}
	if _, ok := codesyncCompare[c.Code.Compare]; !ok {
		return c.errorf("code.compare %q: want \"auto\", \"stat\" or \"content\"", c.Code.Compare)
	}
	if c.Code.Workers < 0 {
		return c.errorf("code.workers %d: want a positive number", c.Code.Workers)
	}
	if _, err := url.Parse(c.Database.AdminDSN); err != nil && strings.Contains(c.Database.AdminDSN, "://") {
		return c.errorf("database.admin_dsn is not a valid URL")
	}
	s := c.Service
	switch s.Type {
	case "process":
		if err := missing(c.path, "service.command", s.Command, "service.pidfile", s.Pidfile); err != nil {
			return err
		}
	case "command":
		if err := missing(c.path, "service.start", s.Start, "service.stop", s.Stop, "service.status", s.Status); err != nil {
			return err
		}
	case "systemd":
		if err := missing(c.path, "service.unit", s.Unit); err != nil {
			return err
		}
	case "docker":
		if err := missing(c.path, "service.container", s.Container); err != nil {
			return err
		}
	default:
		return c.errorf("service.type %q: want process, command, systemd or docker", s.Type)
	}
	if s.HealthURL != "" {
		if u, err := url.Parse(s.HealthURL); err != nil || (u.Scheme != "http" && u.Scheme != "https") {
			return c.errorf("service.health_url %q: want an http(s) URL", s.HealthURL)
		}
	}
	if e := c.Notify.Email; e != nil {
		if err := missing(c.path, "notify.email.smtp", e.SMTP, "notify.email.from", e.From, "notify.email.to", e.To); err != nil {
			return err
		}
	}
	if w := c.Notify.Webhook; w != nil {
		if err := missing(c.path, "notify.webhook.url", w.URL); err != nil {
			return err
		}
	}
	return nil
}

// RequireBackups checks the [backup] keys a rebuild needs (a deploy does without).
func (c *EnvironmentConfig) RequireBackups() error {
	return missing(c.path, "backup.dir", c.Backup.Dir, "backup.database", c.Backup.Database)
}

func (c *EnvironmentConfig) resolve() {
	r := func(p *string) { *p = ResolvePath(c.dir, *p) }
	r(&c.LockFile)
	r(&c.StateDir)
	r(&c.Backup.Dir)
	r(&c.Code.Source)
	r(&c.Code.Releases)
	r(&c.Code.Current)
	r(&c.Database.BinDir)
	r(&c.Service.Pidfile)
	r(&c.Service.LogFile)
	r(&c.Service.Dir)
	if c.Code.Git != "" && !strings.Contains(c.Code.Git, ":") {
		r(&c.Code.Git) // a local repository path
	}
	for i := range c.Database.PostRestore {
		r(&c.Database.PostRestore[i])
	}
	for k, v := range c.Code.Overlay {
		c.Code.Overlay[k] = ResolvePath(c.dir, v)
	}
}
