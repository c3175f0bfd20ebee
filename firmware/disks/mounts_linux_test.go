package disks

import (
	"os"
	"path/filepath"
	"reflect"
	"testing"
)

func TestMounts(t *testing.T) {
	const info = `22 1 0:21 / /proc rw,nosuid shared:5 - proc proc rw
25 22 0:23 / /proc/sys rw - proc proc rw
30 1 254:16 / /run/holdfast/disk\040one rw,nodev - ext4 /dev/vdb rw
31 1 254:16 /store /mnt/again rw - ext4 /dev/vdb rw
40 1 0:40 / /odd\134name\07 rw - tmpfs tmpfs rw
`
	p := filepath.Join(t.TempDir(), "mountinfo")
	if err := os.WriteFile(p, []byte(info), 0o600); err != nil {
		t.Fatal(err)
	}
	got, err := Mounts(p)
	if err != nil {
		t.Fatal(err)
	}
	want := []MountEntry{
		{Dev: "0:21", Target: "/proc", Options: "rw,nosuid", FSType: "proc", Source: "proc"},
		{Dev: "0:23", Target: "/proc/sys", Options: "rw", FSType: "proc", Source: "proc"},
		{Dev: "254:16", Target: "/run/holdfast/disk one", Options: "rw,nodev", FSType: "ext4", Source: "/dev/vdb"},
		{Dev: "254:16", Target: "/mnt/again", Options: "rw", FSType: "ext4", Source: "/dev/vdb"},
		{Dev: "0:40", Target: `/odd\name\07`, Options: "rw", FSType: "tmpfs", Source: "tmpfs"},
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("Mounts = %+v\nwant %+v", got, want)
	}
	devs, err := MountedDevices(p)
	if err != nil {
		t.Fatal(err)
	}
	// The first mount of a device wins.
	if devs["254:16"] != "/run/holdfast/disk one" || len(devs) != 4 {
		t.Fatalf("MountedDevices = %v", devs)
	}
	if _, err := Mounts(filepath.Join(t.TempDir(), "none")); err == nil {
		t.Fatal("Mounts of a missing file did not fail")
	}
}
