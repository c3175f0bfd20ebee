// Package disk opens a Holdfast data disk, or an image of one, strictly
// read-only on any Linux PC, so that `holdfast restore --disk` can read the
// store on it after the appliance is gone.
//
// The appliance's data disk is a whole disk (no partition table) formatted
// ext4 with the label "holdfast-data"; the store is the directory "store" in
// the root of that file system:
//
//	| what                 | value                                        |
//	|----------------------|----------------------------------------------|
//	| partition table      | none: the file system starts at byte 0       |
//	| file system          | ext4, label "holdfast-data" (Label)          |
//	| store directory      | /store (StoreDir), the layout of             |
//	|                      | services/store (docs/store-format.md)        |
//	| everything else      | not read by a restore                        |
//
// Open never writes a byte to the disk. It
//
//  1. refuses anything that is neither a regular file (an image) nor a block
//     device, and a disk that is mounted or in use: the device, one of its
//     partitions, or a loop device backed by the same image or device that
//     is listed in /proc/self/mountinfo or has holders (device mapper, RAID);
//     a block device is also opened with O_EXCL, which the kernel refuses
//     while anything, in any mount namespace, holds it;
//  2. reads the ext4 superblock (ErrNotExt4 when there is none; a label
//     other than Label is only logged);
//  3. attaches a loop device with LO_FLAGS_READ_ONLY over the image, and
//     over a block device as well (LOOP_CONFIGURE on the backing file
//     opened O_RDONLY), and checks that the kernel reports it read-only;
//  4. mounts it with MS_RDONLY and "noload" (no journal replay) on a new
//     0700 directory under the temporary directory;
//  5. checks that the file system holds store/holdfast-store.
//
// Why a read-only loop device even over a block device: a read-only ext4
// mount is not enough. ext4 replays its journal at mount unless told
// "noload", and it processes the orphan list (inodes unlinked or truncated
// while open at a crash) by lifting MS_RDONLY for the time it takes, unless
// the block device itself is read-only. A loop device with
// LO_FLAGS_READ_ONLY is, and leaves the real device's own read-only flag
// and every other setting alone.
//
// Close undoes everything in reverse order (unmount, remove the directory,
// detach the loop device); Open undoes what it did when a step fails. The
// loop device is attached with LO_FLAGS_AUTOCLEAR, so even if the process
// is killed it goes away once the file system is unmounted.
//
// Limits: Linux only, and it needs root (CAP_SYS_ADMIN, to attach a loop
// device and mount): ErrNeedRoot otherwise. The kernel must have loop
// devices (/dev/loop-control) and ext4. Because the journal is not
// replayed, a disk whose appliance lost power shows its file system as of
// the last journal checkpoint: snapshots committed in the seconds before
// may be missing (the store never shows a half-written one; see
// docs/store-format.md, crash safety). To replay the journal, copy the disk
// to an image and mount the copy yourself, then restore with --store. The
// mount is made in the caller's mount namespace and propagates like any
// mount under the temporary directory. A disk with a partition table is
// refused with a hint to pass the partition.
package disk

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"strings"

	"github.com/hashicorp/go-hclog"

	"github.com/holdfast-appliance/holdfast/firmware/disks"
)

// Label is the ext4 label of a Holdfast data disk; the appliance's
// firmware/disks formats and finds disks by it.
const Label = disks.Label

// StoreDir is the store's directory in the root of the data disk's file
// system.
const StoreDir = disks.StoreDir

// storeConfig is the file every store holds (services/store's config).
const storeConfig = "holdfast-store"

// Reasons Open refuses a disk; the returned errors wrap them.
var (
	ErrNotDisk  = errors.New("neither a disk image file nor a block device")
	ErrMounted  = errors.New("the disk is mounted or in use; unmount it (and detach loop devices over it) first")
	ErrNotExt4  = errors.New("no ext4 file system")
	ErrNoStore  = errors.New("no Holdfast store on the disk")
	ErrNeedRoot = errors.New("opening a disk needs root (CAP_SYS_ADMIN, to attach a read-only loop device and mount it)")
	ErrReadOnly = errors.New("the kernel did not make the loop device read-only")
	ErrNoLinux  = errors.New("opening a data disk is supported on Linux only")
)

