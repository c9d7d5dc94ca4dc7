package staging

import (
	"context"
	"sync"
	"time"

	"github.com/restage/restage/dbrestore"
	"github.com/restage/restage/progress"
)

// Observer follows a run as it happens: every step's start and end, and the progress
// of the long ones. Progress bars, log lines and live pages are observers; what a
// finished run did is its Report (and the history).
//
// The Rebuilder calls an observer synchronously from the run, so a method must return
// quickly and must not call back into the Rebuilder. The calls of one run come one at a
// time, in order: StepStarted, any number of StepProgress, then StepDone, for each step
// (StepProgress may come from another goroutine than the other two, never at the same
// time). An observer given to several Rebuilders running at once is called
// concurrently and must guard its own state. Combine observers with Observers; build
// one from functions with ObserverFuncs.
type Observer interface {
	// StepStarted is called as the step called name begins.
	StepStarted(run RunInfo, name string)
	// StepProgress is called as a long step advances: verify (bytes hashed), restore
	// (bytes of the dump read, and objects), clones, release (bytes linked or copied),
	// and whatever a part reports through package progress, in Progress.Unit.
	StepProgress(run RunInfo, p Progress)
	// StepDone is called as a step ends, with the step as it lands in the report:
	// status "ok" or "failed", duration, detail, the redacted error and output tail.
	StepDone(run RunInfo, s Step)
}

// RunInfo says which run an observer's event belongs to.
type RunInfo struct {
	ID          string    // the report's ID
	Environment string    // the environment's name
	Kind        string    // KindRebuild, KindDeploy or KindPromote
	Started     time.Time // when the run began
	DryRun      bool      // a dry run (Plan): nothing is changed
}

// Unit is what a Progress counts.
type Unit string

// Units of progress.
const (
	UnitBytes   Unit = "bytes"
	UnitObjects Unit = "objects" // table-of-contents entries of a restore
)

// Progress is how far a long step has got.
type Progress struct {
	Step  string // the step under way, e.g. "restore"
	Done  int64  // how much is done, in Unit
	Total int64  // how much there is in all, in Unit; 0: not known
	// Unit is what Done and Total count: UnitBytes where the part reports bytes (the
	// parts report through package progress); the restore also reports UnitObjects
	// (dbrestore.Progress counts table-of-contents entries), each unit on its own.
	Unit Unit
	Item string // what is being worked on now, when known (e.g. "TABLE DATA public.bug")
	// Elapsed is the time since the step started; Rate is Done per second over it,
	// and ETA the time left at that rate (0: not known, e.g. without a Total).
	Elapsed time.Duration
	Rate    float64
	ETA     time.Duration
}

// ObserverFuncs is an Observer made of functions; a nil field ignores its event.
type ObserverFuncs struct {
	OnStepStarted  func(run RunInfo, name string)
	OnStepProgress func(run RunInfo, p Progress)
	OnStepDone     func(run RunInfo, s Step)
}

var _ Observer = ObserverFuncs{}

// StepStarted calls OnStepStarted.
func (f ObserverFuncs) StepStarted(run RunInfo, name string) {
	if f.OnStepStarted != nil {
		f.OnStepStarted(run, name)
	}
}

// StepProgress calls OnStepProgress.
func (f ObserverFuncs) StepProgress(run RunInfo, p Progress) {
	if f.OnStepProgress != nil {
		f.OnStepProgress(run, p)
	}
}

// StepDone calls OnStepDone.
func (f ObserverFuncs) StepDone(run RunInfo, s Step) {
	if f.OnStepDone != nil {
		f.OnStepDone(run, s)
	}
}

// Observers returns an Observer that passes every event to each of obs in turn; nil
// entries are skipped, and with none left it returns nil.
func Observers(obs ...Observer) Observer {
	var all fanOut
	for _, o := range obs {
		switch o := o.(type) {
		case nil:
		case fanOut:
			all = append(all, o...)
		default:
			all = append(all, o)
		}
	}
	switch len(all) {
	case 0:
		return nil
	case 1:
		return all[0]
	}
	return all
}

