package cron_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/restage/restage/staging/cron"
	"github.com/restage/restage/staging/cron/crontest"
)

func TestParseControl(t *testing.T) {
	c, err := cron.ParseControl(strings.NewReader(`# Launchpad cron control
; another comment
[DEFAULT]
enabled: True

[expire-sessions]
Enabled = FALSE
other: ignored
  continued

[garbo-daily]
enabled: on

[garbo-hourly]
owner: ops
`))
	if err != nil {
		t.Fatal(err)
	}
	for job, want := range map[string]bool{"expire-sessions": false, "garbo-daily": true, "garbo-hourly": true, "unlisted": true} {
		if got := c.Enabled(job); got != want {
			t.Errorf("Enabled(%q) = %v, want %v", job, got, want)
		}
	}
	c, err = cron.ParseControl(strings.NewReader("[DEFAULT]\nenabled = 0\n[a]\nenabled = yes\n"))
	if err != nil {
		t.Fatal(err)
	}
	if !c.Enabled("a") || c.Enabled("b") {
		t.Fatalf("per-job value must override [DEFAULT]: %+v", c)
	}
	var nilControl *cron.Control
	if !nilControl.Enabled("a") {
		t.Fatal("no control file: enabled")
	}
	for _, bad := range []string{
		"enabled: True\n",                // before any section
		"[a]\nenabled: maybe\n",          // not a boolean
		"[a\nenabled: True\n",            // bad header
		"[a]\njust words\n",              // no separator
		"[a]\nenabled: True\n  False\n",  // enabled spanning lines
		"  indented: first\n[a]\nx: y\n", // continuation without a key
	} {
		if _, err := cron.ParseControl(strings.NewReader(bad)); err == nil {
			t.Errorf("ParseControl(%q): no error", bad)
		}
	}
}

func TestSetEnabled(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "cron.ini")
	// A missing file is created.
	if err := cron.SetEnabled(t.Context(), path, "expire-sessions", false); err != nil {
		t.Fatal(err)
	}
	if data, _ := os.ReadFile(path); string(data) != "[expire-sessions]\nenabled: False\n" {
		t.Fatalf("new file:\n%s", data)
	}
	orig := `# keep this comment
[DEFAULT]
enabled = True

[garbo]
owner: ops
enabled: False
enabled: False
; trailing comment
[other]
x: y`
	if err := os.WriteFile(path, []byte(orig), 0o640); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(path, 0o640); err != nil {
		t.Fatal(err)
	}
	if err := cron.SetEnabled(t.Context(), path, "garbo", true); err != nil {
		t.Fatal(err)
	}
	if err := cron.SetEnabled(t.Context(), path, "other", false); err != nil {
		t.Fatal(err)
	}
	if err := cron.SetEnabled(t.Context(), path, "new-job", false); err != nil {
		t.Fatal(err)
	}
	data, _ := os.ReadFile(path)
	want := `# keep this comment
[DEFAULT]
enabled = True

[garbo]
owner: ops
enabled: True
; trailing comment
[other]
x: y
enabled: False

[new-job]
enabled: False
`
	if string(data) != want {
		t.Fatalf("got:\n%s\nwant:\n%s", data, want)
	}
	if st, _ := os.Stat(path); st.Mode().Perm() != 0o640 {
		t.Errorf("mode %v, want 0640 kept", st.Mode().Perm())
	}
	c, err := cron.ReadControl(t.Context(), nil, path)
	if err != nil {
		t.Fatal(err)
	}
	if !c.Enabled("garbo") || c.Enabled("other") || c.Enabled("new-job") || !c.Enabled("x") {
		t.Fatalf("%+v", c)
	}
}

// SetEnabled refuses to rewrite a file that does not parse, and bad job names; it
// leaves no temporary.
func TestSetEnabledRefusesUnsafeEdits(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "cron.ini")
	if err := os.WriteFile(path, []byte("[a]\nenabled: perhaps\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := cron.SetEnabled(t.Context(), path, "b", true); err == nil {
		t.Fatal("edited an unparsable file")
	}
	if data, _ := os.ReadFile(path); string(data) != "[a]\nenabled: perhaps\n" {
		t.Fatalf("file changed: %s", data)
	}
	for _, bad := range []string{"", "a]b", "a\nb", " a"} {
		if err := cron.SetEnabled(t.Context(), path, bad, true); err == nil {
			t.Errorf("SetEnabled(%q): no error", bad)
		}
	}
	// The control file, and the lock file that serialises SetEnabled calls: no temporary.
	entries, _ := os.ReadDir(dir)
	if len(entries) != 2 || entries[0].Name() != "cron.ini" || entries[1].Name() != "cron.ini.lock" {
		t.Fatalf("files left: %v", entries)
	}
}

// SetEnabled waits for its turn on the lock no longer than its ctx allows.
func TestSetEnabledWaitIsBounded(t *testing.T) {
	path := filepath.Join(t.TempDir(), "cron.ini")
	other, err := os.OpenFile(path+".lock", os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	if err := syscall.Flock(int(other.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 100*time.Millisecond)
	defer cancel()
	if err := cron.SetEnabled(ctx, path, "a", false); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("SetEnabled under another holder: %v", err)
	}
	if crontest.Exists(path) {
		t.Fatal("the file was written without the lock")
	}
	other.Close()
	if err := cron.SetEnabled(t.Context(), path, "a", false); err != nil {
		t.Fatal(err)
	}
}

func TestSetEnabledConcurrentCallsLoseNothing(t *testing.T) {
	path := filepath.Join(t.TempDir(), "cron.ini")
	const n = 24
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs <- cron.SetEnabled(t.Context(), path, fmt.Sprintf("job-%02d", i), i%2 == 0)
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	c, err := cron.ParseControl(bytes.NewReader(data))
	if err != nil {
		t.Fatalf("%v\n%s", err, data)
	}
	if len(c.Jobs) != n {
		t.Fatalf("%d of %d jobs in the file:\n%s", len(c.Jobs), n, data)
	}
	for i := range n {
		if got := c.Enabled(fmt.Sprintf("job-%02d", i)); got != (i%2 == 0) {
			t.Errorf("job-%02d enabled = %v", i, got)
		}
	}
	entries, _ := os.ReadDir(filepath.Dir(path))
	for _, e := range entries {
		if strings.Contains(e.Name(), ".new") {
			t.Errorf("temporary file left: %s", e.Name())
		}
	}
}
