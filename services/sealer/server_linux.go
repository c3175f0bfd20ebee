package sealer

import (
	"context"
	"errors"
	"fmt"
	"io"

	"github.com/hashicorp/go-hclog"
	"golang.org/x/sys/unix"

	"github.com/holdfast-appliance/holdfast/services/store/fsflag"
)

// Serve answers seal requests on conn for the store at root until conn
// closes or ctx ends. It returns nil on a clean end of stream.
func Serve(ctx context.Context, conn io.ReadWriter, root string, log hclog.Logger) error {
	if log == nil {
		log = hclog.NewNullLogger()
	}
	rootFD, err := unix.Open(root, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC|unix.O_NOFOLLOW, 0)
	if err != nil {
		return fmt.Errorf("sealer: open store root %s: %w", root, err)
	}
	defer unix.Close(rootFD)
	for ctx.Err() == nil {
		op, rel, err := readMsg(conn)
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("sealer: read request: %w", err)
		}
		if err := seal(rootFD, op, rel); err != nil {
			log.Warn("seal request refused", "op", string(op), "path", rel, "error", err)
			if err := writeMsg(conn, 1, err.Error()); err != nil {
				return fmt.Errorf("sealer: reply: %w", err)
			}
			continue
		}
		if err := writeMsg(conn, 0, ""); err != nil {
			return fmt.Errorf("sealer: reply: %w", err)
		}
	}
	return ctx.Err()
}

// seal checks rel, opens it beneath rootFD without following symlinks or
// leaving the filesystem, checks its type and sets the flag.
func seal(rootFD int, op byte, rel string) error {
	if err := checkPath(op, rel); err != nil {
		return err
	}
	fd, err := unix.Openat2(rootFD, rel, &unix.OpenHow{
		Flags:   unix.O_RDONLY | unix.O_NOFOLLOW | unix.O_CLOEXEC | unix.O_NONBLOCK | unix.O_NOCTTY,
		Resolve: unix.RESOLVE_BENEATH | unix.RESOLVE_NO_SYMLINKS | unix.RESOLVE_NO_MAGICLINKS | unix.RESOLVE_NO_XDEV,
	})
	if err != nil {
		return fmt.Errorf("open %q beneath the store: %w", rel, err)
	}
	defer unix.Close(fd)
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		return fmt.Errorf("stat %q: %w", rel, err)
	}
	kind := st.Mode & unix.S_IFMT
	var bit uint32
	switch {
	case op == OpSealFile && kind == unix.S_IFREG:
		bit = fsflag.Immutable
	case op == OpAppendDir && (kind == unix.S_IFDIR || rel == "state/clock.log" && kind == unix.S_IFREG):
		bit = fsflag.Append
	default:
		return fmt.Errorf("%q has the wrong type (mode %o) for op %q", rel, kind, op)
	}
	if kind == unix.S_IFREG && st.Nlink != 1 {
		// A second name would let a seal freeze another file (the lock).
		return fmt.Errorf("%q has %d names; only a file with one name is sealed", rel, st.Nlink)
	}
	if op == OpSealFile {
		if err := checkContent(fd, rel, st.Size); err != nil {
			return err
		}
	}
	flags, err := unix.IoctlGetUint32(fd, unix.FS_IOC_GETFLAGS)
	if err != nil {
		return fmt.Errorf("get flags of %q: %w", rel, err)
	}
	if flags&bit == bit {
		return nil
	}
	if err := unix.IoctlSetPointerInt(fd, unix.FS_IOC_SETFLAGS, int(flags|bit)); err != nil {
		return fmt.Errorf("set flags of %q: %w", rel, err)
	}
	return nil
}

// checkContent reads the fixed-size magic of the kind rel's name claims
// (and, for a manifest, the snapshot ID after it) and checks the size
// bound of that kind. It reads at most 33 bytes: the sealer holds no key,
// so this is all it can check, and all it needs to keep the worker from
// sealing a file that is not what its name says.
func checkContent(fd int, rel string, size int64) error {
	k := kindOf(rel)
	if size < int64(len(k.magic)+len(k.endMagic)) || k.max > 0 && size > k.max {
		return fmt.Errorf("%q holds %d bytes; a %s holds %d to %d", rel, size, k.name, len(k.magic)+len(k.endMagic), k.max)
	}
	head := make([]byte, len(k.magic)+len(k.idAfter))
	if _, err := unix.Pread(fd, head, 0); err != nil {
		return fmt.Errorf("read %q: %w", rel, err)
	}
	if magic := string(head[:len(k.magic)]); magic != k.magic && (k.oldMagic == "" || magic != k.oldMagic) || string(head[len(k.magic):]) != k.idAfter {
		return fmt.Errorf("%q does not start as a %s", rel, k.name)
	}
	if k.endMagic != "" {
		tail := make([]byte, len(k.endMagic))
		if _, err := unix.Pread(fd, tail, size-int64(len(tail))); err != nil {
			return fmt.Errorf("read %q: %w", rel, err)
		}
		if string(tail) != k.endMagic {
			return fmt.Errorf("%q does not end as a %s", rel, k.name)
		}
	}
	return nil
}
