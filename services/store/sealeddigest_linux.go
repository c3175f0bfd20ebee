package store

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"os"

	"golang.org/x/sys/unix"

	"github.com/holdfast-appliance/holdfast/services/store/fsflag"
)

// SealedManifestDigest is ManifestDigest for a process that does not open
// the store, PID 1 signing a receipt: the SHA-256 of snapshot id's
// manifest in the store at dir, only once the manifest is sealed
// (immutable, in the append-only snapshots directory), so that what was
// signed cannot change afterwards. The file is opened as hostile input: no
// symlink, no FIFO, a regular file within the manifest bound; the digest
// stops when ctx ends. A missing manifest is ErrNotFound; an unsealed or
// foreign one wraps ErrForeign.
func SealedManifestDigest(ctx context.Context, dir, id string) ([32]byte, error) {
	if !ValidSnapshotID(id) {
		return [32]byte{}, fmt.Errorf("snapshot %q: %w", id, ErrNotFound)
	}
	f, _, err := openStoreFile(pathIn(dir, snapshotsDir, id+".snap"), os.O_RDONLY, maxManifestFile)
	if errors.Is(err, os.ErrNotExist) {
		return [32]byte{}, fmt.Errorf("snapshot %s: %w", id, ErrNotFound)
	}
	if err != nil {
		return [32]byte{}, err
	}
	defer f.Close()
	flags, err := unix.IoctlGetUint32(int(f.Fd()), unix.FS_IOC_GETFLAGS)
	if err != nil {
		return [32]byte{}, fmt.Errorf("manifest %s: flags: %w", id, err)
	}
	if flags&fsflag.Immutable == 0 {
		return [32]byte{}, fmt.Errorf("manifest %s is not sealed: %w", id, ErrForeign)
	}
	h := sha256.New()
	buf := make([]byte, 1<<20)
	for {
		if err := ctx.Err(); err != nil {
			return [32]byte{}, fmt.Errorf("digest manifest %s: %w", id, err)
		}
		n, rerr := f.Read(buf)
		h.Write(buf[:n])
		if rerr == io.EOF {
			break
		}
		if rerr != nil {
			return [32]byte{}, fmt.Errorf("digest manifest %s: %w", id, rerr)
		}
	}
	var d [32]byte
	h.Sum(d[:0])
	return d, nil
}
