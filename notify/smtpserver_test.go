package notify_test

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"io"
	"math/big"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"
)

// received is one mail transaction a testSMTP server accepted.
type received struct {
	From     string
	To       []string
	Data     []byte
	TLS      bool   // the transaction ran over STARTTLS
	AuthUser string // "" without AUTH
}

// smtpOptions configures a test SMTP server.
type smtpOptions struct {
	STARTTLS    bool   // offer STARTTLS with a self-signed certificate
	User, Pass  string // if set, AUTH PLAIN is offered (after STARTTLS) and required
	RejectRcpts bool   // answer 550 to RCPT TO
}

// testSMTP is a real SMTP server (github.com/emersion/go-smtp) on a loopback port.
type testSMTP struct {
	Addr   string
	CAPool *x509.CertPool // trusts the server's certificate (when STARTTLS)

	mu       sync.Mutex
	msgs     []received
	authFail int
	srv      *smtp.Server
	stop     func()
}

// Stop shuts the server down (the port is closed: a server that is down).
func (ts *testSMTP) Stop() { ts.stop() }

func startSMTP(t testing.TB, opt smtpOptions) *testSMTP {
	t.Helper()
	return startSMTPAt(t, "127.0.0.1:0", opt)
}

// startSMTPAt starts the server on addr (e.g. the address of a server that was stopped).
func startSMTPAt(t testing.TB, addr string, opt smtpOptions) *testSMTP {
	t.Helper()
	ts := &testSMTP{}
	srv := smtp.NewServer(smtp.BackendFunc(func(c *smtp.Conn) (smtp.Session, error) {
		return &smtpSession{ts: ts, conn: c, opt: opt}, nil
	}))
	srv.Domain = "localhost"
	srv.ReadTimeout = time.Minute
	srv.WriteTimeout = time.Minute
	srv.ErrorLog = testLogger{t}
	if opt.STARTTLS {
		cert, pool := selfSigned(t)
		srv.TLSConfig = &tls.Config{Certificates: []tls.Certificate{cert}}
		ts.CAPool = pool
	}
	l, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	ts.Addr = l.Addr().String()
	ts.srv = srv
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = srv.Serve(l)
	}()
	var once sync.Once
	ts.stop = func() {
		once.Do(func() {
			_ = srv.Close()
			_ = l.Close() // Close misses the listener if Serve has not registered it yet
			<-done
		})
	}
	t.Cleanup(ts.Stop)
	return ts
}

// Messages returns a copy of what the server accepted so far.
func (ts *testSMTP) Messages() []received {
	ts.mu.Lock()
	defer ts.mu.Unlock()
	return append([]received(nil), ts.msgs...)
}

// AuthFailures counts rejected AUTH attempts.
func (ts *testSMTP) AuthFailures() int {
	ts.mu.Lock()
	defer ts.mu.Unlock()
	return ts.authFail
}

type smtpSession struct {
	ts   *testSMTP
	conn *smtp.Conn
	opt  smtpOptions
	cur  received
	user string
}

func (s *smtpSession) AuthMechanisms() []string {
	if s.opt.User == "" {
		return nil
	}
	return []string{sasl.Plain}
}

func (s *smtpSession) Auth(mech string) (sasl.Server, error) {
	return sasl.NewPlainServer(func(identity, username, password string) error {
		if username != s.opt.User || password != s.opt.Pass {
			s.ts.mu.Lock()
			s.ts.authFail++
			s.ts.mu.Unlock()
			return smtp.ErrAuthFailed
		}
		s.user = username
		return nil
	}), nil
}

func (s *smtpSession) Mail(from string, _ *smtp.MailOptions) error {
	if s.opt.User != "" && s.user == "" {
		return smtp.ErrAuthRequired
	}
	s.cur = received{From: from}
	return nil
}

func (s *smtpSession) Rcpt(to string, _ *smtp.RcptOptions) error {
	if s.opt.RejectRcpts {
		return &smtp.SMTPError{Code: 550, EnhancedCode: smtp.EnhancedCode{5, 1, 1}, Message: "no such user"}
	}
	s.cur.To = append(s.cur.To, to)
	return nil
}

func (s *smtpSession) Data(r io.Reader) error {
	b, err := io.ReadAll(r)
	if err != nil {
		return err
	}
	_, isTLS := s.conn.TLSConnectionState()
	s.cur.Data, s.cur.TLS, s.cur.AuthUser = b, isTLS, s.user
	s.ts.mu.Lock()
	s.ts.msgs = append(s.ts.msgs, s.cur)
	s.ts.mu.Unlock()
	return nil
}

func (s *smtpSession) Reset()        { s.cur = received{} }
func (s *smtpSession) Logout() error { return nil }

// selfSigned returns a certificate for 127.0.0.1 / localhost and a pool trusting it.
func selfSigned(t testing.TB) (tls.Certificate, *x509.CertPool) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "restage test SMTP"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(24 * time.Hour),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		IPAddresses:           []net.IP{net.IPv4(127, 0, 0, 1), net.IPv6loopback},
		DNSNames:              []string{"localhost"},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	leaf, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(leaf)
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key, Leaf: leaf}, pool
}

// testLogger sends go-smtp's server log to the test log.
type testLogger struct{ t testing.TB }

func (l testLogger) Printf(format string, v ...interface{}) { l.t.Logf(format, v...) }
func (l testLogger) Println(v ...interface{})               { l.t.Log(v...) }

// deadPort returns a loopback address nothing listens on.
func deadPort(t testing.TB) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	if err := l.Close(); err != nil && !errors.Is(err, net.ErrClosed) {
		t.Fatal(err)
	}
	return addr
}
