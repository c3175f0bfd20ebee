package disks

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"io"
	"strings"
)

// State classifies a disk.
type State string

// Disk states (see the package table).
const (
	Blank    State = "blank"
	Holdfast State = "holdfast"
	Foreign  State = "foreign"
	Boot     State = "boot"
)

// Label is the ext4 volume label of a Holdfast data disk.
const Label = "holdfast-data"

// CopyLabel is the ext4 volume label of an offline copy: a removable disk
// the appliance wrote a complete copy of its store to (firmware/appliance
// copy-disk), for a shelf or another site. The appliance never mounts or
// formats it again (it classifies as Foreign); `holdfast restore --disk`
// reads it like a data disk.
const CopyLabel = "holdfast-copy"

// StoreDir is the store's directory inside a mounted data disk.
const StoreDir = "store"

// ConfigPartName is the GPT partition name of the boot medium's config
// partition; a disk holding it is the boot medium.
const ConfigPartName = "HOLDFAST-CONFIG"

// Disk is one block device.
type Disk struct {
	Name   string // kernel name, e.g. vdb
	Dev    string // device node, e.g. /dev/vdb
	Serial string // as the device reports it; empty if it reports none
	Model  string
	Size   int64 // bytes
	State  State
	// Detail says why a disk is foreign (what was found on it).
	Detail string
	// UUID is the ext4 file system UUID of a holdfast disk.
	UUID string
}

func (d Disk) String() string {
	s := fmt.Sprintf("%s serial %q %s %s", d.Name, d.Serial, humanSize(d.Size), d.State)
	if d.Detail != "" {
		s += " (" + d.Detail + ")"
	}
	return s
}

// SizeString is the disk's size for people ("8.0 GiB").
func (d Disk) SizeString() string { return humanSize(d.Size) }

func humanSize(n int64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := int64(unit), 0
	for m := n / unit; m >= unit; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(n)/float64(div), "KMGTPE"[exp])
}

// probeSize is how much Classify reads at each end of a disk.
const probeSize = 1 << 20

// ext4 superblock fields (the superblock starts at byte 1024):
//
//	| offset (in superblock) | size | field            |
//	|------------------------|------|------------------|
//	| 0x38                   | 2    | s_magic 0xEF53   |
//	| 0x68                   | 16   | s_uuid           |
//	| 0x78                   | 16   | s_volume_name    |
const (
	sbOffset  = 1024
	sbMagic   = 0x38
	sbUUID    = 0x68
	sbLabel   = 0x78
	ext4Magic = 0xEF53
)

// Classify reads the start and the end of a device of the given size and
// says what it holds.
func Classify(r io.ReaderAt, size int64) (state State, detail, uuid string, err error) {
	if size < 2*probeSize {
		return Foreign, "smaller than 2 MiB", "", nil
	}
	head := make([]byte, probeSize)
	if _, err := r.ReadAt(head, 0); err != nil {
		return "", "", "", fmt.Errorf("read start: %w", err)
	}
	if binary.LittleEndian.Uint16(head[sbOffset+sbMagic:]) == ext4Magic {
		label := string(bytes.TrimRight(head[sbOffset+sbLabel:sbOffset+sbLabel+16], "\x00"))
		u := head[sbOffset+sbUUID : sbOffset+sbUUID+16]
		id := fmt.Sprintf("%x-%x-%x-%x-%x", u[0:4], u[4:6], u[6:8], u[8:10], u[10:16])
		if label == Label {
			return Holdfast, "", id, nil
		}
		if label == CopyLabel {
			return Foreign, fmt.Sprintf("a Holdfast offline copy: ext4 file system labelled %q", label), id, nil
		}
		return Foreign, fmt.Sprintf("ext2/3/4 file system labelled %q", label), id, nil
	}
	if !allZero(head) {
		return Foreign, describe(head), "", nil
	}
	tail := make([]byte, probeSize)
	if _, err := r.ReadAt(tail, size-probeSize); err != nil {
		return "", "", "", fmt.Errorf("read end: %w", err)
	}
	if !allZero(tail) {
		return Foreign, "data in the last MiB (a backup GPT or RAID metadata?)", "", nil
	}
	return Blank, "", "", nil
}

func allZero(b []byte) bool {
	for len(b) >= 8 {
		if binary.LittleEndian.Uint64(b) != 0 {
			return false
		}
		b = b[8:]
	}
	for _, c := range b {
		if c != 0 {
			return false
		}
	}
	return true
}

// describe names what the first MiB of a non-blank disk looks like.
func describe(head []byte) string {
	switch {
	case len(head) >= 520 && string(head[512:520]) == "EFI PART":
		return "GPT partition table"
	case head[510] == 0x55 && head[511] == 0xAA:
		return "MBR partition table or boot sector"
	case len(head) >= 0x10040 && string(head[0x10040:0x10048]) == "_BHRfS_M":
		return "btrfs file system"
	case string(head[0:4]) == "XFSB":
		return "xfs file system"
	case bytes.Contains(head[:4096], []byte("LUKS")):
		return "LUKS header"
	}
	return "non-zero data"
}

// SerialMatches reports whether what an operator typed names the disk's
// serial number (spaces around it and letter case ignored; an empty
// serial never matches).
func SerialMatches(d Disk, typed string) bool {
	t := strings.TrimSpace(typed)
	return d.Serial != "" && t != "" && strings.EqualFold(t, strings.TrimSpace(d.Serial))
}
