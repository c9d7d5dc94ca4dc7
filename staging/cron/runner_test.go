package cron_test

import (
	"context"
	"errors"
	"io/fs"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/restage/restage/internal/testutil"
	"github.com/restage/restage/notify"
	"github.com/restage/restage/staging"
	"github.com/restage/restage/staging/cron"
	"github.com/restage/restage/staging/cron/crontest"
)

func TestDueJobRunsOnce(t *testing.T) {
	e := newEnv(t)
	r := newRunner(t, e.config(
		e.appendJob(t, "every-minute", "* * * * *"),
		e.appendJob(t, "every-five", "*/5 * * * *"),
		e.appendJob(t, "half-past", "30 * * * *"),
	))
	sum := runOnce(t, r, at(0, 10))
	if got, want := outcomes(sum), "every-minute=ok every-five=ok"; got != want {
		t.Fatalf("12:00: %s, want %s", got, want)
	}
	if !sum.Jobs[0].Due.Equal(at(0)) {
		t.Errorf("due %s, want 12:00", sum.Jobs[0].Due)
	}
	// Again in the same minute (cron started twice): nothing.
	if sum := runOnce(t, r, at(0, 50)); len(sum.Jobs) != 0 {
		t.Fatalf("12:00:50 ran %s", outcomes(sum))
	}
	sum = runOnce(t, r, at(1, 0))
	if got, want := outcomes(sum), "every-minute=ok"; got != want {
		t.Fatalf("12:01: %s, want %s", got, want)
	}
	if got, want := e.runs(t, "every-minute", "every-five", "half-past"), "every-minute=2 every-five=1 half-past=0"; got != want {
		t.Fatalf("runs: %s, want %s", got, want)
	}
	if !crontest.Exists(filepath.Join(e.state, cron.StateFile)) {
		t.Fatal("no state file")
	}
}

func TestFirstRunOnlyRunsWhatIsDueThisMinute(t *testing.T) {
	e := newEnv(t)
	r := newRunner(t, e.config(crontest.Job(t, "hourly", "0 * * * *", "append", e.path("a"), "run")))
	if sum := runOnce(t, r, at(3)); len(sum.Jobs) != 0 { // 12:00 was before the first run
		t.Fatalf("first run at 12:03 ran %s", outcomes(sum))
	}
	if sum := runOnce(t, r, at(60)); outcomes(sum) != "hourly=ok" {
		t.Fatalf("13:00: %s", outcomes(sum))
	}
}

func TestCatchUpAfterMissedMinutesRunsOnce(t *testing.T) {
	e := newEnv(t)
	r := newRunner(t, e.config(
		e.appendJob(t, "every-minute", "* * * * *"),
		e.appendJob(t, "at-three", "3 * * * *"),
		e.appendJob(t, "at-ten", "10 * * * *"),
	))
	runOnce(t, r, at(0))
	// The machine was busy: 12:01 … 12:03 passed without a run.
	sum := runOnce(t, r, at(4, 30))
	if got, want := outcomes(sum), "every-minute=ok at-three=ok"; got != want {
		t.Fatalf("catch-up: %s, want %s", got, want)
	}
	if !sum.Jobs[0].Due.Equal(at(1)) || !sum.Jobs[1].Due.Equal(at(3)) {
		t.Errorf("due %s and %s, want 12:01 and 12:03", sum.Jobs[0].Due, sum.Jobs[1].Due)
	}
	if sum := runOnce(t, r, at(4, 50)); len(sum.Jobs) != 0 {
		t.Fatalf("second run in 12:04 ran %s", outcomes(sum))
	}
	if got, want := e.runs(t, "every-minute", "at-three", "at-ten"), "every-minute=2 at-three=1 at-ten=0"; got != want {
		t.Fatalf("runs: %s, want %s", got, want)
	}
}

