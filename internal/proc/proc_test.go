package proc

import (
	"errors"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"
)

func TestParseStat(t *testing.T) {
	// Fields 6 to 21 are 6 to 21, field 22 (starttime) 9876; a command name may hold
	// spaces and parentheses.
	tail := " 6 7 8 9 10 11 12 13 14 15 16 17 18 19 20 21 9876 23 24\n"
	for _, tc := range []struct {
		text string
		want Stat
	}{
		{"123 (sleep) S 1 4321" + tail, Stat{State: 'S', PPid: 1, PGrp: 4321, StartTime: 9876}},
		{"123 (we) ird) Z 42 77" + tail, Stat{State: 'Z', PPid: 42, PGrp: 77, StartTime: 9876}},
		{"123 () R 1 -1" + tail, Stat{State: 'R', PPid: 1, PGrp: -1, StartTime: 9876}},
	} {
		got, err := ParseStat([]byte(tc.text))
		if err != nil || got != tc.want {
			t.Errorf("ParseStat(%q) = %+v, %v; want %+v", tc.text, got, err, tc.want)
		}
	}
	for _, bad := range []string{"", "123 sleep S 1 2", "123 (x) S 1 2 3", "123 (x) S 1 x 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 19 20",
		"123 (x) S 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 -5 20"} {
		if st, err := ParseStat([]byte(bad)); err == nil || !strings.Contains(err.Error(), "malformed") {
			t.Errorf("ParseStat(%q) = %+v, %v; want a malformed error", bad, st, err)
		}
	}
}

// startChild starts a process that lives until the test ends (or wait is called),
// in its own process group.
func startChild(t *testing.T) *exec.Cmd {
	t.Helper()
	cmd := exec.Command("sleep", "600")
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		t.Skip(err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
	})
	return cmd
}

func TestReadStatOfAChild(t *testing.T) {
	cmd := startChild(t)
	pid := cmd.Process.Pid
	st, err := ReadStat(pid)
	if err != nil {
		t.Fatal(err)
	}
	if st.PGrp != pid || st.StartTime == 0 || st.Dead() {
		t.Fatalf("stat %+v: want its own group %d, a start time, alive", st, pid)
	}
	self, err := ReadStat(os.Getpid())
	if err != nil || self.StartTime > st.StartTime {
		t.Fatalf("self %+v, %v: started after its child (%d)?", self, err, st.StartTime)
	}
	members, err := GroupMembers(pid)
	if err != nil || len(members) != 1 || members[0] != pid {
		t.Fatalf("GroupMembers(%d) = %v, %v", pid, members, err)
	}

	// Killed, not reaped: a zombie is dead, and no member of its group.
	if err := cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(time.Minute); ; time.Sleep(5 * time.Millisecond) {
		if st, err = ReadStat(pid); err == nil && st.Dead() {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the killed child is not a zombie: %+v %v", st, err)
		}
	}
	if m, err := GroupMembers(pid); err != nil || len(m) != 0 {
		t.Fatalf("GroupMembers of a dead group = %v, %v", m, err)
	}
	// Reaped: gone.
	_ = cmd.Wait()
	if _, err := ReadStat(pid); !errors.Is(err, ErrNoProcess) {
		t.Fatalf("ReadStat of a reaped child: %v, want ErrNoProcess", err)
	}
}

func TestCheck(t *testing.T) {
	self := Self()
	if self.PID != os.Getpid() || self.StartTime == 0 || self.BootID == "" {
		t.Fatalf("Self() = %+v", self)
	}
	if BootID() != self.BootID {
		t.Fatal("the boot id changed within a test")
	}
	cmd := startChild(t)
	child, err := Of(cmd.Process.Pid)
	if err != nil {
		t.Fatal(err)
	}
	zombie := startChild(t)
	zid, err := Of(zombie.Process.Pid)
	if err != nil {
		t.Fatal(err)
	}
	if err := zombie.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	gone := exec.Command("true")
	if err := gone.Run(); err != nil {
		t.Skip(err)
	}
	for _, tc := range []struct {
		name string
		id   ID
		want Verdict
	}{
		{"self", self, Alive},
		{"child", child, Alive},
		{"an older record: pid only", ID{PID: child.PID}, Alive},
		{"another start time", ID{PID: child.PID, StartTime: child.StartTime + 1, BootID: child.BootID}, Reused},
		{"another boot", ID{PID: child.PID, StartTime: child.StartTime, BootID: "0-other-boot"}, Rebooted},
		{"reaped", ID{PID: gone.ProcessState.Pid()}, Gone},
		{"no pid", ID{}, Gone},
		{"zombie", zid, Exited},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var (
				v   Verdict
				err error
			)
			// The zombie becomes one a little after the signal.
			for deadline := time.Now().Add(time.Minute); ; time.Sleep(5 * time.Millisecond) {
				v, _, err = Check(tc.id)
				if v == tc.want || tc.want != Exited || time.Now().After(deadline) {
					break
				}
			}
			if v != tc.want || err != nil {
				t.Fatalf("Check(%+v) = %v, %v; want %v", tc.id, v, err, tc.want)
			}
		})
	}
}

func TestVerdictString(t *testing.T) {
	for v, want := range map[Verdict]string{Alive: "alive", Gone: "gone", Exited: "exited", Rebooted: "rebooted", Reused: "reused", 42: "Verdict(42)"} {
		if got := v.String(); got != want {
			t.Errorf("%d.String() = %q, want %q", int(v), got, want)
		}
	}
}
