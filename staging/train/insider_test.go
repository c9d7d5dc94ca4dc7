package train_test

import (
	"errors"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/restage/restage/internal/gittest"
	"github.com/restage/restage/staging"
	"github.com/restage/restage/staging/train"
)

// The check runs devel's code. Run as check_user, it cannot reach the scratch clone the
// train pushes from with the repository's credentials: here devel's check points that
// clone's http.proxy at a proxy of its own, which, were the config written, would see
// the push's Authorization header (the token that may push to staging).
func TestCutCheckCannotReachThePush(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("check_user needs root")
	}
	r := newRepo(t)
	const token = "s3cr3t-t0ken-proxy"
	url := gittest.ServeHTTP(t, filepath.Dir(r.bare), "x-token", token)
	gitIn(t, r.bare, "config", "http.receivepack", "true")
	var mu sync.Mutex
	var seen []string
	proxy := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		mu.Lock()
		seen = append(seen, req.Method+" "+req.URL.String()+" "+req.Header.Get("Authorization"))
		mu.Unlock()
		req.RequestURI = ""
		resp, err := http.DefaultTransport.RoundTrip(req)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadGateway)
			return
		}
		defer resp.Body.Close()
		for k, v := range resp.Header {
			w.Header()[k] = v
		}
		w.WriteHeader(resp.StatusCode)
		buf := make([]byte, 32<<10)
		for {
			n, err := resp.Body.Read(buf)
			w.Write(buf[:n])
			if err != nil {
				return
			}
		}
	}))
	defer proxy.Close()
	r.on("devel")
	r.commit("check", "#!/bin/sh\nid -un\nfor d in \"${TMPDIR:-/tmp}\"/restage-cut-*; do git -C \"$d\" config http.proxy "+proxy.URL+
		" && echo rewired \"$d\"; done\nexit 0\n", "a check that reaches for the push")
	r.git("push", "-q", "origin", "devel")
	scratch := t.TempDir()
	if err := os.Chmod(scratch, 0o777|os.ModeSticky); err != nil { // a TMPDIR as /tmp is
		t.Fatal(err)
	}
	if err := os.Chmod(filepath.Dir(scratch), 0o711); err != nil { // t.TempDir's own folder
		t.Fatal(err)
	}
	t.Setenv("TMPDIR", scratch)
	remote := strings.Replace(url, "://", "://x-token:"+token+"@", 1) + "/bugs.git"
	rep, err := cut(t, &train.Config{Repo: remote, Check: []string{"./check"}, CheckUser: "nobody"})
	mu.Lock()
	defer mu.Unlock()
	for _, s := range seen {
		if strings.Contains(s, "Basic") {
			t.Errorf("devel's check sent the push through its proxy, with the credentials: %s", s)
		}
	}
	if err != nil {
		t.Fatalf("cut: %v\n%s", err, rep.Text())
	}
	if rep.Check == nil || !strings.HasPrefix(rep.Check.Output, "nobody\n") || strings.Contains(rep.Check.Output, "rewired") {
		t.Errorf("the check did not run as nobody, or wrote the scratch clone's config:\n%+v", rep.Check)
	}
}

// An unknown check_user is a config error naming the key.
func TestCheckUserUnknown(t *testing.T) {
	_, err := train.Open(&train.Config{Repo: "/srv/git/x", Check: []string{"true"}, CheckUser: "no-such-user-restage"}, train.Options{Logger: discard()})
	if !errors.Is(err, staging.ErrConfig) || !strings.Contains(err.Error(), "check_user") {
		t.Errorf("an unknown check_user: %v", err)
	}
}
