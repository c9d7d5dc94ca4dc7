package notify

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/restage/restage/internal/redact"
)

// Default webhook settings.
const (
	DefaultWebhookTimeout = 30 * time.Second
	// maxWebhookText bounds the "text" field; chat tools reject very long messages
	// (Mattermost: 16383 characters) and the full body is in the "body" field anyway.
	maxWebhookText = 4000
	// maxExcerpt bounds the response body quoted in a *WebhookStatusError.
	maxExcerpt = 512
)

// WebhookConfig configures a Webhook notifier.
type WebhookConfig struct {
	URL string // http or https URL; required. Its credentials never appear in errors.
	// Headers are added to every request (e.g. Authorization); their values are never
	// logged nor put in an error.
	Headers http.Header
	// Timeout bounds each call (connect, send, response); 0: DefaultWebhookTimeout.
	Timeout time.Duration
	// Client sends the requests; nil: a client with no other limits than Timeout that
	// follows no redirect (a 3xx answer is a failure: net/http would re-post the report
	// and the Headers other than Authorization and Cookie to wherever it points, another
	// host or plain http).
	Client *http.Client
	Logger *slog.Logger // nil: slog.Default()
}

// WebhookPayload is the JSON document a Webhook posts. Text makes Slack- and
// Mattermost-style incoming webhooks accept it; the other fields are for programs.
type WebhookPayload struct {
	Text        string    `json:"text"` // subject line, blank line, body (truncated)
	ID          string    `json:"id,omitempty"`
	Environment string    `json:"environment,omitempty"`
	Topic       string    `json:"topic,omitempty"`
	Status      Status    `json:"status,omitempty"`
	Subject     string    `json:"subject"` // FullSubject(m)
	Body        string    `json:"body"`
	Time        time.Time `json:"time"`
	LogName     string    `json:"log_name,omitempty"`  // the log itself is not sent
	LogBytes    int       `json:"log_bytes,omitempty"` // its size
}

// WebhookStatusError is returned when the webhook answers with a non-2xx status.
type WebhookStatusError struct {
	URL        string // redacted
	StatusCode int
	Status     string // e.g. "500 Internal Server Error"
	Excerpt    string // the start of the response body, on one line
}

// Is reports a 4xx status other than 408 (timeout) and 429 (too many requests) as
// ErrRejected.
func (e *WebhookStatusError) Is(target error) bool {
	return target == ErrRejected && e.StatusCode >= 400 && e.StatusCode <= 499 &&
		e.StatusCode != http.StatusRequestTimeout && e.StatusCode != http.StatusTooManyRequests
}

// Error describes the failure.
func (e *WebhookStatusError) Error() string {
	s := fmt.Sprintf("notify: webhook %s: HTTP %s", e.URL, e.Status)
	if e.Excerpt != "" {
		s += ": " + e.Excerpt
	}
	return s
}

// Webhook posts reports as JSON (a WebhookPayload). The request carries an
// Idempotency-Key header with the report ID. It is safe for concurrent use.
type Webhook struct {
	cfg      WebhookConfig
	url      string
	redacted string
	secrets  []string // shown nowhere: the URL's password, or its user (a token alone)
	client   *http.Client
	logger   *slog.Logger
}

var _ Notifier = (*Webhook)(nil)

// NewWebhook validates cfg and returns a Webhook notifier. Errors wrap ErrInvalidConfig.
func NewWebhook(cfg WebhookConfig) (*Webhook, error) {
	if cfg.URL == "" {
		return nil, fmt.Errorf("%w: URL: missing", ErrInvalidConfig)
	}
	u, err := url.Parse(cfg.URL)
	if err != nil {
		return nil, fmt.Errorf("%w: URL: cannot parse", ErrInvalidConfig) // err would quote the URL
	}
	if (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("%w: URL %s: want an http or https URL", ErrInvalidConfig, RedactURL(u))
	}
	if cfg.Timeout < 0 {
		return nil, fmt.Errorf("%w: Timeout %v: negative", ErrInvalidConfig, cfg.Timeout)
	}
	if cfg.Timeout == 0 {
		cfg.Timeout = DefaultWebhookTimeout
	}
	w := &Webhook{cfg: cfg, url: cfg.URL, redacted: RedactURL(u), client: cfg.Client, logger: cfg.Logger}
	if u.User != nil {
		p, ok := u.User.Password()
		if !ok {
			p = u.User.Username() // a token alone: https://TOKEN@host/...
		}
		w.secrets = append(w.secrets, p)
	}
	if w.client == nil {
		w.client = &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error {
			return http.ErrUseLastResponse
		}}
	}
	if w.logger == nil {
		w.logger = slog.Default()
	}
	return w, nil
}

