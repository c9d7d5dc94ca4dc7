package smtptest

import (
	"crypto/tls"
	"net"
	"net/smtp"
	"testing"
)

// TestServer: mail sent over STARTTLS with AUTH is kept as sent; a wrong password is
// counted and refused; a closed server's port is closed, and closing again is no error.
func TestServer(t *testing.T) {
	s, err := Start("127.0.0.1:0", Options{STARTTLS: true, User: "u", Pass: "p"})
	if err != nil {
		t.Fatal(err)
	}
	send := func(pass string) error {
		c, err := smtp.Dial(s.Addr)
		if err != nil {
			return err
		}
		defer c.Close()
		if err := c.StartTLS(&tls.Config{ServerName: "localhost", RootCAs: s.CAPool}); err != nil {
			return err
		}
		if err := c.Auth(smtp.PlainAuth("", "u", pass, "127.0.0.1")); err != nil {
			return err
		}
		if err := c.Mail("a@example.com"); err != nil {
			return err
		}
		if err := c.Rcpt("b@example.com"); err != nil {
			return err
		}
		w, err := c.Data()
		if err != nil {
			return err
		}
		if _, err := w.Write([]byte("Subject: hi\r\n\r\nbody\r\n")); err != nil {
			return err
		}
		if err := w.Close(); err != nil {
			return err
		}
		return c.Quit()
	}
	if err := send("wrong"); err == nil {
		t.Error("a wrong password was accepted")
	}
	if err := send("p"); err != nil {
		t.Fatal(err)
	}
	m := s.Mails()
	if len(m) != 1 || m[0].From != "a@example.com" || len(m[0].To) != 1 || m[0].To[0] != "b@example.com" ||
		!m[0].TLS || m[0].AuthUser != "u" || string(m[0].Data) != "Subject: hi\r\n\r\nbody\r\n" {
		t.Errorf("mails %+v", m)
	}
	if n := s.AuthFailures(); n != 1 {
		t.Errorf("%d AUTH failures, want 1", n)
	}
	if err := s.Close(); err != nil {
		t.Error(err)
	}
	if err := s.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
	if c, err := net.Dial("tcp", s.Addr); err == nil {
		c.Close()
		t.Error("the port still answers after Close")
	}
}
