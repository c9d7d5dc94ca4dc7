package suitetest

import (
	"os"
	"os/exec"
	"strings"
	"testing"
)

// suite is a conformance suite of two promises; broken names the one the driver breaks.
func suite(t *testing.T, broken string) {
	for _, name := range []string{"first", "second"} {
		t.Run(name, func(t *testing.T) {
			if name == broken {
				t.Error("promise broken")
			}
		})
	}
}

func TestCatches(t *testing.T) {
	Catches(t, map[string]Breakage[string]{
		"breaks the first":  {Catches: "first", Break: "first"},
		"breaks the second": {Catches: "second", Break: "second"},
	}, suite)
}

// TestMisses is TestCatchesFailsOnAMiss's child: a breakage said to be caught by a
// subtest that passes against it.
func TestMisses(t *testing.T) {
	if os.Getenv("SUITETEST_MISSES") == "" {
		t.Skip("run by TestCatchesFailsOnAMiss")
	}
	Catches(t, map[string]Breakage[string]{"breaks the first": {Catches: "second", Break: "first"}}, suite)
}

// TestCatchesFailsOnAMiss: Catches fails when the suite passes against a breakage.
func TestCatchesFailsOnAMiss(t *testing.T) {
	if os.Getenv(env) != "" || os.Getenv("SUITETEST_MISSES") != "" {
		t.Skip("in a child process")
	}
	cmd := exec.CommandContext(t.Context(), os.Args[0], "-test.run=^TestMisses$", "-test.v", "-test.count=1")
	cmd.Env = append(os.Environ(), "SUITETEST_MISSES=1")
	out, err := cmd.CombinedOutput()
	if err == nil || !strings.Contains(string(out), "the suite passed against a driver that breaks the first") {
		t.Fatalf("Catches passed a suite that missed a breakage (%v):\n%s", err, out)
	}
}
