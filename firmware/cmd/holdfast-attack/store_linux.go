package main

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/holdfast-appliance/holdfast/services/store/fsflag"
)

// Constants golang.org/x/sys/unix does not export.
const (
	// FS_IOC_FSGETXATTR = _IOR('X', 31, struct fsxattr) and
	// FS_IOC_FSSETXATTR = _IOW('X', 32, struct fsxattr), struct fsxattr
	// being 28 bytes (include/uapi/linux/fs.h).
	fsIocFsgetxattr = 0x801c581f
	fsIocFssetxattr = 0x401c5820
	// FS_XFLAG_IMMUTABLE (include/uapi/linux/fs.h).
	fsXflagImmutable = 0x00000008
	// The store's retention xattr and a value long past (RFC 3339, as
	// services/store/retention.go writes it).
	xattrRetainUntil = "user.holdfast.retain_until"
	pastRetainUntil  = "2000-01-01T00:00:00Z"
)

// fsxattr is struct fsxattr of include/uapi/linux/fs.h.
type fsxattr struct {
	Xflags, Extsize, Nextents, Projid, Cowextsize uint32
	Pad                                           [8]byte
}

// picker chooses a target path (relative to the store).
type picker func(targets) string

func pickPack(t targets) string     { return t.pack }
func pickPack2(t targets) string    { return t.pack2 }
func pickManifest(t targets) string { return t.manifest }
func pickReceipt(t targets) string  { return t.receipt }
func pickSnapDir(targets) string    { return "snapshots" }

// op is one destructive attempt: a note when it returned success, else the
// error.
type op func(e *env) (string, error)

// storeOp runs op with the before/after check of the store.
func storeOp(o op) func(*env) result {
	return func(e *env) result { return e.storeAttempt(func() (string, error) { return o(e) }) }
}

const attackOpen = unix.O_CLOEXEC | unix.O_NOFOLLOW

func opUnlink(pick picker) op {
	return func(e *env) (string, error) {
		rel := pick(e.t)
		return "unlinked " + short(rel), pathErr("unlink", rel, unix.Unlink(e.abs(rel)))
	}
}

// opRename renames the target to dest(e, rel) and, when that works, back.
func opRename(pick picker, dest func(e *env, rel string) string) op {
	return func(e *env) (string, error) {
		rel := pick(e.t)
		from, to := e.abs(rel), dest(e, rel)
		if err := unix.Renameat2(unix.AT_FDCWD, from, unix.AT_FDCWD, to, unix.RENAME_NOREPLACE); err != nil {
			return "", pathErr("rename", rel, err)
		}
		back := unix.Renameat2(unix.AT_FDCWD, to, unix.AT_FDCWD, from, unix.RENAME_NOREPLACE)
		return fmt.Sprintf("renamed %s to %q (renamed back: %s)", short(rel), to, errOr(back, "ok")), nil
	}
}

func toGone(e *env, rel string) string { return e.abs(rel) + ".hf-attack-gone" }

func intoTmp(e *env, rel string) string { return filepath.Join(e.cfg.store, "tmp", filepath.Base(rel)) }

func opRenameStore(e *env) (string, error) {
	to := e.cfg.store + ".hf-attack-gone"
	if err := unix.Renameat2(unix.AT_FDCWD, e.cfg.store, unix.AT_FDCWD, to, unix.RENAME_NOREPLACE); err != nil {
		return "", fmt.Errorf("rename %s: %w", e.cfg.store, err)
	}
	back := unix.Renameat2(unix.AT_FDCWD, to, unix.AT_FDCWD, e.cfg.store, unix.RENAME_NOREPLACE)
	return fmt.Sprintf("renamed the store to %q (renamed back: %s)", to, errOr(back, "ok")), nil
}

func opTruncate(pick picker) op {
	return func(e *env) (string, error) {
		rel := pick(e.t)
		return "truncated " + short(rel) + " to 0", pathErr("truncate", rel, unix.Truncate(e.abs(rel), 0))
	}
}

func opOpenTrunc(pick picker) op {
	return func(e *env) (string, error) {
		rel := pick(e.t)
		fd, err := unix.Open(e.abs(rel), unix.O_WRONLY|unix.O_TRUNC|attackOpen, 0)
		if err != nil {
			return "", pathErr("open O_TRUNC", rel, err)
		}
		unix.Close(fd)
		return "opened " + short(rel) + " with O_TRUNC", nil
	}
}

// writeOpen opens the target for writing; once that works the attack has
// succeeded, and then does its damage.
func writeOpen(flags int, what string, damage func(fd int) error) func(picker) op {
	return func(pick picker) op {
		return func(e *env) (string, error) {
			rel := pick(e.t)
			fd, err := unix.Open(e.abs(rel), flags|attackOpen, 0)
			if err != nil {
				return "", pathErr("open for write", rel, err)
			}
			defer unix.Close(fd)
			return fmt.Sprintf("opened %s for write; %s: %s", short(rel), what, errOr(damage(fd), "ok")), nil
		}
	}
}

