// Package safefile opens restage's own state files (locks, owner records, state, logs)
// so that a symbolic link planted at their path is refused, never followed, and its
// target left untouched; files it creates are private (FileMode), folders DirMode.
//
//	if err := safefile.MkdirPrivate(dir); err != nil { ... }
//	f, err := safefile.OpenPrivate(filepath.Join(dir, "job.log"), os.O_WRONLY|os.O_CREATE|os.O_TRUNC)
//	if errors.Is(err, syscall.ELOOP) { ... } // a link was planted there: refused
//
// (For files replaced whole, atomicfile.WriteFile does the same, atomically.)
package safefile

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"syscall"
)

// Modes of what restage creates for itself.
const (
	FileMode fs.FileMode = 0o600
	DirMode  fs.FileMode = 0o700
)

// Open opens path like os.OpenFile, but never through a symbolic link at path
// (O_NOFOLLOW): a link there is an error that says so, with errors.Is(err,
// syscall.ELOOP). Use it where the file may be of any kind (a lock file an operator
// chose); OpenPrivate for restage's own files.
func Open(path string, flag int, perm fs.FileMode) (*os.File, error) {
	f, err := os.OpenFile(path, flag|syscall.O_NOFOLLOW, perm)
	if errors.Is(err, syscall.ELOOP) {
		return nil, refusedLink(path)
	}
	return f, err
}

func refusedLink(path string) error {
	return fmt.Errorf("%s is a symbolic link: refused (restage does not follow links there): %w", path, syscall.ELOOP)
}

// OpenRegular opens path for reading, for a file restage reads but did not write (a
// backup, its manifest), as OpenPrivate does: never through a symbolic link
// (errors.Is(err, syscall.ELOOP)), never blocking on a FIFO, a regular file only.
func OpenRegular(path string) (*os.File, error) { return OpenPrivate(path, os.O_RDONLY) }

// OpenPrivate opens one of restage's own files with flag as Open does, and moreover
// never blocks on a FIFO planted at path (O_NONBLOCK) and refuses anything but a
// regular file. A file it creates gets FileMode; an existing one opened for writing
// with wider permission bits (left by an older version) is narrowed to FileMode.
func OpenPrivate(path string, flag int) (*os.File, error) {
	f, err := Open(path, flag|syscall.O_NONBLOCK, FileMode)
	if err != nil {
		return nil, err
	}
	st, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, err
	}
	if !st.Mode().IsRegular() {
		f.Close()
		return nil, fmt.Errorf("%s is not a regular file (%s): refused", path, st.Mode().Type())
	}
	if flag&(os.O_WRONLY|os.O_RDWR) != 0 && st.Mode().Perm()&^FileMode != 0 {
		if err := f.Chmod(FileMode); err != nil {
			f.Close()
			return nil, err
		}
	}
	return f, nil
}

// ReadFile reads the file at path through OpenPrivate; a file larger than max bytes
// is an error (restage's files are small: a larger one is not what it wrote).
func ReadFile(path string, max int64) ([]byte, error) {
	f, err := OpenPrivate(path, os.O_RDONLY)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, max+1))
	if err == nil && int64(len(data)) > max {
		err = fmt.Errorf("%s: larger than %d bytes", path, max)
	}
	return data, err
}

// MkdirPrivate makes the folder dir and its missing parents (DirMode) and refuses a
// symbolic link or anything but a folder at dir. A folder that exists keeps its mode,
// but one that is not private is refused (see CheckPrivateDir).
func MkdirPrivate(dir string) error {
	err := os.MkdirAll(dir, DirMode)
	st, lerr := os.Lstat(dir)
	switch {
	case lerr == nil && st.Mode()&fs.ModeSymlink != 0:
		return refusedLink(dir)
	case err != nil:
		return err
	case lerr != nil:
		return lerr
	case !st.IsDir():
		return fmt.Errorf("%s: %w", dir, syscall.ENOTDIR)
	}
	return private(dir, st)
}

// ErrNotPrivate is wrapped by the error of a folder that another user owns or may
// write to.
var ErrNotPrivate = errors.New("not private")

// CheckPrivateDir refuses the folder dir (errors.Is(err, ErrNotPrivate)) when another
// user than this process's owns it (root excepted) or when its group or others may
// write to it: whoever can write there can plant the files restage reads back and
// acts on (a cutover record, a spooled report, a pidfile), or replace restage's own.
// A symbolic link at dir is refused too.
func CheckPrivateDir(dir string) error {
	st, err := os.Lstat(dir)
	if err != nil {
		return err
	}
	if st.Mode()&fs.ModeSymlink != 0 {
		return refusedLink(dir)
	}
	if !st.IsDir() {
		return fmt.Errorf("%s: %w", dir, syscall.ENOTDIR)
	}
	return private(dir, st)
}

func private(dir string, st fs.FileInfo) error {
	if perm := st.Mode().Perm(); perm&0o022 != 0 {
		return fmt.Errorf("%s: %w: mode %#o lets other users write to it (make it %#o): refused", dir, ErrNotPrivate, perm, DirMode)
	}
	if sys, ok := st.Sys().(*syscall.Stat_t); ok {
		if uid := int(sys.Uid); uid != os.Geteuid() && uid != 0 {
			return fmt.Errorf("%s: %w: it belongs to user id %d, not to this process's %d: refused", dir, ErrNotPrivate, uid, os.Geteuid())
		}
	}
	return nil
}
