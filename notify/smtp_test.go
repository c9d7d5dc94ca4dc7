package notify_test

import (
	"bufio"
	"bytes"
	"crypto/tls"
	"encoding/base64"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/mail"
	"strings"
	"testing"
	"time"

	"github.com/restage/restage/internal/smtptest"
	"github.com/restage/restage/internal/testutil"
	"github.com/restage/restage/notify"
	"github.com/restage/restage/notify/notifytest"
)

func newSMTP(t testing.TB, cfg notify.SMTPConfig) *notify.SMTP {
	t.Helper()
	if cfg.From == "" {
		cfg.From = "Staging <staging@example.org>"
	}
	if cfg.To == nil {
		cfg.To = []string{"error-reports@example.org", "ops@example.org"}
	}
	if cfg.Timeout == 0 {
		cfg.Timeout = time.Minute
	}
	n, err := notify.NewSMTP(cfg)
	if err != nil {
		t.Fatalf("NewSMTP: %v", err)
	}
	return n
}

// smtpReports returns what srv accepted, as reports.
func smtpReports(srv *smtptest.Server) func(t testing.TB) []notifytest.Report {
	return func(t testing.TB) []notifytest.Report {
		var out []notifytest.Report
		for _, m := range srv.Mails() {
			out = append(out, parseMail(t, m.Data))
		}
		return out
	}
}

// smtpFixture is the conformance fixture of SMTP, each notifier wrapped by wrap (the
// Spool's suite reuses it).
func smtpFixture(wrap func(t *testing.T, n notify.Notifier) notify.Notifier) notifytest.Fixture {
	return notifytest.Fixture{
		New: func(t *testing.T) notifytest.Setup {
			srv := startSMTP(t, smtptest.Options{STARTTLS: true, User: "restage", Pass: "s3cret-Pa55"})
			n := newSMTP(t, notify.SMTPConfig{Addr: srv.Addr, Username: "restage", Password: "s3cret-Pa55",
				TLSConfig: &tls.Config{RootCAs: srv.CAPool}})
			return notifytest.Setup{Notifier: wrap(t, n), Received: smtpReports(srv), CarriesLog: true}
		},
		Dead: func(t *testing.T) notify.Notifier {
			return wrap(t, newSMTP(t, notify.SMTPConfig{Addr: testutil.FreeAddr(t)}))
		},
		Stalled: func(t *testing.T) notify.Notifier {
			return wrap(t, newSMTP(t, notify.SMTPConfig{Addr: stallingSMTP(t, "rcpt"), TLS: notify.TLSNone, Timeout: time.Hour}))
		},
		Rejecting: func(t *testing.T) notify.Notifier {
			return wrap(t, newSMTP(t, notify.SMTPConfig{Addr: startSMTP(t, smtptest.Options{RejectRcpts: true}).Addr}))
		},
	}
}

func TestSMTPConformance(t *testing.T) {
	notifytest.Notifier(t, smtpFixture(func(_ *testing.T, n notify.Notifier) notify.Notifier { return n }))
}

