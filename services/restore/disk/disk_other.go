//go:build !linux

package disk

import (
	"context"
	"fmt"
)

// Disk is a data disk opened read-only by Open (Linux only).
type Disk struct {
	Path, Loop, MountPoint, StoreDir string
	Superblock                       Superblock
}

// Open fails: opening a data disk needs Linux (loop devices, ext4).
func Open(_ context.Context, path string, _ Options) (*Disk, error) {
	return nil, fmt.Errorf("disk %s: %w", path, ErrNoLinux)
}

// Close does nothing.
func (d *Disk) Close() error { return nil }
