package staging

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

func TestRebuildWaitsForCronJobsThenGivesUpNamingThem(t *testing.T) {
	w := newWorld()
	r := w.rebuilder(t, func(c *Config) { c.CronWait = 300 * time.Millisecond })
	job, err := AcquireShared(r.cfg.LockFile, "expire-sessions")
	if err != nil {
		t.Fatal(err)
	}
	before := w.snapshot()
	rep, err := r.Run(context.Background())
	job.Release()
	if !errors.Is(err, ErrBusy) || !strings.Contains(err.Error(), `job "expire-sessions"`) {
		t.Fatalf("err = %v", err)
	}
	if w.snapshot() != before || rep.FailedStep != "lock" {
		t.Fatalf("staging changed or wrong step %q", rep.FailedStep)
	}
	if len(w.delivered) != 1 || !strings.Contains(w.delivered[0].Body, "expire-sessions") {
		t.Fatalf("the report does not name the job: %+v", w.delivered)
	}
	if !strings.HasPrefix(rep.State, "untouched") {
		t.Fatalf("the report's state is %q, want it to say staging is untouched", rep.State)
	}
}

func TestRebuildStartsOnceCronJobEnds(t *testing.T) {
	w := newWorld()
	r := w.rebuilder(t, func(c *Config) { c.CronWait = time.Minute })
	job, err := AcquireShared(r.cfg.LockFile, "job")
	if err != nil {
		t.Fatal(err)
	}
	time.AfterFunc(300*time.Millisecond, func() { job.Release() })
	if _, err := r.Run(context.Background()); err != nil {
		t.Fatal(err)
	}
	// And during a rebuild, a cron job cannot take the lock.
	l, err := AcquireExclusive(context.Background(), r.cfg.LockFile, LockOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Release()
	if _, err := AcquireShared(r.cfg.LockFile, "job"); !errors.Is(err, ErrLocked) {
		t.Fatalf("shared lock during a rebuild: %v", err)
	}
}

func TestDeadOwnersLockIsTakenOver(t *testing.T) {
	w := newWorld()
	r := w.rebuilder(t)
	// A crashed run leaves its record; the kernel released its flock when it died.
	dead := Owner{PID: 999999, Host: "staging-host", Start: time.Now().Add(-time.Hour)}
	data, _ := json.Marshal(dead)
	if err := os.WriteFile(r.cfg.LockFile, data, 0o644); err != nil {
		t.Fatal(err)
	}
	rep, err := r.Run(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.Notes) == 0 || !strings.Contains(rep.Notes[0], "pid 999999") {
		t.Fatalf("takeover not reported: %v", rep.Notes)
	}
	if data, _ := os.ReadFile(r.cfg.LockFile); len(data) != 0 {
		t.Fatalf("owner record left after release: %s", data)
	}
}

func TestLockInteroperatesWithSharedHoldersAcrossDescriptors(t *testing.T) {
	path := filepath.Join(t.TempDir(), "x", "env.lock")
	a, err := AcquireShared(path, "a")
	if err != nil {
		t.Fatal(err)
	}
	b, err := AcquireShared(path, "b")
	if err != nil {
		t.Fatal(err)
	}
	if h := SharedHolders(path); len(h) != 2 {
		t.Fatalf("holders %v", h)
	}
	_, err = AcquireExclusive(context.Background(), path, LockOptions{})
	var be *BusyError
	if !errors.As(err, &be) || len(be.Holders) != 2 {
		t.Fatalf("err = %v", err)
	}
	a.Release()
	b.Release()
	l, err := AcquireExclusive(context.Background(), path, LockOptions{})
	if err != nil {
		t.Fatal(err)
	}
	_, err = AcquireExclusive(context.Background(), path, LockOptions{})
	var le *LockedError
	if !errors.As(err, &le) || le.Owner == nil || le.Owner.PID != os.Getpid() {
		t.Fatalf("err = %v", err)
	}
	l.Release()
}

// A rebuild whose owner record cannot be written does not hold the lock silently
// anonymous: AcquireExclusive fails and says why (staticcheck SA4006 found the error
// dropped). A FIFO, which cannot be truncated or written at an offset, is refused
// before it is locked (not a regular file); writeOwnerInto's own failure is returned.
func TestOwnerRecordWriteFailureIsReported(t *testing.T) {
	path := filepath.Join(t.TempDir(), "staging.lock")
	if err := os.WriteFile(path, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	ro, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := writeOwnerInto(ro, self("")); err == nil {
		t.Fatal("an owner record written into a file open for reading only")
	}
	ro.Close()
	if err := os.Remove(path); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Mkfifo(path, 0o600); err != nil {
		t.Skip(err)
	}
	l, err := AcquireExclusive(context.Background(), path, LockOptions{})
	if err == nil {
		l.Release()
		t.Fatal("the lock was taken without an owner record")
	}
	if !strings.Contains(err.Error(), "not a regular file") {
		t.Fatalf("err = %v", err)
	}
	// The failed attempt released the flock: the next holder gets it.
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		t.Fatalf("flock still held after the failure: %v", err)
	}
}

// A cron job whose holder record cannot be written holds the lock all the same, and
// says so (Lock.RecordErr) for its runner to log.
func TestHolderRecordWriteFailureIsReported(t *testing.T) {
	path := filepath.Join(t.TempDir(), "staging.lock")
	if err := os.WriteFile(path+".holders", []byte("not a folder"), 0o600); err != nil {
		t.Fatal(err)
	}
	l, err := AcquireShared(path, "job")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Release()
	if l.RecordErr == nil || !strings.Contains(l.RecordErr.Error(), "holder record") {
		t.Fatalf("RecordErr = %v", l.RecordErr)
	}
	if _, err := AcquireExclusive(context.Background(), path, LockOptions{}); !errors.Is(err, ErrBusy) {
		t.Fatalf("the job does not hold the lock: %v", err)
	}
}

// The lock's files are 0600 and the folders it creates 0700.
func TestLockFileModes(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "run", "restage")
	path := filepath.Join(dir, "staging.lock")
	l, err := AcquireShared(path, "job")
	if err != nil {
		t.Fatal(err)
	}
	records, _ := filepath.Glob(filepath.Join(path+".holders", "*.json"))
	if len(records) != 1 {
		t.Fatalf("holder records %v", records)
	}
	want := map[string]os.FileMode{dir: 0o700, filepath.Dir(dir): 0o700, path: 0o600, path + ".holders": 0o700, records[0]: 0o600}
	for p, mode := range want {
		st, err := os.Stat(p)
		if err != nil {
			t.Fatal(err)
		}
		if st.Mode().Perm() != mode {
			t.Errorf("%s: mode %v, want %v", p, st.Mode().Perm(), mode)
		}
	}
	l.Release()
}

