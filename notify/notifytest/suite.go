package notifytest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"reflect"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/restage/restage/internal/testutil"
	"github.com/restage/restage/notify"
)

// Report is one report as its receiver got it, decoded from what the Notifier sent.
type Report struct {
	ID      string // the report's ID (an SMTP X-Restage-Report-ID header, a webhook's id field)
	Subject string // the whole subject line: notify.FullSubject of the message
	Topic   string // the topic (an SMTP Keywords header, a webhook's topic field)
	Status  string // "ok", "failed"
	Body    string // the plain-text body
	LogName string // the log's name; "" when the message had no log
	Log     []byte // the log's bytes; compared only where Setup.CarriesLog
}

// Setup is one Notifier under test, delivering to a receiver that is up, and the way to
// read what that receiver got.
type Setup struct {
	Notifier notify.Notifier
	// Received returns every report the receiver got so far, in any order; the suite
	// polls it. Required.
	Received func(t testing.TB) []Report
	// CarriesLog says that the receiver gets the log's bytes (an SMTP attachment), not
	// only its name: the suite then compares them.
	CarriesLog bool
}

// Fixture tells Notifier how to make the notifiers it checks. Each function is called
// once per subtest, with that subtest's t (use t.TempDir and t.Cleanup for what it
// starts).
type Fixture struct {
	// New returns a notifier whose target is up. Required.
	New func(t *testing.T) Setup
	// Dead returns a notifier whose target cannot be reached (nothing listens at its
	// address, its writer fails). nil: the check is skipped.
	Dead func(t *testing.T) notify.Notifier
	// Stalled returns a notifier whose target accepts and then never answers (a server
	// that stops talking, a writer that blocks). nil: the check is skipped.
	Stalled func(t *testing.T) notify.Notifier
	// Rejecting returns a notifier whose target answers and refuses every report for
	// good (an SMTP 5xx reply, an HTTP 4xx). nil: the target cannot refuse a report, and
	// the check is skipped.
	Rejecting func(t *testing.T) notify.Notifier
	// Deadline is the ctx deadline the Stalled notifier gets; 0: 300ms. Notify must
	// return within Deadline plus DeadlineSlack.
	Deadline time.Duration
}

// DeadlineSlack is how long after its ctx deadline Notify may return and still count as
// keeping it (the machine running the tests may be busy).
const DeadlineSlack = 3 * time.Second

// hangLimit is how long the suite waits for a Notify that does not return before it
// gives up on it (the test then fails at once instead of hanging).
const hangLimit = 20 * time.Second

// Message returns a report with every field set: a body with non-ASCII letters, a '%'
// and a line holding a lone dot, and a log with its own name. Each call returns a new
// Message.
func Message(id string) *notify.Message {
	return &notify.Message{
		ID:          id,
		Environment: "staging",
		Topic:       "staging-rebuild",
		Status:      notify.StatusFailed,
		Subject:     "staging rebuild failed at step restore",
		Body: "Step restore failed: pg_restore exited 1.\nStaging was left as it was.\n" +
			"Ärger mit Umlauten, 100% sicher.\n.\nThe line above holds a lone dot.\n",
		Log:     []byte("20:00 start\n20:01 restore\npg_restore: error: could not connect\n"),
		LogName: "staging-20261125.log",
		Time:    time.Date(2026, 11, 25, 20, 0, 0, 0, time.UTC),
	}
}

// Notifier runs the conformance suite against the notifiers f makes. Each promise is a
// subtest: delivers, ok-no-log, nil-message, concurrent, cancelled, deadline,
// dead-target, rejected, close.
func Notifier(t *testing.T, f Fixture) {
	t.Helper()
	if f.New == nil {
		t.Fatal("notifytest: Fixture.New is required")
	}
	t.Run("delivers", func(t *testing.T) { delivers(t, f) })
	t.Run("ok-no-log", func(t *testing.T) { okNoLog(t, f) })
	t.Run("nil-message", func(t *testing.T) {
		if err := f.New(t).Notifier.Notify(t.Context(), nil); !errors.Is(err, notify.ErrInvalidMessage) {
			t.Fatalf("Notify(nil) = %v, want notify.ErrInvalidMessage", err)
		}
	})
	t.Run("concurrent", func(t *testing.T) { concurrent(t, f) })
	t.Run("cancelled", func(t *testing.T) { cancelled(t, f) })
	t.Run("deadline", func(t *testing.T) {
		if f.Stalled == nil {
			t.Skip("no Fixture.Stalled")
		}
		d := f.Deadline
		if d == 0 {
			d = 300 * time.Millisecond
		}
		if err := NotifyWithin(t, f.Stalled(t), d); !errors.Is(err, context.DeadlineExceeded) {
			t.Errorf("Notify with a stalled target = %v, want an error matching context.DeadlineExceeded", err)
		}
	})
	t.Run("dead-target", func(t *testing.T) {
		if f.Dead == nil {
			t.Skip("no Fixture.Dead")
		}
		err := f.Dead(t).Notify(t.Context(), Message("suite-dead"))
		if err == nil {
			t.Fatal("Notify to a dead target succeeded")
		}
		if errors.Is(err, notify.ErrRejected) {
			t.Errorf("a target that did not answer counts as a rejection (a Spool would go on past it): %v", err)
		}
	})
	t.Run("rejected", func(t *testing.T) {
		if f.Rejecting == nil {
			t.Skip("no Fixture.Rejecting: the target cannot refuse a report")
		}
		if err := f.Rejecting(t).Notify(t.Context(), Message("suite-rejected")); !errors.Is(err, notify.ErrRejected) {
			t.Errorf("Notify to a refusing target = %v, want an error matching notify.ErrRejected", err)
		}
	})
	t.Run("close", func(t *testing.T) { closeTwice(t, f) })
}

