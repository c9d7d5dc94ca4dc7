//go:build !linux

package physical

import "syscall"

// sysProcAttr runs a program as cred (nil: this process's user) in its own process group.
func sysProcAttr(cred *syscall.Credential) *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Credential: cred, Setpgid: true}
}
