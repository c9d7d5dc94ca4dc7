package cron

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/restage/restage/internal/atomicfile"
	"github.com/restage/restage/internal/flock"
	"github.com/restage/restage/internal/safefile"
)

// Control is a parsed control file in the Launchpad format: an INI file with a
// [DEFAULT] section and one section per job, each with "enabled: True|False" (or
// "enabled = ..."). A job's own value overrides [DEFAULT]; with neither, it is enabled.
type Control struct {
	Default *bool           // [DEFAULT] enabled; nil: not set
	Jobs    map[string]bool // per-job enabled
}

// Enabled reports whether the control file lets job run.
func (c *Control) Enabled(job string) bool {
	if c == nil {
		return true
	}
	if v, ok := c.Jobs[job]; ok {
		return v
	}
	if c.Default != nil {
		return *c.Default
	}
	return true
}

// maxControlSize bounds a control file.
const maxControlSize = 1 << 20

// ParseControl parses a control file as Python's configparser reads it: "[section]"
// headers, "key: value" or "key = value" (keys case-insensitive), '#' and ';' comment
// lines, indented continuation lines. Keys other than enabled are ignored; an enabled
// value that is not a boolean (1/yes/true/on, 0/no/false/off) is an error.
func ParseControl(r io.Reader) (*Control, error) {
	c := &Control{Jobs: map[string]bool{}}
	sc := bufio.NewScanner(io.LimitReader(r, maxControlSize+1))
	sc.Buffer(make([]byte, 64<<10), maxControlSize+1)
	section, key := "", ""
	n := 0
	for sc.Scan() {
		n++
		raw := sc.Text()
		line := strings.TrimSpace(raw)
		if line == "" || line[0] == '#' || line[0] == ';' {
			continue
		}
		if raw[0] == ' ' || raw[0] == '\t' { // continuation of the previous value
			if key == "" {
				return nil, fmt.Errorf("control file line %d: continuation line without a key", n)
			}
			if key == "enabled" {
				return nil, fmt.Errorf("control file line %d: [%s] enabled: value spans several lines", n, section)
			}
			continue
		}
		if line[0] == '[' {
			end := strings.IndexByte(line, ']')
			if end < 0 {
				return nil, fmt.Errorf("control file line %d: bad section header %q", n, line)
			}
			section, key = line[1:end], ""
			continue
		}
		if section == "" {
			return nil, fmt.Errorf("control file line %d: key before the first [section]", n)
		}
		i := strings.IndexAny(line, ":=")
		if i < 0 {
			return nil, fmt.Errorf("control file line %d: want \"key: value\", got %q", n, line)
		}
		key = strings.ToLower(strings.TrimSpace(line[:i]))
		if key != "enabled" {
			continue
		}
		v, err := parseBool(strings.TrimSpace(line[i+1:]))
		if err != nil {
			return nil, fmt.Errorf("control file line %d: [%s] enabled: %w", n, section, err)
		}
		if section == "DEFAULT" {
			c.Default = &v
		} else {
			c.Jobs[section] = v
		}
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("control file: %w", err)
	}
	return c, nil
}

func parseBool(s string) (bool, error) {
	switch strings.ToLower(s) {
	case "1", "yes", "true", "on":
		return true, nil
	case "0", "no", "false", "off":
		return false, nil
	}
	return false, fmt.Errorf("not a boolean: %q", s)
}

// ControlCopyFile is the name, in state_dir, of the last control file that parsed: the
// runner uses it when the control file cannot be read or parsed.
const ControlCopyFile = "control-last-good.ini"

// ReadControl reads and parses the control file at source: a local path, or an
// http(s) URL fetched with client (nil: a client with a ControlTimeout timeout).
func ReadControl(ctx context.Context, client *http.Client, source string) (*Control, error) {
	data, err := fetchControl(ctx, client, source)
	if err != nil {
		return nil, err
	}
	return ParseControl(bytes.NewReader(data))
}

// fetchControl returns the text of the control file at source (see ReadControl),
// at most maxControlSize bytes.
func fetchControl(ctx context.Context, client *http.Client, source string) ([]byte, error) {
	if !strings.HasPrefix(source, "http://") && !strings.HasPrefix(source, "https://") {
		f, err := os.Open(source)
		if err != nil {
			return nil, fmt.Errorf("control file: %w", err)
		}
		defer f.Close()
		data, err := io.ReadAll(io.LimitReader(f, maxControlSize+1))
		if err != nil {
			return nil, fmt.Errorf("control file: %w", err)
		}
		if len(data) > maxControlSize {
			return nil, fmt.Errorf("control file %s: larger than %d bytes", source, maxControlSize)
		}
		return data, nil
	}
	if client == nil {
		client = &http.Client{Timeout: ControlTimeout}
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, source, nil)
	if err != nil {
		return nil, fmt.Errorf("control file: %w", err)
	}
	resp, err := client.Do(req)
	if err != nil {
		return nil, fmt.Errorf("control file: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("control file %s: %s", source, resp.Status)
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxControlSize+1))
	if err != nil {
		return nil, fmt.Errorf("control file %s: %w", source, err)
	}
	if len(body) > maxControlSize {
		return nil, fmt.Errorf("control file %s: larger than %d bytes", source, maxControlSize)
	}
	return body, nil
}

