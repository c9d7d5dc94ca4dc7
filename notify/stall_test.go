package notify_test

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/restage/restage/notify"
)

// stallingSMTP is a real SMTP listener that talks normally up to one point of the
// session, then goes silent with the connection open: "greeting" (never greets), "ehlo"
// (no answer to EHLO), "rcpt" (no answer to RCPT TO), "data" (no answer after the
// message's final dot).
func stallingSMTP(t *testing.T, at string) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var conns []net.Conn
	t.Cleanup(func() {
		_ = l.Close()
		mu.Lock()
		defer mu.Unlock()
		for _, c := range conns {
			_ = c.Close()
		}
	})
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
			go func() {
				stall := func() { _, _ = io.Copy(io.Discard, c) } // silent until the client hangs up
				if at == "greeting" {
					stall()
					return
				}
				fmt.Fprint(c, "220 stall ESMTP\r\n")
				r := bufio.NewReader(c)
				inData := false
				for {
					line, err := r.ReadString('\n')
					if err != nil {
						return
					}
					if inData {
						if line == ".\r\n" {
							inData = false
							if at == "data" {
								stall()
								return
							}
							fmt.Fprint(c, "250 queued\r\n")
						}
						continue
					}
					verb := strings.ToUpper(strings.Fields(line + " x")[0])
					switch {
					case verb == "EHLO" && at == "ehlo", verb == "RCPT" && at == "rcpt":
						stall()
						return
					case verb == "EHLO":
						fmt.Fprint(c, "250-stall\r\n250 8BITMIME\r\n")
					case verb == "DATA":
						inData = true
						fmt.Fprint(c, "354 go on\r\n")
					case verb == "QUIT":
						fmt.Fprint(c, "221 bye\r\n")
						return
					default:
						fmt.Fprint(c, "250 ok\r\n")
					}
				}
			}()
		}
	}()
	return l.Addr().String()
}

// notifyWithin runs n.Notify with a ctx deadline of d and fails the test unless it
// returns an error matching context.DeadlineExceeded within d plus a few seconds. It
// gives up waiting after 20s, so that a notifier that hangs fails the test quickly.
func notifyWithin(t *testing.T, n notify.Notifier, d time.Duration) error {
	t.Helper()
	err := returnsWithin(t, n, d)
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Notify = %v, want an error matching context.DeadlineExceeded", err)
	}
	return err
}

// returnsWithin is notifyWithin without a requirement on the error.
func returnsWithin(t *testing.T, n notify.Notifier, d time.Duration) error {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), d)
	defer cancel()
	done := make(chan error, 1)
	start := time.Now()
	go func() { done <- n.Notify(ctx, testMessage("stalled")) }()
	select {
	case err := <-done:
		elapsed := time.Since(start)
		t.Logf("returned after %v: %v", elapsed.Round(time.Millisecond), err)
		if elapsed > d+3*time.Second {
			t.Errorf("Notify returned %v after its %v deadline", elapsed-d, d)
		}
		return err
	case <-time.After(20 * time.Second):
		t.Fatalf("Notify still runs 20s after its %v deadline", d)
		return nil
	}
}

// TestSMTPHonoursDeadlineWhereverTheServerStalls: whatever point of the session a server
// stops answering at, Notify returns by its ctx deadline (the notifier's own Timeout is
// an hour here).
func TestSMTPHonoursDeadlineWhereverTheServerStalls(t *testing.T) {
	for _, at := range []string{"greeting", "ehlo", "rcpt", "data"} {
		t.Run(at, func(t *testing.T) {
			t.Parallel()
			n := newSMTP(t, notify.SMTPConfig{Addr: stallingSMTP(t, at), TLS: notify.TLSNone, Timeout: time.Hour})
			notifyWithin(t, n, 500*time.Millisecond)
		})
	}
}

