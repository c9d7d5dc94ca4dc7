//go:build !linux

package physical

import (
	"io/fs"
	"os"
	"path/filepath"
	"syscall"
)

// sysProcAttr runs a program as cred (nil: this process's user) in its own process group.
func sysProcAttr(cred *syscall.Credential) *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Credential: cred, Setpgid: true}
}

// syncFS fsyncs every file and folder under dir (no syncfs here).
var syncFS = func(dir string) error {
	return filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil || !(d.IsDir() || d.Type().IsRegular()) {
			return err
		}
		f, err := os.Open(path)
		if err != nil {
			return err
		}
		defer f.Close()
		return f.Sync()
	})
}
