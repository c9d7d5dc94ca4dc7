package notify_test

import (
	"testing"

	"github.com/restage/restage/internal/smtptest"
)

// startSMTP starts a test SMTP server on a free loopback port, stopped when the test ends.
func startSMTP(t testing.TB, opt smtptest.Options) *smtptest.Server {
	t.Helper()
	return startSMTPAt(t, "127.0.0.1:0", opt)
}

// startSMTPAt starts the server on addr (e.g. the address of a server that was stopped),
// its log in the test log.
func startSMTPAt(t testing.TB, addr string, opt smtptest.Options) *smtptest.Server {
	t.Helper()
	opt.ErrorLog = testLogger{t}
	srv, err := smtptest.Start(addr, opt)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = srv.Close() })
	return srv
}

// testLogger sends go-smtp's server log to the test log.
type testLogger struct{ t testing.TB }

func (l testLogger) Printf(format string, v ...interface{}) { l.t.Logf(format, v...) }
func (l testLogger) Println(v ...interface{})               { l.t.Log(v...) }
