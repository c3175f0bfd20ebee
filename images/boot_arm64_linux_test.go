package images

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/holdfast-appliance/holdfast/boards"
	"github.com/holdfast-appliance/holdfast/firmware/appliance"
	"github.com/holdfast-appliance/holdfast/images/qemu"
)

// TestBootQEMUArm64 builds the qemu-arm64 image (kernel, init and UKI for
// arm64 on whatever host runs the test) and boots it under AAVMF, under TCG
// on an x86-64 host. Debian's arm64 kernel has no TPM TIS driver, so the
// appliance finds no TPM and must stay in safe mode: the test waits for the
// banner, the board line and the SAFE MODE line naming the missing TPM,
// asks for status over the console protocol, checks that both blank data
// disks are listed as blank and that neither disk's qcow2 file changed,
// and powers off.
func TestBootQEMUArm64(t *testing.T) {
	// Generous: a cold build cross-compiles the init and u-root for arm64
	// (minutes on 2 cores), and emulated arm64 boots slowly. On a host of
	// another architecture the UKI needs the cross objcopy.
	v := startVMTest(t, "qemu-arm64", "arm64", 30*time.Minute, Options{}, func(b *boards.Board) {
		if _, err := exec.LookPath(Objcopy(b.Arch)); err != nil {
			t.Fatalf("%s is not installed (%v): run make setup", Objcopy(b.Arch), err)
		}
	})
	ctx, b, r, log, out := v.ctx, v.b, v.r, v.log, v.out

	// The blank data disks are made here rather than by the runner, so
	// that their bytes before the boot are known.
	state := filepath.Join(out, "vm")
	if err := os.MkdirAll(state, 0o755); err != nil {
		t.Fatal(err)
	}
	var diskFiles, before []string
	for i := range 2 {
		p := filepath.Join(state, fmt.Sprintf("data%d.qcow2", i))
		if o, err := exec.CommandContext(ctx, "qemu-img", "create", "-q", "-f", "qcow2", p, fmt.Sprint(qemu.DefaultDataDiskSize)).CombinedOutput(); err != nil {
			t.Fatalf("qemu-img create: %v: %s", err, o)
		}
		diskFiles = append(diskFiles, p)
		before = append(before, fileSum(t, p))
	}

	bootCtx, bootCancel := context.WithTimeout(ctx, 15*time.Minute)
	defer bootCancel()
	g := bootGuest(bootCtx, t, b, r.Image, state, log)
	if g.vm.Accel != "tcg" && !qemu.KVMArch(b.Arch) {
		t.Errorf("accel %s for an %s guest", g.vm.Accel, b.Arch)
	}
	g.wait(bootCtx, "==== Holdfast appliance ")
	t.Logf("QEMU start to the banner: %s", time.Since(g.started).Round(time.Millisecond))
	g.wait(bootCtx, fmt.Sprintf("board %s (%s), kernel %s, console /dev/%s", b.Name, b.Description, b.Kernel.Release(), b.Console.Device))
	safeLine := "==== " + appliance.SafeModeLine + " ===="
	g.wait(bootCtx, safeLine)
	// The prompt console.Serve prints once safe mode serves the console.
	for {
		text := g.text.String()
		if i := strings.Index(text, safeLine); strings.Contains(text[i:], appliance.Prompt) {
			break
		}
		select {
		case <-bootCtx.Done():
			t.Fatalf("no prompt after the safe mode line: %v", bootCtx.Err())
		case <-time.After(250 * time.Millisecond):
		}
	}
	t.Logf("QEMU start to the safe-mode prompt: %s (accel %s, cpu %s)", time.Since(g.started).Round(time.Millisecond), g.vm.Accel, b.QEMU.CPU)
	text := strings.ReplaceAll(g.text.String(), "\r", "")
	if !regexp.MustCompile(regexp.QuoteMeta(safeLine) + `\n[^\n]*no TPM`).MatchString(text) {
		t.Errorf("the line after %q does not name the missing TPM", safeLine)
	}

	st := strings.ReplaceAll(g.run(bootCtx, "status"), "\r", "")
	t.Logf("status:\n%s", st)
	if !strings.Contains(st, appliance.SafeModeLine+": ") || !strings.Contains(st, "no TPM") {
		t.Errorf("status does not report safe mode for want of a TPM:\n%s", st)
	}
	for i := range 2 {
		// disks.Disk.String: `vdb serial "HOLDFAST-DATA0" 8.0 GiB blank`.
		re := regexp.MustCompile(fmt.Sprintf(`(?m)^\s+vd[a-z]+ serial "HOLDFAST-DATA%d" [^\n]* blank$`, i))
		if !re.MatchString(st) {
			t.Errorf("status does not list data disk HOLDFAST-DATA%d as blank", i)
		}
	}
	for _, bad := range []string{"mounted data disk", "formatting", "formatted "} {
		if strings.Contains(g.text.String(), bad) {
			t.Errorf("the console shows %q in safe mode", bad)
		}
	}
	g.stop(ctx)

	var after []string
	for _, p := range diskFiles {
		after = append(after, fileSum(t, p))
	}
	if !slices.Equal(before, after) {
		t.Errorf("data disks changed during the safe-mode boot: %v -> %v", before, after)
	}
	t.Logf("qemu-arm64 test in %s", time.Since(v.start).Round(time.Second))
}
