package notify_test

import (
	"context"
	"errors"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/restage/restage/notify"
)

func TestWriterSuite(t *testing.T) {
	testNotifier(t, func(t *testing.T) harness {
		var buf syncBuffer
		w, err := notify.NewWriter(notify.WriterConfig{Out: &buf, IncludeLog: true})
		if err != nil {
			t.Fatal(err)
		}
		return harness{N: w, HasLog: true, Received: func(t testing.TB) []report {
			return parseWriterOutput(t, buf.String())
		}}
	})
}

func TestWriterFormat(t *testing.T) {
	var buf syncBuffer
	w, err := notify.NewWriter(notify.WriterConfig{Out: &buf})
	if err != nil {
		t.Fatal(err)
	}
	if err := w.Notify(t.Context(), testMessage("w-1")); err != nil {
		t.Fatal(err)
	}
	out := buf.String()
	for _, want := range []string{
		"Subject: [staging-rebuild] FAILED: staging rebuild failed at step restore\n",
		"Environment: staging\n", "Status: failed\n", "Time: 2026-11-25T20:00:00Z\n", "ID: w-1\n",
		"Log: staging-20261125.log (63 bytes)\n\nStep restore failed",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
	if strings.Contains(out, "could not connect") {
		t.Error("log printed without IncludeLog")
	}
	if _, err := notify.NewWriter(notify.WriterConfig{}); !errors.Is(err, notify.ErrInvalidConfig) {
		t.Errorf("NewWriter without Out = %v", err)
	}
}

// failingWriter always fails to write.
type failingWriter struct{}

func (failingWriter) Write([]byte) (int, error) { return 0, errors.New("disk full") }

func TestWriterError(t *testing.T) {
	w, err := notify.NewWriter(notify.WriterConfig{Out: failingWriter{}})
	if err != nil {
		t.Fatal(err)
	}
	if err := w.Notify(t.Context(), testMessage("x")); err == nil || !strings.Contains(err.Error(), "disk full") {
		t.Fatalf("Notify = %v", err)
	}
}

func TestFanOutSuite(t *testing.T) {
	testNotifier(t, func(t *testing.T) harness {
		var buf syncBuffer
		w, err := notify.NewWriter(notify.WriterConfig{Out: &buf, IncludeLog: true})
		if err != nil {
			t.Fatal(err)
		}
		ws := startWebhook(t)
		f, err := notify.NewFanOut(
			notify.Target{Name: "webhook", Notifier: newWebhook(t, notify.WebhookConfig{URL: ws.URL})},
			notify.Target{Name: "stdout", Notifier: w})
		if err != nil {
			t.Fatal(err)
		}
		return harness{N: f, HasLog: true, Received: func(t testing.TB) []report {
			// Both targets must have it; report what the writer saw.
			if len(ws.Payloads()) != len(parseWriterOutput(t, buf.String())) {
				return nil
			}
			return parseWriterOutput(t, buf.String())
		}}
	})
}

func TestFanOutOneTargetDown(t *testing.T) {
	srv := startSMTP(t, smtpOptions{})
	good := newSMTP(t, notify.SMTPConfig{Addr: srv.Addr})
	bad := newWebhook(t, notify.WebhookConfig{URL: deadURL(t)})
	var buf syncBuffer
	w, err := notify.NewWriter(notify.WriterConfig{Out: &buf})
	if err != nil {
		t.Fatal(err)
	}
	f, err := notify.NewFanOut(notify.Target{Name: "chat", Notifier: bad},
		notify.Target{Name: "email", Notifier: good}, notify.Target{Notifier: w})
	if err != nil {
		t.Fatal(err)
	}
	err = f.Notify(t.Context(), testMessage("fan-1"))
	if err == nil {
		t.Fatal("FanOut with a dead target returned nil")
	}
	if !strings.HasPrefix(err.Error(), "chat: notify: webhook http://127.0.0.1:") {
		t.Errorf("error %q does not name the failing target first", err)
	}
	if strings.Contains(err.Error(), "email") {
		t.Errorf("healthy target named in error %q", err)
	}
	if n := len(srv.Messages()); n != 1 {
		t.Errorf("email target got %d messages, want 1", n)
	}
	if !strings.Contains(buf.String(), "fan-1") {
		t.Error("writer target did not get the report")
	}
	// Two failures: both named, both in the chain.
	bad2 := newSMTP(t, notify.SMTPConfig{Addr: deadPort(t)})
	f2, err := notify.NewFanOut(notify.Target{Name: "a", Notifier: bad}, notify.Target{Name: "b", Notifier: bad2})
	if err != nil {
		t.Fatal(err)
	}
	err = f2.Notify(t.Context(), testMessage("fan-2"))
	var joined interface{ Unwrap() []error }
	if !errors.As(err, &joined) || len(joined.Unwrap()) != 2 {
		t.Fatalf("error %v is not two joined errors", err)
	}
	if !strings.Contains(err.Error(), "a: ") || !strings.Contains(err.Error(), "\nb: ") {
		t.Errorf("error %q does not name both targets", err)
	}
}

// funcNotifier is a fake Notifier with a function field, for units around real ones.
type funcNotifier func(ctx context.Context, m *notify.Message) error

func (f funcNotifier) Notify(ctx context.Context, m *notify.Message) error { return f(ctx, m) }

func TestNewFanOutValidation(t *testing.T) {
	ok := funcNotifier(func(context.Context, *notify.Message) error { return nil })
	if _, err := notify.NewFanOut(notify.Target{Name: "x"}); !errors.Is(err, notify.ErrInvalidConfig) {
		t.Errorf("nil notifier: %v", err)
	}
	if _, err := notify.NewFanOut(notify.Target{Name: "x", Notifier: ok}, notify.Target{Name: "x", Notifier: ok}); !errors.Is(err, notify.ErrInvalidConfig) {
		t.Errorf("duplicate name: %v", err)
	}
	var calls atomic.Int32
	count := funcNotifier(func(context.Context, *notify.Message) error { calls.Add(1); return nil })
	f, err := notify.NewFanOut(notify.Target{Notifier: count}, notify.Target{Notifier: count})
	if err != nil {
		t.Fatal(err)
	}
	if err := f.Notify(t.Context(), testMessage("x")); err != nil || calls.Load() != 2 {
		t.Errorf("Notify = %v, calls %d", err, calls.Load())
	}
}

func TestFullSubject(t *testing.T) {
	for _, tc := range []struct {
		m    notify.Message
		want string
	}{
		{notify.Message{Topic: "t", Status: notify.StatusOK, Subject: "done"}, "[t] done"},
		{notify.Message{Topic: "t", Status: notify.StatusFailed, Subject: "done"}, "[t] FAILED: done"},
		{notify.Message{Topic: "t", Status: notify.StatusFailed, Subject: "rebuild FAILED at restore"}, "[t] rebuild FAILED at restore"},
		{notify.Message{Status: notify.StatusOK, Subject: "a\nb"}, "a b"},
		{notify.Message{Topic: "t", Environment: "qa"}, "[t] qa report"},
	} {
		if got := notify.FullSubject(&tc.m); got != tc.want {
			t.Errorf("FullSubject(%+v) = %q, want %q", tc.m, got, tc.want)
		}
	}
}
