package cron_test

import (
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"

	"github.com/restage/restage/internal/safefile"
	"github.com/restage/restage/internal/testutil"
	"github.com/restage/restage/staging"
	"github.com/restage/restage/staging/cron"
	"github.com/restage/restage/staging/cron/crontest"
)

// A job disabled with Runner.SetEnabled (cronrunner -disable) stays disabled when the
// control file turns unreadable before the next run: the last good copy is the edit's.
func TestSetEnabledKeepsTheLastGoodCopy(t *testing.T) {
	e := newEnv(t)
	_, r := e.controlled(t, "[DEFAULT]\nenabled: True\n", "a", "mailer")
	if got := outcomes(runOnce(t, r, at(0))); got != "a=ok mailer=ok" {
		t.Fatalf("good control file: %s", got)
	}
	if err := r.SetEnabled(t.Context(), "mailer", false); err != nil {
		t.Fatal(err)
	}
	e.writeControl(t, nil, "[DEFAULT]\nenabled: True\n[mailer]\nenabled: Flase\n")
	if got := outcomes(runOnce(t, r, at(1))); got != "a=ok mailer=skipped-disabled" {
		t.Fatalf("broken control file after -disable: %s: the disabled job must stay disabled", got)
	}
}

// An unparsable control file must not make every job run: the last one that parsed
// (kept in state_dir) is used, with a warning naming the problem; control_fail
// applies only when there was never a good one.
func TestUnparsableControlFileKeepsLastGoodOne(t *testing.T) {
	e := newEnv(t)
	cfg, r := e.controlled(t, "[DEFAULT]\nenabled: True\n[mailer]\nenabled: False\n", "a", "mailer")
	control := e.path("cron.ini")
	if got := outcomes(runOnce(t, r, at(0))); got != "a=ok mailer=skipped-disabled" {
		t.Fatalf("good control file: %s", got)
	}
	copyPath := filepath.Join(e.state, cron.ControlCopyFile)
	if st, err := os.Stat(copyPath); err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("no 0600 copy of the control file: %v %v", st, err)
	}

	// Someone saves a broken file.
	e.writeControl(t, nil, "[DEFAULT]\nenabled: True\n[mailer]\nenabled: Flase\n")
	sum := runOnce(t, r, at(1))
	if got := outcomes(sum); got != "a=ok mailer=skipped-disabled" {
		t.Fatalf("broken control file: %s: the disabled job must stay disabled", got)
	}
	if sum.ControlErr == nil || !strings.Contains(sum.ControlErr.Error(), "line 4") || sum.ControlCopy != copyPath {
		t.Fatalf("ControlErr %v, ControlCopy %q", sum.ControlErr, sum.ControlCopy)
	}
	log := e.log.String()
	if !strings.Contains(log, "level=WARN") || !strings.Contains(log, "using the last copy of it that parsed") || !strings.Contains(log, `not a boolean: \"Flase\"`) {
		t.Fatalf("no warning naming the problem:\n%s", log)
	}
	// control_fail = closed does not apply either: there is a good copy.
	cfg.ControlFail = cron.FailClosed
	if got := outcomes(runOnce(t, newRunner(t, cfg), at(2))); got != "a=ok mailer=skipped-disabled" {
		t.Fatalf("broken control file, control_fail = closed: %s", got)
	}
	// Nor when the file is gone.
	os.Remove(control)
	cfg.ControlFail = ""
	if got := outcomes(runOnce(t, newRunner(t, cfg), at(3))); got != "a=ok mailer=skipped-disabled" {
		t.Fatalf("missing control file: %s", got)
	}
	// A copy of another control file is not used: the config now names another one,
	// never good, so control_fail applies.
	if err := os.WriteFile(e.path("other.ini"), []byte("garbage\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	cfg.Control = "other.ini"
	if got := outcomes(runOnce(t, newRunner(t, cfg), at(4))); got != "a=ok mailer=ok" {
		t.Fatalf("never-good control file, control_fail = open: %s", got)
	}
	if n := crontest.LineCount(t, e.path("mailer")); n != 1 {
		t.Fatalf("the disabled job ran %d times, want 1 (after the switch to another control file)", n)
	}
}

// A control URL that fails (HTTP 500, garbage, an empty answer, unreachable) uses the
// last good copy;
// its credentials appear neither in the log nor in the copy.
func TestControlURLFailureUsesLastGoodCopy(t *testing.T) {
	var mode atomic.Value
	mode.Store("ok")
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch mode.Load() {
		case "ok":
			w.Write([]byte("[DEFAULT]\nenabled = true\n[mailer]\nenabled = false\n"))
		case "500":
			http.Error(w, "boom", http.StatusInternalServerError)
		case "empty":
		default:
			w.Write([]byte("<html>a proxy's error page</html>\n"))
		}
	}))
	t.Cleanup(srv.Close) // the loop closes it too
	e := newEnv(t)
	cfg := e.config(
		e.appendJob(t, "a", "* * * * *"),
		e.appendJob(t, "mailer", "* * * * *"),
	)
	cfg.Control = strings.Replace(srv.URL, "http://", "http://cron:s3cret-token@", 1) + "/cron.ini"
	r := newRunner(t, cfg)
	for i, m := range []string{"ok", "500", "garbage", "empty", "unreachable"} {
		if m == "unreachable" {
			srv.Close()
		}
		mode.Store(m)
		sum := runOnce(t, r, at(i))
		if got := outcomes(sum); got != "a=ok mailer=skipped-disabled" {
			t.Fatalf("%s: %s", m, got)
		}
		if (sum.ControlErr != nil) != (m != "ok") || (sum.ControlCopy != "") != (m != "ok") {
			t.Fatalf("%s: ControlErr %v, ControlCopy %q", m, sum.ControlErr, sum.ControlCopy)
		}
	}
	if n := crontest.LineCount(t, e.path("mailer")); n != 0 {
		t.Fatalf("the disabled job ran %d times", n)
	}
	data, _ := os.ReadFile(filepath.Join(e.state, cron.ControlCopyFile))
	for what, text := range map[string]string{"log": e.log.String(), "copy": string(data)} {
		if strings.Contains(text, "s3cret-token") {
			t.Fatalf("the URL's credentials are in the %s:\n%s", what, text)
		}
	}
	if !strings.Contains(e.log.String(), "500 Internal Server Error") {
		t.Fatalf("the warning does not name the problem:\n%s", e.log)
	}
}

