package notify

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/base64"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/mail"
	"strconv"
	"strings"
	"sync"
	"time"

	gomail "github.com/wneessen/go-mail"

	"github.com/restage/restage/internal/redact"
)

// TLSMode says how the SMTP notifier uses TLS.
type TLSMode string

// TLS modes; the strings are the values of the [notify.email] tls key.
const (
	// TLSOpportunistic, without credentials, uses STARTTLS when the server offers it
	// and sends in clear text otherwise, without verifying the certificate
	// (opportunistic security, RFC 7435: a local MTA with a self-signed certificate still
	// gets the mail, encrypted; a man in the middle who strips STARTTLS gets it in
	// clear). With credentials it is TLSRequired, so that a password, or an answer
	// computed from it, is never handed to a peer without TLS or an unverified one.
	// SMTPConfig.TLSConfig, when set, is always used as given.
	TLSOpportunistic TLSMode = "opportunistic"
	// TLSRequired fails unless the server offers STARTTLS and presents a certificate
	// that verifies (against SMTPConfig.TLSConfig, or the system roots).
	TLSRequired TLSMode = "required"
	// TLSNone never uses TLS.
	TLSNone TLSMode = "none"
)

// Default SMTP settings.
const (
	DefaultSMTPTimeout = 30 * time.Second
	DefaultSMTPPort    = 25
)

// SMTPConfig configures an SMTP notifier.
type SMTPConfig struct {
	Addr     string   // server "host:port"; required. A missing port means 25.
	From     string   // sender address, e.g. "staging@example.org"; required
	To       []string // recipients; at least one required
	Username string   // "": no SMTP AUTH
	Password string   // used with Username; never logged nor put in an error
	// TLS is the STARTTLS policy; "": TLSOpportunistic.
	TLS TLSMode
	// TLSConfig overrides the TLS client configuration (e.g. RootCAs for a private CA, or
	// InsecureSkipVerify); nil: system roots, ServerName from Addr. It is cloned.
	TLSConfig *tls.Config
	// HELO is the name sent in EHLO; "": this host's name.
	HELO string
	// Timeout bounds the connection and every SMTP command; 0: DefaultSMTPTimeout.
	Timeout time.Duration
	Logger  *slog.Logger // nil: slog.Default()
}

// SMTP sends reports as e-mail with github.com/wneessen/go-mail. The subject is
// FullSubject(m), the topic also goes in a "Keywords:" header (plus X-Restage-Environment,
// X-Restage-Status and X-Restage-Report-ID), the body is plain text and a non-empty log is
// attached as a text/plain file. The Message-ID is derived from the report ID, so a
// report that is ever sent twice can be recognised as one by mail software.
// It is safe for concurrent use; each Notify opens its own connection.
type SMTP struct {
	cfg    SMTPConfig
	host   string
	port   int
	from   *mail.Address
	to     []*mail.Address
	domain string
	logger *slog.Logger
}

var _ Notifier = (*SMTP)(nil)

