package store

import (
	"context"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"path/filepath"
)

// ReadStoreID returns the ID of the store in dir, in hex, after checking
// that ks opens it (the config's tag): what Open proves about a disk,
// without a lock, recovery or the chunk index, so it costs the same on an
// empty store and a full one. PeekID reads the ID without a key.
func ReadStoreID(ctx context.Context, dir string, ks KeySource) (string, error) {
	raw, err := readStoreFile(filepath.Join(dir, configName), maxConfigFile)
	if errors.Is(err, fs.ErrNotExist) {
		return "", fmt.Errorf("read store ID of %s: %w", dir, ErrNotStore)
	}
	if err != nil {
		return "", fmt.Errorf("read store ID of %s: %w", dir, err)
	}
	if len(raw) < 30 || string(raw[:8]) != configMagic {
		return "", fmt.Errorf("read store ID of %s: bad config magic: %w", dir, ErrNotStore)
	}
	if v := binary.BigEndian.Uint16(raw[8:]); v != formatVersion {
		return "", fmt.Errorf("read store ID of %s: store format version %d, this build reads %d", dir, v, formatVersion)
	}
	if n := binary.BigEndian.Uint32(raw[26:30]); int(n) != len(raw)-30 {
		return "", fmt.Errorf("read store ID of %s: config length: %w", dir, ErrCorrupt)
	}
	var id [16]byte
	copy(id[:], raw[10:26])
	master, err := ks.MasterKey(ctx)
	if err != nil {
		return "", fmt.Errorf("master key: %w", err)
	}
	k, err := deriveKeys(master, id)
	if err != nil {
		return "", err
	}
	if _, err := openSealed(k.meta, raw[:26], raw[30:]); err != nil {
		return "", fmt.Errorf("read store ID of %s: %w", dir, ErrWrongKey)
	}
	return hex.EncodeToString(id[:]), nil
}