func delivers(t *testing.T, f Fixture) {
	s := f.New(t)
	m := Message("suite-delivers")
	want := clone(m)
	if err := s.Notifier.Notify(t.Context(), m); err != nil {
		t.Fatalf("Notify: %v", err)
	}
	if !reflect.DeepEqual(m, want) {
		t.Errorf("Notify changed the caller's message:\n got %+v\nwant %+v", m, want)
	}
	got := waitReports(t, s, 1)
	if len(got) != 1 {
		t.Fatalf("received %d reports, want 1: %+v", len(got), got)
	}
	r := got[0]
	for _, c := range []struct{ field, got, want string }{
		{"ID", r.ID, m.ID},
		{"subject", r.Subject, "[staging-rebuild] FAILED: staging rebuild failed at step restore"},
		{"topic", r.Topic, m.Topic},
		{"status", r.Status, string(m.Status)},
		{"body", r.Body, m.Body},
		{"log name", r.LogName, m.LogName},
	} {
		if c.got != c.want {
			t.Errorf("%s %q, want %q", c.field, c.got, c.want)
		}
	}
	if s.CarriesLog && !bytes.Equal(r.Log, m.Log) {
		t.Errorf("log %q, want %q", r.Log, m.Log)
	}
}

func okNoLog(t *testing.T, f Fixture) {
	s := f.New(t)
	m := &notify.Message{ID: "suite-ok", Environment: "staging", Topic: "staging-rebuild",
		Status: notify.StatusOK, Subject: "staging rebuilt", Body: "all good\n", Time: time.Now()}
	want := clone(m)
	if err := s.Notifier.Notify(t.Context(), m); err != nil {
		t.Fatalf("Notify: %v", err)
	}
	if !reflect.DeepEqual(m, want) {
		t.Errorf("Notify changed the caller's message:\n got %+v\nwant %+v", m, want)
	}
	r := waitReports(t, s, 1)[0]
	if r.Subject != "[staging-rebuild] staging rebuilt" || r.Status != "ok" || r.Body != m.Body {
		t.Errorf("got %+v", r)
	}
	if r.LogName != "" || len(r.Log) != 0 {
		t.Errorf("a log arrived for a message without one: %q %q", r.LogName, r.Log)
	}
}

func concurrent(t *testing.T, f Fixture) {
	s := f.New(t)
	const n = 8
	var wg sync.WaitGroup
	errs := make([]error, n)
	for i := range n {
		wg.Go(func() {
			m := Message(fmt.Sprintf("suite-concurrent-%d", i))
			m.Subject = fmt.Sprintf("report %d", i)
			errs[i] = s.Notifier.Notify(t.Context(), m)
		})
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		t.Fatalf("Notify: %v", err)
	}
	got := waitReports(t, s, n)
	var ids []string
	for _, r := range got {
		ids = append(ids, r.ID)
	}
	slices.Sort(ids)
	for i := range n {
		if id := fmt.Sprintf("suite-concurrent-%d", i); !slices.Contains(ids, id) {
			t.Errorf("report %s missing (got %v)", id, ids)
		}
	}
	if len(got) != n {
		t.Errorf("received %d reports, want %d: %v", len(got), n, ids)
	}
}

func cancelled(t *testing.T, f Fixture) {
	s := f.New(t)
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	err := s.Notifier.Notify(ctx, Message("suite-cancelled"))
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("Notify with a cancelled context = %v, want an error matching context.Canceled", err)
	}
	if got := s.Received(t); len(got) != 0 {
		t.Errorf("a report arrived although its context was cancelled first: %+v", got)
	}
}

func closeTwice(t *testing.T, f Fixture) {
	s := f.New(t)
	testutil.RequireCloseTwice(t, s.Notifier)
	if err := s.Notifier.Notify(t.Context(), Message("suite-closed")); err == nil {
		t.Error("Notify after Close succeeded")
	}
}

// NotifyWithin calls n.Notify with a report and a ctx deadline d from now, and fails t
// unless it returns by d plus DeadlineSlack; it stops waiting (t.Fatal) 20s after that.
// It returns Notify's error.
func NotifyWithin(t testing.TB, n notify.Notifier, d time.Duration) error {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), d)
	defer cancel()
	done := make(chan error, 1)
	start := time.Now()
	go func() { done <- n.Notify(ctx, Message("suite-deadline")) }()
	select {
	case err := <-done:
		elapsed := time.Since(start)
		t.Logf("Notify returned after %v: %v", elapsed.Round(time.Millisecond), err)
		if elapsed > d+DeadlineSlack {
			t.Errorf("Notify returned %v after its %v deadline", (elapsed - d).Round(time.Millisecond), d)
		}
		return err
	case <-time.After(d + hangLimit):
		t.Fatalf("Notify still runs %v after its %v deadline", hangLimit, d)
		return nil
	}
}

// waitReports polls s.Received until it holds n reports (or more), failing after a
// generous bound, and returns them.
func waitReports(t *testing.T, s Setup, n int) []Report {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		got := s.Received(t)
		if len(got) >= n {
			return got
		}
		if time.Now().After(deadline) {
			t.Fatalf("received %d reports after 30s, want %d: %+v", len(got), n, got)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// clone returns a deep copy of m.
func clone(m *notify.Message) *notify.Message {
	c := *m
	c.Log = bytes.Clone(m.Log)
	return &c
}
