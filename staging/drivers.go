package staging

import (
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"time"

	"github.com/BurntSushi/toml"

	"github.com/restage/restage/internal/safefile"
	"github.com/restage/restage/notify"
	"github.com/restage/restage/svcctl"
)

// Drivers are the [service] types and [notify] targets a program can wire, one entry
// per driver (restic's location registry, without a global): a new driver is one
// package and one line. DefaultDrivers has those of this module that bring no heavy
// dependency; a program that controls a docker container adds
//
//	d := staging.DefaultDrivers()
//	d.Services["docker"] = dockerservice.Keys // package staging/dockerservice
//	cfg, err := staging.LoadEnvironmentWith(path, d)
type Drivers struct {
	// Services maps a [service] type to a new value for its own keys.
	Services map[string]func() ServiceKeys
	// Notifiers maps a [notify] target (the table [notify.<name>]) to a new value for its keys.
	Notifiers map[string]func() NotifierKeys
}

// DefaultDrivers returns the built-in drivers: the service types process, command and
// systemd, and the notify targets email, webhook and stdout.
func DefaultDrivers() *Drivers {
	return &Drivers{
		Services: map[string]func() ServiceKeys{
			"process": func() ServiceKeys { return &ProcessKeys{} },
			"command": func() ServiceKeys { return &CommandKeys{} },
			"systemd": func() ServiceKeys { return &SystemdKeys{} },
		},
		Notifiers: map[string]func() NotifierKeys{
			"email":   func() NotifierKeys { return &EmailConfig{} },
			"webhook": func() NotifierKeys { return &WebhookConfig{} },
			"stdout":  func() NotifierKeys { return new(StdoutTarget) },
		},
	}
}

// DriverEnv is what a driver gets to build its part.
type DriverEnv struct {
	Logger *slog.Logger
	// Dir is the config file's folder, against which relative paths are resolved ("":
	// the working folder, for a config built in Go).
	Dir string
	// StateDir is the environment's state folder.
	StateDir string
	// HealthGate says that a health check follows every start of the service.
	HealthGate bool
}

// Path resolves p against the config's folder.
func (e DriverEnv) Path(p string) string { return ResolvePath(e.Dir, p) }

// ServiceKeys are one [service] type's own keys (a struct with toml tags), as its driver
// reads them: the keys type, health_url and health_timeout are the Rebuilder's.
type ServiceKeys interface {
	// Check returns the keys' problems, each naming its key ("missing required key
	// service.unit"); it changes nothing.
	Check() []string
	// Open makes the controller.
	Open(env DriverEnv) (svcctl.Controller, error)
}

// NotifierKeys are the keys of one [notify] target, as its driver reads them.
type NotifierKeys interface {
	// Check returns the keys' problems, each naming its key under prefix (e.g.
	// "notify.email"); it changes nothing.
	Check(prefix string) []string
	// Open makes the notifier.
	Open(env DriverEnv) (notify.Notifier, error)
}

// tomlLineKey is the form of the toml package's decoding errors (a value of the wrong
// type): the line, the key and the message.
var tomlLineKey = regexp.MustCompile(`^toml: line \d+ \(last key "([^"]+)"\): (.*)$`)

// decodeKeys decodes a section's raw keys (as read from TOML) into keys strictly: an
// unknown key or a bad value is a problem naming prefix.key.
func decodeKeys(raw map[string]any, keys any, prefix string) []string {
	b, err := toml.Marshal(raw)
	if err != nil {
		return []string{fmt.Sprintf("%s: %v", prefix, err)}
	}
	md, err := toml.Decode(string(b), keys)
	if err != nil {
		// Name the key in full, without the line: it would be one of the re-encoded
		// table, not of the config file.
		var pe toml.ParseError
		if errors.As(err, &pe) && pe.LastKey != "" {
			return []string{fmt.Sprintf("%s.%s: %s", prefix, pe.LastKey, pe.Message)}
		}
		if m := tomlLineKey.FindStringSubmatch(err.Error()); m != nil {
			return []string{fmt.Sprintf("%s.%s: %s", prefix, m[1], m[2])}
		}
		return []string{fmt.Sprintf("%s: %v", prefix, err)}
	}
	var p []string
	for _, k := range md.Undecoded() {
		p = append(p, "unknown key "+prefix+"."+k.String())
	}
	sort.Strings(p)
	return p
}

