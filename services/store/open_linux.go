package store

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"

	"golang.org/x/sys/unix"

	"github.com/holdfast-appliance/holdfast/services/store/fsflag"
)

// ErrForeign marks a store entry that is not what its name claims: a
// symlink, FIFO, socket or device, a directory where a file belongs, or a
// file larger than its format allows. The worker can create such entries in
// every store directory; they are skipped and reported, never followed.
var ErrForeign = errors.New("foreign entry in the store")

// Bounds on what one read of a store file may cost, by kind. A file over
// its bound is foreign: it is skipped and reported, never read.
const (
	maxConfigFile   = 64 << 10  // holdfast-store
	maxRecordFile   = 64 << 10  // retention records, receipts, the recovery blob
	maxIndexCache   = 256 << 20 // index/index of the old format: CleanForeign keeps one within this bound for prune to name and remove
	maxManifestFile = 1 << 40   // manifests and journals; read frame by frame, each frame at most maxFrame
	maxClockLogRead = 1 << 20   // the tail of state/clock.log that HighWater reads
)

// maxPackFile bounds a pack: the target size, one chunk past it, the
// largest trailer and the fixed parts.
func (s *Store) maxPackFile() int64 {
	return int64(s.cfg.PackSize) + 2*int64(s.cfg.MaxChunk) + maxTrailer + 1<<20
}

// openStoreFile opens path as hostile input: never through a symlink
// (O_NOFOLLOW), never blocking on a FIFO (O_NONBLOCK), and only when fstat
// shows a regular file of at most max bytes (max < 0: no bound). flag is
// O_RDONLY, O_RDWR or O_WRONLY|O_APPEND, optionally with O_CREATE.
func openStoreFile(path string, flag int, max int64) (*os.File, int64, error) {
	fd, err := unix.Open(path, flag|unix.O_NOFOLLOW|unix.O_NONBLOCK|unix.O_CLOEXEC|unix.O_NOCTTY, uint32(fileMode))
	if err != nil {
		if errors.Is(err, unix.ELOOP) || errors.Is(err, unix.ENXIO) || errors.Is(err, unix.EISDIR) {
			return nil, 0, fmt.Errorf("open %s: %v: %w", path, err, ErrForeign)
		}
		return nil, 0, &os.PathError{Op: "open", Path: path, Err: err}
	}
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		unix.Close(fd)
		return nil, 0, &os.PathError{Op: "fstat", Path: path, Err: err}
	}
	if st.Mode&unix.S_IFMT != unix.S_IFREG {
		unix.Close(fd)
		return nil, 0, fmt.Errorf("%s is not a regular file (mode %o): %w", path, st.Mode&unix.S_IFMT, ErrForeign)
	}
	if max >= 0 && st.Size > max {
		unix.Close(fd)
		return nil, 0, fmt.Errorf("%s holds %d bytes, more than the %d its kind allows: %w", path, st.Size, max, ErrForeign)
	}
	return os.NewFile(uintptr(fd), path), st.Size, nil
}

// readStoreFile reads a whole store file of at most max bytes.
func readStoreFile(path string, max int64) ([]byte, error) {
	return readStoreFileInto(path, max, nil, 0)
}

// readStoreFileInto is readStoreFile reading into buf when it has room,
// else into a new slice with slack/100 more room (so that a loop over
// many large files, verify's packs, reuses one buffer instead of leaving
// one file's worth of garbage each).
func readStoreFileInto(path string, max int64, buf []byte, slack int64) ([]byte, error) {
	f, n, err := openStoreFile(path, os.O_RDONLY, max)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var b []byte
	if int64(cap(buf)) >= n {
		b = buf[:n]
	} else {
		b = make([]byte, n, n+n*slack/100)
	}
	if _, err := io.ReadFull(f, b); err != nil {
		return nil, fmt.Errorf("read %s: %w", path, err)
	}
	return b, nil
}

// isSealedFile reports whether f carries FS_IMMUTABLE_FL.
func isSealedFile(f *os.File) (bool, error) {
	v, err := unix.IoctlGetUint32(int(f.Fd()), unix.FS_IOC_GETFLAGS)
	if err != nil {
		return false, &os.PathError{Op: "get flags", Path: f.Name(), Err: err}
	}
	return v&fsflag.Immutable != 0, nil
}

// scanDir calls fn for every entry of dir, reading entries in batches so a
// directory with millions of entries costs one batch of memory. Entries are
// not sorted. A directory that is a symlink or not a directory fails.
func scanDir(dir string, fn func(name string, typ fs.FileMode) error) error {
	fd, err := unix.Open(dir, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_NONBLOCK|unix.O_CLOEXEC, 0)
	if err != nil {
		return &os.PathError{Op: "open dir", Path: dir, Err: err}
	}
	d := os.NewFile(uintptr(fd), dir)
	defer d.Close()
	for {
		es, err := d.ReadDir(512)
		for _, e := range es {
			if err := fn(e.Name(), e.Type()); err != nil {
				return err
			}
		}
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("read dir %s: %w", dir, err)
		}
	}
}
