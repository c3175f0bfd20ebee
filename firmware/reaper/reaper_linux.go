// Package reaper is PID 1's child reaper. As init, holdfast-init must
// collect every orphan the kernel reparents to it, but a blanket
// wait4(-1) also steals the exit status of the children it runs itself
// (mke2fs, the DHCP client), whose os/exec Wait then fails with "no child
// processes". Children started through a Reaper are left to their own
// Wait; every other zombie child is collected.
//
// Limits: Linux only; zombies are found by scanning /proc on SIGCHLD.
package reaper

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strconv"
	"sync"

	"golang.org/x/sys/unix"
)

// Reaper collects orphans and leaves registered children alone.
type Reaper struct {
	mu  sync.Mutex
	own map[int]bool
}

// New returns a Reaper; call Loop to start collecting.
func New() *Reaper { return &Reaper{own: map[int]bool{}} }

// Start starts cmd and registers it, so its status is left to cmd.Wait.
// Call Forget after Wait (or never, for a child meant to run forever).
func (r *Reaper) Start(cmd *exec.Cmd) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if err := cmd.Start(); err != nil {
		return err
	}
	r.own[cmd.Process.Pid] = true
	return nil
}

// Run starts cmd, waits for it and forgets it.
func (r *Reaper) Run(cmd *exec.Cmd) error {
	if err := r.Start(cmd); err != nil {
		return err
	}
	err := cmd.Wait()
	r.Forget(cmd.Process.Pid)
	return err
}

// Forget unregisters pid.
func (r *Reaper) Forget(pid int) {
	r.mu.Lock()
	delete(r.own, pid)
	r.mu.Unlock()
}

// Loop collects zombie children that are not registered, on every SIGCHLD,
// until ctx ends.
func (r *Reaper) Loop(ctx context.Context) {
	sigs := make(chan os.Signal, 8)
	signal.Notify(sigs, unix.SIGCHLD)
	defer signal.Stop(sigs)
	for {
		select {
		case <-ctx.Done():
			return
		case <-sigs:
			r.collect()
		}
	}
}

// collect waits for each zombie child of this process that is not
// registered.
func (r *Reaper) collect() {
	self := strconv.Itoa(os.Getpid())
	stats, _ := filepath.Glob("/proc/[0-9]*/stat")
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, p := range stats {
		b, err := os.ReadFile(p)
		if err != nil {
			continue
		}
		// pid (comm) state ppid ...; comm may hold spaces and parentheses.
		i := bytes.LastIndexByte(b, ')')
		if i < 0 {
			continue
		}
		f := bytes.Fields(b[i+1:])
		if len(f) < 2 || string(f[0]) != "Z" || string(f[1]) != self {
			continue
		}
		pid, err := strconv.Atoi(filepath.Base(filepath.Dir(p)))
		if err != nil || r.own[pid] {
			continue
		}
		var ws unix.WaitStatus
		_, _ = unix.Wait4(pid, &ws, unix.WNOHANG, nil)
	}
}
