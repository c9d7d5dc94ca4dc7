package cloexec

import (
	"os"
	"os/exec"
	"strings"
	"testing"

	"github.com/restage/restage/internal/testutil"
)

// A descriptor opened without O_CLOEXEC (as one inherited from a parent is) reaches a
// child until Inherited marks it; ExtraFiles still reach it.
func TestInherited(t *testing.T) {
	if _, err := os.Stat("/proc/self/fd"); err != nil {
		t.Skip("no /proc/self/fd")
	}
	fd, path := testutil.RawDescriptor(t)
	extra, err := os.Open(os.DevNull)
	if err != nil {
		t.Fatal(err)
	}
	defer extra.Close()
	child := func() string {
		cmd := exec.Command("/bin/sh", "-c", "ls -l /proc/$$/fd")
		cmd.ExtraFiles = []*os.File{extra}
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("%v: %s", err, out)
		}
		return string(out)
	}
	if out := child(); !strings.Contains(out, path) {
		t.Fatalf("the raw descriptor %d did not reach the child before Inherited:\n%s", fd, out)
	}
	if err := Inherited(); err != nil {
		t.Fatal(err)
	}
	out := child()
	if strings.Contains(out, path) {
		t.Errorf("descriptor %d reached the child after Inherited:\n%s", fd, out)
	}
	if !strings.Contains(out, " 3 -> "+os.DevNull) {
		t.Errorf("the ExtraFiles descriptor is not fd 3 of the child:\n%s", out)
	}
}