// A job gets PATH, HOME and the like, its configured env and restage's variables, but
// not the rest of the runner's environment, where secrets live.
func TestJobEnvironmentHasNoSecrets(t *testing.T) {
	testutil.SetSecrets(t)
	t.Setenv("HOME", "/home/restage-test")
	e := newEnv(t)
	j := crontest.Job(t, "env", "* * * * *", "environ", e.path("environ"))
	j.Env["LP_ENV"] = "staging"
	j.Env["RESTAGE_CRON_JOB"] = "spoofed" // restage's own variables win
	if got := outcomes(runOnce(t, newRunner(t, e.config(j)), at(0))); got != "env=ok" {
		t.Fatal(got)
	}
	data, err := os.ReadFile(e.path("environ"))
	if err != nil {
		t.Fatal(err)
	}
	env := map[string]string{}
	for _, kv := range strings.Split(strings.TrimSpace(string(data)), "\n") {
		k, v, _ := strings.Cut(kv, "=")
		env[k] = v // the last one wins, as for the job
	}
	if strings.Contains(string(data), testutil.Secret) {
		t.Fatalf("a secret of the runner's environment reached the job:\n%s", data)
	}
	for k, want := range map[string]string{
		"PATH": os.Getenv("PATH"), "HOME": "/home/restage-test", "LP_ENV": "staging",
		"RESTAGE_ENVIRONMENT": "staging", "RESTAGE_CRON_JOB": "env",
		"RESTAGE_LOCK_FD": "3", "RESTAGE_JOB_LOCK_FD": "4",
	} {
		if env[k] != want {
			t.Errorf("%s = %q, want %q", k, env[k], want)
		}
	}
}

