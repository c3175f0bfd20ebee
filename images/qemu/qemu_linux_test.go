package qemu

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"slices"
	"strings"
	"testing"

	"github.com/hashicorp/go-hclog"

	"github.com/holdfast-appliance/holdfast/boards"
)

func TestFirmwarePadding(t *testing.T) {
	dir := t.TempDir()
	small := filepath.Join(dir, "QEMU_EFI.fd")
	if err := os.WriteFile(small, []byte("firmware"), 0o644); err != nil {
		t.Fatal(err)
	}
	b := &boards.Board{Arch: "arm64", QEMU: &boards.QEMU{Machine: "virt", FirmwareCode: small, FirmwareVars: small}}
	c := Config{Board: b, StateDir: dir}
	code := firmwareCode(c)
	if code == small {
		t.Fatalf("a %d-byte firmware on virt is used as it is", len("firmware"))
	}
	if err := copyPadded(small, code, flashSize("virt")); err != nil {
		t.Fatal(err)
	}
	got, err := os.ReadFile(code)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != virtFlashSize || string(got[:8]) != "firmware" || got[len(got)-1] != 0 {
		t.Fatalf("padded copy: %d bytes, starts %q", len(got), got[:8])
	}
	// A file of the right size is used in place; q35 never pads.
	b.QEMU.FirmwareCode = code
	if firmwareCode(c) != code {
		t.Error("a 64 MiB firmware file is copied again")
	}
	b.QEMU.Machine, b.QEMU.FirmwareCode = "q35", small
	if firmwareCode(c) != small || flashSize("q35") != 0 {
		t.Error("q35 firmware padded")
	}
	if err := pad(code, 1024); err == nil {
		t.Error("a firmware larger than the flash was accepted")
	}
}

func TestCPUAndAccel(t *testing.T) {
	arm := &boards.Board{Arch: "arm64", QEMU: &boards.QEMU{CPU: "max"}}
	if got := cpuModel(arm, "tcg"); got != "max,pauth-impdef=on" {
		t.Errorf("arm64 max under TCG: %q", got)
	}
	if got := cpuModel(arm, "kvm"); got != "max" {
		t.Errorf("arm64 max under KVM: %q", got)
	}
	x86 := &boards.Board{Arch: "amd64", QEMU: &boards.QEMU{CPU: "max"}}
	if got := cpuModel(x86, "tcg"); got != "max" {
		t.Errorf("amd64 max under TCG: %q", got)
	}
	if !KVMArch(runtime.GOARCH) || KVMArch("s390x") {
		t.Error("KVMArch")
	}
}

func TestDataDiskArgs(t *testing.T) {
	b := &boards.Board{QEMU: &boards.QEMU{DiskDevice: "virtio-blk-pci"}}
	c := Config{Board: b, StateDir: "/s"}
	want := []string{
		"-drive", "if=none,id=data0,format=qcow2,file=/s/data0.qcow2",
		"-device", "virtio-blk-pci,drive=data0,serial=HOLDFAST-DATA0",
		"-drive", "if=none,id=data1,format=qcow2,file=/s/data1.qcow2",
		"-device", "virtio-blk-pci,drive=data1,serial=HOLDFAST-DATA1",
	}
	if got := dataDiskArgs(c); !slices.Equal(got, want) {
		t.Errorf("plain data disks:\n got %q\nwant %q", got, want)
	}
	c.DataDiskFaults[0] = FailWrites
	c.DataDiskFaults[1] = FailWrites
	c.DetachDataDisk[1] = true
	want = []string{
		"-drive", "if=none,id=data0,driver=qcow2,file.driver=blkdebug,file.config=/s/data0.blkdebug,file.image.driver=file,file.image.filename=/s/data0.qcow2",
		"-device", "virtio-blk-pci,drive=data0,serial=HOLDFAST-DATA0",
	}
	if got := dataDiskArgs(c); !slices.Equal(got, want) {
		t.Errorf("faulty data0, detached data1:\n got %q\nwant %q", got, want)
	}
	if p := DataDiskPath("/s", 1); p != "/s/data1.qcow2" {
		t.Errorf("DataDiskPath: %s", p)
	}
}

// qemuIOResult is what qemu-io reported for one command: "ok", "EIO",
// "pattern" (the data read differed from the -P pattern) or another
// error message.
var qemuIOLine = regexp.MustCompile(`^(?:(read|wrote) \d+/\d+ bytes at offset \d+|(?:read|write) failed: (.*)|(Pattern verification failed).*)$`)

// runQemuIO runs qemu-io with the commands (one -c each) on one open of
// the image and returns each command's outcome. qemu-io goes on after a
// failed command and exits 1 if one failed.
func runQemuIO(t *testing.T, args []string, cmds []string) []string {
	t.Helper()
	for _, c := range cmds {
		args = append(args, "-c", c)
	}
	cmd := exec.Command("qemu-io", args...)
	cmd.Env = append(os.Environ(), "LC_ALL=C")
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	t.Logf("qemu-io %s: %v\n%s%s", strings.Join(args, " "), err, stdout.String(), stderr.String())
	var got []string
	pattern := false
	for line := range strings.Lines(stdout.String()) {
		m := qemuIOLine.FindStringSubmatch(strings.TrimSpace(line))
		switch {
		case m == nil:
		case m[3] != "":
			pattern = true
		case m[1] != "" && pattern:
			got, pattern = append(got, "pattern"), false
		case m[1] != "":
			got = append(got, "ok")
		case m[2] == "Input/output error":
			got = append(got, "EIO")
		default:
			got = append(got, m[2])
		}
	}
	if len(got) != len(cmds) {
		t.Fatalf("qemu-io: %d results for %d commands: %q", len(got), len(cmds), got)
	}
	return got
}