// String names the notifier with its redacted URL.
func (w *Webhook) String() string { return "webhook " + w.redacted }

// Payload returns the document Notify posts for m.
func Payload(m *Message) WebhookPayload {
	subject := FullSubject(m)
	text := subject
	if m.Body != "" {
		text += "\n\n" + m.Body
	}
	if r := []rune(text); len(r) > maxWebhookText {
		text = string(r[:maxWebhookText]) + "\n… (truncated)"
	}
	p := WebhookPayload{
		Text: text, ID: m.ID, Environment: m.Environment, Topic: m.Topic, Status: m.Status,
		Subject: subject, Body: m.Body, Time: m.Time,
	}
	if len(m.Log) > 0 {
		p.LogName, p.LogBytes = LogName(m), len(m.Log)
	}
	return p
}

// Notify posts m and waits for a 2xx answer. Its errors show the URL as RedactURL does
// and pass through internal/redact with the URL's credentials as named secrets (header
// values never reach an error: net/http does not quote them).
func (w *Webhook) Notify(ctx context.Context, m *Message) error {
	return redact.Error(w.notify(ctx, m), w.secrets...)
}

func (w *Webhook) notify(ctx context.Context, m *Message) error {
	if err := checkMessage(m); err != nil {
		return err
	}
	body, err := json.Marshal(Payload(m))
	if err != nil {
		return fmt.Errorf("notify: webhook %s: encode: %w", w.redacted, err)
	}
	ctx, cancel := context.WithTimeout(ctx, w.cfg.Timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, w.url, bytes.NewReader(body))
	if err != nil {
		return fmt.Errorf("notify: webhook %s: %w", w.redacted, w.redactErr(err))
	}
	for k, vs := range w.cfg.Headers {
		for _, v := range vs {
			req.Header.Add(k, v)
		}
	}
	req.Header.Set("Content-Type", "application/json")
	if m.ID != "" {
		req.Header.Set("Idempotency-Key", m.ID)
	}
	start := time.Now()
	resp, err := w.client.Do(req)
	if err != nil {
		return fmt.Errorf("notify: webhook %s: %w", w.redacted, w.redactErr(err))
	}
	defer resp.Body.Close()
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, maxExcerpt+1))
		return &WebhookStatusError{URL: w.redacted, StatusCode: resp.StatusCode,
			Status: resp.Status, Excerpt: excerpt(b, maxExcerpt)}
	}
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10)) // allow connection reuse
	w.logger.Info("notify: report posted", logKeyID, m.ID, logKeyTopic, m.Topic,
		logKeyStatus, string(m.Status), logKeyTarget, w.String(), logKeyDuration, time.Since(start))
	return nil
}

// redactErr replaces the URL inside *url.Error (which quotes it in full).
func (w *Webhook) redactErr(err error) error {
	var ue *url.Error
	if errors.As(err, &ue) {
		ue.URL = w.redacted
	}
	return err
}

// RedactURL returns u with its secrets hidden, for errors and logs: user info, query
// values and every path segment after the first (webhook URLs such as Slack's and
// Mattermost's carry their token in the path) become "xxxxx".
func RedactURL(u *url.URL) string {
	r := *u
	if r.User != nil {
		r.User = url.User("xxxxx")
	}
	if r.RawQuery != "" {
		q := r.Query()
		for k := range q {
			q[k] = []string{"xxxxx"}
		}
		r.RawQuery = q.Encode()
	}
	r.Fragment, r.RawFragment = "", ""
	segs := strings.Split(strings.TrimPrefix(r.Path, "/"), "/")
	if len(segs) > 1 {
		r.Path = "/" + segs[0] + "/xxxxx"
		r.RawPath = ""
	}
	return r.String()
}
