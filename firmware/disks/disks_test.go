package disks

import (
	"os"
	"os/exec"
	"path/filepath"
	"testing"
)

// image makes a sparse file of size bytes and lets prep write into it.
func image(t *testing.T, size int64, prep func(path string)) *os.File {
	t.Helper()
	p := filepath.Join(t.TempDir(), "disk.img")
	if err := os.WriteFile(p, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(p, size); err != nil {
		t.Fatal(err)
	}
	if prep != nil {
		prep(p)
	}
	f, err := os.Open(p)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	return f
}

func mkfs(t *testing.T, args ...string) func(string) {
	return func(p string) {
		out, err := exec.Command("mkfs.ext4", append(append([]string{"-q", "-F"}, args...), p)...).CombinedOutput()
		if err != nil {
			t.Fatalf("mkfs.ext4: %v: %s", err, out)
		}
	}
}

func writeAt(t *testing.T, off int64, b []byte) func(string) {
	return func(p string) {
		f, err := os.OpenFile(p, os.O_WRONLY, 0)
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		if _, err := f.WriteAt(b, off); err != nil {
			t.Fatal(err)
		}
	}
}

func TestClassify(t *testing.T) {
	if _, err := exec.LookPath("mkfs.ext4"); err != nil {
		t.Fatal("mkfs.ext4 is not installed: run make setup")
	}
	const size = 64 << 20
	mbr := make([]byte, 512)
	mbr[510], mbr[511] = 0x55, 0xAA
	for _, tc := range []struct {
		name   string
		size   int64
		prep   func(string)
		state  State
		detail string
	}{
		{"blank", size, nil, Blank, ""},
		{"holdfast ext4", size, mkfs(t, "-L", Label), Holdfast, ""},
		{"other ext4", size, mkfs(t, "-L", "home"), Foreign, `ext2/3/4 file system labelled "home"`},
		{"unlabelled ext4", size, mkfs(t), Foreign, `ext2/3/4 file system labelled ""`},
		{"gpt", size, writeAt(t, 512, []byte("EFI PART")), Foreign, "GPT partition table"},
		{"mbr", size, writeAt(t, 0, mbr), Foreign, "MBR partition table or boot sector"},
		{"data in the middle of the first MiB", size, writeAt(t, 700<<10, []byte{1}), Foreign, "non-zero data"},
		{"data at the very end", size, writeAt(t, size-1, []byte{1}), Foreign, "data in the last MiB (a backup GPT or RAID metadata?)"},
		{"tiny", 1 << 20, nil, Foreign, "smaller than 2 MiB"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := image(t, tc.size, tc.prep)
			st, detail, uuid, err := Classify(f, tc.size)
			if err != nil {
				t.Fatal(err)
			}
			if st != tc.state || detail != tc.detail {
				t.Fatalf("Classify = %s %q, want %s %q", st, detail, tc.state, tc.detail)
			}
			if st == Holdfast && len(uuid) != 36 {
				t.Errorf("uuid %q", uuid)
			}
		})
	}
}

func TestSerialMatches(t *testing.T) {
	d := Disk{Serial: "HOLDFAST-DATA0"}
	for _, tc := range []struct {
		serial, typed string
		want          bool
	}{
		{"HOLDFAST-DATA0", "HOLDFAST-DATA0", true},
		{"HOLDFAST-DATA0", "  holdfast-data0 \r", true},
		{"HOLDFAST-DATA0", "HOLDFAST-DATA1", false},
		{"HOLDFAST-DATA0", "", false},
		{"HOLDFAST-DATA0", "yes", false},
		{"", "", false},
		{"", "yes", false},
	} {
		d.Serial = tc.serial
		if got := SerialMatches(d, tc.typed); got != tc.want {
			t.Errorf("SerialMatches(%q, %q) = %v", tc.serial, tc.typed, got)
		}
	}
}
