package notify_test

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"io"
	"mime"
	"mime/multipart"
	"mime/quotedprintable"
	"net"
	"net/http"
	"net/http/httptest"
	"net/mail"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/restage/restage/notify"
	"github.com/restage/restage/notify/notifytest"
)

// Receivers of the notifiers under test, and the decoding of what they got back into
// notifytest.Reports.

// parseMail decodes a mail a notifier sent.
func parseMail(t testing.TB, data []byte) notifytest.Report {
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
	r := notifytest.Report{ID: msg.Header.Get("X-Restage-Report-ID"), Subject: subject,
		Topic: msg.Header.Get("Keywords"), Status: msg.Header.Get("X-Restage-Status")}
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

// decodePart reads a body or part in its transfer encoding, with LF line ends.
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

// startWebhook starts a webhookServer answering 200.
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

// set makes the server answer status with answer from now on; a non-2xx answer is not
// recorded as received.
func (ws *webhookServer) set(status int, answer string) {
	ws.mu.Lock()
	defer ws.mu.Unlock()
	ws.status, ws.answer = status, answer
}

// Payloads returns what the server recorded.
func (ws *webhookServer) Payloads() []notify.WebhookPayload {
	ws.mu.Lock()
	defer ws.mu.Unlock()
	return append([]notify.WebhookPayload(nil), ws.payloads...)
}

// reports returns what the server recorded as reports (a webhook does not carry the log).
func (ws *webhookServer) reports(testing.TB) []notifytest.Report {
	var out []notifytest.Report
	for _, p := range ws.Payloads() {
		out = append(out, notifytest.Report{ID: p.ID, Subject: p.Subject, Topic: p.Topic,
			Status: string(p.Status), Body: p.Body, LogName: p.LogName})
	}
	return out
}

// parseWriterOutput splits Writer output into reports.
func parseWriterOutput(t testing.TB, out string) []notifytest.Report {
	t.Helper()
	sep := strings.Repeat("-", 72) + "\n"
	var reps []notifytest.Report
	for _, chunk := range strings.Split(out, sep) {
		if chunk == "" {
			continue
		}
		head, body, ok := strings.Cut(chunk, "\n\n")
		if !ok {
			t.Fatalf("no blank line in writer output %q", chunk)
		}
		h := map[string]string{}
		for _, line := range strings.Split(head, "\n") {
			k, v, _ := strings.Cut(line, ": ")
			h[k] = v
		}
		r := notifytest.Report{ID: h["ID"], Subject: h["Subject"], Topic: h["Topic"], Status: h["Status"]}
		r.LogName, _, _ = strings.Cut(h["Log"], " (")
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

// serveTCP accepts connections on a loopback port and runs handle on each in its own
// goroutine; the listener and every connection are closed when the test ends. It
// returns the address.
func serveTCP(t testing.TB, handle func(c net.Conn)) string {
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
				defer c.Close()
				handle(c)
			}()
		}
	}()
	return l.Addr().String()
}

// fileWriter returns a Writer notifier that writes to a file (read back while reports
// are being written, which a bytes.Buffer would not allow), and what the file holds, as
// reports.
func fileWriter(t testing.TB, includeLog bool) (*notify.Writer, func(testing.TB) []notifytest.Report) {
	t.Helper()
	f, err := os.Create(filepath.Join(t.TempDir(), "reports.txt"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = f.Close() })
	w, err := notify.NewWriter(notify.WriterConfig{Out: f, IncludeLog: includeLog})
	if err != nil {
		t.Fatal(err)
	}
	return w, func(t testing.TB) []notifytest.Report {
		b, err := os.ReadFile(f.Name())
		if err != nil {
			t.Fatal(err)
		}
		return parseWriterOutput(t, string(b))
	}
}
