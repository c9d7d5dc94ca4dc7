//go:build !linux

package pgtest

import "syscall"

// serverSysProcAttr runs the server as cred (nil: this process's user) in its own
// process group. Only Linux can tie the server's life to the test binary's
// (Pdeathsig): elsewhere Stop and Main stop it, but a test binary killed by a signal
// leaves it running, with its folder (restage-pg-*) in the temporary folder.
func serverSysProcAttr(cred *syscall.Credential) *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Credential: cred, Setpgid: true}
}
