package notify_test

import (
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/restage/restage/internal/testutil"
	"github.com/restage/restage/notify"
	"github.com/restage/restage/notify/notifytest"
)

func newWebhook(t testing.TB, cfg notify.WebhookConfig) *notify.Webhook {
	t.Helper()
	n, err := notify.NewWebhook(cfg)
	if err != nil {
		t.Fatalf("NewWebhook: %v", err)
	}
	return n
}

// webhookFixture is the conformance fixture of Webhook.
func webhookFixture() notifytest.Fixture {
	return notifytest.Fixture{
		New: func(t *testing.T) notifytest.Setup {
			ws := startWebhook(t)
			return notifytest.Setup{Notifier: newWebhook(t, notify.WebhookConfig{URL: ws.URL + "/hooks/abc"}),
				Received: ws.reports}
		},
		Dead: func(t *testing.T) notify.Notifier {
			return newWebhook(t, notify.WebhookConfig{URL: deadURL(t)})
		},
		Stalled: func(t *testing.T) notify.Notifier {
			return newWebhook(t, notify.WebhookConfig{URL: stallingHTTP(t, 0), Timeout: time.Hour})
		},
		Rejecting: func(t *testing.T) notify.Notifier {
			ws := startWebhook(t)
			ws.set(http.StatusUnprocessableEntity, "payload refused")
			return newWebhook(t, notify.WebhookConfig{URL: ws.URL})
		},
	}
}

func TestWebhookConformance(t *testing.T) {
	notifytest.Notifier(t, webhookFixture())
}

func TestWebhookPayloadAndHeaders(t *testing.T) {
	ws := startWebhook(t)
	n := newWebhook(t, notify.WebhookConfig{URL: ws.URL + "/hooks/abc",
		Headers: http.Header{"Authorization": {"Bearer tok-123"}}})
	m := notifytest.Message("wh-1")
	if err := n.Notify(t.Context(), m); err != nil {
		t.Fatalf("Notify: %v", err)
	}
	ps := ws.Payloads()
	if len(ps) != 1 {
		t.Fatalf("got %d payloads", len(ps))
	}
	p := ps[0]
	if !strings.HasPrefix(p.Text, "[staging-rebuild] FAILED: staging rebuild failed at step restore\n\n") ||
		!strings.Contains(p.Text, "pg_restore exited 1") {
		t.Errorf("text %q", p.Text)
	}
	if p.ID != "wh-1" || p.Environment != "staging" || p.Topic != "staging-rebuild" ||
		p.Status != notify.StatusFailed || p.Body != m.Body || !p.Time.Equal(m.Time) {
		t.Errorf("payload %+v", p)
	}
	if p.LogName != m.LogName || p.LogBytes != len(m.Log) {
		t.Errorf("log fields %q %d", p.LogName, p.LogBytes)
	}
	h := ws.headers[0]
	if h.Get("Authorization") != "Bearer tok-123" || h.Get("Idempotency-Key") != "wh-1" {
		t.Errorf("headers %v", h)
	}
}

func TestWebhookLongBodyTruncatedInText(t *testing.T) {
	ws := startWebhook(t)
	n := newWebhook(t, notify.WebhookConfig{URL: ws.URL})
	m := notifytest.Message("long")
	m.Body = strings.Repeat("ü", 10000)
	if err := n.Notify(t.Context(), m); err != nil {
		t.Fatal(err)
	}
	p := ws.Payloads()[0]
	if len([]rune(p.Text)) > 4100 || !strings.HasSuffix(p.Text, "(truncated)") {
		t.Errorf("text has %d runes", len([]rune(p.Text)))
	}
	if p.Body != m.Body {
		t.Error("body field truncated")
	}
}

func TestWebhookNon2xx(t *testing.T) {
	ws := startWebhook(t)
	ws.set(http.StatusInternalServerError, "database on fire\nsecond line "+strings.Repeat("x", 2000))
	n := newWebhook(t, notify.WebhookConfig{URL: ws.URL + "/hooks/T000/B000/XXXXsecretXXXX"})
	err := n.Notify(t.Context(), notifytest.Message("fail"))
	var se *notify.WebhookStatusError
	if !errors.As(err, &se) {
		t.Fatalf("Notify = %v, want *WebhookStatusError", err)
	}
	if se.StatusCode != 500 || !strings.Contains(err.Error(), "500 Internal Server Error") ||
		!strings.Contains(err.Error(), "database on fire second line") {
		t.Errorf("error %q", err)
	}
	if len(se.Excerpt) > 600 {
		t.Errorf("excerpt of %d bytes", len(se.Excerpt))
	}
	if strings.Contains(err.Error(), "XXXXsecretXXXX") {
		t.Errorf("token in error: %v", err)
	}
	if errors.Is(err, notify.ErrRejected) {
		t.Errorf("a 500 counts as a rejection: %v", err)
	}
	// 4xx: rejected for good, except a timeout or rate limit.
	for code, rejected := range map[int]bool{400: true, 413: true, 404: true, 408: false, 429: false} {
		ws.set(code, "no")
		if err := n.Notify(t.Context(), notifytest.Message("4xx")); errors.Is(err, notify.ErrRejected) != rejected {
			t.Errorf("HTTP %d: %v, want rejected %v", code, err, rejected)
		}
	}
	ws.set(http.StatusNoContent, "")
	if err := n.Notify(t.Context(), notifytest.Message("ok")); err != nil {
		t.Fatalf("204: %v", err)
	}
}

