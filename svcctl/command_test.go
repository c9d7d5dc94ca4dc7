package svcctl

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/restage/restage/internal/testutil"
)

// The commands here are small sh scripts, the kind of init script Command drives.
func sh(script string) []string { return []string{"/bin/sh", "-c", script} }

func TestCommandStatusCodes(t *testing.T) {
	t.Parallel()
	for code, want := range map[string]State{"0": StateRunning, "3": StateStopped, "1": StateFailed, "4": StateFailed} {
		c, err := NewCommand(CommandConfig{Start: sh("true"), Stop: sh("true"), Status: sh("echo app is in state " + code + "; exit " + code)})
		if err != nil {
			t.Fatal(err)
		}
		st := requireState(t, c, want)
		if !strings.Contains(st.Detail, "app is in state "+code) {
			t.Fatalf("exit %s: Detail %q lacks the output", code, st.Detail)
		}
	}
}

func TestCommandErrors(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	t.Run("start fails", func(t *testing.T) {
		c, err := NewCommand(CommandConfig{
			Start:  sh("echo starting; echo 'bind: address already in use' >&2; exit 7"),
			Stop:   sh("true"),
			Status: sh("exit 3"),
		})
		if err != nil {
			t.Fatal(err)
		}
		err = c.Start(ctx)
		var cerr *CommandError
		if !errors.As(err, &cerr) || cerr.ExitCode != 7 || !strings.Contains(cerr.Stderr, "address already in use") {
			t.Fatalf("want a *CommandError with exit 7 and the output, got %#v (%v)", err, err)
		}
		testutil.RequireErrorContains(t, err, "/bin/sh", "exited with status 7")
	})
	t.Run("start succeeds but service is not running", func(t *testing.T) {
		c, _ := NewCommand(CommandConfig{Start: sh("true"), Stop: sh("true"), Status: sh("echo app is dead; exit 3")})
		err := c.Start(ctx)
		requireIs(t, err, ErrExited)
		testutil.RequireErrorContains(t, err, "app is dead")
	})
	t.Run("stop leaves it running", func(t *testing.T) {
		c, _ := NewCommand(CommandConfig{Start: sh("true"), Stop: sh("true"), Status: sh("exit 0")})
		testutil.RequireErrorContains(t, c.Stop(ctx), "still running")
	})
	t.Run("missing program", func(t *testing.T) {
		c, _ := NewCommand(CommandConfig{Start: []string{"restage-no-such-initscript", "start"}, Stop: sh("true"), Status: []string{"restage-no-such-initscript", "status"}})
		_, err := c.Status(ctx)
		requireIs(t, err, ErrNotFound)
		testutil.RequireErrorContains(t, err, "restage-no-such-initscript")
		requireIs(t, c.Start(ctx), ErrNotFound)
	})
	t.Run("timeout", func(t *testing.T) {
		c, _ := NewCommand(CommandConfig{Start: []string{"sleep", "60"}, Stop: sh("true"), Status: sh("exit 3"), Timeout: 300 * time.Millisecond})
		start := time.Now()
		err := c.Start(ctx)
		testutil.RequireErrorContains(t, err, "sleep 60", "deadline exceeded")
		if time.Since(start) > 50*time.Second {
			t.Fatal("the timeout did not stop the command")
		}
	})
	t.Run("config", func(t *testing.T) {
		_, err := NewCommand(CommandConfig{Start: sh("true"), Status: sh("true")})
		testutil.RequireErrorContains(t, err, "Stop is required")
	})
}
