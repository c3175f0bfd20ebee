package images

import (
	"bytes"
	"context"
	"crypto/sha256"
	"debug/pe"
	"encoding/hex"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
)

// UKIInputs are the parts of a unified kernel image.
type UKIInputs struct {
	Stub    string // systemd-stub, e.g. /usr/lib/systemd/boot/efi/linuxx64.efi.stub
	OSRel   string // file for .osrel
	Cmdline string // file for .cmdline
	Linux   string // file for .linux (vmlinuz)
	Initrd  string // file for .initrd
}

// ukiSections lists the sections we add, in the order systemd-stub (v252,
// src/fundamental/tpm-pcr.h unified_sections[]) measures them into PCR 11:
// .linux, .osrel, .cmdline, .initrd (then .splash, .dtb, .pcrpkey, which we
// do not use). The order of the sections in the file does not matter.
func (in UKIInputs) sections() []struct{ name, path string } {
	return []struct{ name, path string }{
		{".linux", in.Linux}, {".osrel", in.OSRel}, {".cmdline", in.Cmdline}, {".initrd", in.Initrd},
	}
}

// BuildUKI writes a UKI to out: the stub with the four sections added by
// objcopy, each at a virtual address after the stub's last section,
// aligned to 4 KiB (a multiple of the stub's SectionAlignment), as the
// systemd UKI documentation describes for building by hand.
func BuildUKI(ctx context.Context, in UKIInputs, out string) error {
	f, err := pe.Open(in.Stub)
	if err != nil {
		return fmt.Errorf("uki stub %s: %w", in.Stub, err)
	}
	objcopy := Objcopy(peArch(f.Machine))
	var base, align uint64
	switch h := f.OptionalHeader.(type) {
	case *pe.OptionalHeader64:
		base, align = h.ImageBase, uint64(h.SectionAlignment)
	case *pe.OptionalHeader32:
		base, align = uint64(h.ImageBase), uint64(h.SectionAlignment)
	default:
		f.Close()
		return fmt.Errorf("uki stub %s: no PE optional header", in.Stub)
	}
	var end uint64
	for _, s := range f.Sections {
		end = max(end, uint64(s.VirtualAddress)+uint64(max(s.VirtualSize, s.Size)))
	}
	f.Close()
	align = max(align, 4096)
	roundUp := func(v uint64) uint64 { return (v + align - 1) / align * align }
	args := []string{}
	vma := roundUp(end)
	// File order: .osrel .cmdline .initrd .linux; .linux last so that the
	// big kernel does not push the small sections far out.
	for _, name := range []string{".osrel", ".cmdline", ".initrd", ".linux"} {
		var p string
		for _, s := range in.sections() {
			if s.name == name {
				p = s.path
			}
		}
		fi, err := os.Stat(p)
		if err != nil {
			return fmt.Errorf("uki section %s: %w", name, err)
		}
		args = append(args,
			"--add-section", name+"="+p,
			"--change-section-vma", fmt.Sprintf("%s=%#x", name, base+vma),
			"--set-section-flags", name+"=data,readonly")
		vma = roundUp(vma + uint64(fi.Size()))
	}
	tmp := out + ".tmp"
	args = append(args, in.Stub, tmp)
	cmd := exec.CommandContext(ctx, objcopy, args...)
	if o, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("%s: %w: %s", objcopy, err, o)
	}
	if err := os.Rename(tmp, out); err != nil {
		return fmt.Errorf("uki: %w", err)
	}
	return nil
}

// peArch is the Debian architecture of a PE machine type ("" if neither
// of ours).
func peArch(machine uint16) string {
	switch machine {
	case pe.IMAGE_FILE_MACHINE_AMD64:
		return "amd64"
	case pe.IMAGE_FILE_MACHINE_ARM64:
		return "arm64"
	}
	return ""
}

// Objcopy is the objcopy that can write a stub of Debian architecture arch:
// the host's own for the host's architecture (Debian's x86-64 objcopy
// knows no arm64 PE), else the cross binutils' (binutils-aarch64-linux-gnu,
// binutils-x86-64-linux-gnu).
func Objcopy(arch string) string {
	switch {
	case arch == "arm64" && runtime.GOARCH != "arm64":
		return "aarch64-linux-gnu-objcopy"
	case arch == "amd64" && runtime.GOARCH != "amd64":
		return "x86_64-linux-gnu-objcopy"
	}
	return "objcopy"
}