// TestDataDiskFaultRules runs the rule sets through QEMU's block layer
// with qemu-io, on data disks prepare made and with the -drive block
// options the VM uses (without booting anything).
func TestDataDiskFaultRules(t *testing.T) {
	for _, bin := range []string{"qemu-img", "qemu-io"} {
		if _, err := exec.LookPath(bin); err != nil {
			t.Skipf("%s is not installed", bin)
		}
	}
	dir := t.TempDir()
	vars := filepath.Join(dir, "OVMF_VARS.fd")
	if err := os.WriteFile(vars, []byte("vars"), 0o644); err != nil {
		t.Fatal(err)
	}
	b := &boards.Board{Arch: "amd64", QEMU: &boards.QEMU{Machine: "q35", FirmwareCode: vars, FirmwareVars: vars, DiskDevice: "virtio-blk-pci"}}
	c := Config{
		Board: b, StateDir: filepath.Join(dir, "state"), DataDiskSize: 64 << 20,
		DataDiskFaults: [2]string{FailAllAfterFirstAlloc, FailWrites},
		Log:            hclog.NewNullLogger(),
	}
	if err := os.MkdirAll(c.StateDir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := prepare(t.Context(), c); err != nil {
		t.Fatal(err)
	}
	for i, rules := range c.DataDiskFaults {
		got, err := os.ReadFile(dataDiskRules(c.StateDir, i))
		if err != nil || string(got) != rules {
			t.Fatalf("data%d.blkdebug: %v %q", i, err, got)
		}
		// 1 MiB at offset 0 the image already has.
		runQemuIO(t, []string{"-f", "qcow2", DataDiskPath(c.StateDir, i)}, []string{"write -P 0xab 0 1M"})
	}
	faulty := func(i int) []string { return []string{"--image-opts", dataDriveOpts(c, i)} }
	check := func(name string, got, want []string) {
		t.Helper()
		if !slices.Equal(got, want) {
			t.Errorf("%s:\n got %q\nwant %q", name, got, want)
		}
	}

	// FailAllAfterFirstAlloc: the allocated range reads and writes
	// until a write at an unallocated offset; that write and every
	// later read and write of the allocated range fail. (A read of an
	// unallocated range never reaches the file.)
	check("FailAllAfterFirstAlloc", runQemuIO(t, faulty(0), []string{
		"read -P 0xab 0 1M",
		"write -P 0xcd 4k 4k",
		"read -P 0xcd 4k 4k",
		"write -P 0xcd 0 64k",
		"read -P 0xcd 0 64k",
		"read -P 0xab 64k 960k",
		"write -P 0x11 32M 4k", // the first new cluster
		"read -P 0xcd 0 64k",
		"write -P 0xcd 0 4k",
		"read -P 0xab 512k 4k",
		"write -P 0x22 40M 64k",
		"read -P 0 48M 64k",
	}), []string{"ok", "ok", "ok", "ok", "ok", "ok", "EIO", "EIO", "EIO", "EIO", "EIO", "ok"})
	// What was written before the fault stays; nothing of the failed
	// allocation reached the file.
	check("FailAllAfterFirstAlloc, then plain", runQemuIO(t, []string{"-f", "qcow2", DataDiskPath(c.StateDir, 0)}, []string{
		"read -P 0xcd 0 64k",
		"read -P 0xab 64k 960k",
		"read -P 0 32M 64k",
	}), []string{"ok", "ok", "ok"})
	// The state starts afresh at every open: reads work again.
	check("FailAllAfterFirstAlloc reopened", runQemuIO(t, faulty(0), []string{
		"read -P 0xcd 0 64k",
		"write -P 0x11 32M 4k",
		"read -P 0xcd 0 64k",
	}), []string{"ok", "EIO", "EIO"})

	// FailWrites: every write fails from the start, reads work.
	check("FailWrites", runQemuIO(t, faulty(1), []string{
		"read -P 0xab 0 1M",
		"write -P 0xcd 0 64k",
		"read -P 0xab 0 64k",
		"write -P 0xcd 4k 4k",
		"write -P 0x11 32M 4k",
		"read -P 0xab 0 1M",
		"write -z 132k 4k",
		"read -P 0xab 0 1M",
		// A whole cluster: fails, but qcow2's cached tables keep the
		// zeros (see the constants' comment); the file does not.
		"write -z 128k 64k",
		"read -P 0 128k 64k",
	}), []string{"ok", "EIO", "ok", "EIO", "EIO", "ok", "EIO", "ok", "EIO", "ok"})
	check("FailWrites, then plain", runQemuIO(t, []string{"-f", "qcow2", DataDiskPath(c.StateDir, 1)}, []string{
		"read -P 0xab 0 1M",
		"read -P 0 32M 64k",
	}), []string{"ok", "ok"})
	for i := range 2 {
		if out, err := exec.Command("qemu-img", "check", DataDiskPath(c.StateDir, i)).CombinedOutput(); err != nil {
			t.Errorf("qemu-img check data%d: %v\n%s", i, err, out)
		}
	}

	// Without faults the rules file goes.
	c.DataDiskFaults[1] = ""
	if err := prepare(t.Context(), c); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(dataDiskRules(c.StateDir, 1)); !os.IsNotExist(err) {
		t.Errorf("data1.blkdebug after faults were cleared: %v", err)
	}
}
