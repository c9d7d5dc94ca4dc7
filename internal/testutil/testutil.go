// Package testutil holds the small checks several packages' tests make of the files
// restage writes.
package testutil

import (
	"os"
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
