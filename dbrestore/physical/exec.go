package physical

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/restage/restage/internal/childenv"
	"github.com/restage/restage/internal/cloexec"
	"github.com/restage/restage/internal/redact"
	"github.com/restage/restage/progress"
)

// owner is the operating-system user that owns and runs the clusters and the backup
// tool: PostgreSQL refuses to run as root.
type owner struct {
	cred *syscall.Credential // nil: this process's user
	name string
	home string
	uid  int
	gid  int
	pass []string // variables of this process passed on to the programs it runs
}

// lookupOwner returns the user called name ("" : "postgres" when root, else this
// process's user).
func lookupOwner(name string) (*owner, error) {
	if name == "" && os.Geteuid() != 0 {
		u, err := user.Current()
		if err != nil {
			return nil, err
		}
		return &owner{name: u.Username, home: u.HomeDir, uid: os.Getuid(), gid: os.Getgid()}, nil
	}
	if name == "" {
		name = "postgres"
	}
	u, err := user.Lookup(name)
	if err != nil {
		return nil, fmt.Errorf("the user to run PostgreSQL and the backup tool as: %w", err)
	}
	uid, _ := strconv.Atoi(u.Uid)
	gid, _ := strconv.Atoi(u.Gid)
	if uid == 0 {
		return nil, errors.New("PostgreSQL refuses to run as root: name another user")
	}
	o := &owner{name: u.Username, home: u.HomeDir, uid: uid, gid: gid}
	if uid != os.Geteuid() {
		if os.Geteuid() != 0 {
			return nil, fmt.Errorf("running as uid %d, restage cannot run programs as %s", os.Geteuid(), name)
		}
		o.cred = &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}
	}
	return o, nil
}

// chown gives path to the owner (a no-op when restage runs as that user).
func (o *owner) chown(path string) error {
	if o.cred == nil {
		return nil
	}
	return os.Lchown(path, o.uid, o.gid)
}

const errTailBytes = 4000

// run runs argv as the owner, in its own process group killed when ctx ends, and
// returns its standard output; a failure is a *CommandError with the tail of its
// standard error, passwords (of DSNs in argv, or echoed by the program) removed from
// both.
func (o *owner) run(ctx context.Context, argv []string) ([]byte, error) {
	cmd := exec.CommandContext(ctx, argv[0], argv[1:]...)
	cmd.Env = childenv.Env(o.pass, "HOME="+o.home, "USER="+o.name, "LOGNAME="+o.name)
	cmd.Dir = "/"
	cmd.SysProcAttr = sysProcAttr(o.cred)
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	cmd.WaitDelay = 10 * time.Second
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	// pg_ctl start leaves the cluster running: no descriptor restage inherited goes with it.
	if err := cloexec.Inherited(); err != nil {
		return nil, fmt.Errorf("physical: %w", err)
	}
	err := cmd.Run()
	if err == nil {
		return stdout.Bytes(), nil
	}
	tail := strings.TrimSpace(stderr.String())
	if tail == "" {
		tail = strings.TrimSpace(stdout.String())
	}
	if len(tail) > errTailBytes {
		tail = "…" + tail[len(tail)-errTailBytes:]
	}
	args := []string{filepath.Base(argv[0])}
	for _, a := range argv[1:] {
		args = append(args, redact.String(a))
	}
	ce := &CommandError{Args: args, ExitCode: -1, Stderr: tail}
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		ce.ExitCode = ee.ExitCode()
	} else if ce.Stderr == "" {
		ce.Stderr = err.Error()
	}
	ce.Stderr = redact.String(ce.Stderr)
	if ctx.Err() != nil {
		return nil, fmt.Errorf("%w (%w)", ce, context.Cause(ctx))
	}
	return nil, ce
}

// watchSize reports, every interval until stop is called, the bytes of the files under
// dir to ctx's progress function (package progress) as done of total: how far a full
// copy into dir has come. Without a progress function it does nothing.
func watchSize(ctx context.Context, dir string, total int64, interval time.Duration) (stop func()) {
	pc := progress.NewCounter(ctx, total)
	if pc == nil {
		return func() {}
	}
	done := make(chan struct{})
	finished := make(chan struct{})
	go func() {
		defer close(finished)
		t := time.NewTicker(interval)
		defer t.Stop()
		for {
			select {
			case <-done:
				return
			case <-ctx.Done():
				return
			case <-t.C:
				var n int64
				_ = filepath.WalkDir(dir, func(_ string, d os.DirEntry, err error) error {
					if err == nil && d.Type().IsRegular() {
						if fi, err := d.Info(); err == nil {
							n += fi.Size()
						}
					}
					return nil
				})
				pc.Set(n)
			}
		}
	}()
	return func() { close(done); <-finished }
}
