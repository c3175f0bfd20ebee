package store

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
)

// StoreKeys are the subkeys of one store, derived from the master key and
// the store ID (see the derivation table in crypto.go). They are what the
// appliance hands to a process that reads or writes the store, so that no
// such process ever holds the master key: with the master key a thief
// could derive every other key on the box (the config partition's MAC, the
// trusted-time records, the TPM owner auth and clock anchor, docs/keys.md);
// with StoreKeys it opens this one store and nothing else.
//
// StoreKeys is a KeySource that opens exactly the store whose ID it
// carries; its MasterKey method always fails with ErrNoMasterKey. A
// StoreKeys without the clock key (ReadOnly) opens a store only with
// Options.ReadOnly.
type StoreKeys struct {
	ID      [16]byte `json:"id"`
	ChunkID []byte   `json:"chunk_id"`        // HMAC-SHA256 key naming chunks
	Data    []byte   `json:"data"`            // AES-256-GCM key of chunk blobs
	Meta    []byte   `json:"meta"`            // AES-256-GCM key of config, manifests, trailers, records
	Clock   []byte   `json:"clock,omitempty"` // HMAC-SHA256 key of the clock high-water log; nil: read-only
}

// ErrNoMasterKey is the error of StoreKeys.MasterKey: subkeys never stand
// in for the master key.
var ErrNoMasterKey = errors.New("store subkeys hold no master key")

// ErrReadOnlyKeys means keys without the clock key were used to open a
// store for writing.
var ErrReadOnlyKeys = errors.New("read-only store keys cannot open a store for writing")

// WrongStoreError means StoreKeys were offered to a store with another ID.
// It matches ErrWrongKey with errors.Is.
type WrongStoreError struct {
	Dir  string
	Have [16]byte // the ID the keys were derived for
	Want [16]byte // the ID in the store's config header
}

func (e *WrongStoreError) Error() string {
	return fmt.Sprintf("store %s has ID %x; the keys offered are for store %x", e.Dir, e.Want, e.Have)
}

// Is makes a WrongStoreError match ErrWrongKey.
func (e *WrongStoreError) Is(target error) bool { return target == ErrWrongKey }

// NewID returns a random store ID. The appliance's PID 1 picks the ID of a
// new store itself so it can derive the store's subkeys before it hands
// them to the process that creates the store.
func NewID() ([16]byte, error) {
	var id [16]byte
	if _, err := rand.Read(id[:]); err != nil {
		return id, fmt.Errorf("store id: %w", err)
	}
	return id, nil
}

// DeriveKeys derives the subkeys of the store with the given ID from the
// master key.
func DeriveKeys(master []byte, id [16]byte) (StoreKeys, error) {
	if len(master) != MasterKeySize {
		return StoreKeys{}, fmt.Errorf("master key is %d bytes, want %d", len(master), MasterKeySize)
	}
	k := StoreKeys{ID: id}
	for _, d := range []struct {
		label string
		dst   *[]byte
	}{{labelChunkID, &k.ChunkID}, {labelData, &k.Data}, {labelMeta, &k.Meta}, {labelClock, &k.Clock}} {
		b, err := hkdfKey(master, id, d.label)
		if err != nil {
			return StoreKeys{}, fmt.Errorf("derive %s: %w", d.label, err)
		}
		*d.dst = b
	}
	return k, nil
}

// ReadOnly returns the keys without the clock key: all a reader (the
// export) needs to decrypt and check what it reads, and nothing a writer
// needs that a reader does not.
func (k StoreKeys) ReadOnly() StoreKeys {
	return StoreKeys{ID: k.ID, ChunkID: bytes.Clone(k.ChunkID), Data: bytes.Clone(k.Data), Meta: bytes.Clone(k.Meta)}
}

// IDString returns the store ID in hex, as Store.ID does.
func (k StoreKeys) IDString() string { return hex.EncodeToString(k.ID[:]) }

// MasterKey always fails: see ErrNoMasterKey.
func (StoreKeys) MasterKey(context.Context) ([]byte, error) { return nil, ErrNoMasterKey }

// keysFor returns the keys of the store with the given ID from ks: the
// subkeys themselves when ks is StoreKeys (refused for another ID), else
// derived from ks's master key.
func keysFor(ctx context.Context, dir string, ks KeySource, id [16]byte, readOnly bool) (*keys, error) {
	var sk StoreKeys
	switch k := ks.(type) {
	case StoreKeys:
		sk = k
	case *StoreKeys:
		sk = *k
	default:
		master, err := ks.MasterKey(ctx)
		if err != nil {
			return nil, fmt.Errorf("master key: %w", err)
		}
		if sk, err = DeriveKeys(master, id); err != nil {
			return nil, err
		}
	}
	if sk.ID != id {
		return nil, &WrongStoreError{Dir: dir, Have: sk.ID, Want: id}
	}
	if !readOnly && len(sk.Clock) == 0 {
		return nil, fmt.Errorf("open %s: %w", dir, ErrReadOnlyKeys)
	}
	return sk.build()
}

// initID is the ID of a new store made with ks: the ID StoreKeys carry, or
// a random one for a master key.
func initID(ks KeySource) ([16]byte, error) {
	switch k := ks.(type) {
	case StoreKeys:
		return k.ID, nil
	case *StoreKeys:
		return k.ID, nil
	}
	return NewID()
}

// ReadID returns the store ID recorded in the config header of the store
// at dir, without a key, without loading the index, reading at most the
// header of a regular file (no symlink, FIFO or device) of bounded size.
// The ID is not authenticated here; Open checks the config with the keys.
func ReadID(dir string) ([16]byte, error) {
	var id [16]byte
	f, _, err := openStoreFile(filepath.Join(dir, configName), os.O_RDONLY, maxConfigFile)
	if errors.Is(err, fs.ErrNotExist) {
		return id, fmt.Errorf("open %s: %w", dir, ErrNotStore)
	}
	if err != nil {
		return id, fmt.Errorf("read config: %w", err)
	}
	defer f.Close()
	var hdr [26]byte
	if _, err := io.ReadFull(f, hdr[:]); err != nil || string(hdr[:8]) != configMagic {
		return id, fmt.Errorf("open %s: bad config magic: %w", dir, ErrNotStore)
	}
	copy(id[:], hdr[10:26])
	return id, nil
}
