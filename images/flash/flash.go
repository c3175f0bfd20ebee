// Package flash writes a Holdfast disk image (made by `make image`, see
// package images for its layout) to a USB stick, any other block device or a
// regular file, then syncs, drops the target's page cache for the written
// range where the kernel allows it and reads the whole range back, comparing
// its SHA-256 with the image's.
//
// Before writing a byte it refuses:
//   - the image itself as target (same inode), and any target that is not a
//     regular file or a block device;
//   - an existing regular file, unless Options.Force is set;
//   - a block device that is mounted or has a mounted partition (major:minor
//     in /proc/self/mountinfo, partitions from /sys/class/block), or that
//     other block devices are stacked on (device mapper, md: non-empty
//     holders/); the device is also opened with O_EXCL, which the kernel
//     refuses while anything (a mount, btrfs, LVM) holds it;
//   - a block device that may hold a Holdfast data disk or store: the magic
//     "HOLDFAST" (a store's config file starts with it) anywhere in the
//     first MiB of the device or of one of its partitions;
//   - a block device smaller than the image.
//
// Limits: the "HOLDFAST" scan is a heuristic. It cannot see a store whose
// files lie beyond the first MiB of a file system without mounting it, and a
// device that happens to contain those eight bytes early is refused (the
// operator must wipe it first). The GPT partition names of a flashed
// Holdfast USB image are UTF-16, so reflashing a Holdfast stick is allowed.
// A btrfs mount shows an anonymous device number in mountinfo; such a device
// is caught by O_EXCL only. Block devices are supported on Linux only.
package flash

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"

	"github.com/hashicorp/go-hclog"
)

// Reasons a flash is refused or fails; the returned errors wrap them.
var (
	ErrSameFile    = errors.New("target is the image itself")
	ErrExists      = errors.New("target file exists (use --force to overwrite it)")
	ErrNotTarget   = errors.New("target is neither a block device nor a regular file")
	ErrMounted     = errors.New("target is mounted or in use")
	ErrHoldsStore  = errors.New("target may hold a Holdfast data disk or store")
	ErrTooSmall    = errors.New("target is smaller than the image")
	ErrVerify      = errors.New("read-back does not match the image")
	ErrUnsupported = errors.New("flashing a block device is not supported on this system")
)

// storeMagic starts a Holdfast store's config file (services/store).
const storeMagic = "HOLDFAST"

// scanSize is how much of the device and of each partition is searched for
// storeMagic.
const scanSize = 1 << 20

const bufSize = 4 << 20

// Phase names passed to Options.Progress.
const (
	PhaseWrite  = "write"
	PhaseVerify = "verify"
)

// Options tune Flash. The zero value is usable.
type Options struct {
	// Force allows overwriting an existing regular file (never needed,
	// and never sufficient to bypass a refusal, for a block device).
	Force bool
	// Log receives progress and decision messages; nil logs nothing.
	Log hclog.Logger
	// Progress, if set, is called after each chunk with the phase
	// (PhaseWrite or PhaseVerify), bytes done and the total.
	Progress func(phase string, done, total int64)
	// WrapWriter is a test hook: it wraps the writer to the target, so a
	// test can corrupt what is written and see the verify step catch it.
	WrapWriter func(io.Writer) io.Writer
}

// Result describes a completed, verified flash.
type Result struct {
	Bytes       int64  // bytes written and verified (the image size)
	SHA256      string // hex SHA-256 of the image and of the read-back
	BlockDevice bool   // the target was a block device
	DeviceSize  int64  // the block device's size (0 for a file)
}