var (
	opOverwrite = writeOpen(unix.O_WRONLY, "pwrite 4 KiB of zeros at 0", func(fd int) error {
		_, err := unix.Pwrite(fd, make([]byte, 4096), 0)
		return err
	})
	opAppend = writeOpen(unix.O_WRONLY|unix.O_APPEND, "append", func(fd int) error {
		_, err := unix.Write(fd, []byte("holdfast-attack"))
		return err
	})
	opPunchHole = writeOpen(unix.O_WRONLY, "fallocate(PUNCH_HOLE) 0..4096", func(fd int) error {
		return unix.Fallocate(fd, unix.FALLOC_FL_PUNCH_HOLE|unix.FALLOC_FL_KEEP_SIZE, 0, 4096)
	})
	opMmapWrite = writeOpen(unix.O_RDWR, "mmap(MAP_SHARED, PROT_WRITE) and flip a byte", func(fd int) error {
		var st unix.Stat_t
		if err := unix.Fstat(fd, &st); err != nil {
			return err
		}
		if st.Size == 0 {
			return errors.New("empty file, nothing mapped")
		}
		n := int(min(st.Size, 4096))
		b, err := unix.Mmap(fd, 0, n, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED)
		if err != nil {
			return fmt.Errorf("mmap: %w", err)
		}
		defer unix.Munmap(b)
		b[0] ^= 0xff
		return unix.Msync(b, unix.MS_SYNC)
	})
)

func opRemoveAll(e *env) (string, error) {
	if err := os.RemoveAll(e.cfg.store); err != nil {
		return "", fmt.Errorf("RemoveAll store: %w", err)
	}
	return "RemoveAll of the store returned success", nil
}

func opLinkIntoTmp(pick picker) op {
	return func(e *env) (string, error) {
		rel := pick(e.t)
		link := filepath.Join(e.cfg.store, "tmp", "hf-attack-link")
		_ = unix.Unlink(link)
		if err := unix.Linkat(unix.AT_FDCWD, e.abs(rel), unix.AT_FDCWD, link, 0); err != nil {
			return "", pathErr("link into tmp/", rel, err)
		}
		defer unix.Unlink(link)
		fd, err := unix.Open(link, unix.O_WRONLY|attackOpen, 0)
		werr := err
		if err == nil {
			_, werr = unix.Pwrite(fd, make([]byte, 4096), 0)
			unix.Close(fd)
		}
		return fmt.Sprintf("linked %s as tmp/hf-attack-link; write through the link: %s", short(rel), errOr(werr, "ok")), nil
	}
}

func opExchange(e *env) (string, error) {
	a, b := e.t.pack, e.t.pack2
	if err := unix.Renameat2(unix.AT_FDCWD, e.abs(a), unix.AT_FDCWD, e.abs(b), unix.RENAME_EXCHANGE); err != nil {
		return "", fmt.Errorf("renameat2(RENAME_EXCHANGE) %s <-> %s: %w", short(a), short(b), err)
	}
	back := unix.Renameat2(unix.AT_FDCWD, e.abs(a), unix.AT_FDCWD, e.abs(b), unix.RENAME_EXCHANGE)
	return fmt.Sprintf("exchanged %s and %s (swapped back: %s)", short(a), short(b), errOr(back, "ok")), nil
}

func opRenameOver(pick picker) op {
	return func(e *env) (string, error) {
		rel := pick(e.t)
		fresh := filepath.Join(e.cfg.store, "tmp", "hf-attack-fresh")
		cerr := os.WriteFile(fresh, []byte("holdfast-attack: forged manifest\n"), 0o600)
		err := unix.Renameat2(unix.AT_FDCWD, fresh, unix.AT_FDCWD, e.abs(rel), 0)
		_ = os.Remove(fresh)
		if err != nil {
			if cerr != nil {
				return "", fmt.Errorf("create tmp/hf-attack-fresh: %v; rename it over %s: %w", unwrapPath(cerr), short(rel), err)
			}
			return "", pathErr("rename tmp/hf-attack-fresh over", rel, err)
		}
		return "renamed a forged file over " + short(rel), nil
	}
}

// unwrapPath drops the path from an *os.PathError (it is long and known).
func unwrapPath(err error) error {
	var pe *os.PathError
	if errors.As(err, &pe) {
		return pe.Err
	}
	return err
}

