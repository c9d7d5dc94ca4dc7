//go:build linux

package cron

import (
	"os"
	"sync"
	"syscall"
	"time"

	xunix "golang.org/x/sys/unix"

	"github.com/restage/restage/internal/proc"
)

var subreaper struct {
	once sync.Once
	err  error
}

// becomeSubreaper makes the runner's process the child subreaper of its descendants
// (prctl PR_SET_CHILD_SUBREAPER; once per process, and not inherited by the jobs): a
// job's process whose parent exits is then reparented to the runner, not to init, even
// one that left the job's process group and session (setsid, a double fork), so that
// killStrays finds it.
func becomeSubreaper() error {
	subreaper.once.Do(func() { subreaper.err = xunix.Prctl(xunix.PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) })
	return subreaper.err
}

// killStrays kills and reaps what is left of job name once its command has ended and
// its process group (pgid) was killed: the processes reparented to the runner's process
// (their parent died) that are in that group or whose environment names the job and the
// environment, and all their descendants, until none is left or bound has passed. It
// never touches a job's command not yet waited for (procs), nor another child of the
// runner's process. It returns how many living processes it killed.
func (r *Runner) killStrays(name string, pgid int, bound time.Duration) int {
	self := os.Getpid()
	want := []string{"RESTAGE_ENVIRONMENT=" + r.cfg.Environment, "RESTAGE_CRON_JOB=" + name}
	ours := map[int]bool{}   // the job's, once found: a descendant reparented later stays the job's
	killed := map[int]bool{} // those found living, and so killed
	for deadline := time.Now().Add(bound); ; time.Sleep(10 * time.Millisecond) {
		live, err := r.strayRound(self, pgid, want, ours, killed)
		if err != nil || live == 0 || time.Now().After(deadline) {
			return len(killed)
		}
	}
}

// strayRound is one look of killStrays: it kills the job's living processes it finds
// (recording them in killed, and every process of the job in ours) and reaps its dead
// children, under procMu, so that no job's command starts or is waited for meanwhile;
// it returns how many living ones it found.
func (r *Runner) strayRound(self, pgid int, want []string, ours, killed map[int]bool) (int, error) {
	r.procMu.Lock()
	defer r.procMu.Unlock()
	all, err := proc.List()
	if err != nil {
		return 0, err
	}
	children := map[int][]int{}
	for pid, st := range all {
		children[st.PPid] = append(children[st.PPid], pid)
	}
	live := 0
	for _, pid := range children[self] {
		st := all[pid]
		if r.procs[pid] || !ours[pid] && st.PGrp != pgid && !proc.HasEnv(pid, want...) {
			continue
		}
		for stack := []int{pid}; len(stack) > 0; {
			p := stack[len(stack)-1]
			stack = append(stack[:len(stack)-1], children[p]...)
			ours[p] = true
			if !all[p].Dead() && syscall.Kill(p, syscall.SIGKILL) == nil {
				killed[p] = true
				live++
			}
		}
		if st.Dead() {
			var ws syscall.WaitStatus
			_, _ = syscall.Wait4(pid, &ws, syscall.WNOHANG, nil)
		}
	}
	return live, nil
}