// A symbolic link planted at the lock file, ".waiting" or ".holders" is refused with
// an error that says so, and its target is left as it was.
func TestLockRefusesSymlinks(t *testing.T) {
	dir := t.TempDir()
	victim := filepath.Join(dir, "victim")
	if err := os.WriteFile(victim, []byte("precious\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	victimDir := filepath.Join(dir, "victim.d")
	if err := os.Mkdir(victimDir, 0o755); err != nil {
		t.Fatal(err)
	}
	unchanged := func(t *testing.T) {
		t.Helper()
		st, err := os.Lstat(victim)
		if err != nil {
			t.Fatal(err)
		}
		if data, _ := os.ReadFile(victim); string(data) != "precious\n" || st.Mode().Perm() != 0o644 {
			t.Fatalf("victim changed: %q %v", data, st.Mode().Perm())
		}
		if ents, _ := os.ReadDir(victimDir); len(ents) != 0 {
			t.Fatalf("files written into the victim folder: %v", ents)
		}
	}
	// refused fails the test unless err refuses a link; it releases a lock taken.
	refused := func(t *testing.T, what string, l *Lock, err error) {
		t.Helper()
		if err == nil {
			l.Release()
		}
		if !errors.Is(err, syscall.ELOOP) || !strings.Contains(err.Error(), "symbolic link") {
			t.Fatalf("%s: err = %v", what, err)
		}
	}

	t.Run("lock file", func(t *testing.T) {
		path := filepath.Join(t.TempDir(), "staging.lock")
		if err := os.Symlink(victim, path); err != nil {
			t.Fatal(err)
		}
		l, err := AcquireExclusive(context.Background(), path, LockOptions{})
		refused(t, "exclusive", l, err)
		l, err = AcquireShared(path, "job")
		refused(t, "shared", l, err)
		unchanged(t)
	})
	t.Run("waiting record", func(t *testing.T) {
		path := filepath.Join(t.TempDir(), "staging.lock")
		job, err := AcquireShared(path, "long-job")
		if err != nil {
			t.Fatal(err)
		}
		defer job.Release()
		if err := os.Symlink(victim, path+".waiting"); err != nil {
			t.Fatal(err)
		}
		l, err := AcquireShared(path, "next-job")
		refused(t, "shared", l, err)
		os.Remove(path + ".waiting")
		if err := os.Symlink(victim, path+".waiting"); err != nil {
			t.Fatal(err)
		}
		l, err = AcquireExclusive(context.Background(), path, LockOptions{WaitShared: time.Minute, Poll: 10 * time.Millisecond})
		refused(t, "exclusive, waiting", l, err)
		unchanged(t)
	})
	t.Run("holders folder", func(t *testing.T) {
		path := filepath.Join(t.TempDir(), "staging.lock")
		if err := os.Symlink(victimDir, path+".holders"); err != nil {
			t.Fatal(err)
		}
		l, err := AcquireShared(path, "job")
		if err != nil {
			t.Fatal(err)
		}
		l.Release()
		refused(t, "holder record", nil, l.RecordErr)
		unchanged(t)
	})
}

// A lock_file that names another program's file by mistake (here a pgBackRest
// repository's backup.info) is refused, by a rebuild and by a cron job, and left as it
// was: a rebuild would truncate it and write its owner record there.
func TestLockFileThatIsAnotherProgramsFileIsRefused(t *testing.T) {
	dir := t.TempDir()
	info := filepath.Join(dir, "backup.info")
	const content = "[backup:current]\n20261203-010000F={\"backup-type\":\"full\"}\n"
	if err := os.WriteFile(info, []byte(content), 0o640); err != nil {
		t.Fatal(err)
	}
	for _, pid := range []string{"", "{\"host\":\"x\"}\n"} {
		if pid != "" {
			info = filepath.Join(dir, "nopid.json")
			if err := os.WriteFile(info, []byte(pid), 0o600); err != nil {
				t.Fatal(err)
			}
		}
		before, _ := os.ReadFile(info)
		l, err := AcquireExclusive(context.Background(), info, LockOptions{})
		if err == nil {
			l.Release()
			t.Fatalf("%s taken as a lock file", filepath.Base(info))
		}
		if !strings.Contains(err.Error(), "not restage's owner record") {
			t.Errorf("exclusive: %v", err)
		}
		if l, err := AcquireShared(info, "job"); err == nil {
			l.Release()
			t.Fatalf("%s taken as a lock file by a cron job", filepath.Base(info))
		}
		if after, _ := os.ReadFile(info); string(after) != string(before) {
			t.Fatalf("%s changed:\n%s", filepath.Base(info), after)
		}
	}
	if _, err := AcquireExclusive(context.Background(), "/dev/null", LockOptions{}); err == nil || !strings.Contains(err.Error(), "not a regular file") {
		t.Fatalf("/dev/null as a lock file: %v", err)
	}
	// A record cut short (another rebuild writing it) is restage's own.
	partial := filepath.Join(dir, "partial.lock")
	if err := os.WriteFile(partial, []byte(`{"pid":12`), 0o600); err != nil {
		t.Fatal(err)
	}
	l, err := AcquireExclusive(context.Background(), partial, LockOptions{})
	if err != nil {
		t.Fatalf("a lock file holding a record cut short: %v", err)
	}
	l.Release()
}

// A lock whose file other users could replace is refused: in a folder others may write
// to (without the sticky bit), another user renamed the lock file a rebuild held and
// put a fresh one in its place, and a cron job then took the lock while the rebuild
// still held it; a lock file another user owns they may replace even in a sticky
// folder (/tmp, /run/lock).
func TestLockRefusesFilesOthersCouldReplace(t *testing.T) {
	open := filepath.Join(t.TempDir(), "run")
	if err := os.Mkdir(open, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(open, 0o777); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(open, "staging.lock")
	if l, err := AcquireExclusive(context.Background(), path, LockOptions{}); err == nil || !strings.Contains(err.Error(), "other users") {
		if l != nil {
			l.Release()
		}
		t.Fatalf("a lock in a folder of mode 0777: %v, want it refused", err)
	}
	if l, err := AcquireShared(path, "job"); err == nil || !strings.Contains(err.Error(), "other users") {
		if l != nil {
			l.Release()
		}
		t.Fatalf("a shared lock in a folder of mode 0777: %v, want it refused", err)
	}

	// A sticky folder is fine (only a file's owner may replace it there)...
	sticky := filepath.Join(t.TempDir(), "tmp")
	if err := os.Mkdir(sticky, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(sticky, os.ModeSticky|0o777); err != nil {
		t.Fatal(err)
	}
	l, err := AcquireExclusive(context.Background(), filepath.Join(sticky, "staging.lock"), LockOptions{})
	if err != nil {
		t.Fatalf("a lock in a sticky folder: %v", err)
	}
	l.Release()
	if os.Geteuid() != 0 {
		t.Log("not root: the test of a lock file another user owns needs chown")
		return
	}
	// ...but not a lock file another user put there first.
	planted := filepath.Join(sticky, "planted.lock")
	if err := os.WriteFile(planted, nil, 0o666); err != nil {
		t.Fatal(err)
	}
	if err := os.Chown(planted, 65534, 65534); err != nil {
		t.Fatal(err)
	}
	if l, err := AcquireExclusive(context.Background(), planted, LockOptions{}); err == nil || !strings.Contains(err.Error(), "belongs to user id 65534") {
		if l != nil {
			l.Release()
		}
		t.Fatalf("a lock file another user owns: %v, want it refused", err)
	}
}
