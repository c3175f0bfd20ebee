// Package images builds Holdfast's bootable disk image for a board: a GPT
// disk with an EFI system partition holding two unified kernel images (UKI,
// slots A and B) and a config partition, written without root, loop
// devices or mkfs (github.com/diskfs/go-diskfs writes the GPT and the FAT32
// file systems into a plain file). It also predicts the PCR 11 value the
// UKI's systemd-stub will produce, which the TPM policy will be built on.
//
// Layout (sectors of 512 bytes; see Layout below and docs/boot.md):
//
//	LBA / offset            size     what
//	0                       1 sector protective MBR
//	1                       1 sector primary GPT header
//	2 .. 33                 16 KiB   GPT partition entries
//	2048      (1 MiB)       128 MiB  p1 "HOLDFAST-ESP", EFI system partition, FAT32 "HF-ESP":
//	                                   /EFI/BOOT/BOOTX64.EFI  (or BOOTAA64.EFI) UKI, slot A
//	                                   /EFI/holdfast/B.EFI    UKI, slot B (same build for now)
//	264192    (129 MiB)     64 MiB   p2 "HOLDFAST-CONFIG", Holdfast config type GUID, FAT32 "HF-CONFIG":
//	                                   empty until a sealed config is stored (later work)
//	end - 33 sectors        16.5 KiB backup GPT entries and header
//
// The disk and partition GUIDs are fixed, and the FAT file systems are made
// reproducibly (fixed time), so the same inputs give the same image bytes.
//
// Limits: slot B is a copy of slot A (A/B update logic is later work);
// the config partition is created empty; building an arm64 image needs the
// arm64 kernel package to be downloadable (dpkg --add-architecture arm64).
package images

import (
	"fmt"
	"io"
	"os"
	"path"

	diskfs "github.com/diskfs/go-diskfs"
	"github.com/diskfs/go-diskfs/disk"
	"github.com/diskfs/go-diskfs/filesystem"
	"github.com/diskfs/go-diskfs/partition/gpt"
)

const (
	sector = 512
	mib    = 1 << 20
)

// Partition type GUIDs.
const (
	typeESP = gpt.EFISystemPartition // C12A7328-F81F-11D2-BA4B-00A0C93EC93B
	// typeConfig marks Holdfast's config partition (a GUID of our own, so
	// that nothing else mounts or claims it).
	typeConfig gpt.Type = "6E1A3C0F-4B1D-4C57-9B5E-486F6C646661"
)

// Layout is the image's partition table, one row per partition.
var Layout = []struct {
	Name      string   // GPT partition name
	Type      gpt.Type // GPT partition type
	GUID      string   // fixed partition GUID
	StartMiB  uint64   // offset
	SizeMiB   uint64   // size
	Label     string   // FAT volume label
	Files     string   // what it holds
	Partition int      // 1-based index
}{
	{"HOLDFAST-ESP", typeESP, "1B0C3E51-0D6B-4F3A-8B8E-3A7A1F0E5A01", 1, 128, "HF-ESP", "UKIs: EFI/BOOT/<boot file> (slot A), EFI/holdfast/B.EFI (slot B)", 1},
	{"HOLDFAST-CONFIG", typeConfig, "1B0C3E51-0D6B-4F3A-8B8E-3A7A1F0E5A02", 129, 64, "HF-CONFIG", "sealed config (later work); empty", 2},
}

// diskGUID is the image's fixed GPT disk GUID.
const diskGUID = "1B0C3E51-0D6B-4F3A-8B8E-3A7A1F0E5A00"

// imageSize is the whole image: the partitions plus 1 MiB at each end for
// the GPT copies.
func imageSize() int64 {
	last := Layout[len(Layout)-1]
	return int64((last.StartMiB + last.SizeMiB + 1) * mib)
}

// SlotBPath is slot B's UKI on the ESP.
const SlotBPath = "/EFI/holdfast/B.EFI"

// WriteImage writes the GPT image to out with uki in both slots.
func WriteImage(out, uki, bootFile string) error {
	if err := os.Remove(out); err != nil && !os.IsNotExist(err) {
		return fmt.Errorf("image: %w", err)
	}
	// go-diskfs makes FAT timestamps reproducible from SOURCE_DATE_EPOCH.
	if os.Getenv("SOURCE_DATE_EPOCH") == "" {
		if err := os.Setenv("SOURCE_DATE_EPOCH", "1735689600"); err != nil { // 2025-01-01
			return fmt.Errorf("image: %w", err)
		}
	}
	d, err := diskfs.Create(out, imageSize(), diskfs.SectorSizeDefault)
	if err != nil {
		return fmt.Errorf("image create %s: %w", out, err)
	}
	defer d.Close()
	table := &gpt.Table{
		LogicalSectorSize:  sector,
		PhysicalSectorSize: sector,
		ProtectiveMBR:      true,
		GUID:               diskGUID,
	}
	for _, p := range Layout {
		table.Partitions = append(table.Partitions, &gpt.Partition{
			Index: p.Partition,
			Start: p.StartMiB * mib / sector,
			End:   (p.StartMiB+p.SizeMiB)*mib/sector - 1,
			Size:  p.SizeMiB * mib,
			Type:  p.Type,
			Name:  p.Name,
			GUID:  p.GUID,
		})
	}
	if err := d.Partition(table); err != nil {
		return fmt.Errorf("image partition table: %w", err)
	}
	fss := map[int]filesystem.FileSystem{}
	for _, p := range Layout {
		fs, err := d.CreateFilesystem(disk.FilesystemSpec{
			Partition: p.Partition, FSType: filesystem.TypeFat32, VolumeLabel: p.Label, Reproducible: true,
		})
		if err != nil {
			return fmt.Errorf("image: FAT32 on partition %d (%s): %w", p.Partition, p.Name, err)
		}
		fss[p.Partition] = fs
	}
	esp := fss[1]
	for _, dst := range []string{"/EFI/BOOT/" + bootFile, SlotBPath} {
		if err := copyInto(esp, uki, dst); err != nil {
			return err
		}
	}
	return nil
}

func copyInto(fs filesystem.FileSystem, src, dst string) error {
	if err := fs.Mkdir(path.Dir(dst)); err != nil {
		return fmt.Errorf("image mkdir %s: %w", path.Dir(dst), err)
	}
	in, err := os.Open(src)
	if err != nil {
		return fmt.Errorf("image: %w", err)
	}
	defer in.Close()
	f, err := fs.OpenFile(dst, os.O_CREATE|os.O_RDWR)
	if err != nil {
		return fmt.Errorf("image open %s: %w", dst, err)
	}
	if _, err := io.Copy(f, in); err != nil {
		f.Close()
		return fmt.Errorf("image write %s: %w", dst, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("image close %s: %w", dst, err)
	}
	return nil
}