func TestJobDuringRebuildIsSkippedAndRunsAfter(t *testing.T) {
	e := newEnv(t)
	r := newRunner(t, e.config(crontest.Job(t, "expire-sessions", "*/5 * * * *", "append", e.path("a"), "run")))
	rebuild, err := staging.AcquireExclusive(t.Context(), e.lock, staging.LockOptions{})
	if err != nil {
		t.Fatal(err)
	}
	sum := runOnce(t, r, at(0))
	if got := outcomes(sum); got != "expire-sessions=skipped-locked" {
		t.Fatalf("during the rebuild: %s", got)
	}
	res := sum.Jobs[0]
	if !errors.Is(res.Err, staging.ErrLocked) || res.LockOwner == nil || res.LockOwner.PID != os.Getpid() {
		t.Fatalf("skip: err %v, owner %+v", res.Err, res.LockOwner)
	}
	if log := e.log.String(); !strings.Contains(log, "a rebuild holds the lock") || !strings.Contains(log, "pid "+strconv.Itoa(os.Getpid())) {
		t.Fatalf("log does not name the lock's owner:\n%s", log)
	}
	if n := crontest.LineCount(t, e.path("a")); n != 0 {
		t.Fatalf("job ran %d times during the rebuild", n)
	}
	// Still during the rebuild: still skipped, still owed.
	if got := outcomes(runOnce(t, r, at(1))); got != "expire-sessions=skipped-locked" {
		t.Fatalf("12:01 during the rebuild: %s", got)
	}
	if err := rebuild.Release(); err != nil {
		t.Fatal(err)
	}
	sum = runOnce(t, r, at(2))
	if got := outcomes(sum); got != "expire-sessions=ok" {
		t.Fatalf("after the rebuild: %s", got)
	}
	if !sum.Jobs[0].Due.Equal(at(0)) {
		t.Errorf("due %s, want the skipped 12:00", sum.Jobs[0].Due)
	}
	if sum := runOnce(t, r, at(3)); len(sum.Jobs) != 0 {
		t.Fatalf("12:03 ran %s: the owed minute must be caught up once", outcomes(sum))
	}
	if n := crontest.LineCount(t, e.path("a")); n != 1 {
		t.Fatalf("job ran %d times, want 1", n)
	}
}

// startBlocking starts a RunOnce at 12:00 whose job "long" waits for the file release,
// and returns when the job runs; the channel yields the summary.
func startBlocking(t *testing.T, e *env, r *cron.Runner) <-chan *cron.Summary {
	t.Helper()
	done := make(chan *cron.Summary, 1)
	go func() {
		sum, err := r.RunOnce(context.WithoutCancel(t.Context()), at(0))
		if err != nil {
			t.Error(err)
		}
		done <- sum
	}()
	crontest.WaitFor(t, "the job to start", func() bool { return crontest.Exists(e.path("started")) })
	return done
}

func longJob(t *testing.T, e *env) cron.Job {
	return crontest.Job(t, "long", "* * * * *",
		"append", e.path("runs"), "run", "append", e.path("started"), "x",
		"echo", "working", "waitfile", e.path("release"), "append", e.path("finished"), "x")
}

func TestRebuildWaitsForRunningJob(t *testing.T) {
	e := newEnv(t)
	r := newRunner(t, e.config(longJob(t, e)))
	done := startBlocking(t, e, r)

	holders := staging.SharedHolders(e.lock)
	if len(holders) != 1 || holders[0].Job != "long" {
		t.Fatalf("shared holders while the job runs: %+v", holders)
	}
	// The rebuild waits up to its bound, then names the job.
	_, err := staging.AcquireExclusive(t.Context(), e.lock, staging.LockOptions{WaitShared: 300 * time.Millisecond, Poll: 20 * time.Millisecond})
	var busy *staging.BusyError
	if !errors.As(err, &busy) || len(busy.Holders) != 1 || busy.Holders[0].Job != "long" || !strings.Contains(err.Error(), `"long"`) {
		t.Fatalf("rebuild while the job runs: %v", err)
	}
	// With a longer bound, it gets the lock once the job ends.
	got := make(chan error, 1)
	go func() {
		l, err := staging.AcquireExclusive(t.Context(), e.lock, staging.LockOptions{WaitShared: 5 * time.Minute, Poll: 20 * time.Millisecond})
		if err == nil {
			if !crontest.Exists(e.path("finished")) {
				err = errors.New("rebuild got the lock while the job was still running")
			}
			l.Release()
		}
		got <- err
	}()
	crontest.Touch(t, e.path("release"))
	if err := <-got; err != nil {
		t.Fatal(err)
	}
	sum := <-done
	if outcomes(sum) != "long=ok" || !strings.Contains(string(sum.Jobs[0].Output), "working") {
		t.Fatalf("job: %s, output %q", outcomes(sum), sum.Jobs[0].Output)
	}
}

