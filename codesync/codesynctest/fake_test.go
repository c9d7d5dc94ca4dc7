package codesynctest_test

import (
	"context"
	"errors"
	"testing"

	"github.com/restage/restage/codesync"
	"github.com/restage/restage/codesync/codesynctest"
	"github.com/restage/restage/internal/suitetest"
)

// syncer is a Fake, possibly broken: a function set here replaces the Fake's method.
type syncer struct {
	*codesynctest.Fake
	build    func(ctx context.Context, src codesync.Source) (*codesync.Release, error)
	activate func(ctx context.Context, r *codesync.Release) (*codesync.Release, error)
	rollback func(ctx context.Context) (*codesync.Release, error)
	discard  func(ctx context.Context, r *codesync.Release) error
	prune    func(ctx context.Context) error
}

func (s syncer) Build(ctx context.Context, src codesync.Source) (*codesync.Release, error) {
	if s.build != nil {
		return s.build(ctx, src)
	}
	return s.Fake.Build(ctx, src)
}

func (s syncer) Activate(ctx context.Context, r *codesync.Release) (*codesync.Release, error) {
	if s.activate != nil {
		return s.activate(ctx, r)
	}
	return s.Fake.Activate(ctx, r)
}

func (s syncer) Rollback(ctx context.Context) (*codesync.Release, error) {
	if s.rollback != nil {
		return s.rollback(ctx)
	}
	return s.Fake.Rollback(ctx)
}

func (s syncer) Discard(ctx context.Context, r *codesync.Release) error {
	if s.discard != nil {
		return s.discard(ctx, r)
	}
	return s.Fake.Discard(ctx, r)
}

func (s syncer) Prune(ctx context.Context) error {
	if s.prune != nil {
		return s.prune(ctx)
	}
	return s.Fake.Prune(ctx)
}

// fakeFixture is the suite's fixture for Fake; breakage, when set, breaks each syncer.
func fakeFixture(breakage func(s *syncer)) codesynctest.Fixture {
	return codesynctest.Fixture{
		Keep: 2,
		New: func(t *testing.T) codesync.Syncer {
			s := syncer{Fake: &codesynctest.Fake{Keep: 2}}
			if breakage != nil {
				breakage(&s)
			}
			return s
		},
		ReadFile: func(s codesync.Syncer, r *codesync.Release, name string) ([]byte, error) {
			return s.(syncer).ReadFile(r, name)
		},
		BreakActivate: func(t *testing.T, s codesync.Syncer, r *codesync.Release) func() {
			f := s.(syncer).Fake
			f.ActivateFunc = func(_ context.Context, x *codesync.Release) error {
				if x.ID == r.ID {
					return errors.New("injected: cannot switch current")
				}
				return nil
			}
			return func() { f.ActivateFunc = nil }
		},
	}
}

func TestFakeConformance(t *testing.T) {
	codesynctest.Syncer(t, fakeFixture(nil))
}

// breakages are ways to break a Fake, each with the subtest of the suite that must
// catch it.
var breakages = map[string]suitetest.Breakage[func(*syncer)]{
	"reports no revision": {Catches: "build", Break: func(s *syncer) {
		s.build = func(ctx context.Context, src codesync.Source) (*codesync.Release, error) {
			r, err := s.Fake.Build(ctx, src)
			if r != nil {
				r.Revision = codesync.Revision{}
			}
			return r, err
		}
	}},
	"builds with a cancelled context": {Catches: "build-fails", Break: func(s *syncer) {
		s.build = func(ctx context.Context, src codesync.Source) (*codesync.Release, error) {
			return s.Fake.Build(context.WithoutCancel(ctx), src)
		}
	}},
	"forgets the previous release": {Catches: "activate", Break: func(s *syncer) {
		s.activate = func(ctx context.Context, r *codesync.Release) (*codesync.Release, error) {
			_, err := s.Fake.Activate(ctx, r)
			return nil, err
		}
	}},
	"activates unknown releases": {Catches: "activate-unknown", Break: func(s *syncer) {
		s.activate = func(ctx context.Context, r *codesync.Release) (*codesync.Release, error) {
			prev, err := s.Fake.Activate(ctx, r)
			if errors.Is(err, codesync.ErrNoRelease) {
				return nil, nil
			}
			return prev, err
		}
	}},
	"moves current on a failed activation": {Catches: "activate-fails", Break: func(s *syncer) {
		s.activate = func(ctx context.Context, r *codesync.Release) (*codesync.Release, error) {
			prev, err := s.Fake.Activate(ctx, r)
			if err != nil && !errors.Is(err, codesync.ErrNoRelease) {
				hook := s.Fake.ActivateFunc
				s.Fake.ActivateFunc = nil
				_, _ = s.Fake.Activate(ctx, r) // half done: current moved, the error reported
				s.Fake.ActivateFunc = hook
			}
			return prev, err
		}
	}},
	"rolls back to nothing": {Catches: "rollback", Break: func(s *syncer) {
		s.rollback = func(ctx context.Context) (*codesync.Release, error) {
			return s.Fake.Current(ctx)
		}
	}},
	"discards the active release in place": {Catches: "discard", Break: func(s *syncer) {
		s.discard = func(ctx context.Context, r *codesync.Release) error {
			if cur, err := s.Fake.Current(ctx); err == nil && r != nil && cur.ID == r.ID {
				r.State = codesync.StateFailed
				return nil
			}
			return s.Fake.Discard(ctx, r)
		}
	}},
	"prunes nothing": {Catches: "prune", Break: func(s *syncer) {
		s.prune = func(context.Context) error { return nil }
	}},
	"prunes with a cancelled context": {Catches: "cancelled", Break: func(s *syncer) {
		s.prune = func(ctx context.Context) error { return s.Fake.Prune(context.WithoutCancel(ctx)) }
	}},
}

// TestSuiteCatchesBrokenFakes shows that each promise of the suite can fail: the suite
// run against a Fake broken in one way fails in the subtest that checks that promise
// (TestFakeConformance shows the same subtests pass with the Fake intact).
func TestSuiteCatchesBrokenFakes(t *testing.T) {
	suitetest.Catches(t, breakages, func(t *testing.T, apply func(*syncer)) {
		codesynctest.Syncer(t, fakeFixture(apply))
	})
}
