package qemu

import (
	"os"
	"path/filepath"
	"runtime"
	"testing"

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
