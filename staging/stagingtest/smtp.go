package stagingtest

import "github.com/restage/restage/internal/smtptest"

// Mail is one message a MailServer received: From, To, Data (the raw message, headers
// and body), and whether it came over STARTTLS and with AUTH.
type Mail = smtptest.Mail

// MailServer is a real SMTP server on a loopback port that keeps what it receives: its
// Addr, Mails() and Close().
type MailServer = smtptest.Server

// StartMailServer starts a MailServer on 127.0.0.1 and a free port.
func StartMailServer() (*MailServer, error) { return StartMailServerAt("127.0.0.1:0") }

// StartMailServerAt starts a MailServer on addr (e.g. the address of one that stopped).
func StartMailServerAt(addr string) (*MailServer, error) {
	return smtptest.Start(addr, smtptest.Options{})
}
