package notify_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"mime/multipart"
	"mime/quotedprintable"
	"net/http"
	"net/http/httptest"
	"net/mail"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/restage/restage/notify"
)

// report is what a receiver got, decoded back from whatever the notifier sent.
type report struct {
	Subject string
	Topic   string // Keywords header, webhook topic field, Writer's Topic line
	Status  string
	Body    string
	LogName string
	Log     []byte // nil where the notifier does not carry the log
}

// harness is one Notifier under test and a way to read what its receiver got.
type harness struct {
	N        notify.Notifier
	Received func(t testing.TB) []report
	HasLog   bool // the receiver gets the log itself
}

// testMessage returns a report with every field set.
func testMessage(id string) *notify.Message {
	return &notify.Message{
		ID:          id,
		Environment: "staging",
		Topic:       "staging-rebuild",
		Status:      notify.StatusFailed,
		Subject:     "staging rebuild failed at step restore",
		Body:        "Step restore failed: pg_restore exited 1.\nStaging was left as it was.\nÄrger mit Umlauten, 100% sicher.\n",
		Log:         []byte("20:00 start\n20:01 restore\npg_restore: error: could not connect\n"),
		LogName:     "staging-20261125.log",
		Time:        time.Date(2026, 11, 25, 20, 0, 0, 0, time.UTC),
	}
}

// waitFor polls cond until it holds, failing after a generous deadline.
func waitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// testNotifier is the shared suite every Notifier implementation runs (house style 7).
func testNotifier(t *testing.T, newHarness func(t *testing.T) harness) {
	t.Run("delivers", func(t *testing.T) {
		h := newHarness(t)
		m := testMessage("suite-1")
		if err := h.N.Notify(t.Context(), m); err != nil {
			t.Fatalf("Notify: %v", err)
		}
		var got []report
		waitFor(t, "one report", func() bool { got = h.Received(t); return len(got) >= 1 })
		if len(got) != 1 {
			t.Fatalf("received %d reports, want 1", len(got))
		}
		r := got[0]
		if want := "[staging-rebuild] FAILED: staging rebuild failed at step restore"; r.Subject != want {
			t.Errorf("subject %q, want %q", r.Subject, want)
		}
		if r.Topic != "staging-rebuild" {
			t.Errorf("topic %q", r.Topic)
		}
		if r.Status != "failed" {
			t.Errorf("status %q", r.Status)
		}
		if r.Body != m.Body {
			t.Errorf("body %q, want %q", r.Body, m.Body)
		}
		if r.LogName != m.LogName {
			t.Errorf("log name %q, want %q", r.LogName, m.LogName)
		}
		if h.HasLog && !bytes.Equal(r.Log, m.Log) {
			t.Errorf("log %q, want %q", r.Log, m.Log)
		}
	})
	t.Run("ok status and no log", func(t *testing.T) {
		h := newHarness(t)
		m := &notify.Message{ID: "suite-ok", Environment: "staging", Topic: "staging-rebuild",
			Status: notify.StatusOK, Subject: "staging rebuilt", Body: "all good\n", Time: time.Now()}
		if err := h.N.Notify(t.Context(), m); err != nil {
			t.Fatalf("Notify: %v", err)
		}
		var got []report
		waitFor(t, "one report", func() bool { got = h.Received(t); return len(got) >= 1 })
		if got[0].Subject != "[staging-rebuild] staging rebuilt" || got[0].Status != "ok" {
			t.Errorf("got %+v", got[0])
		}
		if got[0].LogName != "" || len(got[0].Log) != 0 {
			t.Errorf("unexpected log %q %q", got[0].LogName, got[0].Log)
		}
	})
	t.Run("nil message", func(t *testing.T) {
		h := newHarness(t)
		if err := h.N.Notify(t.Context(), nil); !errors.Is(err, notify.ErrInvalidMessage) {
			t.Fatalf("Notify(nil) = %v, want ErrInvalidMessage", err)
		}
	})
	t.Run("concurrent", func(t *testing.T) {
		h := newHarness(t)
		const n = 8
		var wg sync.WaitGroup
		errs := make(chan error, n)
		for i := range n {
			wg.Go(func() {
				m := testMessage(fmt.Sprintf("concurrent-%d", i))
				m.Subject = fmt.Sprintf("report %d", i)
				errs <- h.N.Notify(t.Context(), m)
			})
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			if err != nil {
				t.Fatalf("Notify: %v", err)
			}
		}
		var got []report
		waitFor(t, "all reports", func() bool { got = h.Received(t); return len(got) >= n })
		seen := map[string]bool{}
		for _, r := range got {
			seen[r.Subject] = true
		}
		for i := range n {
			if s := fmt.Sprintf("[staging-rebuild] FAILED: report %d", i); !seen[s] {
				t.Errorf("missing %q (got %d reports)", s, len(got))
			}
		}
		if len(got) != n {
			t.Errorf("received %d reports, want %d", len(got), n)
		}
	})
	t.Run("cancelled context", func(t *testing.T) {
		h := newHarness(t)
		ctx, cancel := context.WithCancel(t.Context())
		cancel()
		if err := h.N.Notify(ctx, testMessage("cancelled")); err == nil {
			t.Fatal("Notify with a cancelled context succeeded")
		}
	})
}

