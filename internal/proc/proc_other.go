//go:build !linux

package proc

import (
	"errors"
	"fmt"
)

// ReadStat fails: there is no /proc/<pid>/stat to read outside Linux.
func ReadStat(pid int) (Stat, error) {
	return Stat{}, fmt.Errorf("proc: stat of pid %d: %w", pid, errors.ErrUnsupported)
}

// BootID is "" outside Linux: records are not compared across reboots.
func BootID() string { return "" }

// GroupMembers fails: there is no /proc to list outside Linux.
func GroupMembers(pgid int) ([]int, error) {
	return nil, fmt.Errorf("proc: members of group %d: %w", pgid, errors.ErrUnsupported)
}

// ReadChars fails: there is no /proc/<pid>/io to read outside Linux.
func ReadChars(pid int) (int64, error) {
	return 0, fmt.Errorf("proc: read bytes of pid %d: %w", pid, errors.ErrUnsupported)
}

// WithEnv fails: there is no /proc to list outside Linux.
func WithEnv(entry string) ([]int, error) {
	return nil, fmt.Errorf("proc: processes with %s: %w", entry, errors.ErrUnsupported)
}

// List fails: there is no /proc to list outside Linux.
func List() (map[int]Stat, error) {
	return nil, fmt.Errorf("proc: list processes: %w", errors.ErrUnsupported)
}

// HasEnv is false outside Linux: there is no /proc/<pid>/environ to read.
func HasEnv(pid int, entries ...string) bool { return false }

// Listeners fails: there is no /proc/net to read outside Linux.
func Listeners(port int) ([]uint64, error) {
	return nil, fmt.Errorf("proc: listeners on port %d: %w", port, errors.ErrUnsupported)
}

// SocketHolders fails: there is no /proc to list outside Linux.
func SocketHolders(inodes []uint64) (map[uint64][]int, error) {
	return nil, fmt.Errorf("proc: socket holders: %w", errors.ErrUnsupported)
}
