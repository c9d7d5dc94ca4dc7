package svcctl

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"strconv"
	"strings"
	"time"
	"unicode"

	"github.com/restage/restage/internal/redact"
)

// HTTPCheck is a Checker that polls an HTTP URL until it answers 2xx. Its zero values
// are the documented defaults; URL is required.
type HTTPCheck struct {
	// URL is fetched with GET (required, http or https).
	URL string
	// Timeout is the overall deadline; 0: 60s.
	Timeout time.Duration
	// PerTry bounds one request; 0: 5s.
	PerTry time.Duration
	// Backoff is the pause between tries during the first second, doubled after each
	// try from then on; 0: 25ms (a service that starts in a fraction of a second is seen
	// up within 25ms of it).
	Backoff time.Duration
	// MaxBackoff caps the pause; 0: 2s.
	MaxBackoff time.Duration
	// Client makes the requests; nil: a client without keep-alives.
	Client *http.Client
	// Logger receives progress; nil: slog.Default().
	Logger *slog.Logger
}

var _ Checker = (*HTTPCheck)(nil)

// bodyExcerpt bounds the body quoted in errors.
const bodyExcerpt = 200

// Wait polls URL until it answers 2xx or Timeout passes. The error wraps ErrUnhealthy and
// names the last HTTP status and an excerpt of the body, or the last connection error.
func (h HTTPCheck) Wait(ctx context.Context) error {
	if err := h.Validate(); err != nil {
		return err
	}
	shown := redact.String(h.URL)
	timeout := orDefault(h.Timeout, 60*time.Second)
	perTry := orDefault(h.PerTry, 5*time.Second)
	pause := orDefault(h.Backoff, 25*time.Millisecond)
	maxPause := orDefault(h.MaxBackoff, 2*time.Second)
	client := h.Client
	if client == nil {
		client = &http.Client{Transport: &http.Transport{DisableKeepAlives: true, Proxy: nil}}
		defer client.CloseIdleConnections()
	}
	log := loggerOr(h.Logger).With(logKeyURL, shown)

	dctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	start := time.Now()
	var last string
	for tries := 1; ; tries++ {
		code, msg := h.try(dctx, client, perTry)
		if code >= 200 && code < 300 {
			log.Info("svcctl: healthy", "status", code, "tries", tries, logKeyElapsed, time.Since(start).Round(time.Millisecond))
			return nil
		}
		if dctx.Err() == nil || last == "" {
			last = msg // a try cut short by the deadline says less than the one before
		}
		t := time.NewTimer(pause)
		select {
		case <-dctx.Done():
			t.Stop()
			err := fmt.Errorf("svcctl: %s not healthy after %s (%d tries), last: %s: %w",
				shown, time.Since(start).Round(time.Millisecond), tries, last, ErrUnhealthy)
			if ctx.Err() != nil {
				err = fmt.Errorf("%w: %w", err, ctx.Err())
			}
			return err
		case <-t.C:
		}
		if time.Since(start) >= time.Second {
			pause = min(pause*2, maxPause)
		}
	}
}

// Validate checks the configuration (Wait does too), so that a config can be rejected
// before anything runs.
func (h HTTPCheck) Validate() error {
	if h.URL == "" {
		return errors.New("svcctl: health check: URL is required")
	}
	u, err := url.Parse(h.URL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return fmt.Errorf("svcctl: health check: bad URL %q: want http(s)://host/path", redact.String(h.URL))
	}
	if h.Timeout < 0 || h.PerTry < 0 || h.Backoff < 0 || h.MaxBackoff < 0 {
		return errors.New("svcctl: health check: negative duration")
	}
	return nil
}

// try makes one request: it returns the status code (0: no answer) and a description.
func (h HTTPCheck) try(ctx context.Context, client *http.Client, perTry time.Duration) (int, string) {
	tctx, cancel := context.WithTimeout(ctx, perTry)
	defer cancel()
	req, err := http.NewRequestWithContext(tctx, http.MethodGet, h.URL, nil)
	if err != nil {
		return 0, err.Error()
	}
	start := time.Now()
	resp, err := client.Do(req)
	if err != nil {
		if tctx.Err() != nil {
			if ctx.Err() == nil {
				return 0, fmt.Sprintf("no answer within %s", perTry)
			}
			return 0, fmt.Sprintf("no answer within %s (the deadline)", time.Since(start).Round(time.Millisecond))
		}
		var uerr *url.Error
		if errors.As(err, &uerr) {
			err = uerr.Err // the URL is named once, in the error around it
		}
		return 0, err.Error()
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 4*bodyExcerpt))
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	msg := "HTTP " + resp.Status
	if ex := excerpt(string(b)); ex != "" {
		msg += fmt.Sprintf(" %q", ex)
	}
	return resp.StatusCode, msg
}

