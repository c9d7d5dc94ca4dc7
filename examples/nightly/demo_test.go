package main

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/restage/restage/dbrestore/pgtest"
	"github.com/restage/restage/examples/internal/cli/clitest"
	"github.com/restage/restage/staging"
)

// writeDemo writes an executable shell script named demo into dir and returns its path.
func writeDemo(t *testing.T, dir, script string) string {
	t.Helper()
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, demoName)
	if err := os.WriteFile(path, []byte("#!/bin/sh\n"+script), 0o755); err != nil {
		t.Fatal(err)
	}
	return path
}

// launch runs l with args as nightly -demo does.
func launch(ctx context.Context, l demoLauncher, args ...string) clitest.Result {
	return clitest.Run(ctx, "nightly", l.Run, staging.ExitStatus, args...)
}

func TestDemoOnPath(t *testing.T) {
	bin := t.TempDir()
	demo := writeDemo(t, bin, `echo "demo on PATH: $*"; echo "demo complains" >&2; exit 3`+"\n")
	t.Setenv("PATH", bin)
	t.Chdir(t.TempDir()) // not a checkout
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"-demo"}, "demo on PATH: \n"},
		{[]string{"-demo", "-keep", "-v"}, "demo on PATH: -keep -v\n"},
		{[]string{"-v", "-demo", "-keep"}, "demo on PATH: -keep -v\n"},
	} {
		r := invoke(context.Background(), tc.args...)
		if r.Code != 3 || r.Stdout != tc.want || r.Stderr != "nightly: running the demo program "+demo+"\ndemo complains\n" {
			t.Errorf("nightly %q: exit %d, stdout %q, stderr %q; want exit 3 (the demo's), stdout %q and only the demo's complaint",
				tc.args, r.Code, r.Stdout, r.Stderr, tc.want)
		}
	}
}

func TestDemoBesideNightlyFirst(t *testing.T) {
	path := t.TempDir()
	writeDemo(t, path, "echo 'demo on PATH'\n")
	t.Setenv("PATH", path)
	installed := t.TempDir()
	beside := writeDemo(t, installed, `echo "demo beside nightly: $*"`+"\n")
	r := launch(context.Background(), demoLauncher{Self: filepath.Join(installed, "nightly"), Dir: t.TempDir()}, "-keep")
	if r.Code != 0 || r.Stdout != "demo beside nightly: -keep\n" || !strings.Contains(r.Stderr, beside) {
		t.Errorf("exit %d, stdout %q, stderr %q; want the demo beside nightly", r.Code, r.Stdout, r.Stderr)
	}
	// Not executable: not a program, so the one on PATH.
	if err := os.Chmod(beside, 0o644); err != nil {
		t.Fatal(err)
	}
	if r := launch(context.Background(), demoLauncher{Self: filepath.Join(installed, "nightly")}); r.Code != 0 || r.Stdout != "demo on PATH\n" {
		t.Errorf("non-executable demo beside nightly: exit %d, stdout %q; want the one on PATH", r.Code, r.Stdout)
	}
}

