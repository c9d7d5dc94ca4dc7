package proc

import (
	"bytes"
	"errors"
	"io/fs"
	"os"
	"strconv"
	"strings"
	"syscall"
)

// ReadStat reads /proc/<pid>/stat. A process that is gone yields ErrNoProcess.
func ReadStat(pid int) (Stat, error) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if errors.Is(err, fs.ErrNotExist) || errors.Is(err, syscall.ESRCH) {
		return Stat{}, ErrNoProcess
	}
	if err != nil {
		return Stat{}, err
	}
	return ParseStat(b)
}

// BootID identifies the running kernel: a record from before a reboot names another
// one, even if its pid and start time happen to match. "": it cannot be read.
func BootID() string {
	b, err := os.ReadFile("/proc/sys/kernel/random/boot_id")
	if err != nil {
		return ""
	}
	return strings.TrimSpace(string(b))
}

// GroupMembers lists the living (not exited) processes of process group pgid.
func GroupMembers(pgid int) ([]int, error) {
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
		st, err := ReadStat(pid)
		if err != nil || st.Dead() {
			continue
		}
		if st.PGrp == pgid {
			pids = append(pids, pid)
		}
	}
	return pids, nil
}

// ReadChars returns how many bytes the process has read (rchar in /proc/<pid>/io:
// every read(2), from files, pipes and sockets alike, cached or not).
func ReadChars(pid int) (int64, error) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/io")
	if errors.Is(err, fs.ErrNotExist) || errors.Is(err, syscall.ESRCH) {
		return 0, ErrNoProcess
	}
	if err != nil {
		return 0, err
	}
	for line := range strings.Lines(string(b)) {
		if v, ok := strings.CutPrefix(line, "rchar:"); ok {
			return strconv.ParseInt(strings.TrimSpace(v), 10, 64)
		}
	}
	return 0, errors.New("proc: no rchar in /proc/" + strconv.Itoa(pid) + "/io")
}

// WithEnv lists the living processes whose initial environment (/proc/<pid>/environ)
// holds entry ("KEY=value") exactly. Processes whose environment cannot be read (another
// user's, without privilege) are not listed.
func WithEnv(entry string) ([]int, error) {
	ents, err := os.ReadDir("/proc")
	if err != nil {
		return nil, err
	}
	want := []byte(entry)
	var pids []int
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid == os.Getpid() {
			continue
		}
		st, err := ReadStat(pid)
		if err != nil || st.Dead() {
			continue
		}
		env, err := os.ReadFile("/proc/" + e.Name() + "/environ")
		if err != nil {
			continue
		}
		for _, kv := range bytes.Split(env, []byte{0}) {
			if bytes.Equal(kv, want) {
				pids = append(pids, pid)
				break
			}
		}
	}
	return pids, nil
}

// List returns the Stat of every process /proc shows (zombies too), by pid.
func List() (map[int]Stat, error) {
	ents, err := os.ReadDir("/proc")
	if err != nil {
		return nil, err
	}
	all := make(map[int]Stat, len(ents))
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		if st, err := ReadStat(pid); err == nil {
			all[pid] = st
		}
	}
	return all, nil
}

// HasEnv reports whether the initial environment (/proc/<pid>/environ) of process pid
// holds every one of entries ("KEY=value") exactly; false when it cannot be read (a
// zombie's, or another user's without privilege).
func HasEnv(pid int, entries ...string) bool {
	env, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/environ")
	if err != nil {
		return false
	}
	kvs := bytes.Split(env, []byte{0})
	for _, want := range entries {
		found := false
		for _, kv := range kvs {
			if string(kv) == want {
				found = true
				break
			}
		}
		if !found {
			return false
		}
	}
	return true
}