func TestSMTPEnvelopeHeadersBodyAttachment(t *testing.T) {
	srv := startSMTP(t, smtptest.Options{STARTTLS: true, User: "restage", Pass: "s3cret-Pa55"})
	n := newSMTP(t, notify.SMTPConfig{Addr: srv.Addr, Username: "restage", Password: "s3cret-Pa55",
		TLS: notify.TLSRequired, TLSConfig: &tls.Config{RootCAs: srv.CAPool}})
	m := notifytest.Message("2026-11-25-abc")
	if err := n.Notify(t.Context(), m); err != nil {
		t.Fatalf("Notify: %v", err)
	}
	msgs := srv.Mails()
	if len(msgs) != 1 {
		t.Fatalf("server got %d messages, want 1", len(msgs))
	}
	got := msgs[0]
	if got.From != "staging@example.org" {
		t.Errorf("MAIL FROM %q", got.From)
	}
	if strings.Join(got.To, ",") != "error-reports@example.org,ops@example.org" {
		t.Errorf("RCPT TO %q", got.To)
	}
	if !got.TLS {
		t.Error("message was not sent over STARTTLS")
	}
	if got.AuthUser != "restage" {
		t.Errorf("AUTH user %q, want restage", got.AuthUser)
	}
	hdr, err := mail.ReadMessage(bytes.NewReader(got.Data))
	if err != nil {
		t.Fatal(err)
	}
	for k, want := range map[string]string{
		"Keywords":              "staging-rebuild",
		"X-Restage-Environment": "staging",
		"X-Restage-Status":      "failed",
		"X-Restage-Report-ID":   "2026-11-25-abc",
		"Message-Id":            "<restage.2026-11-25-abc@example.org>",
		"To":                    "<error-reports@example.org>, <ops@example.org>",
	} {
		if v := hdr.Header.Get(k); v != want {
			t.Errorf("header %s = %q, want %q", k, v, want)
		}
	}
	if from, err := hdr.Header.AddressList("From"); err != nil || from[0].Address != "staging@example.org" || from[0].Name != "Staging" {
		t.Errorf("From %v %v", from, err)
	}
	if d, err := hdr.Header.Date(); err != nil || !d.Equal(m.Time) {
		t.Errorf("Date %v %v, want %v", d, err, m.Time)
	}
	r := parseMail(t, got.Data)
	if r.Subject != "[staging-rebuild] FAILED: staging rebuild failed at step restore" {
		t.Errorf("subject %q", r.Subject)
	}
	if r.Body != m.Body {
		t.Errorf("body %q", r.Body)
	}
	if r.LogName != "staging-20261125.log" || !bytes.Equal(r.Log, m.Log) {
		t.Errorf("attachment %q %q", r.LogName, r.Log)
	}
}

func TestSMTPOpportunisticSelfSignedWithoutAuth(t *testing.T) {
	// A local MTA offering STARTTLS with a self-signed certificate still gets the report,
	// encrypted (opportunistic security), when no password is at stake.
	srv := startSMTP(t, smtptest.Options{STARTTLS: true})
	n := newSMTP(t, notify.SMTPConfig{Addr: srv.Addr})
	if err := n.Notify(t.Context(), notifytest.Message("opp-1")); err != nil {
		t.Fatalf("Notify: %v", err)
	}
	msgs := srv.Mails()
	if len(msgs) != 1 || !msgs[0].TLS {
		t.Fatalf("got %d messages (TLS %v), want 1 over TLS", len(msgs), len(msgs) == 1 && msgs[0].TLS)
	}
}

func TestSMTPPlainServer(t *testing.T) {
	srv := startSMTP(t, smtptest.Options{})
	t.Run("opportunistic sends in clear", func(t *testing.T) {
		n := newSMTP(t, notify.SMTPConfig{Addr: srv.Addr})
		if err := n.Notify(t.Context(), notifytest.Message("plain-1")); err != nil {
			t.Fatalf("Notify: %v", err)
		}
	})
	t.Run("none", func(t *testing.T) {
		n := newSMTP(t, notify.SMTPConfig{Addr: srv.Addr, TLS: notify.TLSNone})
		if err := n.Notify(t.Context(), notifytest.Message("plain-2")); err != nil {
			t.Fatalf("Notify: %v", err)
		}
	})
	t.Run("required fails", func(t *testing.T) {
		n := newSMTP(t, notify.SMTPConfig{Addr: srv.Addr, TLS: notify.TLSRequired})
		err := n.Notify(t.Context(), notifytest.Message("plain-3"))
		if err == nil || !strings.Contains(err.Error(), "STARTTLS") {
			t.Fatalf("Notify = %v, want a STARTTLS error", err)
		}
	})
	if got := len(srv.Mails()); got != 2 {
		t.Errorf("server got %d messages, want 2", got)
	}
	for _, m := range srv.Mails() {
		if m.TLS {
			t.Error("TLS used against a server without STARTTLS")
		}
	}
}

