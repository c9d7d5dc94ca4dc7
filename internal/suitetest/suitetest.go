// Package suitetest shows that a conformance suite can fail: the suite runs against
// drivers broken on purpose, each in a child process of the test binary (a failing
// suite fails its test), and each must fail in the subtest that checks the promise it
// breaks. The conformance packages (svctest, notifytest, codesynctest, dbrestoretest)
// test themselves with it.
//
//	var breakages = map[string]suitetest.Breakage[func(*server)]{
//		"drops nothing": {Catches: "drop", Break: func(s *server) { s.drop = ... }},
//	}
//
//	func TestSuiteCatchesBrokenFakes(t *testing.T) {
//		suitetest.Catches(t, breakages, func(t *testing.T, apply func(*server)) {
//			mytest.Admin(t, fakeFixture(apply))
//		})
//	}
package suitetest

import (
	"errors"
	"os"
	"os/exec"
	"regexp"
	"strings"
	"testing"
)

// Breakage is one way to break a driver.
type Breakage[B any] struct {
	// Catches is the suite's subtest (its name as the suite gives it to t.Run) that
	// must fail against the broken driver.
	Catches string
	// Break is what the suite function of Catches is given to break the driver.
	Break B
}

// env names, in a child process, the breakage to run the suite against.
const env = "RESTAGE_SUITETEST_BREAKAGE"

// Catches runs suite once per breakage, each in a child process of this test binary
// that runs only the test calling Catches (t) and in it only the subtest the breakage
// Catches, and fails t unless that subtest fails there. In the child, Catches runs suite
// with the breakage the parent named instead. Call it once per top-level test.
func Catches[B any](t *testing.T, breakages map[string]Breakage[B], suite func(t *testing.T, b B)) {
	t.Helper()
	if name := os.Getenv(env); name != "" {
		b, ok := breakages[name]
		if !ok {
			t.Fatalf("suitetest: no breakage %q", name)
		}
		suite(t, b.Break)
		return
	}
	if len(breakages) == 0 {
		t.Fatal("suitetest: no breakages")
	}
	test := t.Name()
	for name, b := range breakages {
		t.Run(strings.ReplaceAll(name, " ", "_"), func(t *testing.T) {
			t.Parallel()
			run := "^" + regexp.QuoteMeta(test) + "$/^" + regexp.QuoteMeta(b.Catches) + "$"
			cmd := exec.CommandContext(t.Context(), os.Args[0], "-test.run="+run, "-test.v", "-test.count=1")
			cmd.Env = append(os.Environ(), env+"="+name)
			out, err := cmd.CombinedOutput()
			if ee := (*exec.ExitError)(nil); !errors.As(err, &ee) {
				t.Fatalf("the suite passed against a driver that %s (%v):\n%s", name, err, out)
			}
			if want := "--- FAIL: " + test + "/" + b.Catches + " "; !strings.Contains(string(out), want) {
				t.Errorf("the suite did not fail in %s against a driver that %s:\n%s", b.Catches, name, out)
			}
		})
	}
}
