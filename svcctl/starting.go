package svcctl

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"strconv"
	"strings"

	"github.com/restage/restage/internal/atomicfile"
	"github.com/restage/restage/internal/proc"
	"github.com/restage/restage/internal/safefile"
)

// startingRecord is what Start writes before it spawns the service (Pidfile +
// ".starting"): the token the service carries in StartTokenEnv and the starting
// program, so that a service whose starter died before writing the pidfile is found.
type startingRecord struct {
	raw     []byte
	token   string
	starter proc.ID // the program that started it
}

func (r startingRecord) encode() []byte {
	return fmt.Appendf(nil, "%s\n%d\n%d\n%s\n", r.token, r.starter.PID, r.starter.StartTime, r.starter.BootID)
}

func parseStarting(b []byte) (startingRecord, error) {
	f := strings.Split(strings.TrimSpace(string(b)), "\n")
	rec := startingRecord{raw: b}
	if len(f) != 4 || !isToken(f[0]) {
		return rec, fmt.Errorf("not a starting record: %q", tail(b))
	}
	rec.token = f[0]
	var err error
	if rec.starter.PID, err = strconv.Atoi(f[1]); err != nil {
		return rec, fmt.Errorf("bad pid in %q", tail(b))
	}
	if rec.starter.StartTime, err = strconv.ParseUint(f[2], 10, 64); err != nil {
		return rec, fmt.Errorf("bad start time in %q", tail(b))
	}
	rec.starter.BootID = f[3]
	return rec, nil
}

// isToken says whether s has the shape of a start token: 32 lower-case hex digits.
func isToken(s string) bool {
	return len(s) == 32 && strings.Trim(s, "0123456789abcdef") == ""
}

func (p *Process) startingPath() string { return p.cfg.Pidfile + ".starting" }

// recordStarting writes a fresh starting record (0600, atomically, durably) and returns
// its token.
func (p *Process) recordStarting() (string, error) {
	b := make([]byte, 16)
	if _, err := rand.Read(b); err != nil {
		return "", fmt.Errorf("svcctl: process: start token: %w", err)
	}
	rec := startingRecord{token: hex.EncodeToString(b), starter: proc.Self()}
	if err := atomicfile.WriteFile(p.startingPath(), rec.encode(), safefile.FileMode); err != nil {
		return "", fmt.Errorf("svcctl: process: writing the starting record: %w", err)
	}
	return rec.token, nil
}

// removeStarting removes the starting record once the pidfile is written (or nothing
// was started).
func (p *Process) removeStarting() {
	if err := os.Remove(p.startingPath()); err != nil && !errors.Is(err, os.ErrNotExist) {
		p.log.Warn("svcctl: removing the starting record", logKeyError, err)
	}
}

// recoverStart deals with a starting record left by a program that died between
// spawning the service and writing its pidfile: the service it spawned (the session
// leader carrying the record's token) is adopted (its pidfile written); token-carrying
// processes without their leader are stopped when stop is set (Start, Stop), reported
// otherwise (Status, in detail). A record whose starter still runs is a start under
// way, which is left alone: detail says so. No record, or one from before a reboot, or
// one whose processes are all gone: the record goes and detail is "".
func (p *Process) recoverStart(ctx context.Context, stop bool) (detail string, err error) {
	b, err := safefile.ReadFile(p.startingPath(), maxPidfile)
	if errors.Is(err, fs.ErrNotExist) {
		return "", nil
	}
	if err != nil {
		return "", fmt.Errorf("svcctl: process: starting record: %w", err)
	}
	rec, err := parseStarting(b)
	if err != nil {
		return "", fmt.Errorf("svcctl: process: starting record %s: %w", p.startingPath(), err)
	}
	v, _, err := proc.Check(rec.starter)
	if err != nil {
		return "", fmt.Errorf("svcctl: process: starter pid %d: %w", rec.starter.PID, err)
	}
	switch {
	case v == proc.Rebooted:
		p.removeStartingIf(rec.raw) // whatever it started died with the reboot
		return "", nil
	case v == proc.Alive && rec.starter.PID == os.Getpid():
		// This program's own start that failed without cleaning up: recover as below.
	case v == proc.Alive:
		return fmt.Sprintf("pid %d is starting the service (%s)", rec.starter.PID, p.startingPath()), nil
	}
	pids, err := proc.WithEnv(StartTokenEnv + "=" + rec.token)
	if err != nil {
		return "", fmt.Errorf("svcctl: process: finding the service of starting record %s: %w", p.startingPath(), err)
	}
	// The spawned service leads its own process group; of several leaders (a child that
	// made a session of its own), the oldest.
	leader, oldest := 0, uint64(0)
	for _, pid := range pids {
		if st, err := proc.ReadStat(pid); err == nil && st.PGrp == pid && (leader == 0 || st.StartTime < oldest) {
			leader, oldest = pid, st.StartTime
		}
	}
	if cur, ok, perr := p.readPidfile(); ok && perr == nil && (leader == 0 || cur.PID == leader) {
		// The pidfile was written (the starter died just before removing the record).
		p.removeStartingIf(rec.raw)
		return "", nil
	}
	if leader != 0 {
		id, err := proc.Of(leader)
		if err != nil {
			return "", fmt.Errorf("svcctl: process: adopting pid %d: %w", leader, err)
		}
		pr := pidRecord{ID: id, token: rec.token}
		pr.raw = pr.encode()
		if err := atomicfile.WriteFile(p.cfg.Pidfile, pr.raw, safefile.FileMode); err != nil {
			return "", fmt.Errorf("svcctl: process: writing the pidfile of pid %d, started by pid %d, which died before writing it: %w", leader, rec.starter.PID, err)
		}
		p.log.Warn("svcctl: adopted a service whose starter died before writing its pidfile", logKeyPID, leader, "starter", rec.starter.PID)
		p.removeStartingIf(rec.raw)
		return "", nil
	}
	if len(pids) == 0 {
		p.removeStartingIf(rec.raw)
		return "", nil
	}
	if !stop {
		return fmt.Sprintf("no service, but pids %v are left of a start whose starter (pid %d) died before writing the pidfile; the next Stop or Start stops them", pids, rec.starter.PID), nil
	}
	for _, pid := range pids {
		if err := p.terminate(ctx, nil, pid, 0, ""); err != nil {
			return "", err
		}
	}
	p.log.Warn("svcctl: stopped what was left of a start whose starter died before writing the pidfile", "pids", pids, "starter", rec.starter.PID)
	p.removeStartingIf(rec.raw)
	return "", nil
}

// removeStartingIf removes the starting record if it still holds raw.
func (p *Process) removeStartingIf(raw []byte) {
	b, err := safefile.ReadFile(p.startingPath(), maxPidfile)
	if err != nil || string(b) != string(raw) {
		return
	}
	p.removeStarting()
}