// extendSHA256 is TPM2_PCR_Extend for the SHA-256 bank.
func extendSHA256(pcr [32]byte, digest []byte) [32]byte {
	return sha256.Sum256(append(pcr[:], digest...))
}

// PCR11 computes the SHA-256 PCR 11 value systemd-stub (v252) leaves when
// it boots a UKI made of these sections, starting from an all-zero PCR:
// for each section in measurement order, extend with SHA-256 of the
// section name including its NUL terminator, then with SHA-256 of the
// contents. This is systemd-measure's `calculate --phase=` (no boot phase
// words; systemd-pcrphase, which would add them, is not in our userland).
func PCR11(contents map[string][]byte) string {
	var pcr [32]byte
	for _, name := range []string{".linux", ".osrel", ".cmdline", ".initrd", ".splash", ".dtb", ".pcrpkey"} {
		data, ok := contents[name]
		if !ok {
			continue
		}
		n := sha256.Sum256(append([]byte(name), 0))
		pcr = extendSHA256(pcr, n[:])
		d := sha256.Sum256(data)
		pcr = extendSHA256(pcr, d[:])
	}
	return hex.EncodeToString(pcr[:])
}

// PCR11FromInputs reads the section files and computes PCR11.
func PCR11FromInputs(in UKIInputs) (string, error) {
	m := map[string][]byte{}
	for _, s := range in.sections() {
		b, err := os.ReadFile(s.path)
		if err != nil {
			return "", fmt.Errorf("pcr 11: %w", err)
		}
		m[s.name] = b
	}
	return PCR11(m), nil
}

// PCR11FromUKI computes PCR11 from the sections of a built UKI, reading
// each section's first VirtualSize bytes as systemd-stub does.
func PCR11FromUKI(path string) (string, error) {
	f, err := pe.Open(path)
	if err != nil {
		return "", fmt.Errorf("pcr 11: %w", err)
	}
	defer f.Close()
	m := map[string][]byte{}
	for _, s := range f.Sections {
		switch s.Name {
		case ".linux", ".osrel", ".cmdline", ".initrd", ".splash", ".dtb", ".pcrpkey":
			b, err := s.Data()
			if err != nil {
				return "", fmt.Errorf("pcr 11: section %s: %w", s.Name, err)
			}
			if int(s.VirtualSize) > len(b) {
				return "", fmt.Errorf("pcr 11: section %s: virtual size %d beyond its %d bytes", s.Name, s.VirtualSize, len(b))
			}
			m[s.Name] = b[:s.VirtualSize]
		}
	}
	return PCR11(m), nil
}

// SystemdMeasure runs systemd-measure calculate for the same inputs and
// returns its SHA-256 PCR 11 value, to check PCR11 against.
func SystemdMeasure(ctx context.Context, in UKIInputs) (string, error) {
	bin := "/usr/lib/systemd/systemd-measure"
	if _, err := os.Stat(bin); err != nil {
		return "", fmt.Errorf("systemd-measure: %w", err)
	}
	args := []string{"calculate", "--bank=sha256", "--phase="}
	for _, s := range in.sections() {
		args = append(args, "--"+strings.TrimPrefix(s.name, ".")+"="+s.path)
	}
	out, err := exec.CommandContext(ctx, bin, args...).CombinedOutput()
	if err != nil {
		return "", fmt.Errorf("systemd-measure: %w: %s", err, out)
	}
	// Output: "11:sha256=<hex>".
	for _, line := range strings.Split(string(bytes.TrimSpace(out)), "\n") {
		if v, ok := strings.CutPrefix(strings.TrimSpace(line), "11:sha256="); ok {
			return strings.ToLower(v), nil
		}
	}
	return "", fmt.Errorf("systemd-measure: no 11:sha256 in %q", out)
}

// writeTextFile writes a small input file next to the outputs.
func writeTextFile(dir, name, content string) (string, error) {
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
		return "", fmt.Errorf("write %s: %w", name, err)
	}
	return p, nil
}
