// Package proc tells whether a process named in a record (a pidfile, a lock's owner
// record) is still the process that wrote it, from what Linux's /proc says: a process's
// state, process group and start time (/proc/<pid>/stat) and the kernel's boot id. A
// record that keeps the pid, the start time and the boot id (an ID) is known to be stale
// once the pid is gone, belongs to another process or is from before a reboot.
//
//	rec := proc.Self()             // written into the record
//	...
//	v, _, err := proc.Check(rec)   // read back by another process
//	if v != proc.Alive { ... }     // v says why: Gone, Exited, Rebooted or Reused
//
// Elsewhere than on Linux, ReadStat and GroupMembers fail with errors.ErrUnsupported,
// BootID is "" and Check falls back on kill(pid, 0), which cannot tell a reused pid.
package proc

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"syscall"
)

// ErrNoProcess means no living process has the pid (/proc has no such entry).
var ErrNoProcess = errors.New("no such process")

// Stat is what /proc/<pid>/stat says about a process.
type Stat struct {
	// State is the process's state letter: R, S, D, Z (zombie), X (dead), ...
	State byte
	// PPid is the parent's pid.
	PPid int
	// PGrp is the process group.
	PGrp int
	// StartTime is field 22: when the process started, in clock ticks since boot. With
	// the pid and the boot id it identifies the process: a pid is reused, a pid and a
	// start time are not (within one boot).
	StartTime uint64
}

// Dead reports whether the process has exited: a zombie not yet reaped counts (its
// descriptors, and the locks they held, are gone).
func (s Stat) Dead() bool { return s.State == 'Z' || s.State == 'X' || s.State == 'x' }

// ParseStat parses the text of /proc/<pid>/stat. The command name (field 2) is in
// parentheses and may itself hold spaces and parentheses, so fields are counted from
// the last ')'.
func ParseStat(b []byte) (Stat, error) {
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return Stat{}, fmt.Errorf("malformed /proc stat %q", b)
	}
	f := strings.Fields(string(b[i+1:]))
	// f[0] is field 3 (state), so field n is f[n-3].
	if len(f) < 22-3+1 || len(f[0]) != 1 {
		return Stat{}, fmt.Errorf("malformed /proc stat %q", b)
	}
	ppid, err := strconv.Atoi(f[4-3])
	if err != nil {
		return Stat{}, fmt.Errorf("malformed /proc stat: ppid %q", f[4-3])
	}
	pgrp, err := strconv.Atoi(f[5-3])
	if err != nil {
		return Stat{}, fmt.Errorf("malformed /proc stat: pgrp %q", f[5-3])
	}
	start, err := strconv.ParseUint(f[22-3], 10, 64)
	if err != nil {
		return Stat{}, fmt.Errorf("malformed /proc stat: starttime %q", f[22-3])
	}
	return Stat{State: f[0][0], PPid: ppid, PGrp: pgrp, StartTime: start}, nil
}

// ID identifies one process across pid reuse and reboots. Zero StartTime or empty
// BootID: not recorded (an older record), then Check does not compare it.
type ID struct {
	PID       int    // the process ID
	StartTime uint64 // Stat.StartTime
	BootID    string // BootID() when the record was written
}

// Self returns the calling process's ID (without StartTime where /proc cannot be read).
func Self() ID {
	id, err := Of(os.Getpid())
	if err != nil {
		return ID{PID: os.Getpid(), BootID: BootID()}
	}
	return id
}

// Of returns the ID of the running process pid, e.g. a child just started (it is not
// reaped yet, so its /proc entry exists even if it already exited).
func Of(pid int) (ID, error) {
	st, err := ReadStat(pid)
	if err != nil {
		return ID{}, err
	}
	return ID{PID: pid, StartTime: st.StartTime, BootID: BootID()}, nil
}

// Verdict says what became of the process an ID names.
type Verdict int

// Verdicts of Check.
const (
	Alive    Verdict = iota // the process runs
	Gone                    // no process has the pid
	Exited                  // the process has exited, not reaped yet (a zombie)
	Rebooted                // the ID was recorded before the last reboot
	Reused                  // the pid now belongs to another process
)

// String names the verdict.
func (v Verdict) String() string {
	switch v {
	case Alive:
		return "alive"
	case Gone:
		return "gone"
	case Exited:
		return "exited"
	case Rebooted:
		return "rebooted"
	case Reused:
		return "reused"
	}
	return "Verdict(" + strconv.Itoa(int(v)) + ")"
}

// Check tells whether the process id names still runs, and if not, why, with the
// process's Stat when /proc has one. When /proc cannot be read (err is not nil), the
// verdict comes from kill(pid, 0): Gone, or Alive as far as a signal can tell (a
// reused pid looks alive).
func Check(id ID) (Verdict, Stat, error) {
	if id.PID <= 0 {
		return Gone, Stat{}, nil
	}
	st, err := ReadStat(id.PID)
	switch {
	case errors.Is(err, ErrNoProcess):
		return Gone, st, nil
	case err != nil:
		if kerr := syscall.Kill(id.PID, 0); errors.Is(kerr, syscall.ESRCH) {
			return Gone, st, nil
		}
		return Alive, st, err
	case id.BootID != "" && id.BootID != BootID():
		return Rebooted, st, nil
	case id.StartTime != 0 && st.StartTime != id.StartTime:
		return Reused, st, nil
	case st.Dead():
		return Exited, st, nil
	}
	return Alive, st, nil
}

// GroupReads adds up the bytes a process group has read, its exited members
// included: call Sample now and then while the group runs.
type GroupReads struct {
	pgid int
	seen map[int]int64 // the most read by each member seen
}

// NewGroupReads follows process group pgid.
func NewGroupReads(pgid int) *GroupReads { return &GroupReads{pgid: pgid, seen: map[int]int64{}} }

// Sample reads the living members' counts and returns the group's total so far. A
// member that has exited keeps the count it had when last sampled.
func (g *GroupReads) Sample() (int64, error) {
	pids, err := GroupMembers(g.pgid)
	if err != nil {
		return 0, err
	}
	for _, pid := range pids {
		if n, err := ReadChars(pid); err == nil && n > g.seen[pid] {
			g.seen[pid] = n
		}
	}
	var total int64
	for _, n := range g.seen {
		total += n
	}
	return total, nil
}