func TestOverlapPrevented(t *testing.T) {
	e := newEnv(t)
	cfg := e.config(longJob(t, e))
	done := startBlocking(t, e, newRunner(t, cfg))
	// The next minute's cron invocation (another Runner: another open of every file).
	sum := runOnce(t, newRunner(t, cfg), at(1))
	if got := outcomes(sum); got != "long=skipped-running" || !errors.Is(sum.Jobs[0].Err, cron.ErrRunning) {
		t.Fatalf("while running: %s (%v)", got, sum.Jobs[0].Err)
	}
	if n := crontest.LineCount(t, e.path("runs")); n != 1 {
		t.Fatalf("started %d times", n)
	}
	crontest.Touch(t, e.path("release"))
	if sum := <-done; outcomes(sum) != "long=ok" {
		t.Fatalf("first run: %s", outcomes(sum))
	}
	// Not owed: the skipped minute was covered by the running instance.
	if got := outcomes(runOnce(t, newRunner(t, cfg), at(2))); got != "long=ok" {
		t.Fatalf("12:02: %s", got)
	}
	if n := crontest.LineCount(t, e.path("runs")); n != 2 {
		t.Fatalf("runs %d, want 2", n)
	}
}

func TestControlFileDisablesJob(t *testing.T) {
	e := newEnv(t)
	_, r := e.controlled(t, "# staging cron control\n[DEFAULT]\nenabled: True\n\n[b]\nenabled: False\n", "a", "b")
	control := e.path("cron.ini")
	sum := runOnce(t, r, at(0))
	if got := outcomes(sum); got != "a=ok b=skipped-disabled" || !errors.Is(sum.Jobs[1].Err, cron.ErrDisabled) {
		t.Fatalf("%s (%v)", got, sum.Jobs[1].Err)
	}
	if !strings.Contains(e.log.String(), "disabled by the control file") {
		t.Fatalf("skip not logged:\n%s", e.log)
	}
	if len(e.messages()) != 0 {
		t.Fatal("a disabled job was reported as a failure")
	}
	// The tool call: enable b, disable everything else by default.
	if err := cron.SetEnabled(t.Context(), control, "b", true); err != nil {
		t.Fatal(err)
	}
	if err := cron.SetEnabled(t.Context(), control, "DEFAULT", false); err != nil {
		t.Fatal(err)
	}
	if got := outcomes(runOnce(t, r, at(1))); got != "a=skipped-disabled b=ok" {
		t.Fatalf("after SetEnabled: %s", got)
	}
	data, _ := os.ReadFile(control)
	if want := "# staging cron control\n[DEFAULT]\nenabled: False\n\n[b]\nenabled: True\n"; string(data) != want {
		t.Fatalf("control file:\n%s\nwant:\n%s", data, want)
	}
	if crontest.Exists(control + ".new") {
		t.Fatal(".new left behind")
	}
	// A disabled minute is not owed.
	if err := cron.SetEnabled(t.Context(), control, "DEFAULT", true); err != nil {
		t.Fatal(err)
	}
	runOnce(t, r, at(2))
	if a, b := crontest.LineCount(t, e.path("a")), crontest.LineCount(t, e.path("b")); a != 2 || b != 2 {
		t.Fatalf("runs a=%d b=%d, want 2 2", a, b)
	}
}

