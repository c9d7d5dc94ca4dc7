//go:build !linux

package dbrestore

import "syscall"

// sysProcAttr runs a client program in its own process group. (Only Linux kills it
// when restage dies: elsewhere a killed restage leaves it running.)
func sysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true}
}
