package dbrestore

import "syscall"

// sysProcAttr runs a client program in its own process group, killed by the kernel when
// restage dies: a pg_dump left running on production after its restage was killed
// (SIGKILL, the OOM killer) would hold its locks and snapshot for the rest of the dump.
// (pg_dump -j's and pg_restore -j's workers end with their leader.)
func sysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
}