// opClearFlag clears an inode flag with FS_IOC_SETFLAGS (and sets it again
// when that worked, to keep later techniques meaningful).
func opClearFlag(pick picker, bit uint32) op {
	return func(e *env) (string, error) {
		rel := pick(e.t)
		fd, err := unix.Open(e.abs(rel), unix.O_RDONLY|unix.O_NONBLOCK|attackOpen, 0)
		if err != nil {
			return "", pathErr("open", rel, err)
		}
		defer unix.Close(fd)
		flags, gerr := unix.IoctlGetUint32(fd, unix.FS_IOC_GETFLAGS)
		if gerr != nil {
			flags = bit
		}
		if err := unix.IoctlSetPointerInt(fd, unix.FS_IOC_SETFLAGS, int(flags&^bit)); err != nil {
			return "", fmt.Errorf("FS_IOC_SETFLAGS %s without %#x: %w", short(rel), bit, err)
		}
		back := unix.IoctlSetPointerInt(fd, unix.FS_IOC_SETFLAGS, int(flags|bit))
		return fmt.Sprintf("cleared flag %#x on %s (set again: %s)", bit, short(rel), errOr(back, "ok")), nil
	}
}

func ioctlPtr(fd int, req uintptr, p unsafe.Pointer) error {
	if _, _, errno := unix.Syscall(unix.SYS_IOCTL, uintptr(fd), req, uintptr(p)); errno != 0 {
		return errno
	}
	return nil
}

func opFsxattrClear(pick picker) op {
	return func(e *env) (string, error) {
		rel := pick(e.t)
		fd, err := unix.Open(e.abs(rel), unix.O_RDONLY|unix.O_NONBLOCK|attackOpen, 0)
		if err != nil {
			return "", pathErr("open", rel, err)
		}
		defer unix.Close(fd)
		var fa fsxattr
		gerr := ioctlPtr(fd, fsIocFsgetxattr, unsafe.Pointer(&fa))
		old := fa
		fa.Xflags &^= fsXflagImmutable
		if err := ioctlPtr(fd, fsIocFssetxattr, unsafe.Pointer(&fa)); err != nil {
			return "", fmt.Errorf("FS_IOC_FSSETXATTR %s without FS_XFLAG_IMMUTABLE (get: %s): %w", short(rel), errOr(gerr, "ok"), err)
		}
		back := ioctlPtr(fd, fsIocFssetxattr, unsafe.Pointer(&old))
		return fmt.Sprintf("cleared FS_XFLAG_IMMUTABLE on %s (set again: %s)", short(rel), errOr(back, "ok")), nil
	}
}

func opSetxattr(pick picker) op {
	return func(e *env) (string, error) {
		rel := pick(e.t)
		err := unix.Lsetxattr(e.abs(rel), xattrRetainUntil, []byte(pastRetainUntil), 0)
		return fmt.Sprintf("set %s=%s on %s", xattrRetainUntil, pastRetainUntil, short(rel)), pathErr("setxattr "+xattrRetainUntil, rel, err)
	}
}

func opRemovexattr(pick picker) op {
	return func(e *env) (string, error) {
		rel := pick(e.t)
		err := unix.Lremovexattr(e.abs(rel), xattrRetainUntil)
		return "removed " + xattrRetainUntil + " from " + short(rel), pathErr("removexattr "+xattrRetainUntil, rel, err)
	}
}

// opChmodChown tries chmod 0666 and chown 0:0, and undoes what worked.
func opChmodChown(pick picker) op {
	return func(e *env) (string, error) {
		rel := pick(e.t)
		p := e.abs(rel)
		cerr := unix.Fchmodat(unix.AT_FDCWD, p, 0o666, 0)
		oerr := unix.Fchownat(unix.AT_FDCWD, p, 0, 0, unix.AT_SYMLINK_NOFOLLOW)
		if cerr != nil && oerr != nil {
			return "", fmt.Errorf("chmod 0666 %s: %v; chown 0:0: %w", short(rel), cerr, oerr)
		}
		if cerr == nil {
			_ = unix.Fchmodat(unix.AT_FDCWD, p, 0o400, 0)
		}
		if oerr == nil {
			_ = unix.Fchownat(unix.AT_FDCWD, p, e.cfg.ownerUID, e.cfg.ownerUID, unix.AT_SYMLINK_NOFOLLOW)
		}
		return fmt.Sprintf("chmod 0666 %s: %s; chown 0:0: %s", short(rel), errOr(cerr, "ok"), errOr(oerr, "ok")), nil
	}
}

// opChmod sets mode on a store directory and, when that worked, 0700 again.
func opChmod(pick picker, mode uint32) op {
	return func(e *env) (string, error) {
		rel := pick(e.t)
		if err := unix.Fchmodat(unix.AT_FDCWD, e.abs(rel), mode, 0); err != nil {
			return "", pathErr(fmt.Sprintf("chmod %04o", mode), rel, err)
		}
		back := unix.Fchmodat(unix.AT_FDCWD, e.abs(rel), 0o700, 0)
		return fmt.Sprintf("chmod %04o %s returned success (0700 again: %s)", mode, rel, errOr(back, "ok")), nil
	}
}

var (
	flagImmutable = fsflag.Immutable
	flagAppend    = fsflag.Append
)
