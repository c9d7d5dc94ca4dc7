package runas

import (
	"errors"
	"os"
	"os/user"
	"slices"
	"strconv"
	"testing"
)

func TestLookup(t *testing.T) {
	if _, _, err := Lookup("no-such-user-restage"); !errors.Is(err, ErrUser) {
		t.Errorf("an unknown user: %v", err)
	}
	me, err := user.Current()
	if err != nil {
		t.Fatal(err)
	}
	cred, env, err := Lookup(me.Username)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Contains(env, "HOME="+me.HomeDir) || !slices.Contains(env, "USER="+me.Username) || !slices.Contains(env, "LOGNAME="+me.Username) {
		t.Errorf("env %q", env)
	}
	if os.Geteuid() != 0 {
		if cred != nil {
			t.Errorf("own user without root: credential %+v, want none (setgroups needs root)", cred)
		}
		if _, _, err := Lookup("root"); !errors.Is(err, ErrUser) {
			t.Errorf("root without root: %v", err)
		}
		return
	}
	nobody, err := user.Lookup("nobody")
	if err != nil {
		t.Skip("no user nobody")
	}
	cred, _, err = Lookup("nobody")
	if err != nil {
		t.Fatal(err)
	}
	if strconv.Itoa(int(cred.Uid)) != nobody.Uid || strconv.Itoa(int(cred.Gid)) != nobody.Gid || cred.Groups == nil {
		t.Errorf("credential %+v for %+v", cred, nobody)
	}
}

func TestCheck(t *testing.T) {
	if err := Check("no-such-user-restage"); !errors.Is(err, ErrUser) {
		t.Errorf("an unknown user: %v", err)
	}
	if err := Check("root"); err != nil {
		t.Errorf("root: %v", err)
	}
}
