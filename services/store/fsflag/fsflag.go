// Package fsflag reads and sets the inode flags that make Holdfast's store
// append-only in the kernel: FS_IMMUTABLE_FL on sealed files and FS_APPEND_FL
// on directories that only ever grow.
//
// Setting a flag needs CAP_LINUX_IMMUTABLE; clearing one does too, and after
// lockdown only the prune path in the maintenance window may clear flags. The
// package works on any filesystem that implements FS_IOC_GETFLAGS and
// FS_IOC_SETFLAGS (ext4, xfs, btrfs); elsewhere it returns ErrUnsupported.
// It is Linux-only.
package fsflag

import "errors"

// Inode flag bits from linux/fs.h. golang.org/x/sys/unix does not export them.
//
//	| flag            | value | meaning in Holdfast                                    |
//	|-----------------|-------|--------------------------------------------------------|
//	| FS_IMMUTABLE_FL | 0x10  | sealed pack, manifest or record: no write, unlink,     |
//	|                 |       | rename, truncate, link, xattr change, flag change      |
//	| FS_APPEND_FL    | 0x20  | file: writes only append; directory: entries may be    |
//	|                 |       | added, never removed or renamed away                   |
const (
	Immutable uint32 = 0x00000010
	Append    uint32 = 0x00000020
)

// ErrUnsupported is returned when the filesystem has no inode flags.
var ErrUnsupported = errors.New("filesystem does not support inode flags (FS_IOC_SETFLAGS)")
