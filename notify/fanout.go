package notify

import (
	"context"
	"errors"
	"fmt"
	"sync"
)

// Target is one named destination of a FanOut.
type Target struct {
	Name     string // names the target in errors, e.g. "email"; "": derived from Notifier
	Notifier Notifier
}

// FanOut delivers each report to several notifiers at once. All are tried even when
// some fail; Notify returns the failures joined with errors.Join, each prefixed with
// its target's name, so errors.Is(err, ErrSpooled) still works through it.
type FanOut struct {
	targets []Target
}

var _ Notifier = (*FanOut)(nil)

// NewFanOut returns a FanOut over targets, in this order. Errors wrap ErrInvalidConfig.
func NewFanOut(targets ...Target) (*FanOut, error) {
	f := &FanOut{}
	seen := map[string]bool{}
	for i, t := range targets {
		if t.Notifier == nil {
			return nil, fmt.Errorf("%w: FanOut target %d (%q): nil Notifier", ErrInvalidConfig, i, t.Name)
		}
		if t.Name == "" {
			if s, ok := t.Notifier.(fmt.Stringer); ok {
				t.Name = s.String()
			} else {
				t.Name = fmt.Sprintf("%T#%d", t.Notifier, i)
			}
		}
		if seen[t.Name] {
			return nil, fmt.Errorf("%w: FanOut target name %q used twice", ErrInvalidConfig, t.Name)
		}
		seen[t.Name] = true
		f.targets = append(f.targets, t)
	}
	return f, nil
}

// Targets returns the targets, in order.
func (f *FanOut) Targets() []Target { return append([]Target(nil), f.targets...) }

// Notify delivers m to every target concurrently and waits for all of them.
func (f *FanOut) Notify(ctx context.Context, m *Message) error {
	if err := checkMessage(m); err != nil {
		return err
	}
	return f.each(func(t Target) error { return t.Notifier.Notify(ctx, m) })
}

// Flush calls Flush on every target that has one (e.g. the Spools of SpoolEach).
func (f *FanOut) Flush(ctx context.Context) error {
	return f.each(func(t Target) error {
		if fl, ok := t.Notifier.(Flusher); ok {
			return fl.Flush(ctx)
		}
		return nil
	})
}

// each runs fn on every target concurrently and joins the errors in target order.
func (f *FanOut) each(fn func(Target) error) error {
	errs := make([]error, len(f.targets))
	var wg sync.WaitGroup
	for i, t := range f.targets {
		wg.Go(func() {
			if err := fn(t); err != nil {
				errs[i] = fmt.Errorf("%s: %w", t.Name, err)
			}
		})
	}
	wg.Wait()
	return errors.Join(errs...)
}

// Pending returns the reports still spooled, by target name, for the targets that keep
// them (the Spools of SpoolEach); targets with none are left out.
func (f *FanOut) Pending() (map[string][]*Message, error) {
	out := map[string][]*Message{}
	var errs []error
	for _, t := range f.targets {
		p, ok := t.Notifier.(interface{ Pending() ([]*Message, error) })
		if !ok {
			continue
		}
		ms, err := p.Pending()
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", t.Name, err))
		}
		if len(ms) > 0 {
			out[t.Name] = ms
		}
	}
	return out, errors.Join(errs...)
}
