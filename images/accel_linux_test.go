package images

import (
	"context"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/holdfast-appliance/holdfast/firmware/console"
	"github.com/holdfast-appliance/holdfast/images/qemu"
)

// TestKVMFallback proves the fallback from KVM to TCG on every host: a
// QEMU wrapper in front of the real binary fails when given -accel kvm,
// by exiting at once (as QEMU does when the host's KVM refuses an MSR) or
// by keeping the guest silent (as a guest hanging in the decompressor).
// The probe is told KVM works, so the VM is tried under KVM first. In both
// cases the log says in true words what happened, the KVM attempt is torn
// down completely (one QEMU and one swtpm run afterwards, no more), the VM
// comes up under TCG and reaches the config prompt, and nothing is left
// running once it is stopped.
func TestKVMFallback(t *testing.T) {
	v := startVMTest(t, "qemu-x86_64", "fallback", 20*time.Minute, Options{}, nil)
	tests := []struct {
		name, script, want string
	}{
		{"exits at once", qemu.WrapperExits, "QEMU exited under KVM after"},
		{"silent", qemu.WrapperSilent, "no serial output under KVM for 15s"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			b := *v.b
			q := *v.b.QEMU
			wrapper, err := qemu.WriteWrapper(t.TempDir(), v.b, tc.script)
			if err != nil {
				t.Fatal(err)
			}
			q.Binary = wrapper
			b.QEMU = &q
			state := t.TempDir()
			var logs syncBuffer
			log := hclog.New(&hclog.LoggerOptions{Name: "fallback", Level: hclog.Info, Output: &logs})
			g := bootGuestWith(v.ctx, t, &b, v.r.Image, state, qemu.Config{
				Accel:      qemu.AccelAuto,
				KVMProbe:   func(context.Context, qemu.Config) error { return nil },
				KVMSilence: 15 * time.Second,
			}, log)
			t.Logf("runner log:\n%s", logs.String())
			if g.vm.Accel != qemu.AccelTCG {
				t.Fatalf("the VM runs under %s", g.vm.Accel)
			}
			if l := logs.String(); !strings.Contains(l, "KVM cannot run this guest; restarting it under TCG") || !strings.Contains(l, tc.want) {
				t.Errorf("the log does not say %q", tc.want)
			}
			running := qemu.Running(state)
			var qemus, swtpms int
			for _, p := range running {
				_, cmdline, _ := strings.Cut(p, ": ")
				prog, _, _ := strings.Cut(cmdline, " ")
				switch {
				case strings.HasSuffix(prog, "swtpm"):
					swtpms++
				case strings.Contains(prog, "qemu-system"):
					qemus++
				}
			}
			if qemus != 1 || swtpms != 1 {
				t.Errorf("after the fallback %d QEMU and %d swtpm run with the VM's state directory, want 1 and 1:\n%s", qemus, swtpms, strings.Join(running, "\n"))
			}
			g.wait(v.ctx, console.WaitingLine)
			t.Logf("QEMU start to %q: %s under %s", console.WaitingLine, time.Since(g.started).Round(time.Second), g.vm.Accel)
			g0 := g.vm
			g.stop(v.ctx)
			deadline := time.Now().Add(10 * time.Second)
			for len(qemu.Running(state)) > 0 && time.Now().Before(deadline) {
				time.Sleep(100 * time.Millisecond)
			}
			if left := qemu.Running(state); len(left) > 0 {
				t.Errorf("left running after the VM stopped:\n%s", strings.Join(left, "\n"))
			}
			if _, err := os.Lstat(g0.SerialSocket); err == nil {
				t.Errorf("the serial socket %s is left after the VM stopped", g0.SerialSocket)
			}
		})
	}
}