func TestSMTPUntrustedCertificateWithAuth(t *testing.T) {
	// With credentials the certificate must verify: the password is never handed to a
	// server whose certificate we cannot check.
	srv := startSMTP(t, smtptest.Options{STARTTLS: true, User: "restage", Pass: "hunter2-secret"})
	n := newSMTP(t, notify.SMTPConfig{Addr: srv.Addr, Username: "restage", Password: "hunter2-secret"})
	err := n.Notify(t.Context(), notifytest.Message("untrusted"))
	if err == nil {
		t.Fatal("Notify succeeded against an untrusted certificate")
	}
	if !strings.Contains(err.Error(), "certificate") {
		t.Errorf("error %q does not mention the certificate", err)
	}
	if len(srv.Mails()) != 0 {
		t.Error("message delivered")
	}
	// Skipping verification is an explicit choice.
	n = newSMTP(t, notify.SMTPConfig{Addr: srv.Addr, Username: "restage", Password: "hunter2-secret",
		TLSConfig: &tls.Config{InsecureSkipVerify: true}})
	if err := n.Notify(t.Context(), notifytest.Message("skip-verify")); err != nil {
		t.Fatalf("Notify with InsecureSkipVerify: %v", err)
	}
}

func TestSMTPPasswordNeverShown(t *testing.T) {
	const password = "Zq9-very-secret-pw"
	srv := startSMTP(t, smtptest.Options{STARTTLS: true, User: "restage", Pass: "the-right-one"})
	var logs bytes.Buffer
	logger := slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	n := newSMTP(t, notify.SMTPConfig{Addr: srv.Addr, Username: "restage", Password: password,
		TLSConfig: &tls.Config{RootCAs: srv.CAPool}, Logger: logger})
	err := n.Notify(t.Context(), notifytest.Message("badpw"))
	if err == nil {
		t.Fatal("Notify with a wrong password succeeded")
	}
	if srv.AuthFailures() != 1 {
		t.Errorf("server saw %d AUTH failures, want 1", srv.AuthFailures())
	}
	if !strings.Contains(err.Error(), "AUTH") {
		t.Errorf("error %q does not say AUTH failed", err)
	}
	// Server down, bad config: none of the messages may carry the password either.
	down := newSMTP(t, notify.SMTPConfig{Addr: testutil.FreeAddr(t), Username: "restage", Password: password, Logger: logger})
	errDown := down.Notify(t.Context(), notifytest.Message("down"))
	_, errCfg := notify.NewSMTP(notify.SMTPConfig{Addr: "127.0.0.1:25", From: "bad address", To: []string{"a@b"},
		Username: "restage", Password: password})
	sp, spErr := notify.NewSpool(t.TempDir(), down, logger)
	if spErr != nil {
		t.Fatal(spErr)
	}
	errSpool := sp.Notify(t.Context(), notifytest.Message("spooled"))
	for _, e := range []error{err, errDown, errCfg, errSpool} {
		if e == nil {
			t.Fatal("expected an error")
		}
		if strings.Contains(e.Error(), password) {
			t.Errorf("password in error: %v", e)
		}
	}
	if strings.Contains(logs.String(), password) {
		t.Errorf("password in logs:\n%s", logs.String())
	}
	if s := n.String(); strings.Contains(s, password) {
		t.Errorf("password in String(): %s", s)
	}
}

func TestSMTPServerDown(t *testing.T) {
	n := newSMTP(t, notify.SMTPConfig{Addr: testutil.FreeAddr(t)})
	err := n.Notify(t.Context(), notifytest.Message("down"))
	if err == nil {
		t.Fatal("Notify to a closed port succeeded")
	}
	if !strings.Contains(err.Error(), "smtp 127.0.0.1:") {
		t.Errorf("error %q does not name the server", err)
	}
	if errors.Is(err, notify.ErrRejected) {
		t.Errorf("a server that is down counts as a rejection: %v", err)
	}
}