// serviceKeys returns the section's keys for its driver: Keys itself when it is one,
// else the raw keys decoded into the driver's type.
func (d *Drivers) serviceKeys(s *ServiceSection) (ServiceKeys, []string) {
	newKeys, ok := d.Services[s.Type]
	if !ok {
		return nil, []string{fmt.Sprintf("service.type %q: want one of %s", s.Type, names(d.Services))}
	}
	switch k := s.Keys.(type) {
	case ServiceKeys:
		return k, k.Check()
	case map[string]any:
		keys := newKeys()
		if p := decodeKeys(k, keys, "service"); len(p) > 0 {
			return nil, p
		}
		return keys, keys.Check()
	case nil:
		keys := newKeys()
		return keys, keys.Check()
	default:
		return nil, []string{fmt.Sprintf("service: keys of type %T are not a driver's", s.Keys)}
	}
}

// notifierKeys returns the [notify] targets' keys for their drivers, by name.
func (d *Drivers) notifierKeys(n *NotifyConfig) (map[string]NotifierKeys, []string) {
	out := map[string]NotifierKeys{}
	var p []string
	for _, name := range sortedKeys(n.Targets) {
		prefix := "notify." + name
		newKeys, ok := d.Notifiers[name]
		if !ok {
			p = append(p, fmt.Sprintf("unknown key %s (targets: %s)", prefix, names(d.Notifiers)))
			continue
		}
		var keys NotifierKeys
		switch k := n.Targets[name].(type) {
		case NotifierKeys:
			keys = k
		case map[string]any:
			keys = newKeys()
			if bad := decodeKeys(k, keys, prefix); len(bad) > 0 {
				p = append(p, bad...)
				continue
			}
		case bool: // stdout = true
			if !k {
				continue
			}
			keys = newKeys()
		default:
			p = append(p, fmt.Sprintf("%s: want a table", prefix))
			continue
		}
		p = append(p, keys.Check(prefix)...)
		out[name] = keys
	}
	return out, p
}

func names[V any](m map[string]V) string { return strings.Join(sortedKeys(m), ", ") }

func sortedKeys[V any](m map[string]V) []string {
	ks := make([]string, 0, len(m))
	for k := range m {
		ks = append(ks, k)
	}
	sort.Strings(ks)
	return ks
}

// ProcessKeys are the keys of [service] type "process": restage runs the command itself,
// detached (svcctl.Process).
type ProcessKeys struct {
	Command     []string `toml:"command"`
	Dir         string   `toml:"dir"`
	Env         []string `toml:"env"`
	Pidfile     string   `toml:"pidfile"`
	LogFile     string   `toml:"log_file"`
	StopTimeout Duration `toml:"stop_timeout"`
	// StartWait is how long the process must stay up to count as started; "": 1s, or
	// 200ms with a health gate, which watches it from then on.
	StartWait Duration `toml:"start_wait"`
	// User runs the service as that user (restage as root); "": restage's own user,
	// whose rights the release's code then has (svcctl.ProcessConfig.User).
	User string `toml:"user"`
}

// Check implements ServiceKeys.
func (k *ProcessKeys) Check() []string {
	var p problems
	p.require("service.command", k.Command, "service.pidfile", k.Pidfile)
	return p
}

// Open implements ServiceKeys.
func (k *ProcessKeys) Open(env DriverEnv) (svcctl.Controller, error) {
	pidfile := env.Path(k.Pidfile)
	// 0700, as the lock's and the state folder (the pidfile often shares a folder with
	// the lock, e.g. /run/restage).
	if err := safefile.MkdirPrivate(filepath.Dir(pidfile)); err != nil {
		return nil, fmt.Errorf("service.pidfile: %w", err)
	}
	startWait := k.StartWait.Duration
	if startWait == 0 && env.HealthGate {
		startWait = 200 * time.Millisecond
	}
	p, err := svcctl.NewProcess(svcctl.ProcessConfig{Command: k.Command, Dir: env.Path(k.Dir), Env: k.Env,
		Pidfile: pidfile, LogFile: env.Path(k.LogFile), StopTimeout: k.StopTimeout.Duration,
		StartWait: startWait, User: k.User, Logger: env.Logger})
	switch {
	case errors.Is(err, svcctl.ErrUser):
		return nil, fmt.Errorf("service.user: %w", err)
	case err != nil:
		return nil, err
	}
	if log := env.Logger; k.User == "" && os.Geteuid() == 0 && log != nil {
		log.Warn("service.user is not set: the service runs as root, and the release's code (a branch's, on experimental) with it")
	}
	return p, nil
}

