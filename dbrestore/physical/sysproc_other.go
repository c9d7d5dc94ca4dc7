//go:build !linux

package physical

import (
	"syscall"

	"github.com/restage/restage/internal/atomicfile"
)

// sysProcAttr runs a program as cred (nil: this process's user) in its own process group.
func sysProcAttr(cred *syscall.Credential) *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Credential: cred, Setpgid: true}
}

// syncFS fsyncs every file and folder under dir (no syncfs here).
var syncFS = atomicfile.SyncTree
