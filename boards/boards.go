// Package boards describes the machines Holdfast images are built for: one
// HCL file per board (embedded from this directory) names the architecture,
// the pinned Debian kernel package, the kernel modules to load, the serial
// console, the UEFI boot file name, how to recognise data disks, whether a
// TPM is required, and for virtual boards how QEMU runs them.
//
// The package also fetches a board's kernel (kernel.go): `apt-get download`
// of the pinned package into a cache directory and `dpkg-deb -x` to unpack
// it, never installing it on the host.
//
// Limits: descriptions are data only; nothing here probes real hardware.
// Fetching a foreign architecture's kernel needs that architecture enabled
// in dpkg on the build host.
package boards

import (
	"embed"
	"errors"
	"fmt"
	"io/fs"
	"path"
	"regexp"
	"sort"
	"strings"

	"github.com/hashicorp/hcl/v2"
	"github.com/hashicorp/hcl/v2/gohcl"
	"github.com/hashicorp/hcl/v2/hclparse"
)

//go:embed *.hcl
var files embed.FS

// ErrUnknown is returned for a board name that has no description.
var ErrUnknown = errors.New("unknown board")

// Board is one parsed board description.
type Board struct {
	// Name is the file name without ".hcl", e.g. "qemu-x86_64".
	Name        string
	Description string `hcl:"description"`
	// Arch is the Debian architecture (amd64, arm64); GOARCH is the same.
	Arch string `hcl:"arch"`
	// EFIBootFile is the file name under EFI/BOOT on the ESP that UEFI
	// firmware boots from removable media: BOOTX64.EFI or BOOTAA64.EFI.
	EFIBootFile string `hcl:"efi_boot_file"`
	// EFIStub is the systemd-stub the UKI is built from.
	EFIStub string   `hcl:"efi_stub"`
	Kernel  Kernel   `hcl:"kernel,block"`
	Console Console  `hcl:"console,block"`
	Modules []string `hcl:"modules"`
	// DataDisks are glob patterns of /sys/block names that may be data disks.
	DataDisks []string `hcl:"data_disks"`
	TPM       TPM      `hcl:"tpm,block"`
	// QEMU is set for boards that run under QEMU.
	QEMU *QEMU `hcl:"qemu,block"`
}

// Kernel pins a Debian kernel package.
type Kernel struct {
	// Package is the versioned package name, e.g. linux-image-6.1.0-56-amd64.
	Package string `hcl:"package"`
	// Version is the exact Debian version, e.g. 6.1.192-2.
	Version string `hcl:"version"`
}

// Release is the kernel release (uname -r) the package installs, e.g.
// 6.1.0-56-amd64: the package name without "linux-image-".
func (k Kernel) Release() string { return strings.TrimPrefix(k.Package, "linux-image-") }

// Console is the serial console the appliance talks on.
type Console struct {
	Device string `hcl:"device"` // name under /dev, e.g. ttyS0
	Baud   int    `hcl:"baud"`
}

// TPM says what the board expects of a TPM.
type TPM struct {
	Required bool `hcl:"required"`
	// AllowNoTPMTestMode lets the appliance run without a TPM. For tests
	// only: release images refuse a board that sets it.
	AllowNoTPMTestMode bool `hcl:"allow_no_tpm_test_mode,optional"`
}

// QEMU says how to run a virtual board.
type QEMU struct {
	Binary       string `hcl:"binary"`
	Machine      string `hcl:"machine"`
	CPU          string `hcl:"cpu"`
	MemoryMiB    int    `hcl:"memory_mib"`
	FirmwareCode string `hcl:"firmware_code"`
	FirmwareVars string `hcl:"firmware_vars"`
	// TPMDevice is the QEMU device model of the TPM ("tpm-tis"), or empty
	// for none.
	TPMDevice  string `hcl:"tpm_device"`
	DiskDevice string `hcl:"disk_device"`
	NetDevice  string `hcl:"net_device"`
}

// HardeningCmdline is on every board's kernel command line (the UKI
// carries it, so it is measured into PCR 11 and cannot be changed without
// changing what the key is sealed to):
//
//	| parameter          | effect                                              |
//	|--------------------|-----------------------------------------------------|
//	| lockdown=integrity | no /dev/mem, /dev/port, iopl, MSR writes, unsigned  |
//	|                    | kexec, hibernation, or debugfs writes, even for a   |
//	|                    | process that kept CAP_SYS_RAWIO or CAP_SYS_BOOT     |
//	| module.sig_enforce=1 | only modules signed by Debian's kernel key load   |
//	| slab_nomerge, init_on_alloc=1 | heap hardening (no data left in fresh    |
//	|                    | allocations, fewer cross-cache overflows)           |
//	| vsyscall=none      | no fixed-address vsyscall page (amd64)              |
const HardeningCmdline = "lockdown=integrity module.sig_enforce=1 slab_nomerge init_on_alloc=1 vsyscall=none"

