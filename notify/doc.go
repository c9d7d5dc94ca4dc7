// Package notify delivers rebuild reports so that they always arrive.
//
// A Notifier sends a Message: by SMTP (the topic in the subject and in a Keywords header,
// so list filters can tell rebuild reports apart), as a JSON webhook, or to a writer.
// FanOut tries several notifiers; Spool keeps a report that could not be delivered on
// disk and delivers it first on the next run, once. SpoolEach wires both: one spool per
// target, so a report missed by one target is re-sent to that target only.
//
//	email, err := notify.NewSMTP(notify.SMTPConfig{
//		Addr: "127.0.0.1:25", From: "staging@example.org",
//		To: []string{"error-reports@example.org"},
//	})
//	// handle err
//	n, err := notify.SpoolEach(filepath.Join(stateDir, "spool"),
//		map[string]notify.Notifier{"email": email}, logger)
//	// handle err
//	err = n.Notify(ctx, &notify.Message{ID: notify.NewID(), Environment: "staging",
//		Topic: "staging-rebuild", Status: notify.StatusFailed, Subject: "restore failed",
//		Body: summary, Log: fullLog, Time: time.Now()})
//	if errors.Is(err, notify.ErrSpooled) {
//		// not delivered now; kept in the spool and sent first next time
//	}
//
// Package notifytest holds the conformance suite every Notifier runs, and Fake, an
// in-memory Notifier for tests.
package notify
