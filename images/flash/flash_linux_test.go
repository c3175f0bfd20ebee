package flash

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/holdfast-appliance/holdfast/firmware/disks"
)

const imgSize = 5<<20 + 123 // more than one write buffer, not sector aligned

// writeImage writes an image of random bytes and returns its path and
// contents.
func writeImage(t *testing.T) (string, []byte) {
	t.Helper()
	data := make([]byte, imgSize)
	if _, err := rand.Read(data); err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(t.TempDir(), "holdfast.img")
	if err := os.WriteFile(p, data, 0o644); err != nil {
		t.Fatal(err)
	}
	return p, data
}

func run(t *testing.T, name string, args ...string) string {
	t.Helper()
	out, err := exec.Command(name, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
	return strings.TrimSpace(string(out))
}

// loopDevice attaches a loop device over a new file of size bytes whose
// contents prep (if set) wrote, and returns the device and backing file.
func loopDevice(t *testing.T, size int64, prep func(f *os.File)) (dev, backing string) {
	t.Helper()
	backing = filepath.Join(t.TempDir(), "backing")
	f, err := os.Create(backing)
	if err != nil {
		t.Fatal(err)
	}
	if err := f.Truncate(size); err != nil {
		t.Fatal(err)
	}
	if prep != nil {
		prep(f)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	dev = run(t, "losetup", "-f", "--show", "-P", backing)
	t.Cleanup(func() {
		if out, err := exec.Command("losetup", "-d", dev).CombinedOutput(); err != nil {
			t.Errorf("losetup -d %s: %v\n%s", dev, err, out)
		}
	})
	return dev, backing
}

func readFile(t *testing.T, p string) []byte {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// readDevice reads n bytes from the start of a device or file, bypassing
// nothing: the flash already synced.
func readDevice(t *testing.T, p string, n int) []byte {
	t.Helper()
	f, err := os.Open(p)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	b := make([]byte, n)
	if _, err := io.ReadFull(f, b); err != nil {
		t.Fatalf("read %s: %v", p, err)
	}
	return b
}

func TestFlashWrites(t *testing.T) {
	img, data := writeImage(t)
	tests := []struct {
		name  string
		setup func(t *testing.T) string
		force bool
		block bool
	}{
		{"new file", func(t *testing.T) string { return filepath.Join(t.TempDir(), "out.img") }, false, false},
		{"existing larger file with force", func(t *testing.T) string {
			p := filepath.Join(t.TempDir(), "out.img")
			if err := os.WriteFile(p, bytes.Repeat([]byte("x"), imgSize*2), 0o644); err != nil {
				t.Fatal(err)
			}
			return p
		}, true, false},
		{"loop device", func(t *testing.T) string {
			dev, _ := loopDevice(t, 8<<20, nil)
			return dev
		}, false, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			target := tt.setup(t)
			var phases []string
			res, err := Flash(context.Background(), img, target, Options{
				Force: tt.force,
				Progress: func(phase string, done, total int64) {
					if total != imgSize || done > total {
						t.Errorf("progress %s %d/%d", phase, done, total)
					}
					if done == total {
						phases = append(phases, phase)
					}
				},
			})
			if err != nil {
				t.Fatalf("Flash: %v", err)
			}
			if res.Bytes != imgSize || res.BlockDevice != tt.block || len(res.SHA256) != 64 {
				t.Errorf("result %+v", res)
			}
			if strings.Join(phases, ",") != PhaseWrite+","+PhaseVerify {
				t.Errorf("progress phases completed: %v", phases)
			}
			if !tt.block {
				if got := readFile(t, target); !bytes.Equal(got, data) {
					t.Fatalf("target has %d bytes, differs from the %d-byte image", len(got), len(data))
				}
				return
			}
			if res.DeviceSize != 8<<20 {
				t.Errorf("device size %d", res.DeviceSize)
			}
			if got := readDevice(t, target, imgSize); !bytes.Equal(got, data) {
				t.Fatal("device contents differ from the image")
			}
		})
	}
}

func TestFlashRefuses(t *testing.T) {
	img, _ := writeImage(t)
	magicAt := func(off int64) func(f *os.File) {
		return func(f *os.File) {
			if _, err := f.WriteAt([]byte("junk HOLDFAST\x00\x01 more junk"), off); err != nil {
				t.Fatal(err)
			}
		}
	}
	tests := []struct {
		name    string
		setup   func(t *testing.T) (target, watch string) // watch: file whose bytes must not change
		force   bool
		wantErr error
		wantMsg string
	}{
		{"the image itself", func(t *testing.T) (string, string) { return img, img }, true, ErrSameFile, "image itself"},
		{"image via symlink", func(t *testing.T) (string, string) {
			l := filepath.Join(t.TempDir(), "link")
			if err := os.Symlink(img, l); err != nil {
				t.Fatal(err)
			}
			return l, img
		}, true, ErrSameFile, "image itself"},
		{"existing file without force", func(t *testing.T) (string, string) {
			p := filepath.Join(t.TempDir(), "out.img")
			if err := os.WriteFile(p, []byte("precious"), 0o644); err != nil {
				t.Fatal(err)
			}
			return p, p
		}, false, ErrExists, "--force"},
		{"character device", func(t *testing.T) (string, string) { return "/dev/null", "" }, true, ErrNotTarget, "neither"},
		{"loop device smaller than image", func(t *testing.T) (string, string) {
			return loopDevice(t, 2<<20, nil)
		}, true, ErrTooSmall, "smaller"},
		{"HOLDFAST in first MiB of device", func(t *testing.T) (string, string) {
			return loopDevice(t, 8<<20, magicAt(700<<10))
		}, true, ErrHoldsStore, `contains "HOLDFAST"`},
		{"HOLDFAST at start of a partition", func(t *testing.T) (string, string) {
			// An MBR with one partition from 4 MiB (sector 8192), the magic at
			// its start, beyond the first MiB of the whole device; losetup -P
			// makes the kernel read the table.
			dev, backing := loopDevice(t, 16<<20, func(f *os.File) {
				mbr := make([]byte, 512)
				e := mbr[446:462]
				e[4] = 0x83
				binary.LittleEndian.PutUint32(e[8:], 8192)
				binary.LittleEndian.PutUint32(e[12:], 16384)
				mbr[510], mbr[511] = 0x55, 0xaa
				if _, err := f.WriteAt(mbr, 0); err != nil {
					t.Fatal(err)
				}
				magicAt(4 << 20)(f)
			})
			// The kernel's scan at attach is not always seen here; partx -a
			// adds the partitions it missed.
			if out, err := exec.Command("partx", "-a", dev).CombinedOutput(); err != nil {
				t.Logf("partx -a %s: %v: %s", dev, err, out)
			}
			if _, err := os.Stat(filepath.Join("/sys/class/block", filepath.Base(dev), filepath.Base(dev)+"p1")); err != nil {
				t.Fatalf("partition not visible: %v", err)
			}
			return dev, backing
		}, true, ErrHoldsStore, "p1"},
		{"mounted loop device", func(t *testing.T) (string, string) {
			dev, backing := loopDevice(t, 8<<20, nil)
			run(t, "mkfs.ext4", "-q", "-F", dev)
			mnt := t.TempDir()
			run(t, "mount", dev, mnt)
			t.Cleanup(func() {
				if out, err := exec.Command("umount", mnt).CombinedOutput(); err != nil {
					t.Errorf("umount %s: %v\n%s", mnt, err, out)
				}
			})
			return dev, backing
		}, true, ErrMounted, "is mounted on"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			target, watch := tt.setup(t)
			var before []byte
			if watch != "" {
				before = readFile(t, watch)
			}
			wrote := false
			_, err := Flash(context.Background(), img, target, Options{
				Force: tt.force,
				Progress: func(string, int64, int64) {
					wrote = true
				},
			})
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("Flash error = %v, want %v", err, tt.wantErr)
			}
			if !strings.Contains(err.Error(), tt.wantMsg) || !strings.Contains(err.Error(), target) {
				t.Errorf("error %q should name %s and say %q", err, target, tt.wantMsg)
			}
			if wrote {
				t.Error("progress was reported: something was written before the refusal")
			}
			if watch != "" && !bytes.Equal(readFile(t, watch), before) {
				t.Errorf("%s changed although the flash was refused", watch)
			}
		})
	}
}

