// Package runas resolves the user a program restage starts is to run as (the staging
// service, a cron job): its credential for exec.Cmd's SysProcAttr and the HOME, USER and
// LOGNAME it gets, so that the release's code runs with that user's rights, not restage's.
package runas

import (
	"errors"
	"fmt"
	"os"
	"os/user"
	"strconv"
	"syscall"
)

// ErrUser: the user is unknown, or switching to it needs root.
var ErrUser = errors.New("cannot run as that user")

// Check says whether the user name exists (ErrUser otherwise), for a config's check:
// whether this process may switch to it is Lookup's to say.
func Check(name string) error {
	if _, err := user.Lookup(name); err != nil {
		return fmt.Errorf("%w %q: %w", ErrUser, name, err)
	}
	return nil
}

// Lookup returns the credential of the user name (uid, primary group, supplementary
// groups) and its environment (HOME, USER, LOGNAME). The credential is nil for this
// process's own user when it is not root (its groups stay as they are: setgroups needs
// root); another user without root is ErrUser, as is an unknown one.
func Lookup(name string) (*syscall.Credential, []string, error) {
	u, err := user.Lookup(name)
	if err != nil {
		return nil, nil, fmt.Errorf("%w %q: %w", ErrUser, name, err)
	}
	uid, err := strconv.ParseUint(u.Uid, 10, 32)
	if err != nil {
		return nil, nil, fmt.Errorf("%w %q: uid %q", ErrUser, name, u.Uid)
	}
	gid, err := strconv.ParseUint(u.Gid, 10, 32)
	if err != nil {
		return nil, nil, fmt.Errorf("%w %q: gid %q", ErrUser, name, u.Gid)
	}
	env := []string{"HOME=" + u.HomeDir, "USER=" + u.Username, "LOGNAME=" + u.Username}
	if euid := os.Geteuid(); euid != 0 {
		if uint64(euid) != uid {
			return nil, nil, fmt.Errorf("%w %q: switching to another user needs root", ErrUser, name)
		}
		return nil, env, nil
	}
	ids, err := u.GroupIds()
	if err != nil {
		return nil, nil, fmt.Errorf("%w %q: its groups: %w", ErrUser, name, err)
	}
	cred := &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid), Groups: []uint32{}}
	for _, id := range ids {
		g, err := strconv.ParseUint(id, 10, 32)
		if err != nil {
			return nil, nil, fmt.Errorf("%w %q: group id %q", ErrUser, name, id)
		}
		cred.Groups = append(cred.Groups, uint32(g))
	}
	return cred, env, nil
}