func TestControlURL(t *testing.T) {
	var body = "[DEFAULT]\nenabled = true\n[b]\nenabled = false\n"
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Write([]byte(body))
	}))
	defer srv.Close()
	down := httptest.NewServer(http.NotFoundHandler())
	downURL := down.URL + "/cron.ini"
	down.Close() // connection refused
	broken := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, "boom", http.StatusInternalServerError)
	}))
	defer broken.Close()
	slow := testutil.HangingServer(t)

	for _, tc := range []struct {
		name, url, fail, want string
		readErr               bool
	}{
		{"served", srv.URL + "/cron.ini", "", "a=ok b=skipped-disabled", false},
		{"unreachable fails open", downURL, "", "a=ok b=ok", true},
		{"unreachable fails closed", downURL, cron.FailClosed, "a=skipped-disabled b=skipped-disabled", true},
		{"HTTP 500 fails open", broken.URL, cron.FailOpen, "a=ok b=ok", true},
		{"HTTP 500 fails closed", broken.URL, cron.FailClosed, "a=skipped-disabled b=skipped-disabled", true},
		{"timeout fails open", slow, "", "a=ok b=ok", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t)
			cfg := e.config(
				e.appendJob(t, "a", "* * * * *"),
				e.appendJob(t, "b", "* * * * *"),
			)
			cfg.Control, cfg.ControlFail = tc.url, tc.fail
			cfg.HTTPClient = &http.Client{Timeout: time.Second} // the default is ControlTimeout
			sum := runOnce(t, newRunner(t, cfg), at(0))
			if got := outcomes(sum); got != tc.want {
				t.Fatalf("%s, want %s", got, tc.want)
			}
			if (sum.ControlErr != nil) != tc.readErr {
				t.Fatalf("ControlErr %v", sum.ControlErr)
			}
			if tc.readErr && !strings.Contains(e.log.String(), "control file cannot be read") {
				t.Fatalf("not logged:\n%s", e.log)
			}
		})
	}
}

func TestFailureReachesNotifierWithOutputTail(t *testing.T) {
	e := newEnv(t)
	cfg := e.config(
		crontest.Job(t, "fails", "* * * * *", "lines", "300", "stderr", "disk full", "exit", "3"),
		crontest.Job(t, "works", "* * * * *", "echo", "fine"),
	)
	cfg.TailBytes = 400
	sum := runOnce(t, newRunner(t, cfg), at(0))
	if got := outcomes(sum); got != "fails=failed works=ok" {
		t.Fatalf("%s", got)
	}
	res := sum.Jobs[0]
	var ce *cron.CommandError
	if !errors.As(res.Err, &ce) || ce.ExitCode != 3 || res.ExitCode != 3 || ce.Job != "fails" {
		t.Fatalf("error %#v", res.Err)
	}
	msgs := e.messages()
	if len(msgs) != 1 {
		t.Fatalf("%d reports, want 1", len(msgs))
	}
	m := msgs[0]
	if m.Topic != "staging-cron" || m.Status != notify.StatusFailed || m.Environment != "staging" || m.LogName != "fails.log" {
		t.Fatalf("report %+v", m)
	}
	for _, want := range []string{"fails", "exit status 3", "line 300", "disk full"} {
		if !strings.Contains(m.Subject+m.Body, want) {
			t.Errorf("report lacks %q:\nSubject: %s\n%s", want, m.Subject, m.Body)
		}
	}
	if !strings.Contains(string(m.Log), "line 299\nline 300\ndisk full\n") || strings.Contains(string(m.Log), "line 1\n") || len(m.Log) > 400 {
		t.Fatalf("log is not the tail: %q", m.Log)
	}
	// The whole output of the last run is kept in the state folder.
	if data, _ := os.ReadFile(filepath.Join(e.state, "jobs", "fails.log")); !strings.Contains(string(data), "line 1\n") {
		t.Fatal("full output not kept")
	}

	// A configured topic wins.
	e2 := newEnv(t)
	cfg = e2.config(crontest.Job(t, "fails", "* * * * *", "exit", "1"))
	cfg.Notify.Topic = "ops-cron"
	runOnce(t, newRunner(t, cfg), at(0))
	if msgs := e2.messages(); len(msgs) != 1 || msgs[0].Topic != "ops-cron" {
		t.Fatalf("reports %+v", msgs)
	}
}