func TestSMTPRecipientRejected(t *testing.T) {
	srv := startSMTP(t, smtptest.Options{RejectRcpts: true})
	n := newSMTP(t, notify.SMTPConfig{Addr: srv.Addr})
	err := n.Notify(t.Context(), notifytest.Message("rejected"))
	if err == nil || !strings.Contains(err.Error(), "550") {
		t.Fatalf("Notify = %v, want the 550 answer", err)
	}
	if !errors.Is(err, notify.ErrRejected) {
		t.Errorf("a 550 answer is not ErrRejected: %v", err)
	}
}

func TestNewSMTPValidation(t *testing.T) {
	ok := notify.SMTPConfig{Addr: "127.0.0.1:25", From: "staging@example.org", To: []string{"ops@example.org"}}
	cases := []struct {
		name  string
		edit  func(*notify.SMTPConfig)
		field string
	}{
		{"no addr", func(c *notify.SMTPConfig) { c.Addr = "" }, "Addr"},
		{"bad port", func(c *notify.SMTPConfig) { c.Addr = "mail:smtp" }, "Addr"},
		{"port range", func(c *notify.SMTPConfig) { c.Addr = "mail:70000" }, "Addr"},
		{"no from", func(c *notify.SMTPConfig) { c.From = "" }, "From"},
		{"bad from", func(c *notify.SMTPConfig) { c.From = "not an address" }, "From"},
		{"no to", func(c *notify.SMTPConfig) { c.To = nil }, "To"},
		{"bad to", func(c *notify.SMTPConfig) { c.To = []string{"ops@example.org", "bogus"} }, "To[1]"},
		{"password without user", func(c *notify.SMTPConfig) { c.Password = "x" }, "Password"},
		{"bad tls", func(c *notify.SMTPConfig) { c.TLS = "sometimes" }, "TLS"},
		{"negative timeout", func(c *notify.SMTPConfig) { c.Timeout = -time.Second }, "Timeout"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			cfg := ok
			cfg.To = append([]string(nil), ok.To...)
			tc.edit(&cfg)
			_, err := notify.NewSMTP(cfg)
			if !errors.Is(err, notify.ErrInvalidConfig) {
				t.Fatalf("NewSMTP = %v, want ErrInvalidConfig", err)
			}
			if !strings.Contains(err.Error(), tc.field) {
				t.Errorf("error %q does not name %s", err, tc.field)
			}
		})
	}
	if _, err := notify.NewSMTP(ok); err != nil {
		t.Fatalf("valid config: %v", err)
	}
	noPort := ok
	noPort.Addr = "mail.example.org"
	if _, err := notify.NewSMTP(noPort); err != nil {
		t.Fatalf("host without port: %v", err)
	}
}

// TestSMTPCredentialsEchoedByServerAreHidden: a server that quotes the AUTH exchange in its
// refusal (some do) gets the password's AUTH PLAIN encoding into go-mail's error; the
// notifier's error must not show it.
func TestSMTPCredentialsEchoedByServerAreHidden(t *testing.T) {
	const password = "Echo-pw-Secret9"
	addr := serveTCP(t, func(c net.Conn) {
		r := bufio.NewReader(c)
		fmt.Fprint(c, "220 echo ESMTP\r\n")
		for {
			line, err := r.ReadString('\n')
			if err != nil {
				return
			}
			line = strings.TrimSpace(line)
			switch verb := strings.ToUpper(strings.Fields(line + " x")[0]); verb {
			case "EHLO", "HELO":
				fmt.Fprint(c, "250-echo\r\n250 AUTH PLAIN\r\n")
			case "AUTH":
				fmt.Fprintf(c, "535 5.7.8 credentials rejected: %s\r\n", line)
			case "QUIT":
				fmt.Fprint(c, "221 bye\r\n")
				return
			default:
				fmt.Fprint(c, "502 no\r\n")
			}
		}
	})
	n := newSMTP(t, notify.SMTPConfig{Addr: addr, TLS: notify.TLSNone, Username: "restage", Password: password})
	err := n.Notify(t.Context(), notifytest.Message("echo"))
	if err == nil {
		t.Fatal("Notify succeeded")
	}
	t.Logf("error: %v", err)
	enc := base64.StdEncoding.EncodeToString([]byte("\x00restage\x00" + password))
	if !strings.Contains(err.Error(), "credentials rejected") {
		t.Fatalf("error %q does not carry the server's answer", err)
	}
	if strings.Contains(err.Error(), enc) || strings.Contains(err.Error(), password) {
		t.Fatalf("error shows the credentials: %v", err)
	}
}