// excerpt squeezes whitespace and shortens s for an error message.
func excerpt(s string) string {
	s = strings.Join(strings.FieldsFunc(s, unicode.IsSpace), " ")
	if r := []rune(s); len(r) > bodyExcerpt {
		s = string(r[:bodyExcerpt]) + "…"
	}
	return s
}

func orDefault(d, def time.Duration) time.Duration {
	if d <= 0 {
		return def
	}
	return d
}

// LogTailer is implemented by controllers that can show the service's recent output (the
// log file, the unit's journal, the container's log). StartHealthy adds it to its errors.
type LogTailer interface {
	LogTail(ctx context.Context) (string, error)
}

// statusPoll is how often StartHealthy asks the controller whether the service still runs.
const statusPoll = time.Second

// StartHealthy starts the service with c and waits until h says it is healthy, so that
// "started" means "serving". A nil h skips the health gate. If the service stops while
// waiting, the error wraps ErrExited and says so; if it stays up but unhealthy, the error
// wraps ErrUnhealthy. Either way the service is left as it is, for the caller to stop
// or roll back.
func StartHealthy(ctx context.Context, c Controller, h Checker) error {
	if err := c.Start(ctx); err != nil {
		return err
	}
	if h == nil {
		return nil
	}
	hctx, cancel := context.WithCancel(ctx)
	defer cancel()
	errc := make(chan error, 1)
	go func() { errc <- h.Wait(hctx) }()
	ticker := time.NewTicker(statusPoll)
	defer ticker.Stop()
	for {
		select {
		case err := <-errc:
			if err == nil {
				return servedByService(ctx, c, h)
			}
			if st, serr := c.Status(ctx); serr == nil && st.State != StateRunning {
				return diedError(ctx, c, st)
			}
			return fmt.Errorf("svcctl: started, but %w", err)
		case <-ticker.C:
			st, err := c.Status(ctx)
			if err == nil && st.State != StateRunning {
				cancel()
				<-errc
				return diedError(ctx, c, st)
			}
		}
	}
}

// servedByService checks, when c can tell (PortServer) and h is an HTTPCheck of a URL on
// this host, that the sockets listening on the URL's port are the service's: a health
// check answered by another program says nothing about the service.
func servedByService(ctx context.Context, c Controller, h Checker) error {
	ps, ok := c.(PortServer)
	if !ok {
		return nil
	}
	var hc HTTPCheck
	switch v := h.(type) {
	case HTTPCheck:
		hc = v
	case *HTTPCheck:
		hc = *v
	default:
		return nil
	}
	port, ok := hc.localPort()
	if !ok {
		return nil
	}
	if err := ps.ServesPort(ctx, port); err != nil && !errors.Is(err, errors.ErrUnsupported) {
		return fmt.Errorf("svcctl: started, but %w", err)
	}
	return nil
}

// localPort returns the TCP port of the URL when its host is this host (localhost, a
// loopback or unspecified address, or an address of one of its interfaces); a host
// name other than localhost is not resolved.
func (h HTTPCheck) localPort() (int, bool) {
	u, err := url.Parse(h.URL)
	if err != nil {
		return 0, false
	}
	port, err := strconv.Atoi(u.Port())
	switch {
	case u.Port() == "" && u.Scheme == "http":
		port, err = 80, nil
	case u.Port() == "" && u.Scheme == "https":
		port, err = 443, nil
	}
	if err != nil {
		return 0, false
	}
	host := u.Hostname()
	if strings.EqualFold(host, "localhost") {
		return port, true
	}
	ip, err := netip.ParseAddr(host)
	if err != nil {
		return 0, false
	}
	ip = ip.Unmap()
	if ip.IsLoopback() || ip.IsUnspecified() {
		return port, true
	}
	addrs, _ := net.InterfaceAddrs()
	for _, a := range addrs {
		if p, err := netip.ParsePrefix(a.String()); err == nil && p.Addr().Unmap() == ip {
			return port, true
		}
	}
	return 0, false
}

func diedError(ctx context.Context, c Controller, st Status) error {
	msg := fmt.Sprintf("svcctl: service %s while waiting for it to be healthy", st.State)
	if st.Detail != "" {
		msg += " (" + st.Detail + ")"
	}
	if lt, ok := c.(LogTailer); ok {
		if out, err := lt.LogTail(ctx); err == nil && out != "" {
			return fmt.Errorf("%s: %w; last output:\n%s", msg, ErrExited, out)
		}
	}
	return fmt.Errorf("%s: %w", msg, ErrExited)
}