// TestWebhookHonoursDeadline: a webhook that accepts the request and never answers, or
// answers with headers and then never sends the rest of its body, makes Notify return by
// its ctx deadline (the notifier's own Timeout is an hour here). With no answer the error
// matches context.DeadlineExceeded; a status that came in decides the outcome (2xx:
// delivered, the rest of the body is not waited for).
func TestWebhookHonoursDeadline(t *testing.T) {
	for _, tc := range []struct {
		name   string
		status int
	}{{"no answer", 0}, {"2xx body stalls", http.StatusOK}, {"5xx body stalls", http.StatusBadGateway}} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			release := make(chan struct{})
			l, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				if tc.status != 0 {
					w.Header().Set("Content-Length", "100000")
					w.WriteHeader(tc.status)
					_, _ = w.Write([]byte("partial"))
					w.(http.Flusher).Flush()
				}
				select {
				case <-release:
				case <-r.Context().Done():
				}
			})}
			go func() { _ = srv.Serve(l) }()
			t.Cleanup(func() { close(release); _ = srv.Close() })
			n := newWebhook(t, notify.WebhookConfig{URL: "http://" + l.Addr().String() + "/hook", Timeout: time.Hour})
			if tc.status == 0 {
				notifyWithin(t, n, 500*time.Millisecond)
				return
			}
			err = returnsWithin(t, n, 500*time.Millisecond)
			if (tc.status < 300) != (err == nil) {
				t.Errorf("HTTP %d then a stalled body: Notify = %v", tc.status, err)
			}
		})
	}
}

// blockingWriter blocks every Write until released (a pipe nobody reads).
type blockingWriter struct{ release chan struct{} }

func (b blockingWriter) Write(p []byte) (int, error) { <-b.release; return len(p), nil }

// TestWriterHonoursDeadline: a Writer whose Out blocks (a full pipe nobody reads) returns
// by its ctx deadline, and so does the next Notify waiting behind the blocked one.
func TestWriterHonoursDeadline(t *testing.T) {
	bw := blockingWriter{release: make(chan struct{})}
	t.Cleanup(func() { close(bw.release) })
	w, err := notify.NewWriter(notify.WriterConfig{Out: bw})
	if err != nil {
		t.Fatal(err)
	}
	notifyWithin(t, w, 300*time.Millisecond)
	notifyWithin(t, w, 300*time.Millisecond) // waits for the first write's turn
}

// TestSpoolFlushHonoursDeadline: spooled reports for a target that hangs (an SMTP server
// that never answers after EHLO): Flush with a deadline returns by it, and the reports stay
// spooled. The staging package bounds its flush this way.
func TestSpoolFlushHonoursDeadline(t *testing.T) {
	addr := stallingSMTP(t, "ehlo")
	n := newSMTP(t, notify.SMTPConfig{Addr: addr, TLS: notify.TLSNone, Timeout: time.Hour})
	sp := newSpool(t, t.TempDir(), funcNotifier(func(context.Context, *notify.Message) error {
		return errors.New("connection refused")
	}))
	dir := sp.Dir()
	for _, id := range []string{"a", "b", "c"} {
		if err := sp.Notify(t.Context(), testMessage(id)); !errors.Is(err, notify.ErrSpooled) {
			t.Fatal(err)
		}
	}
	sp = newSpool(t, dir, n)
	ctx, cancel := context.WithTimeout(t.Context(), 500*time.Millisecond)
	defer cancel()
	done := make(chan error, 1)
	start := time.Now()
	go func() { done <- sp.Flush(ctx) }()
	select {
	case err := <-done:
		t.Logf("Flush returned after %v: %v", time.Since(start).Round(time.Millisecond), err)
		if time.Since(start) > 4*time.Second || !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("Flush = %v after %v", err, time.Since(start))
		}
	case <-time.After(20 * time.Second):
		t.Fatal("Flush still runs 20s after its deadline")
	}
	if got := pendingIDs(t, sp); len(got) != 3 {
		t.Fatalf("pending %v, want all three still spooled", got)
	}
}
