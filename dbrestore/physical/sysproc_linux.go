package physical

import (
	"os"
	"syscall"

	"golang.org/x/sys/unix"
)

// sysProcAttr runs a program as cred (nil: this process's user) in its own process
// group, killed by the kernel when restage dies: a restore killed with restage must not
// go on writing into a slot the next run cleans. (Children the program forks, such as
// the postmaster pg_ctl starts, do not inherit this.)
func sysProcAttr(cred *syscall.Credential) *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Credential: cred, Setpgid: true, Pdeathsig: syscall.SIGKILL}
}

// syncFS writes everything cached for the filesystem holding dir to the disk (syncfs).
var syncFS = func(dir string) error {
	f, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer f.Close()
	return unix.Syncfs(int(f.Fd()))
}