func TestMissingProgramFailsAndOthersRun(t *testing.T) {
	e := newEnv(t)
	cfg := e.config(
		cron.Job{Name: "ghost", Schedule: "* * * * *", Command: []string{filepath.Join(e.dir, "no-such-program")}},
		cron.Job{Name: "ghost-in-path", Schedule: "* * * * *", Command: []string{"restage-no-such-program"}},
		crontest.Job(t, "works", "* * * * *", "append", e.path("a"), "run"),
	)
	sum := runOnce(t, newRunner(t, cfg), at(0))
	if got := outcomes(sum); got != "ghost=failed ghost-in-path=failed works=ok" {
		t.Fatalf("%s", got)
	}
	if !errors.Is(sum.Jobs[0].Err, fs.ErrNotExist) || !errors.Is(sum.Jobs[1].Err, exec.ErrNotFound) {
		t.Fatalf("errors: %v; %v", sum.Jobs[0].Err, sum.Jobs[1].Err)
	}
	if crontest.LineCount(t, e.path("a")) != 1 {
		t.Fatal("the other job did not run")
	}
	msgs := e.messages()
	if len(msgs) != 2 {
		t.Fatalf("%d reports, want 2", len(msgs))
	}
	for i, m := range msgs {
		if !strings.Contains(m.Subject, "ghost") || !strings.Contains(m.Body, "no-such-program") {
			t.Errorf("report %d: %s\n%s", i, m.Subject, m.Body)
		}
	}
	// The locks were released: nothing holds the environment's lock.
	if h := staging.SharedHolders(e.lock); len(h) != 0 {
		t.Fatalf("holders left: %+v", h)
	}
}

func TestTimeoutKillsProcessGroup(t *testing.T) {
	e := newEnv(t)
	stuck := crontest.Job(t, "stuck", "* * * * *", "pid", e.path("pid1"), "ignoreterm",
		"spawn", e.path("pid2"), "3", "ignoreterm", "sleep", "10m",
		"echo", "stuck here", "sleep", "10m")
	stuck.Timeout = staging.Duration{Duration: 5 * time.Second} // generous: the helper must start under load
	// A job that exits but leaves a process behind holding its output.
	leaves := crontest.Job(t, "leaves", "* * * * *", "spawn", e.path("pid3"), "2", "sleep", "10m", "echo", "bye")
	cfg := e.config(stuck, leaves)
	cfg.KillDelay = 200 * time.Millisecond
	sum := runOnce(t, newRunner(t, cfg), at(0))
	if got := outcomes(sum); got != "stuck=timed-out leaves=ok" {
		t.Fatalf("%s (%v; %v)", got, sum.Jobs[0].Err, sum.Jobs[1].Err)
	}
	if !errors.Is(sum.Jobs[0].Err, cron.ErrTimeout) || !strings.Contains(string(sum.Jobs[0].Output), "stuck here") {
		t.Fatalf("err %v output %q", sum.Jobs[0].Err, sum.Jobs[0].Output)
	}
	for _, p := range []string{"pid1", "pid2", "pid3"} {
		crontest.WaitFor(t, p+" to be killed", func() bool { return !crontest.Alive(t, e.path(p)) })
	}
	msgs := e.messages()
	if len(msgs) != 1 || !strings.Contains(msgs[0].Subject, "timed out") || !strings.Contains(msgs[0].Body, "stuck here") {
		t.Fatalf("reports: %+v", msgs)
	}
}

func TestJobEnvAndDir(t *testing.T) {
	e := newEnv(t)
	if err := os.Mkdir(e.path("work"), 0o755); err != nil {
		t.Fatal(err)
	}
	j := crontest.Job(t, "env", "* * * * *", "env", e.path("lp_env"), "LP_ENV", "env", e.path("job"), "RESTAGE_CRON_JOB", "cwd", e.path("cwd1"))
	j.Env["LP_ENV"] = "staging"
	j.Dir = "work" // relative to the config's folder
	k := crontest.Job(t, "default-dir", "* * * * *", "cwd", e.path("cwd2"))
	runOnce(t, newRunner(t, e.config(j, k)), at(0))
	for file, want := range map[string]string{"lp_env": "staging", "job": "env", "cwd1": e.path("work"), "cwd2": e.dir} {
		if data, _ := os.ReadFile(e.path(file)); string(data) != want {
			t.Errorf("%s = %q, want %q", file, data, want)
		}
	}
}