// fakeCheckout writes a module with this module's path (unless modPath says otherwise)
// whose examples/demo prints its arguments and exits 4, and returns its folder.
func fakeCheckout(t *testing.T, modPath string) string {
	t.Helper()
	root := t.TempDir()
	files := map[string]string{
		"go.mod": "// a checkout\nmodule " + modPath + " // the module\n\ngo 1.26\n",
		"examples/demo/main.go": `package main

import (
	"fmt"
	"os"
)

func main() {
	fmt.Println("demo built from the checkout:", os.Args[1:])
	os.Exit(4)
}
`,
		"staging/doc.go": "package staging\n",
	}
	for name, text := range files {
		path := filepath.Join(root, name)
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return root
}

func TestDemoBuiltInCheckout(t *testing.T) {
	goTool, err := exec.LookPath("go")
	if err != nil {
		t.Fatal(err) // the test itself runs under go
	}
	root := fakeCheckout(t, modulePath)
	t.Setenv("PATH", filepath.Dir(goTool)) // go, and no demo
	t.Setenv("GOFLAGS", "-mod=mod")
	r := launch(context.Background(), demoLauncher{Self: filepath.Join(t.TempDir(), "nightly"), Dir: filepath.Join(root, "staging")}, "-keep", "-v")
	if r.Code != 4 || r.Stdout != "demo built from the checkout: [-keep -v]\n" || !strings.Contains(r.Stderr, "go build ./examples/demo in "+root) {
		t.Errorf("exit %d, stdout %q, stderr %q; want the demo's exit 4 and its output", r.Code, r.Stdout, r.Stderr)
	}

	// The same checkout without go on PATH, and another module: no demo, exit 2.
	t.Setenv("PATH", t.TempDir())
	r = launch(context.Background(), demoLauncher{Self: "/usr/local/bin/nightly", Dir: root})
	if r.Code != 2 || r.Stdout != "" || !strings.Contains(r.Stderr, "go is not on PATH to build it from "+filepath.Join(root, "examples/demo")) {
		t.Errorf("no go: exit %d, stdout %q, stderr %q", r.Code, r.Stdout, r.Stderr)
	}
	t.Setenv("PATH", filepath.Dir(goTool))
	other := fakeCheckout(t, "example.org/other")
	r = launch(context.Background(), demoLauncher{Self: "/usr/local/bin/nightly", Dir: filepath.Join(other, "examples")})
	if r.Code != 2 || !strings.Contains(r.Stderr, "is not inside a checkout of "+modulePath) {
		t.Errorf("another module: exit %d, stderr %q", r.Code, r.Stderr)
	}
}

// TestDemoInThisCheckout runs the real demo as nightly -demo does in a checkout: built
// from ./examples/demo, one whole rebuild on throwaway servers.
func TestDemoInThisCheckout(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the whole demo")
	}
	pgtest.Require(t)
	if path, err := exec.LookPath(demoName); err == nil {
		t.Skipf("a demo program on PATH (%s) would run instead of this checkout's", path)
	}
	wd, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	r := launch(context.Background(), demoLauncher{Self: filepath.Join(t.TempDir(), "nightly"), Dir: wd})
	if r.Code != 0 || !strings.Contains(r.Stderr, "nightly: building the demo program (go build ./examples/demo in ") {
		t.Fatalf("exit %d\n%s\n%s", r.Code, r.Stdout, r.Stderr)
	}
	for _, want := range []string{
		"staging rebuild OK", "GET /+health\n    200 OK", "Subject: [staging-rebuild] staging rebuild OK", "== demo finished in ",
	} {
		if !strings.Contains(r.Stdout, want) {
			t.Errorf("demo output lacks %q:\n%s", want, r.Stdout)
		}
	}
}

func TestDemoMissing(t *testing.T) {
	t.Setenv("PATH", t.TempDir())
	dir := t.TempDir()
	t.Chdir(dir)
	r := invoke(context.Background(), "-demo")
	if r.Code != 2 || r.Stdout != "" || !strings.HasPrefix(r.Stderr, "nightly: -demo runs the demo program, and there is none") ||
		!strings.Contains(r.Stderr, dir+" is not inside a checkout of github.com/restage/restage") ||
		!strings.Contains(r.Stderr, "go install github.com/restage/restage/examples/demo@latest") {
		t.Errorf("exit %d, stdout %q, stderr:\n%s", r.Code, r.Stdout, r.Stderr)
	}
}

// TestDemoInterrupted: cancelling nightly's context interrupts the demo, which tears its
// world down and exits with its own status.
func TestDemoInterrupted(t *testing.T) {
	bin := t.TempDir()
	started := filepath.Join(bin, "started")
	writeDemo(t, bin, `trap 'kill $! 2>/dev/null; echo "torn down"; exit 5' INT
touch "`+started+`"
sleep 60 &
wait
echo "not interrupted"
`)
	t.Setenv("PATH", bin+string(os.PathListSeparator)+"/usr/bin:/bin") // and sleep
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() {
		for deadline := time.Now().Add(time.Minute); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
			if _, err := os.Stat(started); err == nil {
				break
			}
		}
		cancel()
	}()
	start := time.Now()
	r := launch(ctx, demoLauncher{Dir: t.TempDir()})
	if r.Code != 5 || r.Stdout != "torn down\n" || time.Since(start) > 30*time.Second {
		t.Errorf("exit %d, stdout %q after %s; want the demo's exit 5 after tearing down", r.Code, r.Stdout, time.Since(start))
	}
}

func TestModuleOf(t *testing.T) {
	for text, want := range map[string]string{
		"module github.com/restage/restage\n\ngo 1.26\n":      "github.com/restage/restage",
		"// comment\nmodule \"github.com/restage/restage\"\n": "github.com/restage/restage",
		"module\tgithub.com/restage/restage // c\n":           "github.com/restage/restage",
		"go 1.26\n":                       "",
		"modules x\nmodule example.org/m": "example.org/m",
	} {
		if got := moduleOf([]byte(text)); got != want {
			t.Errorf("moduleOf(%q) = %q, want %q", text, got, want)
		}
	}
}