func TestWebhookCredentialsRedacted(t *testing.T) {
	u := "http://user:pa55word@" + strings.TrimPrefix(deadURL(t), "http://") + "/hooks/tok-secret?token=qsecret"
	n := newWebhook(t, notify.WebhookConfig{URL: u, Timeout: time.Minute})
	err := n.Notify(t.Context(), notifytest.Message("down"))
	if err == nil {
		t.Fatal("Notify to a closed port succeeded")
	}
	for _, s := range []string{"pa55word", "tok-secret", "qsecret", "user:"} {
		if strings.Contains(err.Error(), s) || strings.Contains(n.String(), s) {
			t.Errorf("%q shown: %v / %s", s, err, n.String())
		}
	}
	if !strings.Contains(err.Error(), "127.0.0.1") {
		t.Errorf("error %q does not name the host", err)
	}
}

func TestWebhookTimeout(t *testing.T) {
	n := newWebhook(t, notify.WebhookConfig{URL: testutil.HangingServer(t), Timeout: 200 * time.Millisecond})
	err := n.Notify(t.Context(), notifytest.Message("slow"))
	if err == nil || !strings.Contains(err.Error(), "deadline exceeded") {
		t.Fatalf("Notify = %v, want a deadline error", err)
	}
}

func TestNewWebhookValidation(t *testing.T) {
	for _, u := range []string{"", "ftp://example.org/x", "example.org/hook", "http://", "http://a b/%zz"} {
		_, err := notify.NewWebhook(notify.WebhookConfig{URL: u})
		if !errors.Is(err, notify.ErrInvalidConfig) || !strings.Contains(err.Error(), "URL") {
			t.Errorf("NewWebhook(%q) = %v, want ErrInvalidConfig naming URL", u, err)
		}
	}
	_, err := notify.NewWebhook(notify.WebhookConfig{URL: "http://x:secretpw@example.org:99999/"})
	if err != nil && strings.Contains(err.Error(), "secretpw") {
		t.Errorf("password in error %v", err)
	}
}

func TestRedactURL(t *testing.T) {
	for in, want := range map[string]string{
		"https://hooks.slack.com/services/T0/B0/XYZ": "https://hooks.slack.com/services/xxxxx",
		"https://u:p@chat.example.org/hooks/abc?x=1": "https://xxxxx@chat.example.org/hooks/xxxxx?x=xxxxx",
		"http://127.0.0.1:8080/notify":               "http://127.0.0.1:8080/notify",
	} {
		u, err := url.Parse(in)
		if err != nil {
			t.Fatal(err)
		}
		if got := notify.RedactURL(u); got != want {
			t.Errorf("RedactURL(%s) = %s, want %s", in, got, want)
		}
	}
}

// deadURL returns an http URL of a loopback port nothing listens on.
func deadURL(t testing.TB) string {
	t.Helper()
	return "http://" + testutil.FreeAddr(t)
}

// A webhook that answers with a redirect (a compromised or misconfigured endpoint, or a
// man in the middle of plain http) is not followed: the report, the URL's token and the
// configured headers never reach the other place, which may be another host or plain
// http; the redirect is a failure naming its status.
func TestWebhookRedirectNotFollowed(t *testing.T) {
	var got []string
	elsewhere := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		got = append(got, fmt.Sprintf("%s %s key=%q auth=%q body=%d", r.Method, r.URL, r.Header.Get("X-Api-Key"), r.Header.Get("Authorization"), len(body)))
		w.WriteHeader(http.StatusOK)
	}))
	defer elsewhere.Close()
	// Another host name for the same address: net/http drops Authorization there, but
	// not X-Api-Key, and re-posts the body on a 307 or 308.
	other := strings.Replace(elsewhere.URL, "127.0.0.1", "localhost", 1) + "/collect"
	for _, code := range []int{http.StatusTemporaryRedirect, http.StatusPermanentRedirect, http.StatusFound} {
		hook := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			http.Redirect(w, r, other, code)
		}))
		n := newWebhook(t, notify.WebhookConfig{URL: hook.URL + "/hooks/abc",
			Headers: http.Header{"X-Api-Key": {"key-123"}, "Authorization": {"Bearer tok-123"}}})
		err := n.Notify(t.Context(), notifytest.Message("wh-redirect"))
		hook.Close()
		if err == nil || !strings.Contains(err.Error(), strconv.Itoa(code)) {
			t.Errorf("HTTP %d: Notify = %v, want a failure naming the redirect", code, err)
		}
	}
	if len(got) != 0 {
		t.Errorf("the redirect was followed: %q", got)
	}
}
