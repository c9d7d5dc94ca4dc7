package codesync

import (
	"os"

	"golang.org/x/sys/unix"
)

// syncFS flushes the filesystem holding dir to disk (syncfs(2), Linux only): one call
// for the whole release, however many files it has.
func syncFS(dir string) error {
	f, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer f.Close()
	return unix.Syncfs(int(f.Fd()))
}
