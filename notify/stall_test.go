package notify_test

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/restage/restage/notify"
	"github.com/restage/restage/notify/notifytest"
)

// stallingSMTP is a real SMTP listener that talks normally up to one point of the
// session, then goes silent with the connection open: "greeting" (never greets), "ehlo"
// (no answer to EHLO), "rcpt" (no answer to RCPT TO), "data" (no answer after the
// message's final dot).
func stallingSMTP(t *testing.T, at string) string {
	t.Helper()
	return serveTCP(t, func(c net.Conn) {
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
	})
}

// notifyWithin is notifytest.NotifyWithin that also wants an error matching
// context.DeadlineExceeded.
func notifyWithin(t *testing.T, n notify.Notifier, d time.Duration) {
	t.Helper()
	if err := notifytest.NotifyWithin(t, n, d); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Notify = %v, want an error matching context.DeadlineExceeded", err)
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

// stallingHTTP is an HTTP server that accepts every request and never finishes its
// answer: with status 0 it sends nothing, else the status line and headers of a
// 100000-byte body, then only "partial". It returns a URL for it.
func stallingHTTP(t *testing.T, status int) string {
	t.Helper()
	release := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if status != 0 {
			w.Header().Set("Content-Length", "100000")
			w.WriteHeader(status)
			_, _ = w.Write([]byte("partial"))
			w.(http.Flusher).Flush()
		}
		select {
		case <-release:
		case <-r.Context().Done():
		}
	}))
	t.Cleanup(func() { close(release); srv.Close() })
	return srv.URL + "/hook"
}

// TestWebhookHonoursDeadlineWhenTheBodyStalls: a webhook that answers with headers and
// then never sends the rest of its body makes Notify return by its ctx deadline (the
// notifier's own Timeout is an hour here); the status decides the outcome (2xx:
// delivered, the rest of the body is not waited for). The conformance suite checks a
// webhook that never answers at all.
func TestWebhookHonoursDeadlineWhenTheBodyStalls(t *testing.T) {
	for _, status := range []int{http.StatusOK, http.StatusBadGateway} {
		t.Run(http.StatusText(status), func(t *testing.T) {
			t.Parallel()
			n := newWebhook(t, notify.WebhookConfig{URL: stallingHTTP(t, status), Timeout: time.Hour})
			err := notifytest.NotifyWithin(t, n, 500*time.Millisecond)
			if (status < 300) != (err == nil) {
				t.Errorf("HTTP %d then a stalled body: Notify = %v", status, err)
			}
		})
	}
}

// blockingWriter blocks every Write until released (a pipe nobody reads).
type blockingWriter struct{ release chan struct{} }

func (b blockingWriter) Write(p []byte) (int, error) { <-b.release; return len(p), nil }

// TestWriterHonoursDeadlineBehindABlockedWrite: a Writer whose Out blocks (a full pipe
// nobody reads) returns by its ctx deadline (as the conformance suite checks), and so does
// the next Notify waiting behind the blocked one.
func TestWriterHonoursDeadlineBehindABlockedWrite(t *testing.T) {
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
	sp := newSpool(t, t.TempDir(), &notifytest.Fake{NotifyFunc: func(context.Context, *notify.Message) error {
		return errors.New("connection refused")
	}})
	dir := sp.Dir()
	for _, id := range []string{"a", "b", "c"} {
		if err := sp.Notify(t.Context(), notifytest.Message(id)); !errors.Is(err, notify.ErrSpooled) {
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