// A job skipped because a rebuild holds the lock is a warning (what -once prints)
// naming the rebuild: pid, host and start.
func TestSkipDuringRebuildWarnsNamingTheRebuild(t *testing.T) {
	e := newEnv(t)
	cfg := e.config(e.appendJob(t, "a", "* * * * *"))
	cfg.Logger = slog.New(slog.NewTextHandler(e.log, &slog.HandlerOptions{Level: slog.LevelWarn}))
	rebuild, err := staging.AcquireExclusive(t.Context(), e.lock, staging.LockOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer rebuild.Release()
	sum := runOnce(t, newRunner(t, cfg), at(0))
	if outcomes(sum) != "a=skipped-locked" || sum.Jobs[0].LockOwner == nil {
		t.Fatalf("%s %+v", outcomes(sum), sum.Jobs[0])
	}
	owner := sum.Jobs[0].LockOwner
	host, _ := os.Hostname()
	log := e.log.String()
	for _, want := range []string{"level=WARN", "job skipped: a rebuild holds the lock", "job=a",
		"pid " + strconv.Itoa(os.Getpid()) + " on " + host + " since " + owner.Start.Format("2006-01-02T15:04:05Z07:00")} {
		if !strings.Contains(log, want) {
			t.Errorf("the warning lacks %q:\n%s", want, log)
		}
	}
}

// What the runner writes is 0600 and the folders it makes 0700, also a job log left
// 0644 by an older version.
func TestStateFilesArePrivate(t *testing.T) {
	e := newEnv(t)
	cfg := e.config(crontest.Job(t, "a", "* * * * *", "echo", "out"), crontest.Job(t, "b", "* * * * *", "echo", "out"))
	e.writeControl(t, &cfg, "[DEFAULT]\nenabled: True\n")
	e.state = filepath.Join(e.dir, "var", "cron") // the runner makes it and its parent
	cfg.StateDir = e.state
	if got := outcomes(runOnce(t, newRunner(t, cfg), at(0))); got != "a=ok b=ok" {
		t.Fatal(got)
	}
	// As an older version left it.
	if err := os.Chmod(filepath.Join(e.state, "jobs", "b.log"), 0o644); err != nil {
		t.Fatal(err)
	}
	if got := outcomes(runOnce(t, newRunner(t, cfg), at(1))); got != "a=ok b=ok" {
		t.Fatal(got)
	}
	for p, want := range map[string]os.FileMode{
		filepath.Join(e.dir, "var"):                  0o700,
		e.state:                                      0o700,
		filepath.Join(e.state, "jobs"):               0o700,
		filepath.Join(e.state, cron.StateFile):       0o600,
		filepath.Join(e.state, "state.lock"):         0o600,
		filepath.Join(e.state, cron.ControlCopyFile): 0o600,
		filepath.Join(e.state, "jobs", "a.log"):      0o600,
		filepath.Join(e.state, "jobs", "b.log"):      0o600,
		filepath.Join(e.state, "jobs", "a.lock"):     0o600,
		e.lock:                                       0o600,
		filepath.Dir(e.lock):                         0o700,
	} {
		st, err := os.Stat(p)
		if err != nil {
			t.Error(err)
			continue
		}
		if st.Mode().Perm() != want {
			t.Errorf("%s: mode %v, want %v", p, st.Mode().Perm(), want)
		}
	}
}

// A symbolic link planted at a job's log or lock, the environment's lock or the
// control copy is refused with an error that says so; its target is left as it was.
func TestRunnerRefusesSymlinks(t *testing.T) {
	dir := t.TempDir()
	victim := filepath.Join(dir, "victim")
	if err := os.WriteFile(victim, []byte("[DEFAULT]\nenabled: False\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	unchanged := func(t *testing.T) {
		t.Helper()
		st, err := os.Stat(victim)
		if data, _ := os.ReadFile(victim); err != nil || string(data) != "[DEFAULT]\nenabled: False\n" || st.Mode().Perm() != 0o644 {
			t.Fatalf("victim changed: %q %v %v", data, st, err)
		}
	}
	for _, name := range []string{"jobs/a.log", "jobs/a.lock", "lock"} {
		t.Run(name, func(t *testing.T) {
			e := newEnv(t)
			link := filepath.Join(e.state, name)
			if name == "lock" {
				link = e.lock
			}
			if err := os.MkdirAll(filepath.Dir(link), 0o700); err != nil {
				t.Fatal(err)
			}
			if err := os.Symlink(victim, link); err != nil {
				t.Fatal(err)
			}
			sum := runOnce(t, newRunner(t, e.config(e.appendJob(t, "a", "* * * * *"))), at(0))
			if got := outcomes(sum); got != "a=failed" {
				t.Fatalf("%s: %v", got, sum.Jobs[0].Err)
			}
			if err := sum.Jobs[0].Err; !errors.Is(err, syscall.ELOOP) || !strings.Contains(err.Error(), "symbolic link") {
				t.Fatalf("err = %v", err)
			}
			if crontest.Exists(e.path("a")) {
				t.Fatal("the job ran")
			}
			if msgs := e.messages(); len(msgs) != 1 || !strings.Contains(msgs[0].Body, "symbolic link") {
				t.Fatalf("not reported: %+v", msgs)
			}
			unchanged(t)
		})
	}
	t.Run("control copy", func(t *testing.T) {
		e := newEnv(t)
		cfg := e.config(e.appendJob(t, "a", "* * * * *"))
		e.writeControl(t, &cfg, "garbage\n")
		if err := os.MkdirAll(e.state, 0o700); err != nil {
			t.Fatal(err)
		}
		if err := os.Symlink(victim, filepath.Join(e.state, cron.ControlCopyFile)); err != nil {
			t.Fatal(err)
		}
		if got := outcomes(runOnce(t, newRunner(t, cfg), at(0))); got != "a=ok" {
			t.Fatalf("a link at the copy was trusted: %s", got)
		}
		if log := e.log.String(); !strings.Contains(log, "cannot be used") || !strings.Contains(log, "symbolic link") {
			t.Fatalf("not logged:\n%s", log)
		}
		// A good control file replaces the link, never its target.
		e.writeControl(t, nil, "[a]\nenabled: True\n")
		runOnce(t, newRunner(t, cfg), at(1))
		if st, err := os.Lstat(filepath.Join(e.state, cron.ControlCopyFile)); err != nil || !st.Mode().IsRegular() {
			t.Fatalf("copy: %v %v", st, err)
		}
		unchanged(t)
	})
}

// A job whose holder record cannot be written runs, and the runner says so.
func TestHolderRecordFailureIsLogged(t *testing.T) {
	e := newEnv(t)
	if err := os.MkdirAll(filepath.Dir(e.lock), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(e.lock+".holders", []byte("not a folder"), 0o600); err != nil {
		t.Fatal(err)
	}
	if got := outcomes(runOnce(t, newRunner(t, e.config(crontest.Job(t, "a", "* * * * *", "echo", "x"))), at(0))); got != "a=ok" {
		t.Fatal(got)
	}
	if log := e.log.String(); !strings.Contains(log, "level=WARN") || !strings.Contains(log, "holder record") {
		t.Fatalf("not logged:\n%s", log)
	}
}

// A job that writes without end cannot fill state_dir's disk: its log keeps the first
// LogBytes of its output, a line saying how much was left out, and the end the report
// keeps.
func TestRunawayOutputLogIsBounded(t *testing.T) {
	e := newEnv(t)
	cfg := e.config(
		crontest.Job(t, "chatty", "* * * * *", "lines", "300000", "exit", "1"),
		crontest.Job(t, "quiet", "* * * * *", "lines", "30"),
	)
	cfg.LogBytes = 64 << 10
	cfg.TailBytes = 400
	if got := outcomes(runOnce(t, newRunner(t, cfg), at(0))); got != "chatty=failed quiet=ok" {
		t.Fatal(got)
	}
	data, err := os.ReadFile(filepath.Join(e.state, "jobs", "chatty.log"))
	if err != nil {
		t.Fatal(err)
	}
	if len(data) > 64<<10+400+200 {
		t.Fatalf("log of %d bytes, want about %d", len(data), 64<<10+400)
	}
	head, rest, ok := strings.Cut(string(data), "\n[restage: ")
	if !ok || !strings.HasPrefix(head, "line 1\nline 2\n") || len(head) != 64<<10 {
		t.Fatalf("log does not begin with the first 64 KiB of output and the note: %q ... %q", data[:40], data[len(data)-200:])
	}
	note, end, _ := strings.Cut(rest, "\n")
	if !strings.Contains(note, "bytes of output left out") || !strings.HasSuffix(end, "line 299999\nline 300000\n") || len(end) != 400 {
		t.Fatalf("log's note %q, its end %q", note, end)
	}
	// A job within the bound keeps its whole output, without a note.
	if data, _ := os.ReadFile(filepath.Join(e.state, "jobs", "quiet.log")); !strings.HasPrefix(string(data), "line 1\n") || !strings.HasSuffix(string(data), "line 30\n") || strings.Contains(string(data), "[restage") {
		t.Fatalf("quiet.log %q", data)
	}
}

// A state_dir other users may write to is refused before a job runs: one of them could
// plant the state (which minutes ran), the control copy or a job's log there.
func TestRunnerRefusesAStateDirOthersMayWrite(t *testing.T) {
	e := newEnv(t)
	marker := e.path("ran")
	cfg := e.config(crontest.Job(t, "a", "* * * * *", "append", marker, "ran"))
	if err := os.MkdirAll(e.state, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(e.state, 0o777); err != nil {
		t.Fatal(err)
	}
	if _, err := newRunner(t, cfg).RunOnce(t.Context(), at(0)); !errors.Is(err, safefile.ErrNotPrivate) {
		t.Fatalf("RunOnce with a state_dir of mode 0777: %v, want it refused", err)
	}
	if crontest.Exists(marker) {
		t.Fatal("a job ran")
	}
}

// A descriptor the runner holds without close-on-exec (inherited from its parent, as a
// flock(1) wrapper's lock is, or opened by raw syscall) does not reach a job: the job
// gets its standard streams and its two locks (fds 3 and 4), nothing else.
func TestJobGetsNoInheritedDescriptor(t *testing.T) {
	e := newEnv(t)
	fd, _ := testutil.RawDescriptor(t)
	j := crontest.Job(t, "fds", "* * * * *")
	j.Command = []string{"/bin/sh", "-c", fmt.Sprintf(`for n in 3 4 %d; do printf '%%s ' $n; readlink /proc/$$/fd/$n || echo none; done`, fd)}
	sum := runOnce(t, newRunner(t, e.config(j)), at(0))
	if got := outcomes(sum); got != "fds=ok" {
		t.Fatalf("%s: %v", got, sum.Jobs[0].Err)
	}
	want := fmt.Sprintf("3 %s\n4 %s\n%d none\n", e.lock, filepath.Join(e.state, "jobs", "fds.lock"), fd)
	if got := string(sum.Jobs[0].Output); got != want {
		t.Errorf("the job's descriptors:\n%s\nwant\n%s", got, want)
	}
}

// A job with a user runs as that user (the runner as root), so the release's code it
// runs cannot read the runner's state (nor what else the runner's user reads); an
// unknown user is a config error naming the job.
func TestJobRunsAsItsUser(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("switching to another user needs root")
	}
	e := newEnv(t)
	secret := e.path("secret")
	if err := os.WriteFile(secret, []byte("the runner's secret\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	j := cron.Job{Name: "whoami", Schedule: "* * * * *", Dir: "/", User: "nobody",
		Command: []string{"/bin/sh", "-c", "echo user=$(id -un) home=$HOME; cat " + secret + " " + e.state + "/state.json || echo unreadable"}}
	if got := outcomes(runOnce(t, newRunner(t, e.config(j)), at(0))); got != "whoami=ok" {
		t.Fatal(got)
	}
	runOnce(t, newRunner(t, e.config(j)), at(1)) // state.json exists now
	out, err := os.ReadFile(filepath.Join(e.state, "jobs", "whoami.log"))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(out), "user=nobody home=/nonexistent") || !strings.Contains(string(out), "unreadable") ||
		strings.Contains(string(out), "the runner's secret") || strings.Contains(string(out), `"whoami"`) {
		t.Errorf("the job's output:\n%s", out)
	}
	j.User = "no-such-user-restage"
	if _, err := cron.New(e.config(j)); !errors.Is(err, staging.ErrConfig) || !strings.Contains(err.Error(), `job "whoami": user`) {
		t.Errorf("an unknown user: %v", err)
	}
}

// A job inherits its locks read-only: its code cannot rewrite the environment's lock
// file through fd 3 (a record every later rebuild and job would refuse) nor its job lock
// through fd 4; the next job and a rebuild take the lock as usual.
func TestJobCannotWriteItsLocks(t *testing.T) {
	e := newEnv(t)
	j := cron.Job{Name: "scribble", Schedule: "* * * * *",
		Command: []string{"/bin/sh", "-c", "printf junk >&3 && echo wrote3; printf junk >&4 && echo wrote4; exit 0"}}
	for i := range 2 {
		if got := outcomes(runOnce(t, newRunner(t, e.config(j)), at(i))); got != "scribble=ok" {
			t.Fatalf("run %d: %s", i, got)
		}
	}
	out, _ := os.ReadFile(filepath.Join(e.state, "jobs", "scribble.log"))
	if strings.Contains(string(out), "wrote") {
		t.Errorf("the job wrote through its lock descriptors:\n%s", out)
	}
	for _, f := range []string{e.lock, filepath.Join(e.state, "jobs", "scribble.lock")} {
		if b, _ := os.ReadFile(f); strings.Contains(string(b), "junk") {
			t.Errorf("%s holds %q", f, b)
		}
	}
	l, err := staging.AcquireExclusive(t.Context(), e.lock, staging.LockOptions{})
	if err != nil {
		t.Fatalf("a rebuild after the job: %v", err)
	}
	l.Release()
}
