package cron_test

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/restage/restage/internal/syncbuf"
	"github.com/restage/restage/notify"
	"github.com/restage/restage/staging/cron"
	"github.com/restage/restage/staging/cron/crontest"
)

func TestMain(m *testing.M) {
	crontest.RunHelper()
	os.Exit(m.Run())
}

// notifierFunc is a fake notify.Notifier.
type notifierFunc func(ctx context.Context, m *notify.Message) error

func (f notifierFunc) Notify(ctx context.Context, m *notify.Message) error { return f(ctx, m) }

// env is one test's environment: a folder with the lock file, the state folder and
// a log, and a notifier that keeps what it gets.
type env struct {
	dir   string
	lock  string
	state string
	log   *syncbuf.Buffer
	mu    sync.Mutex
	msgs  []*notify.Message
}

func newEnv(t testing.TB) *env {
	t.Helper()
	dir := t.TempDir()
	return &env{dir: dir, lock: filepath.Join(dir, "run", "staging.lock"), state: filepath.Join(dir, "state"), log: &syncbuf.Buffer{}}
}

func (e *env) config(jobs ...cron.Job) cron.Config {
	return cron.Config{
		Environment: "staging",
		LockFile:    e.lock,
		StateDir:    e.state,
		Jobs:        jobs,
		Dir:         e.dir,
		Logger:      slog.New(slog.NewTextHandler(e.log, nil)),
		Notifier: notifierFunc(func(ctx context.Context, m *notify.Message) error {
			e.mu.Lock()
			defer e.mu.Unlock()
			e.msgs = append(e.msgs, m)
			return nil
		}),
	}
}

func (e *env) messages() []*notify.Message {
	e.mu.Lock()
	defer e.mu.Unlock()
	return append([]*notify.Message(nil), e.msgs...)
}

func (e *env) path(name string) string { return filepath.Join(e.dir, name) }

// appendJob is a job that appends a line to the file named as the job, in the folder.
func (e *env) appendJob(t testing.TB, name, schedule string) cron.Job {
	t.Helper()
	return crontest.Job(t, name, schedule, "append", e.path(name), "run")
}

// runs says how often each append job ran: "name=N ...".
func (e *env) runs(t testing.TB, names ...string) string {
	t.Helper()
	var out []string
	for _, n := range names {
		out = append(out, fmt.Sprintf("%s=%d", n, crontest.LineCount(t, e.path(n))))
	}
	return strings.Join(out, " ")
}

// controlled is a config of append jobs due every minute, one for each name, under the
// control file "cron.ini" holding text, and a runner of it.
func (e *env) controlled(t testing.TB, text string, names ...string) (cron.Config, *cron.Runner) {
	t.Helper()
	var jobs []cron.Job
	for _, n := range names {
		jobs = append(jobs, e.appendJob(t, n, "* * * * *"))
	}
	cfg := e.config(jobs...)
	e.writeControl(t, &cfg, text)
	return cfg, newRunner(t, cfg)
}

// writeControl writes text to the control file "cron.ini" in the folder, and points
// cfg at it (relative to the config's folder) if cfg is not nil.
func (e *env) writeControl(t testing.TB, cfg *cron.Config, text string) {
	t.Helper()
	if err := os.WriteFile(e.path("cron.ini"), []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	if cfg != nil {
		cfg.Control = "cron.ini"
	}
}

func newRunner(t testing.TB, cfg cron.Config) *cron.Runner {
	t.Helper()
	r, err := cron.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func runOnce(t testing.TB, r *cron.Runner, now time.Time) *cron.Summary {
	t.Helper()
	sum, err := r.RunOnce(t.Context(), now)
	if err != nil {
		t.Fatalf("RunOnce(%s): %v", now.Format("15:04:05"), err)
	}
	return sum
}

// outcomes returns "job=outcome" for every due job, in order.
func outcomes(sum *cron.Summary) string {
	var s []string
	for _, j := range sum.Jobs {
		s = append(s, j.Job+"="+string(j.Outcome))
	}
	return strings.Join(s, " ")
}

var base = time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC)

func at(min int, sec ...int) time.Time {
	t := base.Add(time.Duration(min) * time.Minute)
	if len(sec) > 0 {
		t = t.Add(time.Duration(sec[0]) * time.Second)
	}
	return t
}
