package staging

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/BurntSushi/toml"
)

// ErrConfig marks configuration errors: unknown keys, bad values, missing required keys.
var ErrConfig = errors.New("config")

// Duration is a Go duration ("45m", "20h") in a TOML config.
type Duration struct{ time.Duration }

// UnmarshalText parses a Go duration.
func (d *Duration) UnmarshalText(b []byte) error {
	v, err := time.ParseDuration(string(b))
	if err != nil {
		return fmt.Errorf("bad duration %q (want a Go duration such as \"45m\" or \"20h\")", b)
	}
	if v < 0 {
		return fmt.Errorf("negative duration %q", b)
	}
	d.Duration = v
	return nil
}

// MarshalText formats the duration.
func (d Duration) MarshalText() ([]byte, error) { return []byte(d.Duration.String()), nil }

// DecodeFile decodes the TOML file at path into v strictly: a syntax error, a bad value
// or an unknown key is an error naming the key. It returns the file's folder, against
// which relative paths in the config are resolved.
func DecodeFile(path string, v any) (dir string, err error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return "", fmt.Errorf("%w: %w", ErrConfig, err)
	}
	md, err := toml.Decode(string(data), v)
	if err != nil {
		return "", fmt.Errorf("%w: %s: %w", ErrConfig, path, err)
	}
	if extra := md.Undecoded(); len(extra) > 0 {
		keys := make([]string, len(extra))
		for i, k := range extra {
			keys[i] = k.String()
		}
		sort.Strings(keys)
		return "", fmt.Errorf("%w: %s: unknown key %s", ErrConfig, path, strings.Join(keys, ", "))
	}
	abs, err := filepath.Abs(filepath.Dir(path))
	if err != nil {
		return "", fmt.Errorf("%w: %w", ErrConfig, err)
	}
	return abs, nil
}

// ResolvePath makes p absolute against dir; "" stays "". URLs are left alone.
func ResolvePath(dir, p string) string {
	if p == "" || filepath.IsAbs(p) || strings.Contains(p, "://") {
		return p
	}
	return filepath.Join(dir, p)
}

// NotifyConfig is the [notify] section: where reports go.
type NotifyConfig struct {
	Topic   string         `toml:"topic"` // subject tag and Keywords header; "": "<environment>-rebuild"
	Email   *EmailConfig   `toml:"email"`
	Webhook *WebhookConfig `toml:"webhook"`
	Stdout  bool           `toml:"stdout"` // also print reports on standard output
	// Timeout bounds the delivery of one run's reports, spooled ones included; "": 2m.
	Timeout Duration `toml:"timeout"`
}

// EmailConfig is [notify.email].
type EmailConfig struct {
	SMTP        string   `toml:"smtp"` // host:port
	From        string   `toml:"from"`
	To          []string `toml:"to"`
	Username    string   `toml:"username"`
	PasswordEnv string   `toml:"password_env"` // name of the environment variable holding the password
	TLS         string   `toml:"tls"`          // "opportunistic" (default), "required" or "none"
	Timeout     Duration `toml:"timeout"`
}

// WebhookConfig is [notify.webhook].
type WebhookConfig struct {
	URL     string   `toml:"url"`
	Timeout Duration `toml:"timeout"`
}
