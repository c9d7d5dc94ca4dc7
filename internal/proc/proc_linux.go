package proc

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"slices"
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

// Listeners returns the inodes of the TCP sockets (IPv4 and IPv6) listening on port in
// this process's network namespace (/proc/net/tcp, /proc/net/tcp6).
func Listeners(port int) ([]uint64, error) {
	var inodes []uint64
	want := fmt.Sprintf(":%04X", port)
	for _, file := range []string{"/proc/net/tcp", "/proc/net/tcp6"} {
		b, err := os.ReadFile(file)
		if errors.Is(err, fs.ErrNotExist) {
			continue // no IPv6
		}
		if err != nil {
			return nil, err
		}
		for i, line := range strings.Split(string(b), "\n") {
			f := strings.Fields(line)
			// sl local_address rem_address st tx_queue:rx_queue tr:tm->when retrnsmt uid timeout inode
			if i == 0 || len(f) < 10 || f[3] != "0A" || !strings.HasSuffix(f[1], want) {
				continue
			}
			if ino, err := strconv.ParseUint(f[9], 10, 64); err == nil && ino != 0 {
				inodes = append(inodes, ino)
			}
		}
	}
	return inodes, nil
}

// SocketHolders returns, for each of inodes, the pids of the processes that hold a
// descriptor on that socket (/proc/<pid>/fd; processes whose descriptors cannot be read,
// another user's without privilege, are not seen).
func SocketHolders(inodes []uint64) (map[uint64][]int, error) {
	want := map[string]uint64{}
	for _, ino := range inodes {
		want["socket:["+strconv.FormatUint(ino, 10)+"]"] = ino
	}
	ents, err := os.ReadDir("/proc")
	if err != nil {
		return nil, err
	}
	holders := map[uint64][]int{}
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		dir := "/proc/" + e.Name() + "/fd"
		fds, err := os.ReadDir(dir)
		if err != nil {
			continue
		}
		for _, fd := range fds {
			link, err := os.Readlink(dir + "/" + fd.Name())
			if ino, ok := want[link]; err == nil && ok && !slices.Contains(holders[ino], pid) {
				holders[ino] = append(holders[ino], pid)
			}
		}
	}
	return holders, nil
}
