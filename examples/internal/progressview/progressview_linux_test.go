package progressview

import (
	"bytes"
	"log/slog"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/restage/restage/staging"
)

// pty opens a pseudo-terminal pair: what is written to tty is read from ptm.
func pty(t *testing.T) (ptm, tty *os.File) {
	t.Helper()
	ptm, err := os.OpenFile("/dev/ptmx", os.O_RDWR|unix.O_NOCTTY, 0)
	if err != nil {
		t.Skipf("no pseudo-terminals: %v", err)
	}
	t.Cleanup(func() { ptm.Close() })
	if err := unix.IoctlSetPointerInt(int(ptm.Fd()), unix.TIOCSPTLCK, 0); err != nil {
		t.Fatal(err)
	}
	n, err := unix.IoctlGetInt(int(ptm.Fd()), unix.TIOCGPTN)
	if err != nil {
		t.Fatal(err)
	}
	tty, err = os.OpenFile("/dev/pts/"+strconv.Itoa(n), os.O_RDWR|unix.O_NOCTTY, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { tty.Close() })
	return ptm, tty
}

func TestTerminalBarInBytes(t *testing.T) {
	ptm, tty := pty(t)
	obs := New(tty, slog.New(slog.DiscardHandler), 0)
	run := staging.RunInfo{ID: "r1"}
	obs.StepProgress(run, staging.Progress{Step: "verify", Done: 3 << 20, Total: 8 << 20, Unit: staging.UnitBytes, Rate: 1 << 20})
	time.Sleep(150 * time.Millisecond) // past the bar's throttle
	obs.StepProgress(run, staging.Progress{Step: "verify", Done: 5 << 20, Total: 8 << 20, Unit: staging.UnitBytes, Rate: 1 << 20})
	var got bytes.Buffer
	buf := make([]byte, 4096)
	_ = ptm.SetReadDeadline(time.Now().Add(5 * time.Second))
	for !strings.Contains(got.String(), "MB") || !strings.Contains(got.String(), "verify") {
		n, err := ptm.Read(buf)
		got.Write(buf[:n])
		if err != nil {
			t.Fatalf("terminal shows %q: %v", got.String(), err)
		}
	}
}
