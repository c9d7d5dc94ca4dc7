// Package testutil holds small helpers several packages' tests (and test harnesses)
// share: a check of the mode of the files restage writes, free loopback ports.
package testutil

import (
	"net"
	"os"
	"strconv"
	"testing"
)

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
