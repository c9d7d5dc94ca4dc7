package train

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os/exec"
	"strings"
	"syscall"
	"time"

	"github.com/restage/restage/internal/childenv"
	"github.com/restage/restage/internal/cmderr"
	"github.com/restage/restage/internal/gitcred"
	"github.com/restage/restage/internal/redact"
)

// git runs the git program (argv, never a shell) with the environment of
// internal/childenv, bounded by a timeout, its process group killed on expiry. The
// repository's credentials reach git through its environment (internal/gitcred): the
// commands name the repository as remote, without them.
type git struct {
	program string        // "": "git" on PATH
	dir     string        // -C: the work repository ("" for none)
	timeout time.Duration // each command
	repo    gitcred.Remote
}

// newGit returns the train's git for the repository repo, run in dir.
func (t *Train) newGit(dir string) *git {
	return &git{program: t.git, dir: dir, timeout: t.cfg.GitTimeout.Duration, repo: gitcred.Parse(t.cfg.Repo)}
}

// remote is the repository as the commands name it: without credentials.
func (g *git) remote() string { return g.repo.URL }

// run runs git with args and returns its standard output, trimmed.
func (g *git) run(ctx context.Context, args ...string) (string, error) {
	out, err := g.output(ctx, args...)
	return strings.TrimSpace(out), err
}

func (g *git) output(ctx context.Context, args ...string) (string, error) {
	if g.dir != "" {
		args = append([]string{"-C", g.dir}, args...)
	}
	ctx, cancel := context.WithTimeoutCause(ctx, g.timeout, fmt.Errorf("git timed out after %s (git_timeout)", g.timeout))
	defer cancel()
	program := g.program
	if program == "" {
		program = "git"
	}
	cmd := exec.CommandContext(ctx, program, args...)
	cmd.Env = append(childenv.Env(childenv.Git, "GIT_TERMINAL_PROMPT=0", "GIT_ASKPASS=", "SSH_ASKPASS="), g.repo.Env()...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	cmd.Cancel = func() error {
		if err := syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL); err != nil && !errors.Is(err, syscall.ESRCH) {
			return err
		}
		return nil
	}
	cmd.WaitDelay = 5 * time.Second
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	if err != nil {
		code := -1
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			code = ee.ExitCode()
		}
		msg := stderr.String()
		if code < 0 {
			msg = strings.TrimSpace(err.Error() + " " + msg)
		}
		if c := context.Cause(ctx); c != nil && ctx.Err() != nil {
			msg = strings.TrimSpace(c.Error() + " " + msg)
		}
		argv := []string{"git"}
		for _, a := range args {
			argv = append(argv, redact.String(a, g.repo.Secrets()...))
		}
		return "", &cmderr.Error{Args: argv, ExitCode: code, Stderr: tail(redact.String(msg, g.repo.Secrets()...), 2000)}
	}
	return stdout.String(), nil
}

// tail returns the last n bytes of s.
func tail(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return "..." + s[len(s)-n:]
}
