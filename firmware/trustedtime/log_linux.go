package trustedtime

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"golang.org/x/sys/unix"

	"github.com/holdfast-appliance/holdfast/firmware/atomicfile"
)

// Records are the two record files in Dir (the config partition's
// holdfast/ directory).
type Records struct {
	Dir string
	Key []byte // from Key(master)
}

// Load returns the newest authentic record and its generation. Each slot
// is read as hostile input: opened O_NOFOLLOW|O_NONBLOCK (no symlink, no
// FIFO that could hang the boot), a regular file only, at most RecordLen+1
// bytes read. A slot that fails any check is reported in ignored and never
// moves T; ErrNoRecord when neither slot is authentic.
func (r Records) Load() (gen uint64, s State, ignored []error, err error) {
	var slots [2][]byte
	for i := range slots {
		b, rerr := readBounded(filepath.Join(r.Dir, SlotFile(i)), RecordLen+1)
		switch {
		case errors.Is(rerr, os.ErrNotExist):
		case rerr != nil:
			ignored = append(ignored, rerr)
		default:
			slots[i] = b
		}
	}
	gen, s, bad, err := Pick(r.Key, slots)
	return gen, s, append(ignored, bad...), err
}

// Save writes s as generation gen into its slot (gen's parity), through a
// synced temporary file and a rename. The other slot keeps the previous
// record, so a torn write loses at most this advance.
func (r Records) Save(gen uint64, s State) error {
	p := filepath.Join(r.Dir, SlotFile(int(gen&1)))
	if err := atomicfile.Write(p, Encode(r.Key, gen, s), false); err != nil {
		return fmt.Errorf("save trusted time: %w", err)
	}
	return nil
}

// readBounded reads at most limit bytes of a regular file without
// following a symlink or blocking on a FIFO.
func readBounded(path string, limit int64) ([]byte, error) {
	fd, err := unix.Open(path, unix.O_RDONLY|unix.O_NOFOLLOW|unix.O_NONBLOCK|unix.O_CLOEXEC, 0)
	if err != nil {
		if errors.Is(err, unix.ENOENT) {
			return nil, fmt.Errorf("%s: %w", path, os.ErrNotExist)
		}
		return nil, fmt.Errorf("open %s: %w", path, err)
	}
	f := os.NewFile(uintptr(fd), path)
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("stat %s: %w", path, err)
	}
	if !st.Mode().IsRegular() {
		return nil, fmt.Errorf("%s is not a regular file (%s)", path, st.Mode().Type())
	}
	b, err := io.ReadAll(io.LimitReader(f, limit))
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", path, err)
	}
	return b, nil
}
