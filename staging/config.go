package staging

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"slices"
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

// outermost sorts keys and keeps each once, without the keys inside another of them: an
// unknown table (or array of tables, whose keys come once per element) is named, not
// every key it holds.
func outermost(keys []string) []string {
	sort.Strings(keys)
	keys = slices.Compact(keys)
	var out []string
	for _, k := range keys {
		if n := len(out); n > 0 && strings.HasPrefix(k, out[n-1]+".") {
			continue
		}
		out = append(out, k)
	}
	return out
}

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
	var keys []string
	raw := rawSections(v)
	for _, k := range md.Undecoded() {
		if !raw[k[0]] { // sections that decode themselves check their own keys
			keys = append(keys, k.String())
		}
	}
	if len(keys) > 0 {
		return "", fmt.Errorf("%w: %s: unknown key %s", ErrConfig, path, strings.Join(outermost(keys), ", "))
	}
	abs, err := filepath.Abs(filepath.Dir(path))
	if err != nil {
		return "", fmt.Errorf("%w: %w", ErrConfig, err)
	}
	return abs, nil
}

// rawSections returns the top-level keys of v (a pointer to a struct) whose fields decode
// themselves (toml.Unmarshaler: [service], [notify]).
func rawSections(v any) map[string]bool {
	out := map[string]bool{}
	t := reflect.TypeOf(v)
	if t.Kind() != reflect.Pointer || t.Elem().Kind() != reflect.Struct {
		return out
	}
	unmarshaler := reflect.TypeFor[toml.Unmarshaler]()
	for _, f := range reflect.VisibleFields(t.Elem()) {
		name, _, _ := strings.Cut(f.Tag.Get("toml"), ",")
		if name != "" && name != "-" && reflect.PointerTo(f.Type).Implements(unmarshaler) {
			out[name] = true
		}
	}
	return out
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
	Topic string `toml:"topic"` // subject tag and Keywords header; "": "<environment>-rebuild"
	// Timeout bounds the delivery of one run's reports, spooled ones included; "": 2m.
	Timeout Duration `toml:"timeout"`
	// Targets are the report's targets by driver name ([notify.email], [notify.webhook],
	// stdout = true): read from a file, raw tables the drivers decode strictly; built in
	// Go, the drivers' keys (e.g. &EmailConfig{...}).
	Targets map[string]any `toml:"-"`
}

// UnmarshalTOML splits [notify] into its own keys and the targets'.
func (n *NotifyConfig) UnmarshalTOML(v any) error {
	m, ok := v.(map[string]any)
	if !ok {
		return fmt.Errorf("notify: want a table")
	}
	n.Targets = map[string]any{}
	for k, val := range m {
		switch k {
		case "topic":
			if err := tomlString(val, &n.Topic); err != nil {
				return fmt.Errorf("notify.topic: %w", err)
			}
		case "timeout":
			var text string
			err := tomlString(val, &text)
			if err == nil {
				err = n.Timeout.UnmarshalText([]byte(text))
			}
			if err != nil {
				return fmt.Errorf("notify.timeout: %w", err)
			}
		default:
			n.Targets[k] = val
		}
	}
	return nil
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
