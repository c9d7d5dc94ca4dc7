package restorebar

import (
	"bytes"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/restage/restage/dbrestore"
)

func TestNotATerminal(t *testing.T) {
	f, err := os.Create(t.TempDir() + "/log")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if New(f) != nil {
		t.Error("New(file) draws a bar")
	}
	if New(&bytes.Buffer{}) != nil {
		t.Error("New(buffer) draws a bar")
	}
}

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

func TestTerminal(t *testing.T) {
	ptm, tty := pty(t)
	p := New(tty)
	if p == nil {
		t.Fatal("New(terminal) = nil")
	}
	p(dbrestore.Progress{Done: 1, Total: 40, Item: "TABLE public.bug"})
	p(dbrestore.Progress{Done: 17, Total: 40, Item: "TABLE DATA public.bug"})
	var got bytes.Buffer
	buf := make([]byte, 4096)
	_ = ptm.SetReadDeadline(time.Now().Add(5 * time.Second))
	for !strings.Contains(got.String(), "17/40") {
		n, err := ptm.Read(buf)
		got.Write(buf[:n])
		if err != nil {
			t.Fatalf("terminal shows %q: %v", got.String(), err)
		}
	}
	if !strings.Contains(got.String(), "restore") {
		t.Errorf("terminal shows %q, without the bar's description", got.String())
	}
}
