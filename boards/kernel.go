package boards

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"

	"github.com/hashicorp/go-hclog"
)

// ErrKernelUnavailable means apt could not download the pinned kernel,
// usually because the mirror has dropped that version.
var ErrKernelUnavailable = errors.New("pinned kernel package is not available")

// KernelFiles is an unpacked kernel package.
type KernelFiles struct {
	// Release is `uname -r` of the kernel, e.g. 6.1.0-56-amd64.
	Release string
	// Image is the bootable kernel (vmlinuz).
	Image string
	// ModulesDir is lib/modules/<release> inside the unpacked tree.
	ModulesDir string
	// Root is the directory the package was unpacked into.
	Root string
}

// DefaultCacheDir is ${XDG_CACHE_HOME:-$HOME/.cache}/holdfast/kernels.
func DefaultCacheDir() (string, error) {
	dir, err := os.UserCacheDir()
	if err != nil {
		return "", fmt.Errorf("kernel cache dir: %w", err)
	}
	return filepath.Join(dir, "holdfast", "kernels"), nil
}

// FetchKernel returns b's pinned kernel unpacked under cacheDir, downloading
// it with `apt-get download` and unpacking it with `dpkg-deb -x` the first
// time. The package is never installed on the host. A completed unpack is
// marked with a stamp file, so an interrupted one is redone.
func FetchKernel(ctx context.Context, log hclog.Logger, b *Board, cacheDir string) (*KernelFiles, error) {
	k := b.Kernel
	debName := fmt.Sprintf("%s_%s_%s.deb", k.Package, strings.ReplaceAll(k.Version, ":", "%3a"), b.Arch)
	root := filepath.Join(cacheDir, k.Package+"_"+k.Version+"_"+b.Arch)
	stamp := root + ".unpacked"
	kf := &KernelFiles{
		Release:    k.Release(),
		Image:      filepath.Join(root, "boot", "vmlinuz-"+k.Release()),
		ModulesDir: filepath.Join(root, "lib", "modules", k.Release()),
		Root:       root,
	}
	if _, err := os.Stat(stamp); err == nil {
		log.Debug("kernel cached", "dir", root)
		return kf, nil
	}
	if err := os.MkdirAll(cacheDir, 0o755); err != nil {
		return nil, fmt.Errorf("kernel cache: %w", err)
	}
	deb := filepath.Join(cacheDir, debName)
	if _, err := os.Stat(deb); err != nil {
		if err := dpkgHasArch(ctx, b.Arch); err != nil {
			return nil, fmt.Errorf("board %s: %w", b.Name, err)
		}
		log.Info("downloading kernel", "package", k.Package, "version", k.Version)
		spec := fmt.Sprintf("%s:%s=%s", k.Package, b.Arch, k.Version)
		download := func() (string, error) {
			cmd := exec.CommandContext(ctx, "apt-get", "download", "-q", spec)
			cmd.Dir = cacheDir
			var out bytes.Buffer
			cmd.Stdout, cmd.Stderr = &out, &out
			err := cmd.Run()
			return out.String(), err
		}
		out, err := download()
		if err != nil && os.Getuid() == 0 {
			// A fresh machine may have no package lists yet, or stale ones.
			log.Info("apt-get download failed; running apt-get update once and retrying", "error", err)
			if upd, uerr := exec.CommandContext(ctx, "apt-get", "update", "-q").CombinedOutput(); uerr != nil {
				return nil, fmt.Errorf("apt-get update: %w\n%s", uerr, upd)
			}
			out, err = download()
		}
		if err != nil {
			return nil, fmt.Errorf("apt-get download %s: %w: %w\n%s\nThe mirror may have dropped this version: run `apt-get update && apt-cache policy linux-image-%s` and update the kernel block of boards/%s.hcl",
				spec, ErrKernelUnavailable, err, strings.TrimSpace(out), b.Arch, b.Name)
		}
		if _, err := os.Stat(deb); err != nil {
			return nil, fmt.Errorf("apt-get download %s did not write %s: %w", spec, debName, err)
		}
	}
	if err := os.RemoveAll(root); err != nil {
		return nil, fmt.Errorf("clear %s: %w", root, err)
	}
	log.Info("unpacking kernel", "deb", deb)
	if out, err := exec.CommandContext(ctx, "dpkg-deb", "-x", deb, root).CombinedOutput(); err != nil {
		return nil, fmt.Errorf("dpkg-deb -x %s: %w: %s", deb, err, out)
	}
	for _, p := range []string{kf.Image, kf.ModulesDir} {
		if _, err := os.Stat(p); err != nil {
			return nil, fmt.Errorf("unpacked kernel package %s: %w", k.Package, err)
		}
	}
	if err := os.WriteFile(stamp, []byte(k.Package+" "+k.Version+"\n"), 0o644); err != nil {
		return nil, fmt.Errorf("kernel stamp: %w", err)
	}
	return kf, nil
}

// dpkgHasArch checks that apt can download packages of Debian architecture
// arch: the host's own, or one added with dpkg --add-architecture.
func dpkgHasArch(ctx context.Context, arch string) error {
	native, err := exec.CommandContext(ctx, "dpkg", "--print-architecture").Output()
	if err != nil {
		return fmt.Errorf("dpkg --print-architecture: %w", err)
	}
	foreign, err := exec.CommandContext(ctx, "dpkg", "--print-foreign-architectures").Output()
	if err != nil {
		return fmt.Errorf("dpkg --print-foreign-architectures: %w", err)
	}
	if slices.Contains(append(strings.Fields(string(native)), strings.Fields(string(foreign))...), arch) {
		return nil
	}
	return fmt.Errorf("%w: dpkg on this host does not know architecture %s; run `dpkg --add-architecture %s && apt-get update` (make setup does)",
		ErrKernelUnavailable, arch, arch)
}