func TestEnvironmentDisabledRunsNothing(t *testing.T) {
	e := newEnv(t)
	jobs := []cron.Job{
		crontest.Job(t, "every-minute", "* * * * *", "append", e.path("a"), "run"),
		crontest.Job(t, "at-two", "2 * * * *", "append", e.path("b"), "run"),
	}
	cfg := e.config(jobs...)
	off := false
	cfg.Enabled = &off
	r := newRunner(t, cfg)
	for m := 0; m < 4; m++ {
		if sum := runOnce(t, r, at(m)); !sum.Disabled || len(sum.Jobs) != 0 {
			t.Fatalf("disabled: %+v", sum)
		}
	}
	// Turned back on: the paused minutes are not caught up.
	on := true
	cfg.Enabled = &on
	if got := outcomes(runOnce(t, newRunner(t, cfg), at(4))); got != "every-minute=ok" {
		t.Fatalf("re-enabled: %s", got)
	}
	if a, b := crontest.LineCount(t, e.path("a")), crontest.LineCount(t, e.path("b")); a != 1 || b != 0 {
		t.Fatalf("runs a=%d b=%d", a, b)
	}
}

func TestRunDaemonStopsCleanly(t *testing.T) {
	e := newEnv(t)
	cfg := e.config(longJob(t, e))
	r := newRunner(t, cfg)
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- r.Run(ctx) }()
	crontest.WaitFor(t, "the job to start", func() bool { return crontest.Exists(e.path("started")) })
	cancel() // SIGTERM: no new jobs; the running one finishes within its timeout
	crontest.Touch(t, e.path("release"))
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if !crontest.Exists(e.path("finished")) {
		t.Fatal("Run returned before its job finished")
	}
	if h := staging.SharedHolders(e.lock); len(h) != 0 {
		t.Fatalf("holders left: %+v", h)
	}
	if !strings.Contains(e.log.String(), "cron daemon stopped") {
		t.Fatalf("log:\n%s", e.log)
	}
}

func TestRunDaemonKillsJobAfterItsTimeout(t *testing.T) {
	e := newEnv(t)
	j := crontest.Job(t, "stuck", "* * * * *", "pid", e.path("pid"), "append", e.path("started"), "x", "ignoreterm", "sleep", "10m")
	j.Timeout = staging.Duration{Duration: 5 * time.Second}
	cfg := e.config(j)
	cfg.KillDelay = 100 * time.Millisecond
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- newRunner(t, cfg).Run(ctx) }()
	crontest.WaitFor(t, "the job to start", func() bool { return crontest.Exists(e.path("started")) && crontest.Exists(e.path("pid")) })
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if crontest.Alive(t, e.path("pid")) {
		t.Fatal("job still running after the daemon stopped")
	}
	if msgs := e.messages(); len(msgs) != 1 || !strings.Contains(msgs[0].Subject, "timed out") {
		t.Fatalf("reports %+v", msgs)
	}
}

func TestCancelledRunStartsNothing(t *testing.T) {
	e := newEnv(t)
	r := newRunner(t, e.config(e.appendJob(t, "a", "* * * * *")))
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	if _, err := r.RunOnce(ctx, at(0)); !errors.Is(err, context.Canceled) {
		t.Fatalf("err %v", err)
	}
	if crontest.LineCount(t, e.path("a")) != 0 {
		t.Fatal("job ran")
	}
}

// flushNotifier is a fake notifier that keeps reports, with a Flush.
type flushNotifier struct {
	notifierFunc
	flush func(ctx context.Context) error
}

func (f flushNotifier) Flush(ctx context.Context) error { return f.flush(ctx) }

func TestRunFlushesKeptReports(t *testing.T) {
	e := newEnv(t)
	cfg := e.config(crontest.Job(t, "a", "* * * * *", "echo", "x"))
	flushes := make(chan struct{}, 10)
	cfg.Notifier = flushNotifier{notifierFunc: cfg.Notifier.(notifierFunc), flush: func(ctx context.Context) error {
		flushes <- struct{}{}
		return nil
	}}
	runOnce(t, newRunner(t, cfg), at(0))
	if len(flushes) != 1 {
		t.Fatalf("%d flushes, want 1", len(flushes))
	}
}

