package roles

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"
)

const exportNSChildEnv = "HOLDFAST_EXPORT_NS_CHILD"

// TestExportNamespaceReadOnly: in the export's mount namespace every data
// disk is read-only, the mirror's as much as the primary's (before, only
// the primary's store was), and the config partition is gone; PID 1's
// namespace is untouched. Each data disk and the config partition are
// tmpfs mounts here. The test runs itself again in a new mount namespace
// as the become-export stage.
func TestExportNamespaceReadOnly(t *testing.T) {
	if dirs := os.Getenv(exportNSChildEnv); dirs != "" {
		p := strings.Split(dirs, ",")
		if len(p) != 3 {
			t.Fatalf("child environment %q", dirs)
		}
		exportNamespaceChild(p[0], p[1], p[2])
		return
	}
	if os.Getuid() != 0 {
		t.Fatal("needs root (mounts)")
	}
	base := t.TempDir()
	var mnts []string
	for _, d := range []string{"disk-vdb", "disk-vdc", "config"} {
		m := filepath.Join(base, d)
		if err := os.Mkdir(m, 0o755); err != nil {
			t.Fatal(err)
		}
		if err := unix.Mount("tmpfs", m, "tmpfs", 0, "size=1m"); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { unix.Unmount(m, unix.MNT_DETACH) })
		if err := os.Mkdir(filepath.Join(m, "store"), 0o750); err != nil {
			t.Fatal(err)
		}
		mnts = append(mnts, m)
	}
	primary, mirror := filepath.Join(mnts[0], "store"), filepath.Join(mnts[1], "store")
	cmd := exec.Command(os.Args[0], "-test.run=^TestExportNamespaceReadOnly$", "-test.count=1")
	cmd.Env = append(os.Environ(), exportNSChildEnv+"="+primary+","+mirror+","+mnts[2])
	cmd.SysProcAttr = &syscall.SysProcAttr{Cloneflags: syscall.CLONE_NEWNS}
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("child: %v\n%s", err, out)
	}
	want := "primary=EROFS mirror=EROFS config=ENOENT keep=[]\n"
	if got := childLine(string(out)); got != want {
		t.Fatalf("in the export's namespace: %q, want %q\n%s", got, want, out)
	}
	for _, d := range []string{primary, mirror} {
		if err := os.WriteFile(filepath.Join(d, "after"), nil, 0o600); err != nil {
			t.Fatalf("PID 1's namespace changed: %v", err)
		}
	}
}

// childLine is the child's verdict line.
func childLine(out string) string {
	for _, l := range strings.SplitAfter(out, "\n") {
		if strings.HasPrefix(l, "primary=") {
			return l
		}
	}
	return ""
}

func exportNamespaceChild(primary, mirror, cfg string) {
	keep, err := exportNamespace(primary, cfg, "127.0.0.1:9443")
	if err != nil {
		fmt.Println("exportNamespace:", err)
		os.Exit(3)
	}
	name := func(err error) string {
		var e unix.Errno
		if errors.As(err, &e) {
			return unix.ErrnoName(e)
		}
		if err == nil {
			return "ok"
		}
		return err.Error()
	}
	w := func(d string) string { return name(os.WriteFile(filepath.Join(d, "x"), nil, 0o600)) }
	_, cerr := os.Stat(filepath.Join(cfg, "store"))
	fmt.Printf("primary=%s mirror=%s config=%s keep=%v\n", w(primary), w(mirror), name(cerr), keep)
	os.Exit(0)
}