// flipper corrupts the byte at offset at as it passes through.
type flipper struct {
	w   io.Writer
	at  int64
	off int64
}

func (f *flipper) Write(p []byte) (int, error) {
	if f.at >= f.off && f.at < f.off+int64(len(p)) {
		q := append([]byte(nil), p...)
		q[f.at-f.off] ^= 0x01
		p = q
	}
	n, err := f.w.Write(p)
	f.off += int64(n)
	return n, err
}

func TestFlashDetectsCorruption(t *testing.T) {
	img, data := writeImage(t)
	tests := []struct {
		name   string
		target func(t *testing.T) string
		at     int64
	}{
		{"file, byte in second chunk", func(t *testing.T) string { return filepath.Join(t.TempDir(), "out.img") }, bufSize + 17},
		{"loop device, last byte", func(t *testing.T) string {
			dev, _ := loopDevice(t, 8<<20, nil)
			return dev
		}, imgSize - 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			target := tt.target(t)
			_, err := Flash(context.Background(), img, target, Options{
				WrapWriter: func(w io.Writer) io.Writer { return &flipper{w: w, at: tt.at} },
			})
			if !errors.Is(err, ErrVerify) {
				t.Fatalf("Flash error = %v, want ErrVerify", err)
			}
			got := readDevice(t, target, imgSize)
			if got[tt.at] != data[tt.at]^0x01 {
				t.Errorf("the injected corruption is not on the target")
			}
		})
	}
}

func TestFlashCanceled(t *testing.T) {
	img, _ := writeImage(t)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_, err := Flash(ctx, img, filepath.Join(t.TempDir(), "out.img"), Options{})
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("Flash error = %v, want context.Canceled", err)
	}
}

func TestMountedDevs(t *testing.T) {
	p := filepath.Join(t.TempDir(), "mountinfo")
	const info = `22 1 8:1 / / rw,relatime shared:1 - ext4 /dev/sda1 rw
23 22 0:5 / /dev rw - devtmpfs udev rw
24 22 8:1 /srv /srv rw - ext4 /dev/sda1 rw
25 22 7:3 / /mnt/a\040b rw - ext4 /dev/loop3 rw
`
	if err := os.WriteFile(p, []byte(info), 0o644); err != nil {
		t.Fatal(err)
	}
	m, err := disks.MountedDevices(p)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct{ dev, want string }{{"8:1", "/"}, {"0:5", "/dev"}, {"7:3", "/mnt/a b"}, {"8:2", ""}}
	for _, tt := range tests {
		if got := m[tt.dev]; got != tt.want {
			t.Errorf("MountedDevices[%s] = %q, want %q", tt.dev, got, tt.want)
		}
	}
}