func TestNoJobStartsWhileRebuildWaitsForRunningJob(t *testing.T) {
	e := newEnv(t)
	cfg := e.config(longJob(t, e), e.appendJob(t, "other", "1 * * * *"))
	done := startBlocking(t, e, newRunner(t, cfg))
	got := make(chan error, 1)
	go func() {
		l, err := staging.AcquireExclusive(t.Context(), e.lock, staging.LockOptions{WaitShared: 5 * time.Minute, Poll: 20 * time.Millisecond})
		if err == nil {
			l.Release()
		}
		got <- err
	}()
	crontest.WaitFor(t, "the rebuild to wait", func() bool { return crontest.Exists(e.lock + ".waiting") })
	sum := runOnce(t, newRunner(t, cfg), at(1))
	if got := outcomes(sum); got != "long=skipped-running other=skipped-locked" {
		t.Fatalf("while the rebuild waits: %s", got)
	}
	crontest.Touch(t, e.path("release"))
	if err := <-got; err != nil {
		t.Fatal(err)
	}
	<-done
	if got := outcomes(runOnce(t, newRunner(t, cfg), at(2))); got != "long=ok other=ok" {
		t.Fatalf("after the rebuild: %s", got)
	}
}

func TestControlURLFetchedOnlyWhenAJobIsDue(t *testing.T) {
	var hits atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		w.Write([]byte("[DEFAULT]\nenabled: True\n"))
	}))
	defer srv.Close()
	e := newEnv(t)
	cfg := e.config(crontest.Job(t, "half-past", "30 * * * *", "append", e.path("a"), "run"))
	cfg.Control = srv.URL
	r := newRunner(t, cfg)
	for m := 0; m < 3; m++ {
		runOnce(t, r, at(m))
	}
	if n := hits.Load(); n != 0 {
		t.Fatalf("fetched %d times with nothing due", n)
	}
	if got := outcomes(runOnce(t, r, at(30))); got != "half-past=ok" || hits.Load() != 1 {
		t.Fatalf("%s, %d fetches", got, hits.Load())
	}
}

func TestStatus(t *testing.T) {
	e := newEnv(t)
	control := e.path("cron.ini")
	if err := cron.SetEnabled(t.Context(), control, "other", false); err != nil {
		t.Fatal(err)
	}
	cfg := e.config(longJob(t, e), crontest.Job(t, "other", "*/5 * * * *", "append", e.path("a"), "run"))
	cfg.Control = control
	done := startBlocking(t, e, newRunner(t, cfg))
	r := newRunner(t, cfg)
	st, err := r.Status(t.Context(), at(2, 30))
	if err != nil {
		t.Fatal(err)
	}
	if len(st) != 2 {
		t.Fatalf("%+v", st)
	}
	long, other := st[0], st[1]
	if len(long.Running) != 1 || long.Running[0].Job != "long" || !long.Enabled || !long.Next.Equal(at(3)) || !long.Owed.Equal(at(1)) {
		t.Fatalf("long: %+v", long)
	}
	if len(other.Running) != 0 || other.Enabled || !other.Next.Equal(at(5)) || !other.Owed.IsZero() {
		t.Fatalf("other: %+v", other)
	}
	crontest.Touch(t, e.path("release"))
	<-done
}

func TestRunDaemonTicksAtEachMinute(t *testing.T) {
	e := newEnv(t)
	cfg := e.config(crontest.Job(t, "every-minute", "* * * * *", "append", e.path("a"), "run"))
	start, fake := time.Now(), at(0, 59).Add(800*time.Millisecond)
	cfg.Now = func() time.Time { return fake.Add(time.Since(start)) } // 12:00:59.8, running
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- newRunner(t, cfg).Run(ctx) }()
	// 12:00 at once, 12:01 at the start of the next minute, 0.2 s later (the job may
	// then be skipped as still running: the minute is dealt with all the same).
	crontest.WaitFor(t, "the 12:01 run", func() bool {
		data, _ := os.ReadFile(filepath.Join(e.state, cron.StateFile))
		return strings.Contains(string(data), `"last_run": "2026-11-25T12:01:00Z"`)
	})
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if n := crontest.LineCount(t, e.path("a")); n < 1 || n > 2 {
		t.Fatalf("%d runs", n)
	}
}
