package reaper

import (
	"context"
	"os/exec"
	"syscall"
	"testing"
	"time"
)

// TestRegisteredChildKeepsItsStatus starts a registered child and an
// unregistered one that both exit at once while the reaper runs: Wait of
// the registered one still sees its exit code, and the other is collected.
func TestRegisteredChildKeepsItsStatus(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	r := New()
	go r.Loop(ctx)
	for i := range 20 {
		orphan := exec.Command("true")
		if err := orphan.Start(); err != nil {
			t.Fatal(err)
		}
		cmd := exec.Command("sh", "-c", "exit 3")
		err := r.Run(cmd)
		ee, ok := err.(*exec.ExitError)
		if !ok || ee.ExitCode() != 3 {
			t.Fatalf("round %d: Run = %v, want exit status 3", i, err)
		}
		deadline := time.Now().Add(5 * time.Second)
		for {
			var ws syscall.WaitStatus
			pid, err := syscall.Wait4(orphan.Process.Pid, &ws, syscall.WNOHANG, nil)
			if err != nil { // ECHILD: the reaper collected it
				break
			}
			if pid == 0 && time.Now().After(deadline) {
				t.Fatalf("round %d: the unregistered child was never collected", i)
			}
			if pid == orphan.Process.Pid {
				// Exited before the reaper looked; fine, but then it must
				// not have been a zombie the reaper missed for long.
				break
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
}
