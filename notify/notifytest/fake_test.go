package notifytest_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"

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
var breakages = map[string]struct {
	catches string
	wrap    func(*notifytest.Fake) notify.Notifier
}{
	"drops the log": {"delivers", func(f *notifytest.Fake) notify.Notifier {
		return broken{Fake: f, notify: func(ctx context.Context, m *notify.Message) error {
			c := *m
			c.Log = c.Log[:len(c.Log)/2]
			return f.Notify(ctx, &c)
		}}
	}},
	"changes the caller's message": {"ok-no-log", func(f *notifytest.Fake) notify.Notifier {
		return broken{Fake: f, notify: func(ctx context.Context, m *notify.Message) error {
			m.LogName = notify.LogName(m) // invisible to the receiver, not to the caller
			return f.Notify(ctx, m)
		}}
	}},
	"accepts a nil message": {"nil-message", func(f *notifytest.Fake) notify.Notifier {
		return broken{Fake: f, notify: func(ctx context.Context, m *notify.Message) error {
			if m == nil {
				return nil
			}
			return f.Notify(ctx, m)
		}}
	}},
	"mixes up reports sent at once": {"concurrent", func(f *notifytest.Fake) notify.Notifier {
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
	"ignores cancellation": {"cancelled", func(f *notifytest.Fake) notify.Notifier {
		return broken{Fake: f, notify: func(ctx context.Context, m *notify.Message) error {
			return f.Notify(context.WithoutCancel(ctx), m)
		}}
	}},
	"returns late": {"deadline", func(f *notifytest.Fake) notify.Notifier {
		return broken{Fake: f, notify: func(ctx context.Context, m *notify.Message) error {
			err := f.Notify(ctx, m)
			if errors.Is(err, context.DeadlineExceeded) {
				time.Sleep(notifytest.DeadlineSlack + time.Second) // a bounded but late return
			}
			return err
		}}
	}},
	"calls every failure a rejection": {"dead-target", func(f *notifytest.Fake) notify.Notifier {
		return broken{Fake: f, notify: func(ctx context.Context, m *notify.Message) error {
			if err := f.Notify(ctx, m); err != nil {
				return fmt.Errorf("%w: %w", notify.ErrRejected, err)
			}
			return nil
		}}
	}},
	"loses ErrRejected": {"rejected", func(f *notifytest.Fake) notify.Notifier {
		return broken{Fake: f, notify: func(ctx context.Context, m *notify.Message) error {
			if err := f.Notify(ctx, m); err != nil {
				return errors.New(err.Error())
			}
			return nil
		}}
	}},
	"fails a second Close": {"close", func(f *notifytest.Fake) notify.Notifier {
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

const brokenEnv = "NOTIFYTEST_BROKEN"

// TestBrokenFake runs the suite against the broken Fake $NOTIFYTEST_BROKEN names; it is
// run by TestSuiteCatchesBrokenFakes, in a child process, and expected to fail.
func TestBrokenFake(t *testing.T) {
	name := os.Getenv(brokenEnv)
	if name == "" {
		t.Skip("run by TestSuiteCatchesBrokenFakes")
	}
	b, ok := breakages[name]
	if !ok {
		t.Fatalf("no breakage %q", name)
	}
	notifytest.Notifier(t, fakeFixture(b.wrap))
}

// TestSuiteCatchesBrokenFakes shows that each promise of the suite can fail: the suite
// run against a Fake broken in one way fails in the subtest that checks that promise
// (TestFakeConformance shows the same subtests pass with the Fake intact).
func TestSuiteCatchesBrokenFakes(t *testing.T) {
	if os.Getenv(brokenEnv) != "" {
		t.Skip("in the child process")
	}
	for name, b := range breakages {
		t.Run(strings.ReplaceAll(name, " ", "_"), func(t *testing.T) {
			t.Parallel()
			run := "^TestBrokenFake$/^" + b.catches + "$"
			cmd := exec.CommandContext(t.Context(), os.Args[0], "-test.run="+run, "-test.v", "-test.count=1")
			cmd.Env = append(os.Environ(), brokenEnv+"="+name)
			out, err := cmd.CombinedOutput()
			var ee *exec.ExitError
			if !errors.As(err, &ee) {
				t.Fatalf("the suite passed against a Fake that %s (%v):\n%s", name, err, out)
			}
			if want := "--- FAIL: TestBrokenFake/" + b.catches + " "; !strings.Contains(string(out), want) {
				t.Errorf("the suite did not fail in %s against a Fake that %s:\n%s", b.catches, name, out)
			}
		})
	}
}