// NewSMTP validates cfg and returns an SMTP notifier. Errors wrap ErrInvalidConfig and
// name the field.
func NewSMTP(cfg SMTPConfig) (*SMTP, error) {
	s := &SMTP{cfg: cfg, logger: cfg.Logger}
	if s.logger == nil {
		s.logger = slog.Default()
	}
	if cfg.Addr == "" {
		return nil, fmt.Errorf("%w: Addr: missing (want host:port)", ErrInvalidConfig)
	}
	host, portStr, err := net.SplitHostPort(cfg.Addr)
	if err != nil {
		if strings.Contains(err.Error(), "missing port") {
			host, portStr = strings.Trim(cfg.Addr, "[]"), strconv.Itoa(DefaultSMTPPort)
		} else {
			return nil, fmt.Errorf("%w: Addr %q: %v", ErrInvalidConfig, cfg.Addr, err)
		}
	}
	port, err := strconv.Atoi(portStr)
	if err != nil || port < 1 || port > 65535 {
		return nil, fmt.Errorf("%w: Addr %q: bad port %q", ErrInvalidConfig, cfg.Addr, portStr)
	}
	if host == "" {
		return nil, fmt.Errorf("%w: Addr %q: missing host", ErrInvalidConfig, cfg.Addr)
	}
	s.host, s.port = host, port
	if cfg.From == "" {
		return nil, fmt.Errorf("%w: From: missing", ErrInvalidConfig)
	}
	if s.from, err = mail.ParseAddress(cfg.From); err != nil {
		return nil, fmt.Errorf("%w: From %q: %v", ErrInvalidConfig, cfg.From, err)
	}
	if len(cfg.To) == 0 {
		return nil, fmt.Errorf("%w: To: no recipients", ErrInvalidConfig)
	}
	for i, t := range cfg.To {
		a, err := mail.ParseAddress(t)
		if err != nil {
			return nil, fmt.Errorf("%w: To[%d] %q: %v", ErrInvalidConfig, i, t, err)
		}
		s.to = append(s.to, a)
	}
	if cfg.Password != "" && cfg.Username == "" {
		return nil, fmt.Errorf("%w: Password set without Username", ErrInvalidConfig)
	}
	switch cfg.TLS {
	case "":
		s.cfg.TLS = TLSOpportunistic
	case TLSOpportunistic, TLSRequired, TLSNone:
	default:
		return nil, fmt.Errorf("%w: TLS %q: want %q, %q or %q", ErrInvalidConfig, cfg.TLS,
			TLSOpportunistic, TLSRequired, TLSNone)
	}
	if cfg.TLS == TLSNone && cfg.Username != "" {
		s.logger.Warn("notify: SMTP credentials will be sent without TLS", "addr", cfg.Addr)
	}
	if cfg.Timeout < 0 {
		return nil, fmt.Errorf("%w: Timeout %v: negative", ErrInvalidConfig, cfg.Timeout)
	}
	if s.cfg.Timeout == 0 {
		s.cfg.Timeout = DefaultSMTPTimeout
	}
	if _, d, ok := strings.Cut(s.from.Address, "@"); ok && d != "" {
		s.domain = d
	} else {
		s.domain = "restage.invalid"
	}
	return s, nil
}

// String names the notifier (for fan-out errors and logs); it never shows the password.
func (s *SMTP) String() string {
	return "smtp " + s.cfg.Addr
}

// Notify sends m to every recipient in one SMTP transaction.
func (s *SMTP) Notify(ctx context.Context, m *Message) error {
	if err := checkMessage(m); err != nil {
		return err
	}
	msg, err := s.build(m)
	if err != nil {
		return s.redact(fmt.Errorf("notify: smtp %s: build message: %w", s.cfg.Addr, err))
	}
	client, stop, err := s.client(ctx)
	if err != nil {
		return s.redact(fmt.Errorf("notify: smtp %s: %w", s.cfg.Addr, err))
	}
	defer stop()
	start := time.Now()
	if err := client.DialAndSendWithContext(ctx, msg); err != nil {
		var se *gomail.SendError
		switch {
		case ctx.Err() != nil:
			err = fmt.Errorf("%w (%w)", ctx.Err(), err)
		case errors.As(err, &se) && se.ErrorCode() >= 500 && se.ErrorCode() <= 599:
			err = fmt.Errorf("%w: %w", ErrRejected, err)
		}
		return s.redact(fmt.Errorf("notify: smtp %s: %w", s.cfg.Addr, err))
	}
	s.logger.Info("notify: report mailed", logKeyID, m.ID, logKeyTopic, m.Topic,
		logKeyStatus, string(m.Status), logKeyTarget, s.String(), "to", len(s.to),
		logKeyDuration, time.Since(start))
	return nil
}

