package testutil

import (
	"bufio"
	"os"
	"strconv"
	"strings"
)

// ResetPeakRSS resets this process's peak resident set (VmHWM), on Linux.
func ResetPeakRSS() { _ = os.WriteFile("/proc/self/clear_refs", []byte("5"), 0) }

// PeakRSS returns this process's peak resident set (VmHWM) in bytes since it started or
// since ResetPeakRSS; 0 where /proc does not tell.
func PeakRSS() uint64 {
	f, err := os.Open("/proc/self/status")
	if err != nil {
		return 0
	}
	defer f.Close()
	s := bufio.NewScanner(f)
	for s.Scan() {
		if v, ok := strings.CutPrefix(s.Text(), "VmHWM:"); ok {
			kb, _ := strconv.ParseUint(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
			return kb << 10
		}
	}
	return 0
}
