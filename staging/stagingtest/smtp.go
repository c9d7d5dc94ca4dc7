package stagingtest

import (
	"io"
	"net"
	"sync"
	"time"

	"github.com/emersion/go-smtp"
)

// Mail is one message a MailServer received.
type Mail struct {
	From string
	To   []string
	Data []byte // the raw message, headers and body
}

// MailServer is a real SMTP server on a loopback port that keeps what it receives.
type MailServer struct {
	Addr string

	mu    sync.Mutex
	mails []Mail
	srv   *smtp.Server
	done  chan struct{}
}

// StartMailServer starts a MailServer on 127.0.0.1 and a free port.
func StartMailServer() (*MailServer, error) { return startMailServer("127.0.0.1:0") }

func startMailServer(addr string) (*MailServer, error) {
	ms := &MailServer{done: make(chan struct{})}
	ms.srv = smtp.NewServer(smtp.BackendFunc(func(c *smtp.Conn) (smtp.Session, error) {
		return &mailSession{ms: ms}, nil
	}))
	ms.srv.Domain = "localhost"
	ms.srv.ReadTimeout, ms.srv.WriteTimeout = time.Minute, time.Minute
	ms.srv.ErrorLog = discardLog{}
	l, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, err
	}
	ms.Addr = l.Addr().String()
	go func() { defer close(ms.done); _ = ms.srv.Serve(l) }()
	return ms, nil
}

// Mails returns what the server received so far.
func (ms *MailServer) Mails() []Mail {
	ms.mu.Lock()
	defer ms.mu.Unlock()
	return append([]Mail(nil), ms.mails...)
}

// Close stops the server.
func (ms *MailServer) Close() error {
	err := ms.srv.Close()
	<-ms.done
	return err
}

type mailSession struct {
	ms  *MailServer
	cur Mail
}

func (s *mailSession) Mail(from string, _ *smtp.MailOptions) error { s.cur.From = from; return nil }
func (s *mailSession) Rcpt(to string, _ *smtp.RcptOptions) error {
	s.cur.To = append(s.cur.To, to)
	return nil
}
func (s *mailSession) Data(r io.Reader) error {
	b, err := io.ReadAll(r)
	if err != nil {
		return err
	}
	s.cur.Data = b
	s.ms.mu.Lock()
	s.ms.mails = append(s.ms.mails, s.cur)
	s.ms.mu.Unlock()
	s.cur = Mail{}
	return nil
}
func (s *mailSession) Reset()        { s.cur = Mail{} }
func (s *mailSession) Logout() error { return nil }

type discardLog struct{}

func (discardLog) Printf(string, ...any) {}
func (discardLog) Println(...any)        {}

// StartMailServerAt starts a MailServer on addr (e.g. the address of one that stopped).
func StartMailServerAt(addr string) (*MailServer, error) { return startMailServer(addr) }