// Options configure Open. The zero value is usable.
type Options struct {
	// Logger gets what Open and Close do; nil means none.
	Logger hclog.Logger
	// TempDir is where the mount point is made; "" means os.TempDir().
	TempDir string
}

// Superblock is what Open reads from an ext4 superblock.
type Superblock struct {
	Label string
	UUID  [16]byte
	// NeedsRecovery is set while the file system is mounted read-write
	// and stays set after an unclean shutdown: the journal holds changes
	// not yet written in place, which a noload mount does not apply.
	NeedsRecovery bool
	// Orphans: inodes unlinked or truncated while open at a crash
	// (s_last_orphan, or the orphan file's "present" flag).
	Orphans bool
	// Errors: the kernel recorded file system errors (s_state).
	Errors bool
}

// Offsets in the ext4 superblock, which starts at byte 1024 of the file
// system (fs/ext4/ext4.h, struct ext4_super_block).
const (
	sbOffset        = 1024
	sbSize          = 1024
	sbMagicOff      = 0x38 // le16 s_magic
	sbStateOff      = 0x3A // le16 s_state
	sbIncompatOff   = 0x60 // le32 s_feature_incompat
	sbROCompatOff   = 0x64 // le32 s_feature_ro_compat
	sbUUIDOff       = 0x68 // 16 bytes s_uuid
	sbLabelOff      = 0x78 // 16 bytes s_volume_name
	sbLastOrphanOff = 0xE8 // le32 s_last_orphan

	ext4Magic             = 0xEF53
	stateErrors           = 0x0002
	incompatRecover       = 0x0004
	roCompatOrphanPresent = 0x10000
)

// ParseSuperblock reads the ext4 superblock from head, the first 2048 (or
// more) bytes of a disk. Without one it returns an error wrapping
// ErrNotExt4 that says what the bytes look like instead, when it can tell.
func ParseSuperblock(head []byte) (Superblock, error) {
	var sb Superblock
	if len(head) < sbOffset+sbSize {
		return sb, fmt.Errorf("only %d bytes: %w", len(head), ErrNotExt4)
	}
	s := head[sbOffset : sbOffset+sbSize]
	if binary.LittleEndian.Uint16(s[sbMagicOff:]) != ext4Magic {
		switch {
		case len(head) >= 520 && string(head[512:520]) == "EFI PART":
			return sb, fmt.Errorf("it starts with a GPT partition table; a Holdfast data disk has none (if the store is on a partition, pass the partition, e.g. /dev/sdb1): %w", ErrNotExt4)
		case head[510] == 0x55 && head[511] == 0xAA:
			return sb, fmt.Errorf("it starts with an MBR (DOS partition table or boot sector); a Holdfast data disk has none (if the store is on a partition, pass the partition, e.g. /dev/sdb1): %w", ErrNotExt4)
		case bytes.Count(head, []byte{0}) == len(head):
			return sb, fmt.Errorf("its first %d bytes are zero (blank or wiped): %w", len(head), ErrNotExt4)
		}
		return sb, fmt.Errorf("no ext4 superblock magic at byte %d: %w", sbOffset+sbMagicOff, ErrNotExt4)
	}
	sb.Label = strings.TrimRight(string(s[sbLabelOff:sbLabelOff+16]), "\x00")
	copy(sb.UUID[:], s[sbUUIDOff:])
	sb.NeedsRecovery = binary.LittleEndian.Uint32(s[sbIncompatOff:])&incompatRecover != 0
	sb.Orphans = binary.LittleEndian.Uint32(s[sbLastOrphanOff:]) != 0 ||
		binary.LittleEndian.Uint32(s[sbROCompatOff:])&roCompatOrphanPresent != 0
	sb.Errors = binary.LittleEndian.Uint16(s[sbStateOff:])&stateErrors != 0
	return sb, nil
}

func (o Options) logger() hclog.Logger {
	if o.Logger == nil {
		return hclog.NewNullLogger()
	}
	return o.Logger
}
