package initramfs

import (
	"os"
	"path/filepath"
	"reflect"
	"testing"
)

func TestModName(t *testing.T) {
	tests := []struct{ in, want string }{
		{"virtio_blk", "virtio_blk"},
		{"kernel/drivers/char/hw_random/virtio-rng.ko", "virtio_rng"},
		{"kernel/drivers/block/virtio_blk.ko.xz", "virtio_blk"},
		{"kernel/fs/x.ko.zst", "x"},
		{"xhci-pci", "xhci_pci"},
	}
	for _, tt := range tests {
		if got := modName(tt.in); got != tt.want {
			t.Errorf("modName(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}

func TestReadDepsAndBuiltin(t *testing.T) {
	dir := t.TempDir()
	dep := "kernel/drivers/block/virtio_blk.ko: kernel/drivers/virtio/virtio.ko kernel/drivers/virtio/virtio_ring.ko\n" +
		"kernel/drivers/virtio/virtio.ko:\nnot a line\n"
	if err := os.WriteFile(filepath.Join(dir, "modules.dep"), []byte(dep), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "modules.builtin"), []byte("kernel/drivers/char/tpm/tpm_tis.ko\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	deps, err := readDeps(filepath.Join(dir, "modules.dep"))
	if err != nil {
		t.Fatal(err)
	}
	want := map[string][]string{
		"kernel/drivers/block/virtio_blk.ko": {"kernel/drivers/virtio/virtio.ko", "kernel/drivers/virtio/virtio_ring.ko"},
		"kernel/drivers/virtio/virtio.ko":    {},
	}
	if len(deps) != len(want) || !reflect.DeepEqual(deps["kernel/drivers/block/virtio_blk.ko"], want["kernel/drivers/block/virtio_blk.ko"]) {
		t.Errorf("deps = %v", deps)
	}
	b, err := readBuiltin(filepath.Join(dir, "modules.builtin"))
	if err != nil || !b["tpm_tis"] || b["virtio"] {
		t.Errorf("builtin = %v, %v", b, err)
	}
	if _, err := readDeps(filepath.Join(dir, "missing")); err == nil {
		t.Error("missing modules.dep accepted")
	}
}