// build turns m into a go-mail message.
func (s *SMTP) build(m *Message) (*gomail.Msg, error) {
	msg := gomail.NewMsg(gomail.WithNoDefaultUserAgent())
	msg.FromMailAddress(s.from)
	msg.ToMailAddress(s.to...)
	msg.Subject(FullSubject(m))
	if t := oneLine(m.Topic); t != "" {
		msg.SetGenHeader("Keywords", t)
	}
	if e := oneLine(m.Environment); e != "" {
		msg.SetGenHeader("X-Restage-Environment", e)
	}
	if m.Status != "" {
		msg.SetGenHeader("X-Restage-Status", oneLine(string(m.Status)))
	}
	if m.ID != "" {
		msg.SetGenHeader("X-Restage-Report-ID", oneLine(m.ID))
		msg.SetMessageIDWithValue("restage." + safeName(m.ID) + "@" + s.domain)
	}
	if !m.Time.IsZero() {
		msg.SetDateWithValue(m.Time)
	}
	msg.SetUserAgent("restage")
	msg.SetBodyString(gomail.TypeTextPlain, m.Body)
	if len(m.Log) > 0 {
		if err := msg.AttachReader(LogName(m), bytes.NewReader(m.Log),
			gomail.WithFileContentType(gomail.TypeTextPlain)); err != nil {
			return nil, err
		}
	}
	return msg, nil
}

// client returns a go-mail client for one Notify call and a function that releases what
// watches ctx. Cancelling ctx closes the connection, so a hung server cannot outlive it.
func (s *SMTP) client(ctx context.Context) (*gomail.Client, func(), error) {
	var mu sync.Mutex
	var stops []func() bool
	dial := func(dctx context.Context, network, addr string) (net.Conn, error) {
		var d net.Dialer
		conn, err := d.DialContext(dctx, network, addr)
		if err != nil {
			return nil, err
		}
		mu.Lock()
		stops = append(stops, context.AfterFunc(ctx, func() { _ = conn.Close() }))
		mu.Unlock()
		return conn, nil
	}
	stop := func() {
		mu.Lock()
		defer mu.Unlock()
		for _, f := range stops {
			f()
		}
	}
	tlsConf := &tls.Config{MinVersion: tls.VersionTLS12}
	if s.cfg.TLSConfig != nil {
		tlsConf = s.cfg.TLSConfig.Clone()
	} else if s.cfg.TLS == TLSOpportunistic && s.cfg.Username == "" {
		// Opportunistic security: encryption without authentication beats clear text.
		tlsConf.InsecureSkipVerify = true //nolint:gosec // documented TLSOpportunistic behaviour
	}
	if tlsConf.ServerName == "" {
		tlsConf.ServerName = s.host
	}
	policy := gomail.TLSOpportunistic
	switch {
	case s.cfg.TLS == TLSRequired, s.cfg.TLS == TLSOpportunistic && s.cfg.Username != "":
		// With credentials, a server that offers no STARTTLS (or a man in the middle
		// who strips it) would get a CRAM-MD5 answer, crackable offline, and the report.
		policy = gomail.TLSMandatory
	case s.cfg.TLS == TLSNone:
		policy = gomail.NoTLS
	}
	opts := []gomail.Option{
		gomail.WithPort(s.port),
		gomail.WithTimeout(s.cfg.Timeout),
		gomail.WithTLSPolicy(policy),
		gomail.WithTLSConfig(tlsConf),
		gomail.WithDialContextFunc(dial),
	}
	if s.cfg.HELO != "" {
		opts = append(opts, gomail.WithHELO(s.cfg.HELO))
	}
	if s.cfg.Username != "" {
		auth := gomail.SMTPAuthAutoDiscover // PLAIN/LOGIN only over TLS
		if s.cfg.TLS == TLSNone {
			auth = gomail.SMTPAuthPlainNoEnc
		}
		opts = append(opts, gomail.WithSMTPAuth(auth),
			gomail.WithUsername(s.cfg.Username), gomail.WithPassword(s.cfg.Password))
	}
	c, err := gomail.NewClient(s.host, opts...)
	if err != nil {
		return nil, stop, err
	}
	return c, stop, nil
}

// redact returns err with the password hidden (internal/redact, with the password and
// its AUTH PLAIN encodings as named secrets).
func (s *SMTP) redact(err error) error {
	if s.cfg.Password == "" {
		return redact.Error(err)
	}
	return redact.Error(err, // longest first: one may hold another
		base64.StdEncoding.EncodeToString([]byte("\x00"+s.cfg.Username+"\x00"+s.cfg.Password)),
		base64.StdEncoding.EncodeToString([]byte(s.cfg.Password)),
		s.cfg.Password)
}
