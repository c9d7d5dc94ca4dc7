// Package testutil holds small helpers several packages' tests (and test harnesses)
// share: a file written for a test, a check of the mode of the files restage writes, a
// check that Close may be called twice, free loopback ports, an HTTP server that never
// answers, the packages a package links, secrets in the environment, a descriptor
// without close-on-exec.
package testutil

import (
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
)

// WriteTemp writes text to a file name in a new temporary folder of the test and returns
// its path; an error fails t.
func WriteTemp(t testing.TB, name, text string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(path, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

// RequireMode fails t unless path (not followed, a symbolic link is not its target) has
// permission bits want.
func RequireMode(t testing.TB, path string, want os.FileMode) {
	t.Helper()
	fi, err := os.Lstat(path)
	if err != nil {
		t.Fatal(err)
	}
	if got := fi.Mode().Perm(); got != want {
		t.Errorf("%s has mode %v, want %v", path, got, want)
	}
}

// RequireErrorContains fails t now unless err is an error whose message holds every
// part.
func RequireErrorContains(t testing.TB, err error, parts ...string) {
	t.Helper()
	if err == nil {
		t.Fatalf("no error, want one containing %q", parts)
	}
	for _, p := range parts {
		if !strings.Contains(err.Error(), p) {
			t.Fatalf("error %q does not contain %q", err, p)
		}
	}
}

// RequireCloseTwice skips t unless v is an io.Closer, fails it now unless v closes,
// and fails it unless a second Close returns nil too (Close must be idempotent).
func RequireCloseTwice(t testing.TB, v any) {
	t.Helper()
	c, ok := v.(io.Closer)
	if !ok {
		t.Skipf("%T is not an io.Closer", v)
	}
	if err := c.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if err := c.Close(); err != nil {
		t.Errorf("second Close: %v, want nil (Close must be idempotent)", err)
	}
}

// FreePort returns a loopback TCP port nothing listened on a moment ago (another
// process may take it before it is used).
func FreePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// FreeAddr returns "127.0.0.1:<FreePort>": an address nothing listens on, e.g. a
// server that is down. It fails t when no port can be had.
func FreeAddr(t testing.TB) string {
	t.Helper()
	port, err := FreePort()
	if err != nil {
		t.Fatal(err)
	}
	return net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
}

// HangingServer starts an HTTP server that takes every request and never answers it
// (until the client gives up or the test ends) and returns its URL; it stops when the
// test ends.
func HangingServer(t testing.TB) string {
	t.Helper()
	release := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-release:
		case <-r.Context().Done():
		}
	}))
	t.Cleanup(func() { close(release); srv.Close() })
	return srv.URL
}

// Deps returns the import paths of the packages pkg links, pkg last (go list -deps: go
// must be on PATH). It fails t when go cannot list them or the list is not pkg's.
func Deps(t testing.TB, pkg string) []string {
	t.Helper()
	out, err := exec.CommandContext(t.Context(), "go", "list", "-deps", "-f", "{{.ImportPath}}", pkg).Output()
	if err != nil {
		var exit *exec.ExitError
		if errors.As(err, &exit) {
			t.Fatalf("go list -deps %s: %v\n%s", pkg, err, exit.Stderr)
		}
		t.Fatalf("go list -deps %s: %v", pkg, err)
	}
	deps := strings.Fields(string(out))
	if len(deps) < 2 || deps[len(deps)-1] != pkg {
		t.Fatalf("go list -deps %s listed %d packages, ending %q", pkg, len(deps), deps[len(deps)-1:])
	}
	return deps
}

// Secret is part of the value of every variable SetSecrets sets: an environment that
// holds it holds a secret.
const Secret = "hunter2"

// SetSecrets puts the secrets a restage process may hold (the SMTP password under both
// names, libpq's passwords, the masking key) into the test process's environment for the
// rest of the test, each value holding Secret. Tests that call it cannot be parallel.
func SetSecrets(t testing.TB) {
	t.Helper()
	for _, k := range []string{"SMTP_PASSWORD", "RESTAGE_SMTP_PASSWORD", "PGPASSWORD", "PGSSLPASSWORD", "RESTAGE_MASK_KEY"} {
		t.Setenv(k, Secret+"-"+strings.ToLower(k))
	}
}

// RawDescriptor opens a new file of the test without close-on-exec, as a descriptor a
// process inherited from its parent (a flock(1) wrapper's lock) is, and returns its
// number and path; it is closed when t ends.
func RawDescriptor(t testing.TB) (int, string) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "held.lock")
	if err := os.WriteFile(path, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	fd, err := syscall.Open(path, syscall.O_RDONLY, 0) // no O_CLOEXEC
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = syscall.Close(fd) })
	return fd, path
}