// Flash writes the image at img to target and verifies it. See the package
// comment for what it refuses.
func Flash(ctx context.Context, img, target string, opts Options) (*Result, error) {
	log := opts.Log
	if log == nil {
		log = hclog.NewNullLogger()
	}
	src, err := os.Open(img)
	if err != nil {
		return nil, fmt.Errorf("open image: %w", err)
	}
	defer src.Close()
	ist, err := src.Stat()
	if err != nil {
		return nil, fmt.Errorf("stat image %s: %w", img, err)
	}
	if !ist.Mode().IsRegular() {
		return nil, fmt.Errorf("image %s: not a regular file", img)
	}
	size := ist.Size()
	if size == 0 {
		return nil, fmt.Errorf("image %s: empty", img)
	}

	res := &Result{Bytes: size}
	var dst *os.File
	tst, err := os.Stat(target)
	switch {
	case errors.Is(err, os.ErrNotExist):
		dst, err = os.OpenFile(target, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
		if err != nil {
			return nil, fmt.Errorf("create target: %w", err)
		}
	case err != nil:
		return nil, fmt.Errorf("stat target: %w", err)
	case os.SameFile(ist, tst):
		return nil, fmt.Errorf("%s: %w", target, ErrSameFile)
	case tst.Mode().IsRegular():
		if !opts.Force {
			return nil, fmt.Errorf("%s: %w", target, ErrExists)
		}
		dst, err = os.OpenFile(target, os.O_WRONLY|os.O_TRUNC, 0)
		if err != nil {
			return nil, fmt.Errorf("open target: %w", err)
		}
	case tst.Mode()&os.ModeDevice != 0 && tst.Mode()&os.ModeCharDevice == 0:
		res.BlockDevice = true
		res.DeviceSize, err = checkBlockDevice(target, tst, size, log)
		if err != nil {
			return nil, err
		}
		dst, err = openBlockDevice(target)
		if err != nil {
			return nil, err
		}
	default:
		return nil, fmt.Errorf("%s (%s): %w", target, tst.Mode().Type(), ErrNotTarget)
	}
	defer dst.Close()

	log.Info("writing image", "image", img, "target", target, "bytes", size)
	var w io.Writer = dst
	if opts.WrapWriter != nil {
		w = opts.WrapWriter(w)
	}
	want := sha256.New()
	if err := copyRange(ctx, w, io.TeeReader(src, want), size, PhaseWrite, opts.Progress); err != nil {
		return nil, fmt.Errorf("write %s: %w", target, err)
	}
	if err := dst.Sync(); err != nil {
		return nil, fmt.Errorf("sync %s: %w", target, err)
	}
	dropCache(dst, size, log)
	if err := dst.Close(); err != nil {
		return nil, fmt.Errorf("close %s: %w", target, err)
	}

	log.Info("reading back", "target", target)
	got, err := readBack(ctx, target, size, opts.Progress, log)
	if err != nil {
		return nil, err
	}
	res.SHA256 = hex.EncodeToString(want.Sum(nil))
	if gotHex := hex.EncodeToString(got); gotHex != res.SHA256 {
		return nil, fmt.Errorf("%s: %w: image sha256 %s, read back %s", target, ErrVerify, res.SHA256, gotHex)
	}
	log.Info("verified", "target", target, "sha256", res.SHA256)
	return res, nil
}

// readBack reads size bytes of target and returns their SHA-256.
func readBack(ctx context.Context, target string, size int64, progress func(string, int64, int64), log hclog.Logger) ([]byte, error) {
	f, err := os.Open(target)
	if err != nil {
		return nil, fmt.Errorf("reopen %s for read-back: %w", target, err)
	}
	defer f.Close()
	dropCache(f, size, log)
	h := sha256.New()
	if err := copyRange(ctx, h, f, size, PhaseVerify, progress); err != nil {
		return nil, fmt.Errorf("read back %s: %w", target, err)
	}
	return h.Sum(nil), nil
}

// copyRange copies exactly n bytes from r to w in chunks, checking ctx
// between chunks.
func copyRange(ctx context.Context, w io.Writer, r io.Reader, n int64, phase string, progress func(string, int64, int64)) error {
	buf := make([]byte, bufSize)
	var done int64
	for done < n {
		if err := ctx.Err(); err != nil {
			return err
		}
		chunk := buf[:min(int64(len(buf)), n-done)]
		if _, err := io.ReadFull(r, chunk); err != nil {
			if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
				return fmt.Errorf("short read at offset %d of %d: %w", done, n, io.ErrUnexpectedEOF)
			}
			return fmt.Errorf("read at offset %d: %w", done, err)
		}
		if _, err := w.Write(chunk); err != nil {
			return fmt.Errorf("write at offset %d: %w", done, err)
		}
		done += int64(len(chunk))
		if progress != nil {
			progress(phase, done, n)
		}
	}
	return nil
}

// containsMagic reports whether the first scanSize bytes of r from off
// (at most limit bytes; limit <= 0: no limit) contain storeMagic.
func containsMagic(r io.ReaderAt, off, limit int64) (bool, error) {
	n := int64(scanSize)
	if limit > 0 && limit < n {
		n = limit
	}
	buf := make([]byte, n)
	m, err := r.ReadAt(buf, off)
	if err != nil && !errors.Is(err, io.EOF) {
		return false, err
	}
	return bytes.Contains(buf[:m], []byte(storeMagic)), nil
}
