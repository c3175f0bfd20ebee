package images

import (
	"bytes"
	"context"
	"io"
	"os"
	"path/filepath"
	"testing"

	diskfs "github.com/diskfs/go-diskfs"
	"github.com/diskfs/go-diskfs/partition/gpt"
)

func writeInputs(t *testing.T) UKIInputs {
	t.Helper()
	dir := t.TempDir()
	files := map[string][]byte{
		"linux": bytes.Repeat([]byte("kernel"), 5000), "initrd": bytes.Repeat([]byte{0, 1, 2}, 7000),
		"cmdline": []byte("console=ttyS0,115200"), "osrel": []byte("ID=holdfast\n"),
	}
	p := func(n string) string { return filepath.Join(dir, n) }
	for n, b := range files {
		if err := os.WriteFile(p(n), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return UKIInputs{
		Stub: "/usr/lib/systemd/boot/efi/linuxx64.efi.stub", Linux: p("linux"), Initrd: p("initrd"),
		Cmdline: p("cmdline"), OSRel: p("osrel"),
	}
}

// TestPCR11 checks our PCR 11 against systemd-measure, which encodes what
// systemd-stub measures, and against the sections of a UKI built by
// BuildUKI (so that objcopy did not pad what the stub will hash).
func TestPCR11(t *testing.T) {
	in := writeInputs(t)
	for _, f := range []string{in.Stub, "/usr/lib/systemd/systemd-measure"} {
		if _, err := os.Stat(f); err != nil {
			t.Fatalf("%v: run make setup", err)
		}
	}
	ours, err := PCR11FromInputs(in)
	if err != nil {
		t.Fatal(err)
	}
	theirs, err := SystemdMeasure(context.Background(), in)
	if err != nil {
		t.Fatal(err)
	}
	if ours != theirs {
		t.Fatalf("PCR11 = %s, systemd-measure says %s", ours, theirs)
	}
	uki := filepath.Join(t.TempDir(), "x.efi")
	if err := BuildUKI(context.Background(), in, uki); err != nil {
		t.Fatal(err)
	}
	fromUKI, err := PCR11FromUKI(uki)
	if err != nil {
		t.Fatal(err)
	}
	if fromUKI != ours {
		t.Fatalf("PCR11 from UKI sections %s, from inputs %s", fromUKI, ours)
	}
	// A different cmdline gives a different PCR.
	if err := os.WriteFile(in.Cmdline, []byte("console=ttyS0,115200 init=/bin/sh"), 0o644); err != nil {
		t.Fatal(err)
	}
	if changed, _ := PCR11FromInputs(in); changed == ours {
		t.Fatal("PCR11 did not change with the cmdline")
	}
}

func TestPCR11Known(t *testing.T) {
	tests := []struct {
		name     string
		sections map[string][]byte
		want     string
	}{
		{"nothing measured", map[string][]byte{}, "0000000000000000000000000000000000000000000000000000000000000000"},
	}
	for _, tt := range tests {
		if got := PCR11(tt.sections); got != tt.want {
			t.Errorf("%s: %s, want %s", tt.name, got, tt.want)
		}
	}
	a := PCR11(map[string][]byte{".linux": []byte("a"), ".initrd": []byte("b")})
	b := PCR11(map[string][]byte{".linux": []byte("b"), ".initrd": []byte("a")})
	if a == b {
		t.Error("PCR11 ignores which section holds what")
	}
}

// TestWriteImage writes an image and reads it back: the GPT rows of
// Layout, and the UKI in both slots of the ESP.
func TestWriteImage(t *testing.T) {
	dir := t.TempDir()
	uki := filepath.Join(dir, "uki.efi")
	content := bytes.Repeat([]byte("UKI!"), 100000)
	if err := os.WriteFile(uki, content, 0o644); err != nil {
		t.Fatal(err)
	}
	img := filepath.Join(dir, "holdfast.img")
	if err := WriteImage(img, uki, "BOOTX64.EFI"); err != nil {
		t.Fatal(err)
	}
	d, err := diskfs.Open(img, diskfs.WithOpenMode(diskfs.ReadOnly))
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	pt, err := d.GetPartitionTable()
	if err != nil {
		t.Fatal(err)
	}
	table, ok := pt.(*gpt.Table)
	if !ok {
		t.Fatalf("partition table is %T, want GPT", pt)
	}
	for i, want := range Layout {
		p := table.Partitions[i]
		if p.Name != want.Name || p.Type != want.Type || p.Start != want.StartMiB*mib/sector || p.Size != want.SizeMiB*mib {
			t.Errorf("partition %d = %+v, want %+v", i+1, p, want)
		}
	}
	fs, err := d.GetFilesystem(1)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{"/EFI/BOOT/BOOTX64.EFI", SlotBPath} {
		f, err := fs.OpenFile(p, os.O_RDONLY)
		if err != nil {
			t.Fatalf("%s: %v", p, err)
		}
		got, err := io.ReadAll(f)
		if err != nil || !bytes.Equal(got, content) {
			t.Errorf("%s: %d bytes, %v; want the UKI", p, len(got), err)
		}
	}
	// Same inputs, same bytes.
	img2 := filepath.Join(dir, "again.img")
	if err := WriteImage(img2, uki, "BOOTX64.EFI"); err != nil {
		t.Fatal(err)
	}
	a, _ := fileSHA256(img)
	b, _ := fileSHA256(img2)
	if a != b {
		t.Errorf("two builds differ: %s vs %s", a, b)
	}
}
