package pgtest

import "syscall"

// serverSysProcAttr runs the server as cred (nil: this process's user) in its own
// process group, killed by the kernel when the thread that started it, and with it the
// test binary, dies: a test killed by a timeout or a signal leaves no server behind.
func serverSysProcAttr(cred *syscall.Credential) *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Credential: cred, Setpgid: true, Pdeathsig: syscall.SIGKILL}
}
