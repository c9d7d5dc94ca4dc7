package svcctl

import (
	"bytes"
	"context"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/restage/restage/internal/testutil"
)

func TestHTTPCheckBecomesHealthy(t *testing.T) {
	t.Parallel()
	var n atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if n.Add(1) <= 3 {
			http.Error(w, "warming up", http.StatusServiceUnavailable)
			return
		}
		w.Write([]byte("ok"))
	}))
	defer srv.Close()
	if err := (HTTPCheck{URL: srv.URL, Backoff: 10 * time.Millisecond}).Wait(t.Context()); err != nil {
		t.Fatal(err)
	}
	if got := n.Load(); got != 4 {
		t.Fatalf("%d requests, want 4", got)
	}
}

// A service that takes part of a second to start is polled at the first pause all along,
// not after pauses doubled past its start: with doubling from 25ms, a service up at
// 400ms would be tried at 0, 25, 75, 175, 375 and 775ms (6 tries, seen 375ms late).
func TestHTTPCheckPollsSteadilyInTheFirstSecond(t *testing.T) {
	t.Parallel()
	var n atomic.Int32
	up := time.Now().Add(400 * time.Millisecond)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n.Add(1)
		if time.Now().Before(up) {
			http.Error(w, "starting", http.StatusServiceUnavailable)
			return
		}
		w.Write([]byte("ok"))
	}))
	defer srv.Close()
	if err := (HTTPCheck{URL: srv.URL}).Wait(t.Context()); err != nil {
		t.Fatal(err)
	}
	if got := n.Load(); got < 10 {
		t.Fatalf("%d tries in the first 400ms, want one every 25ms (at least 10)", got)
	}
}

func TestHTTPCheckNeverHealthy(t *testing.T) {
	t.Parallel()
	long := strings.Repeat("x", 5000)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, "database   is\n\tstill starting up "+long, http.StatusBadGateway)
	}))
	defer srv.Close()
	err := (HTTPCheck{URL: srv.URL + "/+health", Timeout: 3 * time.Second}).Wait(t.Context())
	requireIs(t, err, ErrUnhealthy)
	testutil.RequireErrorContains(t, err, srv.URL+"/+health", "502 Bad Gateway", "database is still starting up")
	if len(err.Error()) > 600 {
		t.Fatalf("error quotes too much of the body (%d bytes): %v", len(err.Error()), err)
	}
}

func TestHTTPCheckNoAnswer(t *testing.T) {
	t.Parallel()
	t.Run("connection refused", func(t *testing.T) {
		t.Parallel()
		url := "http://" + testutil.FreeAddr(t) + "/health"
		err := (HTTPCheck{URL: url, Timeout: time.Second}).Wait(t.Context())
		requireIs(t, err, ErrUnhealthy)
		testutil.RequireErrorContains(t, err, url, "connection refused")
	})
	t.Run("hangs", func(t *testing.T) {
		t.Parallel()
		err := (HTTPCheck{URL: testutil.HangingServer(t), Timeout: 2 * time.Second, PerTry: 300 * time.Millisecond}).Wait(t.Context())
		requireIs(t, err, ErrUnhealthy)
		testutil.RequireErrorContains(t, err, "no answer within 300ms")
	})
	t.Run("caller cancels", func(t *testing.T) {
		t.Parallel()
		ctx, cancel := context.WithCancel(t.Context())
		cancel()
		err := (HTTPCheck{URL: "http://" + testutil.FreeAddr(t) + "/"}).Wait(ctx)
		requireIs(t, err, ErrUnhealthy)
		requireIs(t, err, context.Canceled)
	})
}

func TestHTTPCheckBadURL(t *testing.T) {
	t.Parallel()
	for _, u := range []string{"", "127.0.0.1:8080/health", "ftp://host/x", "http://"} {
		err := (HTTPCheck{URL: u}).Wait(t.Context())
		if err == nil || !strings.Contains(err.Error(), "URL") {
			t.Fatalf("URL %q: got %v", u, err)
		}
		if err := (HTTPCheck{URL: u}).Validate(); err == nil {
			t.Fatalf("Validate accepted URL %q", u)
		}
	}
	if err := (HTTPCheck{URL: "http://127.0.0.1:8080/+health", Timeout: -time.Second}).Validate(); err == nil {
		t.Fatal("negative timeout accepted")
	}
	if err := (HTTPCheck{URL: "http://127.0.0.1:8080/+health"}).Validate(); err != nil {
		t.Fatal(err)
	}
}

// TestHTTPCheckHidesURLCredentials: a health URL's password or token appears in no error
// or log line (internal/redact; url.URL.Redacted shows a token alone, %q showed it all).
func TestHTTPCheckHidesURLCredentials(t *testing.T) {
	t.Parallel()
	var logs bytes.Buffer // Wait logs from the caller's goroutine only
	log := slog.New(slog.NewTextHandler(&logs, nil))
	dead := testutil.FreeAddr(t)
	for _, u := range []string{
		"http://tok-Secret1@" + dead + "/health",
		"https://:pw-Secret1@" + dead + "/health",
		"http://user:pw-Secret1@" + dead + "/health",
		"ftp://user:pw-Secret1@" + dead + "/health",        // refused by Validate
		"http://user:pw-Secret1@127.0.0.1:notaport/health", // refused by Validate
	} {
		err := HTTPCheck{URL: u, Timeout: 300 * time.Millisecond, Backoff: 50 * time.Millisecond, Logger: log}.Wait(t.Context())
		if err == nil {
			t.Fatalf("%s answered", u)
		}
		if strings.Contains(err.Error(), "Secret1") {
			t.Errorf("error shows the credential: %v", err)
		}
	}
	if strings.Contains(logs.String(), "Secret1") {
		t.Errorf("logs show the credential:\n%s", logs.String())
	}
}
