package codesync

import (
	"io/fs"
	"os"
	"path/filepath"

	"github.com/restage/restage/internal/atomicfile"
)

// syncTree flushes the tree under dir to disk file by file: an fsync of each of its
// regular files and folders (symlinks and special files are left alone). It is syncFS
// where Linux's syncfs(2) is missing.
func syncTree(dir string) error {
	return filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		switch {
		case err != nil:
			return err
		case d.IsDir():
			return atomicfile.SyncDir(path)
		case !d.Type().IsRegular():
			return nil
		}
		f, err := os.Open(path)
		if err != nil {
			return err
		}
		defer f.Close()
		return f.Sync()
	})
}