// controlLockWait bounds SetEnabled's wait for another SetEnabled on the same file
// (each holds the lock for a read, a parse and a write: milliseconds).
const controlLockWait = 30 * time.Second

// SetEnabled sets "enabled: True|False" for job (or "DEFAULT") in the local control
// file at path, keeping every other line, and replaces the file atomically (it writes
// path+".new", syncs it and renames it over path), keeping its mode. A missing file is
// created. Calls on the same file, from any process, take turns on an OS lock of
// path+".lock", so that no change is lost; a call waits for its turn until ctx is done
// or 30 seconds have passed.
func SetEnabled(ctx context.Context, path, job string, enabled bool) error {
	if job == "" || strings.ContainsAny(job, "[]\r\n") || strings.TrimSpace(job) != job {
		return fmt.Errorf("control file: bad job name %q", job)
	}
	lock, err := safefile.OpenPrivate(path+".lock", os.O_RDWR|os.O_CREATE)
	if err != nil {
		return fmt.Errorf("control file: %w", err)
	}
	defer lock.Close() // releases the lock
	lctx, cancel := context.WithTimeout(ctx, controlLockWait)
	defer cancel()
	if err := flock.Wait(lctx, lock, flock.Exclusive, 0); err != nil {
		return fmt.Errorf("control file: %w", err)
	}
	old, err := os.ReadFile(path)
	mode := fs.FileMode(0o644)
	switch {
	case err == nil:
		if st, err := os.Stat(path); err == nil {
			mode = st.Mode().Perm()
		}
	case errors.Is(err, fs.ErrNotExist):
	default:
		return fmt.Errorf("control file: %w", err)
	}
	value := "False"
	if enabled {
		value = "True"
	}
	data := setEnabledText(string(old), job, "enabled: "+value)
	// Check the result means what was asked before it replaces the file.
	c, err := ParseControl(strings.NewReader(data))
	if err != nil {
		return fmt.Errorf("control file %s: cannot be edited safely: %w", path, err)
	}
	if (job == "DEFAULT" && (c.Default == nil || *c.Default != enabled)) || (job != "DEFAULT" && c.Enabled(job) != enabled) {
		return fmt.Errorf("control file %s: cannot be edited safely", path)
	}
	return atomicfile.WriteFile(path, []byte(data), mode)
}

// SetEnabled sets "enabled: True|False" for job (or "DEFAULT") in the runner's local
// control file, as the package's SetEnabled does, and makes the result the last good copy
// (ControlCopyFile), under the state lock that runs hold while they read the control
// file: if the file later cannot be read or parsed, runs fall back to this decision, not
// to the one before it. It waits for the lock until ctx is done or 30 seconds have
// passed.
func (r *Runner) SetEnabled(ctx context.Context, job string, enabled bool) error {
	if r.control == "" || strings.Contains(r.control, "://") {
		return fmt.Errorf("control file: %q is not a local file", r.controlName)
	}
	lctx, cancel := context.WithTimeout(ctx, controlLockWait)
	defer cancel()
	l, _, err := r.lockState(lctx)
	if err != nil {
		return err
	}
	defer l.Close()
	if err := SetEnabled(ctx, r.control, job, enabled); err != nil {
		return err
	}
	data, err := fetchControl(ctx, nil, r.control)
	if err != nil {
		return err
	}
	return r.keepControl(data)
}

// setEnabledText replaces the enabled lines of section job in text by line, or adds
// the line (and the section) when missing.
func setEnabledText(text, job, line string) string {
	lines := strings.Split(text, "\n")
	if len(lines) > 0 && lines[len(lines)-1] == "" {
		lines = lines[:len(lines)-1]
	}
	var out []string
	in, found, done := false, false, false
	flush := func() { // end of the job's section without an enabled line
		if in && !done {
			out = append(out, line)
			done = true
		}
	}
	for _, l := range lines {
		t := strings.TrimSpace(l)
		if strings.HasPrefix(t, "[") && !(len(l) > 0 && (l[0] == ' ' || l[0] == '\t')) {
			flush()
			end := strings.IndexByte(t, ']')
			in = end > 0 && t[1:end] == job
			if in {
				found = true
			}
			out = append(out, l)
			continue
		}
		if in && t != "" && t[0] != '#' && t[0] != ';' && l[0] != ' ' && l[0] != '\t' {
			if i := strings.IndexAny(t, ":="); i >= 0 && strings.ToLower(strings.TrimSpace(t[:i])) == "enabled" {
				if !done {
					out = append(out, line)
					done = true
				}
				continue // drop further enabled lines of the section
			}
		}
		out = append(out, l)
	}
	flush()
	if !found {
		if len(out) > 0 && strings.TrimSpace(out[len(out)-1]) != "" {
			out = append(out, "")
		}
		out = append(out, "["+job+"]", line)
	}
	return strings.Join(out, "\n") + "\n"
}
