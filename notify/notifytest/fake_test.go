package notifytest_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/restage/restage/internal/suitetest"
	"github.com/restage/restage/notify"
	"github.com/restage/restage/notify/notifytest"
)

// fakeFixture is the suite's fixture for Fake; wrap, when set, turns each notifier into
// a broken one.
func fakeFixture(wrap func(*notifytest.Fake) notify.Notifier) notifytest.Fixture {
	if wrap == nil {
		wrap = func(f *notifytest.Fake) notify.Notifier { return f }
	}
	return notifytest.Fixture{
		New: func(t *testing.T) notifytest.Setup {
			f := &notifytest.Fake{}
			return notifytest.Setup{Notifier: wrap(f), CarriesLog: true,
				Received: func(testing.TB) []notifytest.Report { return f.Reports() }}
		},
		Dead: func(t *testing.T) notify.Notifier {
			return wrap(&notifytest.Fake{NotifyFunc: func(context.Context, *notify.Message) error {
				return errors.New("dial tcp 127.0.0.1:25: connection refused")
			}})
		},
		Stalled: func(t *testing.T) notify.Notifier {
			release := make(chan struct{})
			t.Cleanup(func() { close(release) })
			return wrap(&notifytest.Fake{NotifyFunc: func(context.Context, *notify.Message) error {
				<-release // a target that hangs and ignores the context
				return nil
			}})
		},
		Rejecting: func(t *testing.T) notify.Notifier {
			return wrap(&notifytest.Fake{NotifyFunc: func(context.Context, *notify.Message) error {
				return fmt.Errorf("550 5.1.1 no such user: %w", notify.ErrRejected)
			}})
		},
	}
}

func TestFakeConformance(t *testing.T) {
	notifytest.Notifier(t, fakeFixture(nil))
}

// broken is a Notifier built from a Fake that breaks one promise.
type broken struct {
	*notifytest.Fake
	notify func(ctx context.Context, m *notify.Message) error
	close  func() error
}

func (b broken) Notify(ctx context.Context, m *notify.Message) error { return b.notify(ctx, m) }

func (b broken) Close() error {
	if b.close != nil {
		return b.close()
	}
	return b.Fake.Close()
}

// breakages are ways to break a Fake, each with the subtest of the suite that must
// catch it.
var breakages = map[string]suitetest.Breakage[func(*notifytest.Fake) notify.Notifier]{
	"drops the log": {Catches: "delivers", Break: func(f *notifytest.Fake) notify.Notifier {
		return broken{Fake: f, notify: func(ctx context.Context, m *notify.Message) error {
			c := *m
			c.Log = c.Log[:len(c.Log)/2]
			return f.Notify(ctx, &c)
		}}
	}},
	"changes the caller's message": {Catches: "ok-no-log", Break: func(f *notifytest.Fake) notify.Notifier {
		return broken{Fake: f, notify: func(ctx context.Context, m *notify.Message) error {
			m.LogName = notify.LogName(m) // invisible to the receiver, not to the caller
			return f.Notify(ctx, m)
		}}
	}},
	"accepts a nil message": {Catches: "nil-message", Break: func(f *notifytest.Fake) notify.Notifier {
		return broken{Fake: f, notify: func(ctx context.Context, m *notify.Message) error {
			if m == nil {
				return nil
			}
			return f.Notify(ctx, m)
		}}
	}},
	"mixes up reports sent at once": {Catches: "concurrent", Break: func(f *notifytest.Fake) notify.Notifier {
		var mu sync.Mutex
		var slot *notify.Message // one shared slot: the classic race, without a data race
		return broken{Fake: f, notify: func(ctx context.Context, m *notify.Message) error {
			mu.Lock()
			slot = m
			mu.Unlock()
			time.Sleep(20 * time.Millisecond)
			mu.Lock()
			send := slot
			mu.Unlock()
			return f.Notify(ctx, send)
		}}
	}},
	"ignores cancellation": {Catches: "cancelled", Break: func(f *notifytest.Fake) notify.Notifier {
		return broken{Fake: f, notify: func(ctx context.Context, m *notify.Message) error {
			return f.Notify(context.WithoutCancel(ctx), m)
		}}
	}},
	"returns late": {Catches: "deadline", Break: func(f *notifytest.Fake) notify.Notifier {
		return broken{Fake: f, notify: func(ctx context.Context, m *notify.Message) error {
			err := f.Notify(ctx, m)
			if errors.Is(err, context.DeadlineExceeded) {
				time.Sleep(notifytest.DeadlineSlack + time.Second) // a bounded but late return
			}
			return err
		}}
	}},
	"calls every failure a rejection": {Catches: "dead-target", Break: func(f *notifytest.Fake) notify.Notifier {
		return broken{Fake: f, notify: func(ctx context.Context, m *notify.Message) error {
			if err := f.Notify(ctx, m); err != nil {
				return fmt.Errorf("%w: %w", notify.ErrRejected, err)
			}
			return nil
		}}
	}},
	"loses ErrRejected": {Catches: "rejected", Break: func(f *notifytest.Fake) notify.Notifier {
		return broken{Fake: f, notify: func(ctx context.Context, m *notify.Message) error {
			if err := f.Notify(ctx, m); err != nil {
				return errors.New(err.Error())
			}
			return nil
		}}
	}},
	"fails a second Close": {Catches: "close", Break: func(f *notifytest.Fake) notify.Notifier {
		closed := false
		return broken{Fake: f, notify: f.Notify, close: func() error {
			if closed {
				return errors.New("already closed")
			}
			closed = true
			return f.Close()
		}}
	}},
}

// TestSuiteCatchesBrokenFakes shows that each promise of the suite can fail: the suite
// run against a Fake broken in one way fails in the subtest that checks that promise
// (TestFakeConformance shows the same subtests pass with the Fake intact).
func TestSuiteCatchesBrokenFakes(t *testing.T) {
	suitetest.Catches(t, breakages, func(t *testing.T, wrap func(*notifytest.Fake) notify.Notifier) {
		notifytest.Notifier(t, fakeFixture(wrap))
	})
}