// --- decoding what receivers got ---

func parseMail(t testing.TB, data []byte) report {
	t.Helper()
	msg, err := mail.ReadMessage(bytes.NewReader(data))
	if err != nil {
		t.Fatalf("parse mail: %v\n%s", err, data)
	}
	var dec mime.WordDecoder
	subject, err := dec.DecodeHeader(msg.Header.Get("Subject"))
	if err != nil {
		t.Fatalf("decode subject: %v", err)
	}
	r := report{Subject: subject, Topic: msg.Header.Get("Keywords"), Status: msg.Header.Get("X-Restage-Status")}
	mt, params, err := mime.ParseMediaType(msg.Header.Get("Content-Type"))
	if err != nil {
		t.Fatalf("content type: %v", err)
	}
	if !strings.HasPrefix(mt, "multipart/") {
		if mt != "text/plain" {
			t.Errorf("body content type %q", mt)
		}
		r.Body = decodePart(t, msg.Header.Get("Content-Transfer-Encoding"), msg.Body)
		return r
	}
	mr := multipart.NewReader(msg.Body, params["boundary"])
	for {
		p, err := mr.NextPart()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatalf("next part: %v", err)
		}
		pt, _, _ := mime.ParseMediaType(p.Header.Get("Content-Type"))
		if pt != "text/plain" {
			t.Errorf("part content type %q, want text/plain", pt)
		}
		disp, dparams, _ := mime.ParseMediaType(p.Header.Get("Content-Disposition"))
		content := decodePart(t, p.Header.Get("Content-Transfer-Encoding"), p)
		if disp == "attachment" {
			r.LogName = dparams["filename"]
			r.Log = []byte(content)
		} else {
			r.Body = content
		}
	}
	return r
}

func decodePart(t testing.TB, cte string, body io.Reader) string {
	t.Helper()
	var rd io.Reader = body
	switch strings.ToLower(cte) {
	case "base64":
		rd = base64.NewDecoder(base64.StdEncoding, body)
	case "quoted-printable":
		rd = quotedprintable.NewReader(body)
	}
	b, err := io.ReadAll(rd)
	if err != nil {
		t.Fatalf("decode %s: %v", cte, err)
	}
	return strings.ReplaceAll(string(b), "\r\n", "\n")
}

// webhookServer is a real HTTP server recording the payloads it was posted.
type webhookServer struct {
	*httptest.Server
	mu       sync.Mutex
	payloads []notify.WebhookPayload
	headers  []http.Header
	status   int // answer; 0: 200
	answer   string
}

func startWebhook(t testing.TB) *webhookServer {
	t.Helper()
	ws := &webhookServer{}
	ws.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var p notify.WebhookPayload
		if r.Method != http.MethodPost || r.Header.Get("Content-Type") != "application/json" {
			http.Error(w, "want a JSON POST", http.StatusBadRequest)
			return
		}
		if err := json.NewDecoder(r.Body).Decode(&p); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		ws.mu.Lock()
		status, answer := ws.status, ws.answer
		if status == 0 || status/100 == 2 {
			ws.payloads = append(ws.payloads, p)
			ws.headers = append(ws.headers, r.Header.Clone())
		}
		ws.mu.Unlock()
		if status == 0 {
			status = http.StatusOK
		}
		w.WriteHeader(status)
		_, _ = io.WriteString(w, answer)
	}))
	t.Cleanup(ws.Close)
	return ws
}

func (ws *webhookServer) set(status int, answer string) {
	ws.mu.Lock()
	defer ws.mu.Unlock()
	ws.status, ws.answer = status, answer
}

func (ws *webhookServer) Payloads() []notify.WebhookPayload {
	ws.mu.Lock()
	defer ws.mu.Unlock()
	return append([]notify.WebhookPayload(nil), ws.payloads...)
}

func (ws *webhookServer) reports(testing.TB) []report {
	var out []report
	for _, p := range ws.Payloads() {
		out = append(out, report{Subject: p.Subject, Topic: p.Topic, Status: string(p.Status),
			Body: p.Body, LogName: p.LogName})
	}
	return out
}

// syncBuffer is a bytes.Buffer safe for concurrent use.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// parseWriterOutput splits Writer output into reports.
func parseWriterOutput(t testing.TB, out string) []report {
	t.Helper()
	sep := strings.Repeat("-", 72) + "\n"
	var reps []report
	for _, chunk := range strings.Split(out, sep) {
		if chunk == "" {
			continue
		}
		var r report
		head, body, ok := strings.Cut(chunk, "\n\n")
		if !ok {
			t.Fatalf("no blank line in writer output %q", chunk)
		}
		sc := bufio.NewScanner(strings.NewReader(head))
		for sc.Scan() {
			k, v, _ := strings.Cut(sc.Text(), ": ")
			switch k {
			case "Subject":
				r.Subject = v
			case "Topic":
				r.Topic = v
			case "Status":
				r.Status = v
			case "Log":
				r.LogName, _, _ = strings.Cut(v, " (")
			}
		}
		if r.LogName != "" {
			if b, l, ok := strings.Cut(body, "\n--- "+r.LogName+" ---\n"); ok {
				body, r.Log = b, []byte(l)
			}
		}
		r.Body = body
		reps = append(reps, r)
	}
	return reps
}
