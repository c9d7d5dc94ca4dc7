package svcctl

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
)

// procStat is what /proc/<pid>/stat says about a process.
type procStat struct {
	state     byte   // R, S, D, Z, X, ...
	pgrp      int    // process group
	startTime uint64 // field 22: start time in clock ticks since boot
}

// errNoProcess means /proc has no (living) process with that pid.
var errNoProcess = errors.New("no such process")

// readProcStat reads /proc/<pid>/stat. A process that is gone yields errNoProcess.
func readProcStat(pid int) (procStat, error) {
	b, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "stat"))
	if err != nil {
		if errors.Is(err, os.ErrNotExist) || errors.Is(err, syscall.ESRCH) {
			return procStat{}, errNoProcess
		}
		return procStat{}, err
	}
	return parseProcStat(b)
}

// parseProcStat parses the text of /proc/<pid>/stat. The command name (field 2) is in
// parentheses and may itself hold spaces and parentheses, so fields are counted from the
// last ')'.
func parseProcStat(b []byte) (procStat, error) {
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return procStat{}, fmt.Errorf("malformed /proc stat %q", b)
	}
	f := strings.Fields(string(b[i+1:]))
	// f[0] is field 3 (state), so field n is f[n-3].
	if len(f) < 22-3+1 {
		return procStat{}, fmt.Errorf("malformed /proc stat %q", b)
	}
	pgrp, err := strconv.Atoi(f[5-3])
	if err != nil {
		return procStat{}, fmt.Errorf("malformed /proc stat pgrp %q", f[5-3])
	}
	st, err := strconv.ParseUint(f[22-3], 10, 64)
	if err != nil {
		return procStat{}, fmt.Errorf("malformed /proc stat starttime %q", f[22-3])
	}
	return procStat{state: f[0][0], pgrp: pgrp, startTime: st}, nil
}

// dead reports whether the process has exited (a zombie waiting to be reaped counts).
func (s procStat) dead() bool { return s.state == 'Z' || s.state == 'X' || s.state == 'x' }

// bootID identifies the running kernel, so that a pidfile from before a reboot is stale
// even if its pid and start time happen to match.
func bootID() string {
	b, err := os.ReadFile("/proc/sys/kernel/random/boot_id")
	if err != nil {
		return ""
	}
	return strings.TrimSpace(string(b))
}

// groupMembers lists the living processes of process group pgid.
func groupMembers(pgid int) ([]int, error) {
	ents, err := os.ReadDir("/proc")
	if err != nil {
		return nil, err
	}
	var pids []int
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		st, err := readProcStat(pid)
		if err != nil || st.dead() {
			continue
		}
		if st.pgrp == pgid {
			pids = append(pids, pid)
		}
	}
	return pids, nil
}
