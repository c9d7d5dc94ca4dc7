package train

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/url"
	"os/exec"
	"strings"
	"syscall"
	"time"

	"github.com/restage/restage/internal/childenv"
	"github.com/restage/restage/internal/cmderr"
	"github.com/restage/restage/internal/redact"
)

// git runs the git program (argv, never a shell) with the environment of
// internal/childenv, bounded by a timeout, its process group killed on expiry.
type git struct {
	dir     string        // -C: the work repository ("" for none)
	timeout time.Duration // each command
	secrets []string      // removed from argv and output in errors
}

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
	cmd := exec.CommandContext(ctx, "git", args...)
	cmd.Env = childenv.Env(childenv.Git, "GIT_TERMINAL_PROMPT=0", "GIT_ASKPASS=", "SSH_ASKPASS=")
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
			argv = append(argv, redact.String(a, g.secrets...))
		}
		return "", &cmderr.Error{Args: argv, ExitCode: code, Stderr: tail(redact.String(msg, g.secrets...), 2000)}
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

// repoSecrets returns the credentials of a repository URL (a password, or an http(s)
// URL's user part, which may be a token), for redaction.
func repoSecrets(repo string) []string {
	u, err := url.Parse(repo)
	if err != nil || u.User == nil {
		return nil
	}
	if pw, ok := u.User.Password(); ok && pw != "" {
		return []string{pw}
	}
	if u.Scheme == "http" || u.Scheme == "https" {
		if name := u.User.Username(); len(name) >= 8 {
			return []string{name}
		}
	}
	return nil
}

// isURL says whether repo is handed to git as a URL (scheme://, or scp-like host:path)
// rather than a local path.
func isURL(repo string) bool {
	if strings.Contains(repo, "://") {
		return true
	}
	i := strings.Index(repo, ":")
	return i > 0 && !strings.Contains(repo[:i], "/")
}
