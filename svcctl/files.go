package svcctl

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"syscall"
)

// stateFileMode is the mode of the files svcctl creates: the pidfile and the service log.
const stateFileMode = 0o600

// openPrivate opens path with flag, never through a symbolic link at path (O_NOFOLLOW) and
// never blocking on a FIFO planted there (O_NONBLOCK), and only if it is a regular file.
// A file it creates gets stateFileMode; an existing one with more permissive bits is
// narrowed to stateFileMode.
func openPrivate(path string, flag int) (*os.File, error) {
	f, err := os.OpenFile(path, flag|syscall.O_NOFOLLOW|syscall.O_NONBLOCK|syscall.O_CLOEXEC, stateFileMode)
	if err != nil {
		if errors.Is(err, syscall.ELOOP) {
			return nil, fmt.Errorf("%s is a symbolic link; refusing to follow it: %w", path, err)
		}
		return nil, err
	}
	fi, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, err
	}
	if !fi.Mode().IsRegular() {
		f.Close()
		return nil, fmt.Errorf("%s is not a regular file (%s); refusing it", path, fi.Mode().Type())
	}
	if flag&(os.O_WRONLY|os.O_RDWR) != 0 && fi.Mode().Perm()&^stateFileMode != 0 {
		if err := f.Chmod(stateFileMode); err != nil {
			f.Close()
			return nil, err
		}
	}
	return f, nil
}

// readPrivate reads the file at path through openPrivate (no symbolic link followed).
func readPrivate(path string) ([]byte, error) {
	f, err := openPrivate(path, os.O_RDONLY)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return io.ReadAll(f)
}

// isNotExist reports whether err says the file is missing.
func isNotExist(err error) bool { return errors.Is(err, fs.ErrNotExist) }
