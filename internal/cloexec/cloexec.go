// Package cloexec keeps the descriptors a process inherited out of the programs it
// starts. Go opens every file, socket and pipe close-on-exec, and os/exec passes a child
// only its standard streams and ExtraFiles; but descriptors the process inherited from
// its own parent without that flag (a flock(1) wrapper's lock, a shell's redirection, a
// supervisor's socket), or that C code opened, would reach every child, and a service or
// cron job started by restage keeps them as long as it runs: a lock file's descriptor
// held that way makes every rebuild wait for it.
//
//	if err := cloexec.Inherited(); err != nil { ... }
//	cmd.Start()
package cloexec

import (
	"fmt"
	"os"
	"strconv"
	"syscall"
)

// fdDirs list a process's open descriptors: Linux's /proc, else /dev/fd (macOS, and
// FreeBSD with fdescfs mounted; without it /dev/fd lists only 0-2, and nothing is done).
var fdDirs = []string{"/proc/self/fd", "/dev/fd"}

// Inherited marks every open descriptor above standard error close-on-exec, so that a
// program started after it gets only its standard streams and the files given to it
// explicitly (exec.Cmd.ExtraFiles, which are duplicated into the child without the flag).
// Call it before starting a program that outlives the call.
func Inherited() error {
	var err error
	for _, dir := range fdDirs {
		var ents []os.DirEntry
		if ents, err = os.ReadDir(dir); err != nil {
			continue
		}
		for _, e := range ents {
			if fd, perr := strconv.Atoi(e.Name()); perr == nil && fd > 2 {
				syscall.CloseOnExec(fd)
			}
		}
		return nil
	}
	return fmt.Errorf("cloexec: list open descriptors: %w", err)
}
