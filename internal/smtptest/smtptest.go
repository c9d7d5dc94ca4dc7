// Package smtptest is a real SMTP server (github.com/emersion/go-smtp) on a loopback
// port that keeps the mail it accepts, for tests: notify's tests of its SMTP notifier
// and the staging test world (staging/stagingtest) use it. It can offer STARTTLS with a
// self-signed certificate, require AUTH PLAIN and refuse every recipient.
//
//	srv, err := smtptest.Start("127.0.0.1:0", smtptest.Options{STARTTLS: true})
//	defer srv.Close()
//	... send to srv.Addr, trusting srv.CAPool ...
//	mails := srv.Mails()
package smtptest

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"io"
	"math/big"
	"net"
	"sync"
	"time"

	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"
)

// Mail is one mail transaction the server accepted.
type Mail struct {
	From     string
	To       []string
	Data     []byte // the raw message, headers and body
	TLS      bool   // the transaction ran over STARTTLS
	AuthUser string // "" without AUTH
}

// Options configures a Server. The zero value is a plain server that accepts all mail.
type Options struct {
	STARTTLS    bool   // offer STARTTLS with a self-signed certificate (Server.CAPool trusts it)
	User, Pass  string // if set, AUTH PLAIN is offered (after STARTTLS) and required
	RejectRcpts bool   // answer 550 to RCPT TO
	// ErrorLog receives go-smtp's server log; nil: discarded.
	ErrorLog smtp.Logger
}

// Server is a running SMTP server. It is safe for concurrent use.
type Server struct {
	Addr   string         // host:port it listens on
	CAPool *x509.CertPool // trusts its certificate (with Options.STARTTLS)

	mu       sync.Mutex
	mails    []Mail
	authFail int
	close    func() error
}

// Start starts a server on addr: "127.0.0.1:0" for a free port, or the address of a
// server that was closed to bring it back.
func Start(addr string, opt Options) (*Server, error) {
	s := &Server{}
	srv := smtp.NewServer(smtp.BackendFunc(func(c *smtp.Conn) (smtp.Session, error) {
		return &session{s: s, conn: c, opt: opt}, nil
	}))
	srv.Domain = "localhost"
	srv.ReadTimeout, srv.WriteTimeout = time.Minute, time.Minute
	srv.ErrorLog = opt.ErrorLog
	if srv.ErrorLog == nil {
		srv.ErrorLog = discard{}
	}
	if opt.STARTTLS {
		cert, pool, err := selfSigned()
		if err != nil {
			return nil, err
		}
		srv.TLSConfig = &tls.Config{Certificates: []tls.Certificate{cert}}
		s.CAPool = pool
	}
	l, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, err
	}
	s.Addr = l.Addr().String()
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = srv.Serve(l)
	}()
	s.close = sync.OnceValue(func() error {
		err := srv.Close()
		_ = l.Close() // Close misses the listener if Serve has not registered it yet
		<-done
		return err
	})
	return s, nil
}

// Close stops the server: its port is closed (a server that is down). Closing again
// does nothing.
func (s *Server) Close() error { return s.close() }

// Mails returns a copy of what the server accepted so far.
func (s *Server) Mails() []Mail {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]Mail(nil), s.mails...)
}

// AuthFailures counts the AUTH attempts refused.
func (s *Server) AuthFailures() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.authFail
}

type session struct {
	s    *Server
	conn *smtp.Conn
	opt  Options
	cur  Mail
	user string
}

func (ss *session) AuthMechanisms() []string {
	if ss.opt.User == "" {
		return nil
	}
	return []string{sasl.Plain}
}

func (ss *session) Auth(mech string) (sasl.Server, error) {
	return sasl.NewPlainServer(func(identity, username, password string) error {
		if username != ss.opt.User || password != ss.opt.Pass {
			ss.s.mu.Lock()
			ss.s.authFail++
			ss.s.mu.Unlock()
			return smtp.ErrAuthFailed
		}
		ss.user = username
		return nil
	}), nil
}

func (ss *session) Mail(from string, _ *smtp.MailOptions) error {
	if ss.opt.User != "" && ss.user == "" {
		return smtp.ErrAuthRequired
	}
	ss.cur = Mail{From: from}
	return nil
}

func (ss *session) Rcpt(to string, _ *smtp.RcptOptions) error {
	if ss.opt.RejectRcpts {
		return &smtp.SMTPError{Code: 550, EnhancedCode: smtp.EnhancedCode{5, 1, 1}, Message: "no such user"}
	}
	ss.cur.To = append(ss.cur.To, to)
	return nil
}

func (ss *session) Data(r io.Reader) error {
	b, err := io.ReadAll(r)
	if err != nil {
		return err
	}
	_, isTLS := ss.conn.TLSConnectionState()
	ss.cur.Data, ss.cur.TLS, ss.cur.AuthUser = b, isTLS, ss.user
	ss.s.mu.Lock()
	ss.s.mails = append(ss.s.mails, ss.cur)
	ss.s.mu.Unlock()
	ss.cur = Mail{}
	return nil
}

func (ss *session) Reset()        { ss.cur = Mail{} }
func (ss *session) Logout() error { return nil }

type discard struct{}

func (discard) Printf(string, ...any) {}
func (discard) Println(...any)        {}

// selfSigned returns a certificate for 127.0.0.1 / localhost and a pool trusting it.
func selfSigned() (tls.Certificate, *x509.CertPool, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return tls.Certificate{}, nil, err
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
		return tls.Certificate{}, nil, err
	}
	leaf, err := x509.ParseCertificate(der)
	if err != nil {
		return tls.Certificate{}, nil, err
	}
	pool := x509.NewCertPool()
	pool.AddCert(leaf)
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key, Leaf: leaf}, pool, nil
}
