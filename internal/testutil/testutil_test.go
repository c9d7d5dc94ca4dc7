package testutil

import (
	"context"
	"errors"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"testing"
	"time"
)

// recorder is a testing.TB that records failures and skips instead of failing or
// skipping t; Fatal and Skip end the goroutine, as testing's do.
type recorder struct {
	testing.TB
	failed, skipped bool
}

// record runs check with a recorder, in a goroutine of its own, and returns the
// recorder once check returns or ends its goroutine.
func record(t *testing.T, check func(tb testing.TB)) *recorder {
	r := &recorder{TB: t}
	done := make(chan struct{})
	go func() {
		defer close(done)
		check(r)
	}()
	<-done
	return r
}

func (r *recorder) Skipf(string, ...any) {
	r.skipped = true
	runtime.Goexit()
}

func (r *recorder) Helper()               {}
func (r *recorder) Errorf(string, ...any) { r.failed = true }
func (r *recorder) Fatalf(string, ...any) {
	r.failed = true
	runtime.Goexit()
}
func (r *recorder) Fatal(...any) {
	r.failed = true
	runtime.Goexit()
}

func TestRequireMode(t *testing.T) {
	path := filepath.Join(t.TempDir(), "f")
	if err := os.WriteFile(path, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(path, 0o640); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		path     string
		want     os.FileMode
		wantFail bool
	}{
		{path, 0o640, false},
		{path, 0o600, true},
		{path + ".missing", 0o600, true},
	} {
		r := record(t, func(tb testing.TB) { RequireMode(tb, tc.path, tc.want) })
		if r.failed != tc.wantFail {
			t.Errorf("RequireMode(%s, %v): failed %v, want %v", tc.path, tc.want, r.failed, tc.wantFail)
		}
	}
}

// TestFreeAddr: nothing listens on the address, and it can be listened on.
func TestFreeAddr(t *testing.T) {
	addr := FreeAddr(t)
	if c, err := net.Dial("tcp", addr); err == nil {
		c.Close()
		t.Fatalf("something listens on %s", addr)
	}
	l, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	l.Close()
}

// TestDeps: this package links testing and net, and is the last of its list.
func TestDeps(t *testing.T) {
	const pkg = "github.com/restage/restage/internal/testutil"
	deps := Deps(t, pkg)
	if !slices.Contains(deps, "testing") || !slices.Contains(deps, "net") || deps[len(deps)-1] != pkg {
		t.Errorf("Deps(%s) = %v", pkg, deps)
	}
}

func TestRequireErrorContains(t *testing.T) {
	for _, tc := range []struct {
		err      error
		parts    []string
		wantFail bool
	}{
		{errors.New("pidfile /run/app.pid: is a symbolic link"), []string{"pidfile", "symbolic link"}, false},
		{errors.New("pidfile /run/app.pid: is a symbolic link"), []string{"pidfile", "FIFO"}, true},
		{nil, nil, true},
	} {
		r := record(t, func(tb testing.TB) { RequireErrorContains(tb, tc.err, tc.parts...) })
		if r.failed != tc.wantFail {
			t.Errorf("RequireErrorContains(%v, %q): failed %v, want %v", tc.err, tc.parts, r.failed, tc.wantFail)
		}
	}
}

// TestHangingServer: a request gets no answer until the client gives up.
func TestHangingServer(t *testing.T) {
	url := HangingServer(t)
	ctx, cancel := context.WithTimeout(t.Context(), 200*time.Millisecond)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err == nil {
		resp.Body.Close()
		t.Fatalf("an answer: %s", resp.Status)
	}
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("err %v, want the client's deadline", err)
	}
}

// closer counts its Close calls; the ones listed in fail return an error.
type closer struct {
	calls int
	fail  map[int]bool
}

func (c *closer) Close() error {
	c.calls++
	if c.fail[c.calls] {
		return errors.New("close failed")
	}
	return nil
}

func TestRequireCloseTwice(t *testing.T) {
	for _, tc := range []struct {
		name                  string
		v                     any
		wantFail, wantSkipped bool
	}{
		{"idempotent", &closer{}, false, false},
		{"first Close fails", &closer{fail: map[int]bool{1: true}}, true, false},
		{"second Close fails", &closer{fail: map[int]bool{2: true}}, true, false},
		{"no Close", struct{}{}, false, true},
	} {
		r := record(t, func(tb testing.TB) { RequireCloseTwice(tb, tc.v) })
		if r.failed != tc.wantFail || r.skipped != tc.wantSkipped {
			t.Errorf("%s: failed %v skipped %v, want %v %v", tc.name, r.failed, r.skipped, tc.wantFail, tc.wantSkipped)
		}
	}
}

func TestWriteTemp(t *testing.T) {
	p := WriteTemp(t, "a.toml", "x = 1\n")
	if filepath.Base(p) != "a.toml" {
		t.Errorf("path %s", p)
	}
	if b, err := os.ReadFile(p); err != nil || string(b) != "x = 1\n" {
		t.Errorf("read back %q, %v", b, err)
	}
}
