package notify_test

import (
	"bytes"
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/restage/restage/internal/smtptest"
	"github.com/restage/restage/internal/testutil"
	"github.com/restage/restage/notify"
	"github.com/restage/restage/notify/notifytest"
)

func TestWriterConformance(t *testing.T) {
	notifytest.Notifier(t, notifytest.Fixture{
		New: func(t *testing.T) notifytest.Setup {
			w, received := fileWriter(t, true)
			return notifytest.Setup{Notifier: w, Received: received, CarriesLog: true}
		},
		Dead: func(t *testing.T) notify.Notifier {
			w, err := notify.NewWriter(notify.WriterConfig{Out: failingWriter{}})
			if err != nil {
				t.Fatal(err)
			}
			return w
		},
		Stalled: func(t *testing.T) notify.Notifier {
			bw := blockingWriter{release: make(chan struct{})}
			t.Cleanup(func() { close(bw.release) })
			w, err := notify.NewWriter(notify.WriterConfig{Out: bw})
			if err != nil {
				t.Fatal(err)
			}
			return w
		},
	})
}

func TestWriterFormat(t *testing.T) {
	var buf bytes.Buffer // Notify returns after its write
	w, err := notify.NewWriter(notify.WriterConfig{Out: &buf})
	if err != nil {
		t.Fatal(err)
	}
	if err := w.Notify(t.Context(), notifytest.Message("w-1")); err != nil {
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
	if err := w.Notify(t.Context(), notifytest.Message("x")); err == nil || !strings.Contains(err.Error(), "disk full") {
		t.Fatalf("Notify = %v", err)
	}
}

// fanOut returns a FanOut over targets, named after their position.
func fanOut(t testing.TB, targets ...notify.Notifier) *notify.FanOut {
	t.Helper()
	var ts []notify.Target
	for i, n := range targets {
		ts = append(ts, notify.Target{Name: fmt.Sprint("target", i), Notifier: n})
	}
	f, err := notify.NewFanOut(ts...)
	if err != nil {
		t.Fatal(err)
	}
	return f
}

// TestFanOutConformance: a FanOut over a webhook and a writer; a report counts as
// received once both targets have it. Each failing fixture has one failing target and a
// healthy one.
func TestFanOutConformance(t *testing.T) {
	web, writer := webhookFixture(), fileWriter
	notifytest.Notifier(t, notifytest.Fixture{
		New: func(t *testing.T) notifytest.Setup {
			ws := web.New(t)
			w, received := writer(t, true)
			return notifytest.Setup{Notifier: fanOut(t, ws.Notifier, w), CarriesLog: true,
				Received: func(t testing.TB) []notifytest.Report {
					if got := received(t); len(ws.Received(t)) == len(got) {
						return got
					}
					return nil
				}}
		},
		Dead: func(t *testing.T) notify.Notifier {
			w, _ := writer(t, false)
			return fanOut(t, web.Dead(t), w)
		},
		Stalled: func(t *testing.T) notify.Notifier {
			w, _ := writer(t, false)
			return fanOut(t, w, web.Stalled(t))
		},
		Rejecting: func(t *testing.T) notify.Notifier {
			w, _ := writer(t, false)
			return fanOut(t, web.Rejecting(t), w)
		},
	})
}

func TestFanOutOneTargetDown(t *testing.T) {
	srv := startSMTP(t, smtptest.Options{})
	good := newSMTP(t, notify.SMTPConfig{Addr: srv.Addr})
	bad := newWebhook(t, notify.WebhookConfig{URL: deadURL(t)})
	var buf bytes.Buffer // FanOut returns after the writer's write
	w, err := notify.NewWriter(notify.WriterConfig{Out: &buf})
	if err != nil {
		t.Fatal(err)
	}
	f, err := notify.NewFanOut(notify.Target{Name: "chat", Notifier: bad},
		notify.Target{Name: "email", Notifier: good}, notify.Target{Notifier: w})
	if err != nil {
		t.Fatal(err)
	}
	err = f.Notify(t.Context(), notifytest.Message("fan-1"))
	if err == nil {
		t.Fatal("FanOut with a dead target returned nil")
	}
	if !strings.HasPrefix(err.Error(), "chat: notify: webhook http://127.0.0.1:") {
		t.Errorf("error %q does not name the failing target first", err)
	}
	if strings.Contains(err.Error(), "email") {
		t.Errorf("healthy target named in error %q", err)
	}
	if n := len(srv.Mails()); n != 1 {
		t.Errorf("email target got %d messages, want 1", n)
	}
	if !strings.Contains(buf.String(), "fan-1") {
		t.Error("writer target did not get the report")
	}
	// Two failures: both named, both in the chain.
	bad2 := newSMTP(t, notify.SMTPConfig{Addr: testutil.FreeAddr(t)})
	f2, err := notify.NewFanOut(notify.Target{Name: "a", Notifier: bad}, notify.Target{Name: "b", Notifier: bad2})
	if err != nil {
		t.Fatal(err)
	}
	err = f2.Notify(t.Context(), notifytest.Message("fan-2"))
	var joined interface{ Unwrap() []error }
	if !errors.As(err, &joined) || len(joined.Unwrap()) != 2 {
		t.Fatalf("error %v is not two joined errors", err)
	}
	if !strings.Contains(err.Error(), "a: ") || !strings.Contains(err.Error(), "\nb: ") {
		t.Errorf("error %q does not name both targets", err)
	}
}

func TestNewFanOutValidation(t *testing.T) {
	ok := &notifytest.Fake{}
	if _, err := notify.NewFanOut(notify.Target{Name: "x"}); !errors.Is(err, notify.ErrInvalidConfig) {
		t.Errorf("nil notifier: %v", err)
	}
	if _, err := notify.NewFanOut(notify.Target{Name: "x", Notifier: ok}, notify.Target{Name: "x", Notifier: ok}); !errors.Is(err, notify.ErrInvalidConfig) {
		t.Errorf("duplicate name: %v", err)
	}
	count := &notifytest.Fake{}
	f, err := notify.NewFanOut(notify.Target{Notifier: count}, notify.Target{Notifier: count})
	if err != nil {
		t.Fatal(err)
	}
	if err := f.Notify(t.Context(), notifytest.Message("x")); err != nil || len(count.Messages()) != 2 {
		t.Errorf("Notify = %v, delivered %d", err, len(count.Messages()))
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
