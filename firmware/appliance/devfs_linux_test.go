package appliance

import (
	"errors"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

// tmpfsDir mounts a private tmpfs on a fresh directory, detached at the
// end of the test.
func tmpfsDir(t *testing.T) string {
	t.Helper()
	if os.Getuid() != 0 {
		t.Fatal("this test must run as root: it mounts tmpfs and makes device nodes")
	}
	d := t.TempDir()
	if err := unix.Mount("tmpfs", d, "tmpfs", 0, "mode=0755"); err != nil {
		t.Fatalf("mount tmpfs: %v", err)
	}
	t.Cleanup(func() { _ = unix.Unmount(d, unix.MNT_DETACH) })
	if err := unix.Mount("", d, "", unix.MS_PRIVATE, ""); err != nil {
		t.Fatalf("private: %v", err)
	}
	return d
}

func TestPopulateDev(t *testing.T) {
	d := tmpfsDir(t)
	if err := populateDev(d); err != nil {
		t.Fatal(err)
	}
	ents, err := os.ReadDir(d)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, e := range ents {
		got = append(got, e.Name())
	}
	want := []string{"fd", "full", "null", "random", "stderr", "stdin", "stdout", "urandom", "zero"}
	if !slices.Equal(got, want) {
		t.Fatalf("entries %v, want %v", got, want)
	}
	for _, tc := range []struct {
		name         string
		major, minor uint32
	}{{"null", 1, 3}, {"zero", 1, 5}, {"full", 1, 7}, {"random", 1, 8}, {"urandom", 1, 9}} {
		var st unix.Stat_t
		if err := unix.Lstat(filepath.Join(d, tc.name), &st); err != nil {
			t.Fatal(err)
		}
		if st.Mode != unix.S_IFCHR|0o666 || unix.Major(st.Rdev) != tc.major || unix.Minor(st.Rdev) != tc.minor || st.Uid != 0 {
			t.Errorf("%s: mode %o rdev %d:%d uid %d, want char 0666 %d:%d uid 0", tc.name, st.Mode, unix.Major(st.Rdev), unix.Minor(st.Rdev), st.Uid, tc.major, tc.minor)
		}
	}
	for _, tc := range []struct{ name, target string }{{"fd", "/proc/self/fd"}, {"stdin", "/proc/self/fd/0"}, {"stdout", "/proc/self/fd/1"}, {"stderr", "/proc/self/fd/2"}} {
		if got, err := os.Readlink(filepath.Join(d, tc.name)); err != nil || got != tc.target {
			t.Errorf("%s -> %q (%v), want %q", tc.name, got, err, tc.target)
		}
	}
}

// TestReplaceDev builds a fake /dev on a tmpfs (a data disk, the TPM, a
// serial line, a node in a subdirectory, null, a shm and a pts mount),
// replaces it and checks what root can still reach there.
func TestReplaceDev(t *testing.T) {
	top := tmpfsDir(t)
	dev := filepath.Join(top, "dev")
	if err := os.Mkdir(dev, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := unix.Mount("tmpfs", dev, "tmpfs", 0, "mode=0755"); err != nil {
		t.Fatal(err)
	}
	nodes := []struct {
		name         string
		mode         uint32
		major, minor uint32
	}{
		{"vdb", unix.S_IFBLK, 254, 16}, {"vda1", unix.S_IFBLK, 254, 1}, {"tpmrm0", unix.S_IFCHR, 253, 65536},
		{"ttyS0", unix.S_IFCHR, 4, 64}, {"null", unix.S_IFCHR, 1, 3}, {"bsg/0:0:0:0", unix.S_IFCHR, 252, 0},
	}
	for _, n := range nodes {
		p := filepath.Join(dev, n.name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := unix.Mknod(p, n.mode|0o660, int(unix.Mkdev(n.major, n.minor))); err != nil {
			t.Fatal(err)
		}
	}
	for _, sub := range []string{"shm", "pts"} {
		p := filepath.Join(dev, sub)
		if err := os.Mkdir(p, 0o755); err != nil {
			t.Fatal(err)
		}
		if err := unix.Mount("tmpfs", p, "tmpfs", 0, ""); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(p, "marker"), []byte(sub), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	// A descriptor opened before, like PID 1's on a disk, keeps working.
	held, err := os.Open(filepath.Join(dev, "pts", "marker"))
	if err != nil {
		t.Fatal(err)
	}
	defer held.Close()

	stage := filepath.Join(top, "stage")
	gone, err := replaceDev(dev, stage)
	if err != nil {
		t.Fatalf("replaceDev: %v", err)
	}
	want := []string{"bsg/0:0:0:0", "tpmrm0", "ttyS0", "vda1", "vdb"}
	if !slices.Equal(gone, want) {
		t.Errorf("removed %v, want %v", gone, want)
	}
	for _, n := range []string{"vdb", "vda1", "tpmrm0", "ttyS0", "bsg/0:0:0:0", "pts/marker"} {
		if _, err := os.Lstat(filepath.Join(dev, n)); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("%s after the switch: %v, want it absent", n, err)
		}
	}
	if b, err := os.ReadFile(filepath.Join(dev, "shm", "marker")); err != nil || string(b) != "shm" {
		t.Errorf("shm was not moved into the new /dev: %q %v", b, err)
	}
	b := make([]byte, 3)
	if n, err := held.ReadAt(b, 0); err != nil || string(b[:n]) != "pts" {
		t.Errorf("descriptor held before the switch: %q %v", b[:n], err)
	}
	// The nodes kept work: the new /dev is not nodev.
	if f, err := os.OpenFile(filepath.Join(dev, "null"), os.O_WRONLY, 0); err != nil {
		t.Errorf("open the new null for write: %v", err)
	} else {
		if _, err := f.WriteString("x"); err != nil {
			t.Errorf("write to the new null: %v", err)
		}
		f.Close()
	}
	left, err := devNodes(dev)
	if err != nil {
		t.Fatal(err)
	}
	if wantLeft := []string{"full", "null", "random", "urandom", "zero"}; !slices.Equal(left, wantLeft) {
		t.Errorf("nodes left %v, want %v", left, wantLeft)
	}
	if _, err := os.Stat(stage); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("staging directory left behind: %v", err)
	}
	// Read-only: root (here with every capability) creates nothing.
	for _, tc := range []struct {
		what string
		err  error
	}{
		{"create a file", os.WriteFile(filepath.Join(dev, "vdb"), nil, 0o600)},
		{"mknod", unix.Mknod(filepath.Join(dev, "vdb"), unix.S_IFBLK|0o600, int(unix.Mkdev(254, 16)))},
		{"chmod null", unix.Chmod(filepath.Join(dev, "null"), 0o600)},
		{"unlink null", unix.Unlink(filepath.Join(dev, "null"))},
	} {
		if !errors.Is(tc.err, unix.EROFS) {
			t.Errorf("%s in the new /dev: %v, want EROFS", tc.what, tc.err)
		}
	}
	var sfs unix.Statfs_t
	if err := unix.Statfs(dev, &sfs); err != nil || sfs.Flags&unix.ST_RDONLY == 0 || sfs.Type != unix.TMPFS_MAGIC {
		t.Errorf("new /dev: statfs flags %x type %x (%v), want a read-only tmpfs", sfs.Flags, sfs.Type, err)
	}
}

func TestSetidBounding(t *testing.T) {
	full, setid, none := "000001ffffffffff", "00000000000001c0", "0000000000000000"
	for _, tc := range []struct {
		name  string
		procs map[string][3]string // pid -> name, ppid, CapBnd
		want  []string
	}{
		{"all emptied", map[string][3]string{"1": {"init", "0", none}, "100": {"holdfast-sealer", "1", "0000000000000200"}}, nil},
		{"kernel threads aside", map[string][3]string{"2": {"kthreadd", "0", full}, "7": {"kworker/0:1", "2", full}}, nil},
		{"a role with setuid", map[string][3]string{"1": {"init", "0", none}, "115": {"holdfast-worker", "1", setid}}, []string{"115:holdfast-worker"}},
		{"setgid alone", map[string][3]string{"9": {"x", "1", "0000000000000040"}}, []string{"9:x"}},
		{"setpcap alone", map[string][3]string{"9": {"x", "1", "0000000000000100"}}, []string{"9:x"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d := t.TempDir()
			if err := os.Mkdir(filepath.Join(d, "self"), 0o755); err != nil {
				t.Fatal(err)
			}
			for pid, p := range tc.procs {
				if err := os.Mkdir(filepath.Join(d, pid), 0o755); err != nil {
					t.Fatal(err)
				}
				status := strings.Join([]string{"Name:\t" + p[0], "PPid:\t" + p[1], "CapBnd:\t" + p[2], ""}, "\n")
				if err := os.WriteFile(filepath.Join(d, pid, "status"), []byte(status), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			got, err := setidBounding(d)
			if err != nil {
				t.Fatal(err)
			}
			sort.Strings(got)
			if !slices.Equal(got, tc.want) {
				t.Errorf("got %v, want %v", got, tc.want)
			}
		})
	}
}

func TestHeldDisksOpen(t *testing.T) {
	f, err := os.CreateTemp(t.TempDir(), "disk")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.WriteString("holdfast"); err != nil {
		t.Fatal(err)
	}
	h := heldDisks{"vdb": f}
	for _, tc := range []struct {
		dev, want, wantErr string
	}{
		{"/dev/vdb", "hold", ""},
		{"/dev/vdc", "", "attached after lockdown"},
	} {
		r, release, err := h.open(tc.dev)
		if tc.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Errorf("%s: %v, want an error with %q", tc.dev, err, tc.wantErr)
			}
			continue
		}
		if err != nil {
			t.Fatalf("%s: %v", tc.dev, err)
		}
		b := make([]byte, 4)
		if _, err := r.ReadAt(b, 0); err != nil || string(b) != tc.want {
			t.Errorf("%s: read %q %v, want %q", tc.dev, b, err, tc.want)
		}
		if err := release(); err != nil {
			t.Errorf("release: %v", err)
		}
		// Releasing keeps PID 1's descriptor open for the next scan.
		if _, err := f.ReadAt(b, 0); err != nil {
			t.Errorf("held descriptor closed by release: %v", err)
		}
	}
}
