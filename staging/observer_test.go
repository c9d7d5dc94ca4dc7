package staging

import (
	"context"
	"fmt"
	"reflect"
	"strings"
	"sync"
	"testing"

	"github.com/restage/restage/dbrestore"
)

// recorder is an Observer that writes down what it sees.
type recorder struct {
	mu     sync.Mutex
	runs   []RunInfo
	events []string
	done   []Step
	prog   []Progress
}

func (r *recorder) StepStarted(run RunInfo, name string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.runs = append(r.runs, run)
	r.events = append(r.events, "start "+name)
}

func (r *recorder) StepProgress(run RunInfo, p Progress) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.runs = append(r.runs, run)
	r.events = append(r.events, fmt.Sprintf("progress %s %d/%d %s", p.Step, p.Done, p.Total, p.Unit))
	r.prog = append(r.prog, p)
}

func (r *recorder) StepDone(run RunInfo, s Step) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.runs = append(r.runs, run)
	r.events = append(r.events, "done "+s.Name+" "+s.Status)
	r.done = append(r.done, s)
}

// progressWorld is the fake world whose restore reports progress as pg_restore's
// parser does, and keeps the progress function to call it again after the restore.
type progressWorld struct {
	*world
	late func(dbrestore.Progress)
}

func (p *progressWorld) Restore(ctx context.Context, b *dbrestore.Backup, o dbrestore.RestoreOptions) (*dbrestore.RestoreResult, error) {
	if o.Progress != nil {
		for i := 1; i <= 3; i++ {
			o.Progress(dbrestore.Progress{Done: i, Total: 3, Item: fmt.Sprintf("TABLE DATA public.t%d", i)})
		}
		p.late = o.Progress
	}
	return p.world.Restore(ctx, b, o)
}

func TestObserverSeesEveryStep(t *testing.T) {
	w := newWorld()
	pw := &progressWorld{world: w}
	rec := &recorder{}
	var passedOn []dbrestore.Progress
	r := w.rebuilder(t, func(c *Config) {
		c.Databases = pw
		c.Observer = rec
		c.Restore.Progress = func(p dbrestore.Progress) { passedOn = append(passedOn, p) }
	})
	rep, err := r.Run(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	// Each step of the report, started then done, in order; the restore's progress in between.
	var want []string
	for _, s := range rep.Steps {
		want = append(want, "start "+s.Name)
		if s.Name == "restore" {
			want = append(want, "progress restore 1/3 objects", "progress restore 2/3 objects", "progress restore 3/3 objects")
		}
		want = append(want, "done "+s.Name+" "+s.Status)
	}
	if !reflect.DeepEqual(rec.events, want) {
		t.Errorf("events\n got %v\nwant %v", rec.events, want)
	}
	for i, s := range rep.Steps {
		if !reflect.DeepEqual(rec.done[i], *s) {
			t.Errorf("step %d: observer saw %+v, report has %+v", i, rec.done[i], *s)
		}
	}
	if rec.prog[2].Item != "TABLE DATA public.t3" {
		t.Errorf("progress item %q", rec.prog[2].Item)
	}
	wantRun := RunInfo{ID: rep.ID, Environment: "staging", Kind: "rebuild", Started: rep.Started}
	for _, ri := range rec.runs {
		if ri != wantRun {
			t.Fatalf("run info %+v, want %+v", ri, wantRun)
		}
	}
	// Options.Restore.Progress still gets every event.
	if len(passedOn) != 3 || passedOn[2].Done != 3 {
		t.Errorf("Restore.Progress got %v", passedOn)
	}
	// Progress arriving after its step (a straggling reader) reaches no observer.
	n := len(rec.events)
	pw.late(dbrestore.Progress{Done: 3, Total: 3})
	if len(rec.events) != n {
		t.Errorf("late progress observed: %v", rec.events[n:])
	}
}

func TestObserverSeesAFailedStep(t *testing.T) {
	w := newWorld()
	w.failSchema = fail
	rec := &recorder{}
	rep, err := w.rebuilder(t, func(c *Config) { c.Observer = rec }).Run(context.Background())
	if err == nil {
		t.Fatal("the failing schema step did not fail the run")
	}
	last := rec.done[len(rec.done)-1]
	if last.Name != "schema" || last.Status != "failed" || !strings.Contains(last.Error, errInjected.Error()) ||
		!reflect.DeepEqual(last, *rep.Steps[len(rep.Steps)-1]) {
		t.Errorf("last step observed %+v; report %+v", last, rep.Steps[len(rep.Steps)-1])
	}

	// A dry run is observed as one.
	rec2 := &recorder{}
	w.failSchema = nil
	if _, err := w.rebuilder(t, func(c *Config) { c.Observer = rec2 }).Plan(context.Background()); err != nil {
		t.Fatal(err)
	}
	if len(rec2.runs) == 0 || !rec2.runs[0].DryRun {
		t.Errorf("dry run observed as %+v", rec2.runs)
	}

	// A deploy is observed with its kind.
	rec3 := &recorder{}
	if _, err := w.rebuilder(t, func(c *Config) { c.Observer = rec3 }).Deploy(context.Background(), DeployOptions{}); err != nil {
		t.Fatal(err)
	}
	if len(rec3.runs) == 0 || rec3.runs[0].Kind != "deploy" || rec3.events[0] != "start lock" {
		t.Errorf("deploy observed as %+v: %v", rec3.runs, rec3.events)
	}
}

func TestObserversFanOut(t *testing.T) {
	a, b := &recorder{}, &recorder{}
	var funcs []string
	f := ObserverFuncs{OnStepDone: func(_ RunInfo, s Step) { funcs = append(funcs, s.Name) }}
	obs := Observers(nil, a, Observers(b, f))
	if Observers() != nil || Observers(nil) != nil || Observers(a) != Observer(a) {
		t.Error("Observers of none or one")
	}
	ri := RunInfo{ID: "x"}
	obs.StepStarted(ri, "s")
	obs.StepProgress(ri, Progress{Step: "s", Done: 1, Total: 2, Unit: UnitBytes})
	obs.StepDone(ri, Step{Name: "s", Status: "ok"})
	want := []string{"start s", "progress s 1/2 bytes", "done s ok"}
	if !reflect.DeepEqual(a.events, want) || !reflect.DeepEqual(b.events, want) || !reflect.DeepEqual(funcs, []string{"s"}) {
		t.Errorf("a %v, b %v, funcs %v", a.events, b.events, funcs)
	}
	if _, nested := obs.(fanOut)[1].(fanOut); nested {
		t.Error("nested fan-outs not flattened")
	}
}
