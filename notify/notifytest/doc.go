// Package notifytest checks that a notify.Notifier keeps the promises every notifier
// makes, and provides Fake, an in-memory Notifier for tests of code that sends reports.
//
// Notifier is the conformance suite that notify's own notifiers (SMTP, Webhook, Writer,
// FanOut, Spool) and Fake run; a third-party notifier runs it in its own tests. It checks
// that a report arrives once with its ID, subject, topic, status, body and log intact and
// the caller's Message unchanged; that concurrent calls all arrive; that a nil message is
// notify.ErrInvalidMessage; that a done context stops delivery and a deadline is kept
// even when the target hangs; that an unreachable target is an error that is not
// notify.ErrRejected, and a target that refuses for good is notify.ErrRejected; and that
// Close, for a notifier that has one, can be called twice.
//
//	func TestMyNotifierConformance(t *testing.T) {
//		notifytest.Notifier(t, notifytest.Fixture{
//			New: func(t *testing.T) notifytest.Setup {
//				srv := startMyServer(t) // records what it receives
//				return notifytest.Setup{
//					Notifier: mynotifier.New(srv.URL),
//					Received: func(t testing.TB) []notifytest.Report { return srv.Reports(t) },
//				}
//			},
//			Dead:      func(t *testing.T) notify.Notifier { return mynotifier.New("http://127.0.0.1:1") },
//			Stalled:   func(t *testing.T) notify.Notifier { return mynotifier.New(hangingServer(t)) },
//			Rejecting: func(t *testing.T) notify.Notifier { return mynotifier.New(refusingServer(t)) },
//		})
//	}
//
// Fake records what it is given and lets function fields decide deliveries:
//
//	down := &notifytest.Fake{NotifyFunc: func(context.Context, *notify.Message) error {
//		return errors.New("connection refused")
//	}}
//	spool, err := notify.NewSpool(t.TempDir(), down, nil)
//	// ... the code under test reports through spool; down.Messages() is empty, the
//	// report is spooled; clear NotifyFunc and Flush to see it delivered.
package notifytest
