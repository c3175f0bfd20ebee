package boards

import (
	"errors"
	"strings"
	"testing"
)

func TestLoadAll(t *testing.T) {
	tests := []struct {
		name, arch, boot, console string
		qemu, noTPM               bool
	}{
		{"pc-x86_64", "amd64", "BOOTX64.EFI", "ttyS0", false, false},
		{"qemu-arm64", "arm64", "BOOTAA64.EFI", "ttyAMA0", true, true},
		{"qemu-x86_64", "amd64", "BOOTX64.EFI", "ttyS0", true, false},
	}
	if got := strings.Join(Names(), ","); got != "pc-x86_64,qemu-arm64,qemu-x86_64" {
		t.Fatalf("Names() = %s", got)
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b, err := Load(tt.name)
			if err != nil {
				t.Fatal(err)
			}
			if b.Arch != tt.arch || b.EFIBootFile != tt.boot || b.Console.Device != tt.console {
				t.Errorf("got arch %s boot %s console %s", b.Arch, b.EFIBootFile, b.Console.Device)
			}
			if (b.QEMU != nil) != tt.qemu {
				t.Errorf("QEMU set = %v, want %v", b.QEMU != nil, tt.qemu)
			}
			if b.TPM.AllowNoTPMTestMode != tt.noTPM {
				t.Errorf("AllowNoTPMTestMode = %v", b.TPM.AllowNoTPMTestMode)
			}
			if !strings.HasSuffix(b.Kernel.Release(), "-"+tt.arch) || len(b.Modules) == 0 {
				t.Errorf("kernel release %q, modules %v", b.Kernel.Release(), b.Modules)
			}
			if !strings.Contains(b.KernelCmdline(), "console="+tt.console) {
				t.Errorf("cmdline %q", b.KernelCmdline())
			}
		})
	}
}

func TestLoadUnknown(t *testing.T) {
	for _, name := range []string{"nope", "../boards", "", "QEMU"} {
		if _, err := Load(name); !errors.Is(err, ErrUnknown) {
			t.Errorf("Load(%q) = %v, want ErrUnknown", name, err)
		}
	}
}

func TestParseRejects(t *testing.T) {
	const good = `
description = "x"
arch = "amd64"
efi_boot_file = "BOOTX64.EFI"
efi_stub = "/stub"
kernel {
  package = "linux-image-6.1.0-1-amd64"
  version = "6.1.1-1"
}
console {
  device = "ttyS0"
  baud = 115200
}
modules = ["virtio_blk"]
data_disks = ["vd*"]
tpm {
  required = true
}
`
	if _, err := Parse("good", "good.hcl", []byte(good)); err != nil {
		t.Fatalf("good board: %v", err)
	}
	tests := []struct{ name, from, to, want string }{
		{"arch", `arch = "amd64"`, `arch = "mips"`, "arch"},
		{"bootfile", `"BOOTX64.EFI"`, `"BOOTAA64.EFI"`, "efi_boot_file"},
		{"kernel arch", `6.1.0-1-amd64"`, `6.1.0-1-arm64"`, "kernel package"},
		{"console", `"ttyS0"`, `"/dev/ttyS0"`, "console device"},
		{"module", `"virtio_blk"`, `"../x"`, "module name"},
		{"no tpm without test flag", `required = true`, `required = false`, "allow_no_tpm_test_mode"},
		{"both tpm flags", `required = true`, "required = true\nallow_no_tpm_test_mode = true", "contradict"},
		{"unknown field", `arch = "amd64"`, "arch = \"amd64\"\nbogus = 1", "bogus"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			src := strings.Replace(good, tt.from, tt.to, 1)
			_, err := Parse("bad", "bad.hcl", []byte(src))
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("err = %v, want it to mention %q", err, tt.want)
			}
		})
	}
}