// KernelCmdline is the kernel command line for b: the console first, so
// that kernel messages and the appliance share the serial line.
func (b *Board) KernelCmdline() string {
	return fmt.Sprintf("console=%s,%d panic=-1 loglevel=4 %s", b.Console.Device, b.Console.Baud, HardeningCmdline)
}

var (
	nameRE   = regexp.MustCompile(`^[a-z0-9][a-z0-9_-]*$`)
	moduleRE = regexp.MustCompile(`^[a-z0-9_-]+$`)
	pkgRE    = regexp.MustCompile(`^linux-image-[0-9][0-9a-z.+-]*$`)
	verRE    = regexp.MustCompile(`^[0-9][0-9A-Za-z.+~:-]*$`)
)

// Names lists the described boards, sorted.
func Names() []string {
	entries, err := fs.ReadDir(files, ".")
	if err != nil {
		return nil // embedded FS: cannot fail
	}
	var names []string
	for _, e := range entries {
		if n, ok := strings.CutSuffix(e.Name(), ".hcl"); ok {
			names = append(names, n)
		}
	}
	sort.Strings(names)
	return names
}

// Load parses and validates the description of the board called name.
func Load(name string) (*Board, error) {
	if !nameRE.MatchString(name) {
		return nil, fmt.Errorf("board %q: %w (known: %s)", name, ErrUnknown, strings.Join(Names(), ", "))
	}
	src, err := files.ReadFile(name + ".hcl")
	if err != nil {
		return nil, fmt.Errorf("board %q: %w (known: %s)", name, ErrUnknown, strings.Join(Names(), ", "))
	}
	return Parse(name, path.Join("boards", name+".hcl"), src)
}

// Parse parses a board description from src; filename is used in errors.
func Parse(name, filename string, src []byte) (*Board, error) {
	f, diags := hclparse.NewParser().ParseHCL(src, filename)
	if diags.HasErrors() {
		return nil, fmt.Errorf("board %s: %w", name, diags)
	}
	b := &Board{Name: name}
	if diags := gohcl.DecodeBody(f.Body, nil, b); diags.HasErrors() {
		return nil, fmt.Errorf("board %s: %w", name, hcl.Diagnostics(diags))
	}
	if err := b.validate(); err != nil {
		return nil, fmt.Errorf("board %s (%s): %w", name, filename, err)
	}
	return b, nil
}

func (b *Board) validate() error {
	switch b.Arch {
	case "amd64":
		if b.EFIBootFile != "BOOTX64.EFI" {
			return fmt.Errorf("efi_boot_file %q: amd64 boots BOOTX64.EFI", b.EFIBootFile)
		}
	case "arm64":
		if b.EFIBootFile != "BOOTAA64.EFI" {
			return fmt.Errorf("efi_boot_file %q: arm64 boots BOOTAA64.EFI", b.EFIBootFile)
		}
	default:
		return fmt.Errorf("arch %q: want amd64 or arm64", b.Arch)
	}
	if !pkgRE.MatchString(b.Kernel.Package) || !strings.HasSuffix(b.Kernel.Package, "-"+b.Arch) {
		return fmt.Errorf("kernel package %q: want linux-image-<abi>-%s", b.Kernel.Package, b.Arch)
	}
	if !verRE.MatchString(b.Kernel.Version) {
		return fmt.Errorf("kernel version %q is not a Debian version", b.Kernel.Version)
	}
	if !strings.HasPrefix(b.Console.Device, "tty") || strings.Contains(b.Console.Device, "/") {
		return fmt.Errorf("console device %q: want a tty name such as ttyS0", b.Console.Device)
	}
	if b.Console.Baud <= 0 {
		return fmt.Errorf("console baud %d must be positive", b.Console.Baud)
	}
	for _, m := range b.Modules {
		if !moduleRE.MatchString(m) {
			return fmt.Errorf("module name %q", m)
		}
	}
	for _, g := range b.DataDisks {
		if _, err := path.Match(g, ""); err != nil || strings.Contains(g, "/") {
			return fmt.Errorf("data_disks pattern %q: want a /sys/block name glob", g)
		}
	}
	if b.TPM.Required && b.TPM.AllowNoTPMTestMode {
		return errors.New("tpm: required and allow_no_tpm_test_mode contradict each other")
	}
	if !b.TPM.Required && !b.TPM.AllowNoTPMTestMode {
		return errors.New("tpm: a board without a required TPM must say allow_no_tpm_test_mode = true (test mode)")
	}
	if q := b.QEMU; q != nil {
		if q.Binary == "" || q.Machine == "" || q.FirmwareCode == "" || q.FirmwareVars == "" || q.DiskDevice == "" {
			return errors.New("qemu: binary, machine, firmware_code, firmware_vars and disk_device are required")
		}
		if q.MemoryMiB < 256 {
			return fmt.Errorf("qemu: memory_mib %d: want at least 256", q.MemoryMiB)
		}
		if b.TPM.Required && q.TPMDevice == "" {
			return errors.New("qemu: the board requires a TPM but names no tpm_device")
		}
	}
	return nil
}