// A man in the middle strips STARTTLS from the server's EHLO answer and offers AUTH
// CRAM-MD5 alone: with credentials and tls = "opportunistic" the notifier must hand it
// neither a response computed from the password (crackable offline) nor the report.
func TestSMTPCredentialsNeverSentWithoutTLS(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	heard := make(chan []string, 1)
	go func() {
		c, err := l.Accept()
		if err != nil {
			heard <- nil
			return
		}
		defer c.Close()
		_ = c.SetDeadline(time.Now().Add(20 * time.Second))
		r := bufio.NewReader(c)
		var got []string
		say := func(s string) { fmt.Fprint(c, s+"\r\n") }
		say("220 stripped.example ESMTP")
		data := false
		for {
			line, err := r.ReadString('\n')
			if err != nil {
				break
			}
			line = strings.TrimRight(line, "\r\n")
			if data {
				if line == "." {
					data = false
					say("250 queued")
				} else {
					got = append(got, "DATA: "+line)
				}
				continue
			}
			cmd := strings.ToUpper(strings.Fields(line + " x")[0])
			switch cmd {
			case "EHLO", "HELO":
				say("250-stripped.example")
				say("250 AUTH CRAM-MD5")
			case "AUTH":
				got = append(got, line)
				say("334 " + base64.StdEncoding.EncodeToString([]byte("<1.2@stripped.example>")))
				resp, _ := r.ReadString('\n')
				got = append(got, "AUTH RESPONSE: "+strings.TrimSpace(resp))
				say("235 ok")
			case "DATA":
				data = true
				say("354 go on")
			case "QUIT":
				say("221 bye")
				heard <- got
				return
			default:
				say("250 ok")
			}
		}
		heard <- got
	}()
	n, err := notify.NewSMTP(notify.SMTPConfig{Addr: l.Addr().String(), From: "staging@example.org",
		To: []string{"ops@example.org"}, Username: "restage", Password: "s3cret-pw", TLS: notify.TLSOpportunistic,
		Timeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	if err := n.Notify(t.Context(), notifytest.Message("stripped")); err == nil {
		t.Error("Notify succeeded without TLS")
	}
	l.Close()
	var got []string
	select {
	case got = <-heard:
	case <-time.After(30 * time.Second):
		t.Fatal("the fake server never finished")
	}
	for _, line := range got {
		if strings.HasPrefix(line, "AUTH") || strings.HasPrefix(line, "DATA") {
			t.Errorf("sent in clear to a server without STARTTLS: %s", line)
		}
	}
}

// Credentials with tls = "none" go in clear only because the config says so, and the
// log says it (the README's promise for that one case).
func TestSMTPCredentialsWithoutTLSAreLogged(t *testing.T) {
	for _, tc := range []struct {
		tls  notify.TLSMode
		warn bool
	}{{notify.TLSNone, true}, {notify.TLSOpportunistic, false}, {notify.TLSRequired, false}} {
		var log bytes.Buffer
		newSMTP(t, notify.SMTPConfig{Addr: "127.0.0.1:25", TLS: tc.tls, Username: "restage", Password: "pw",
			Logger: slog.New(slog.NewTextHandler(&log, nil))})
		if got := strings.Contains(log.String(), "credentials will be sent without TLS"); got != tc.warn {
			t.Errorf("tls %q with a username: warning logged %v, want %v; log:\n%s", tc.tls, got, tc.warn, log.String())
		}
	}
}