// fanOut is Observers' result.
type fanOut []Observer

func (f fanOut) StepStarted(run RunInfo, name string) {
	for _, o := range f {
		o.StepStarted(run, name)
	}
}

func (f fanOut) StepProgress(run RunInfo, p Progress) {
	for _, o := range f {
		o.StepProgress(run, p)
	}
}

func (f fanOut) StepDone(run RunInfo, s Step) {
	for _, o := range f {
		o.StepDone(run, s)
	}
}

// watch is a run's side of its observer: it keeps the calls of one run in order and
// apart (the restore's progress arrives from the goroutine reading pg_restore's
// output), and drops progress that arrives outside its step.
type watch struct {
	mu      sync.Mutex
	step    string    // the step under way; "": none
	started time.Time // when it started
}

// info is the run as its observer sees it.
func (ru *run) info() RunInfo {
	return RunInfo{ID: ru.rep.ID, Environment: ru.rep.Environment, Kind: ru.rep.Kind, Started: ru.rep.Started, DryRun: ru.dry}
}

// observe calls fn with the run's observer, under the watch's lock; without an
// observer it does nothing.
func (ru *run) observe(fn func(obs Observer)) {
	obs := ru.r.cfg.Observer
	if obs == nil {
		return
	}
	ru.watch.mu.Lock()
	defer ru.watch.mu.Unlock()
	fn(obs)
}

func (ru *run) observeStarted(name string) {
	ru.observe(func(obs Observer) {
		ru.watch.step, ru.watch.started = name, time.Now()
		obs.StepStarted(ru.info(), name)
	})
}

func (ru *run) observeProgress(p Progress) {
	ru.observe(func(obs Observer) {
		if ru.watch.step == "" {
			return // late: the step has ended
		}
		p.Step = ru.watch.step
		p.Elapsed = time.Since(ru.watch.started)
		if secs := p.Elapsed.Seconds(); secs > 0 && p.Done > 0 {
			p.Rate = float64(p.Done) / secs
			if p.Total > p.Done {
				p.ETA = time.Duration(float64(p.Total-p.Done) / p.Rate * float64(time.Second))
			}
		}
		obs.StepProgress(ru.info(), p)
	})
}

// progressContext returns ctx carrying a progress function (package progress) that
// passes the bytes a part reports to the observer, in the step under way.
func (ru *run) progressContext(ctx context.Context) context.Context {
	if ru.r.cfg.Observer == nil {
		return ctx
	}
	return progress.With(ctx, func(done, total int64) {
		ru.observeProgress(Progress{Done: done, Total: total, Unit: UnitBytes})
	})
}

// nthOf returns ctx for the i-th of n like operations in one step (the clones): each
// reports its bytes as its n-th share of the step's.
func nthOf(ctx context.Context, i, n int) context.Context {
	fn := progress.From(ctx)
	if fn == nil || n < 2 {
		return ctx
	}
	return progress.With(ctx, func(done, total int64) {
		fn(int64(i)*total+done, int64(n)*total)
	})
}

func (ru *run) observeDone(s *Step) {
	ru.observe(func(obs Observer) {
		ru.watch.step = ""
		obs.StepDone(ru.info(), *s)
	})
}

// restoreProgress returns the restore's progress function: the observer's, then
// next's (Options.Restore.Progress) when set.
func (ru *run) restoreProgress(next func(dbrestore.Progress)) func(dbrestore.Progress) {
	if ru.r.cfg.Observer == nil {
		return next
	}
	return func(p dbrestore.Progress) {
		ru.observeProgress(Progress{Done: int64(p.Done), Total: int64(p.Total), Unit: UnitObjects, Item: p.Item})
		if next != nil {
			next(p)
		}
	}
}
