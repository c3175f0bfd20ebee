package initramfs

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sort"
	"strings"
)

// Tools are the host binaries copied into the initramfs with the shared
// libraries ldd names for them (a "frozen" copy, as gokrazy does for
// mke2fs): the appliance formats a blank data disk with e2fsprogs' own
// mke2fs rather than a partial reimplementation. Each row: the path in the
// initramfs and on the host.
var Tools = []struct{ Path, Host string }{
	{"sbin/mke2fs", "/sbin/mke2fs"},
	{"etc/mke2fs.conf", "/etc/mke2fs.conf"},
}

// stageTools copies Tools and their libraries into staging and returns the
// staged paths relative to staging. It copies nothing when the board's
// architecture is not the host's (the host's binaries would not run); the
// appliance then cannot format disks, which such boards (qemu-arm64, no
// TPM) never get to do.
func stageTools(ctx context.Context, o Options, staging string) ([]string, error) {
	if o.Board.Arch != runtime.GOARCH {
		o.Log.Warn("not copying mke2fs: board architecture differs from the host's; this image cannot format data disks", "board", o.Board.Arch, "host", runtime.GOARCH)
		return nil, nil
	}
	files := map[string]string{} // initramfs path -> host path
	for _, t := range Tools {
		if _, err := os.Stat(t.Host); err != nil {
			return nil, fmt.Errorf("initramfs tool %s: %w (install e2fsprogs: make setup)", t.Host, err)
		}
		files[t.Path] = t.Host
		if strings.HasPrefix(t.Path, "sbin/") {
			libs, err := lddLibs(ctx, t.Host)
			if err != nil {
				return nil, err
			}
			for _, l := range libs {
				files[strings.TrimPrefix(l, "/")] = l
			}
		}
	}
	var staged []string
	for rel, host := range files {
		if err := copyFileMode(host, filepath.Join(staging, rel)); err != nil {
			return nil, fmt.Errorf("initramfs tool: %w", err)
		}
		staged = append(staged, rel)
	}
	sort.Strings(staged)
	return staged, nil
}

// lddLibs returns the absolute paths of the libraries (and the dynamic
// loader) that ldd lists for bin.
func lddLibs(ctx context.Context, bin string) ([]string, error) {
	out, err := exec.CommandContext(ctx, "ldd", bin).Output()
	if err != nil {
		return nil, fmt.Errorf("ldd %s: %w", bin, err)
	}
	var libs []string
	s := bufio.NewScanner(bytes.NewReader(out))
	for s.Scan() {
		f := strings.Fields(s.Text())
		switch {
		case len(f) >= 3 && f[1] == "=>" && strings.HasPrefix(f[2], "/"):
			libs = append(libs, f[2])
		case len(f) >= 1 && strings.HasPrefix(f[0], "/"):
			libs = append(libs, f[0])
		}
	}
	if len(libs) == 0 {
		return nil, fmt.Errorf("ldd %s: no libraries listed", bin)
	}
	return libs, nil
}

// copyFileMode copies src (following symlinks) to dst with src's mode.
func copyFileMode(src, dst string) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	fi, err := in.Stat()
	if err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
		return err
	}
	out, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, fi.Mode().Perm())
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}
