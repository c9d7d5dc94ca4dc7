package notifytest

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sync"

	"github.com/restage/restage/notify"
)

// Fake is an in-memory Notifier for tests: it keeps a copy of every report it accepts
// (Messages, Reports). Its function fields, when set, decide what happens instead of a
// target; set them before the Fake is used or between calls, never during one. The zero
// value accepts every report. A Fake is safe for concurrent use.
type Fake struct {
	// NotifyFunc, when set, is called by Notify with Notify's ctx and a copy of the
	// report: the report is kept only when it returns nil, and its error is Notify's
	// error. It may block: Notify returns when ctx ends all the same (NotifyFunc is then
	// left to finish on its own, and what it returns is ignored).
	NotifyFunc func(ctx context.Context, m *notify.Message) error
	// CloseFunc, when set, is called by the first Close, whose error it returns.
	CloseFunc func() error

	mu     sync.Mutex
	msgs   []*notify.Message
	closed bool
}

var (
	_ notify.Notifier = (*Fake)(nil)
	_ io.Closer       = (*Fake)(nil)
)

// errClosed is what Notify returns after Close.
var errClosed = errors.New("notifytest: fake notifier: closed")

// Notify keeps a copy of m (see NotifyFunc). A nil m is notify.ErrInvalidMessage; a done
// ctx, or a closed Fake, is an error and nothing is kept.
func (f *Fake) Notify(ctx context.Context, m *notify.Message) error {
	if m == nil {
		return fmt.Errorf("%w: nil message", notify.ErrInvalidMessage)
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("notifytest: fake notifier: %w", err)
	}
	f.mu.Lock()
	closed := f.closed
	f.mu.Unlock()
	if closed {
		return errClosed
	}
	if f.NotifyFunc != nil {
		done := make(chan error, 1)
		arg := clone(m)
		go func() { done <- f.NotifyFunc(ctx, arg) }()
		select {
		case err := <-done:
			if err != nil {
				return err
			}
		case <-ctx.Done():
			return fmt.Errorf("notifytest: fake notifier: NotifyFunc still runs: %w", ctx.Err())
		}
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.msgs = append(f.msgs, clone(m))
	return nil
}

// Close makes later Notify calls fail. The first call runs CloseFunc; later calls do
// nothing and return nil.
func (f *Fake) Close() error {
	f.mu.Lock()
	first := !f.closed
	f.closed = true
	f.mu.Unlock()
	if first && f.CloseFunc != nil {
		return f.CloseFunc()
	}
	return nil
}

// Messages returns copies of the reports kept so far, in the order they were kept.
func (f *Fake) Messages() []*notify.Message {
	f.mu.Lock()
	defer f.mu.Unlock()
	out := make([]*notify.Message, len(f.msgs))
	for i, m := range f.msgs {
		out[i] = clone(m)
	}
	return out
}

// Reports returns the reports kept so far as a receiver would have got them (the
// subject is notify.FullSubject's, the log name notify.LogName's when there is a log):
// what a Setup's Received returns for a Fake.
func (f *Fake) Reports() []Report {
	var out []Report
	for _, m := range f.Messages() {
		r := Report{ID: m.ID, Subject: notify.FullSubject(m), Topic: m.Topic, Status: string(m.Status),
			Body: m.Body, Log: m.Log}
		if len(m.Log) > 0 {
			r.LogName = notify.LogName(m)
		}
		out = append(out, r)
	}
	return out
}