// CommandKeys are the keys of [service] type "command": your own start, stop and status
// commands (argv, no shell; status follows LSB).
type CommandKeys struct {
	Start  []string `toml:"start"`
	Stop   []string `toml:"stop"`
	Status []string `toml:"status"`
	Dir    string   `toml:"dir"`
	Env    []string `toml:"env"`
}

// Check implements ServiceKeys.
func (k *CommandKeys) Check() []string {
	var p problems
	p.require("service.start", k.Start, "service.stop", k.Stop, "service.status", k.Status)
	return p
}

// Open implements ServiceKeys.
func (k *CommandKeys) Open(env DriverEnv) (svcctl.Controller, error) {
	return svcctl.NewCommand(svcctl.CommandConfig{Start: k.Start, Stop: k.Stop, Status: k.Status,
		Dir: env.Path(k.Dir), Env: k.Env, Logger: env.Logger})
}

// SystemdKeys are the keys of [service] type "systemd".
type SystemdKeys struct {
	Unit string `toml:"unit"`
}

// Check implements ServiceKeys.
func (k *SystemdKeys) Check() []string {
	var p problems
	p.require("service.unit", k.Unit)
	return p
}

// Open implements ServiceKeys.
func (k *SystemdKeys) Open(env DriverEnv) (svcctl.Controller, error) {
	return svcctl.NewSystemd(svcctl.SystemdConfig{Unit: k.Unit, Logger: env.Logger})
}

// Check implements NotifierKeys.
func (e *EmailConfig) Check(prefix string) []string {
	var p problems
	p.require(prefix+".smtp", e.SMTP, prefix+".from", e.From, prefix+".to", e.To)
	switch notify.TLSMode(e.TLS) {
	case "", notify.TLSOpportunistic, notify.TLSRequired, notify.TLSNone:
	default:
		p.add("%s.tls %q: want %q, %q or %q", prefix, e.TLS, notify.TLSOpportunistic, notify.TLSRequired, notify.TLSNone)
	}
	return p
}

// Open implements NotifierKeys. The password is read once, here, from the variable
// PasswordEnv names, and goes nowhere else.
func (e *EmailConfig) Open(env DriverEnv) (notify.Notifier, error) {
	var password string
	if e.PasswordEnv != "" {
		if password = os.Getenv(e.PasswordEnv); password == "" {
			return nil, fmt.Errorf("email.password_env: $%s is empty", e.PasswordEnv)
		}
	}
	m, err := notify.NewSMTP(notify.SMTPConfig{Addr: e.SMTP, From: e.From, To: e.To, Username: e.Username,
		Password: password, TLS: notify.TLSMode(e.TLS), Timeout: e.Timeout.Duration, Logger: env.Logger})
	if err != nil {
		return nil, fmt.Errorf("email: %w", err)
	}
	return m, nil
}

// Check implements NotifierKeys.
func (w *WebhookConfig) Check(prefix string) []string {
	var p problems
	p.require(prefix+".url", w.URL)
	return p
}

// Open implements NotifierKeys.
func (w *WebhookConfig) Open(env DriverEnv) (notify.Notifier, error) {
	wh, err := notify.NewWebhook(notify.WebhookConfig{URL: w.URL, Timeout: w.Timeout.Duration, Logger: env.Logger})
	if err != nil {
		return nil, fmt.Errorf("webhook: %w", err)
	}
	return wh, nil
}

// StdoutTarget is [notify] stdout = true: reports are also printed on standard output.
type StdoutTarget struct{}

// Check implements NotifierKeys.
func (*StdoutTarget) Check(string) []string { return nil }

// Open implements NotifierKeys.
func (*StdoutTarget) Open(DriverEnv) (notify.Notifier, error) {
	return notify.NewWriter(notify.WriterConfig{Out: os.Stdout})
}
