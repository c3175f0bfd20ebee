package store

import (
	"bytes"
	"crypto/aes"
	"crypto/cipher"
	"crypto/hkdf"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
)

// MasterKeySize is the size of the master key every store key derives from.
const MasterKeySize = 32

// ChunkID names a chunk: HMAC-SHA256 of its plaintext under the store's
// chunk-ID key. Without the key nobody can compute the ID of known content.
type ChunkID [32]byte

// String returns the ID in hex.
func (c ChunkID) String() string { return hex.EncodeToString(c[:]) }

// ErrWrongKey means the key (master key or subkeys) does not open this store.
var ErrWrongKey = errors.New("master key does not open this store")

// ErrCorrupt marks data that failed an authentication tag or hash check.
var ErrCorrupt = errors.New("data failed its integrity check")

// Key derivation: HKDF-SHA256(master key, salt = store ID, info = label).
//
//	| label                 | use                                              |
//	|-----------------------|--------------------------------------------------|
//	| holdfast chunk-id v1  | HMAC-SHA256 key naming chunks                    |
//	| holdfast data v1      | AES-256-GCM key for chunk blobs                  |
//	| holdfast meta v1      | AES-256-GCM key for config, manifests, pack      |
//	|                       | trailers, index cache, retention records         |
//	| holdfast clock v1     | HMAC-SHA256 key for clock high-water records     |
type keys struct {
	chunkID []byte
	clock   []byte
	data    cipher.AEAD
	meta    cipher.AEAD
}

// The HKDF labels of the table above (docs/keys.md lists them; a test
// checks that it lists exactly these).
const (
	labelChunkID = "holdfast chunk-id v1"
	labelData    = "holdfast data v1"
	labelMeta    = "holdfast meta v1"
	labelClock   = "holdfast clock v1"
)

// KeyLabels returns the HKDF labels of the store's subkeys, for the key
// table in docs/keys.md.
func KeyLabels() []string { return []string{labelChunkID, labelData, labelMeta, labelClock} }

func hkdfKey(master []byte, storeID [16]byte, label string) ([]byte, error) {
	return hkdf.Key(sha256.New, master, storeID[:], label, 32)
}

func deriveKeys(master []byte, storeID [16]byte) (*keys, error) {
	sk, err := DeriveKeys(master, storeID)
	if err != nil {
		return nil, err
	}
	return sk.build()
}

// build checks the subkeys' sizes and makes the ciphers.
func (sk StoreKeys) build() (*keys, error) {
	for _, f := range []struct {
		name string
		b    []byte
	}{{"chunk-id", sk.ChunkID}, {"data", sk.Data}, {"meta", sk.Meta}} {
		if len(f.b) != 32 {
			return nil, fmt.Errorf("%s key is %d bytes, want 32", f.name, len(f.b))
		}
	}
	if sk.Clock != nil && len(sk.Clock) != 32 {
		return nil, fmt.Errorf("clock key is %d bytes, want 32", len(sk.Clock))
	}
	k := &keys{chunkID: bytes.Clone(sk.ChunkID), clock: bytes.Clone(sk.Clock)}
	for _, p := range []struct {
		raw []byte
		dst *cipher.AEAD
	}{{sk.Data, &k.data}, {sk.Meta, &k.meta}} {
		block, err := aes.NewCipher(p.raw)
		if err != nil {
			return nil, fmt.Errorf("aes: %w", err)
		}
		if *p.dst, err = cipher.NewGCM(block); err != nil {
			return nil, fmt.Errorf("gcm: %w", err)
		}
	}
	return k, nil
}

// idHasher returns a reusable keyed hash for chunk IDs. Not safe for
// concurrent use; each goroutine takes its own.
func (k *keys) idHasher() hash.Hash { return hmac.New(sha256.New, k.chunkID) }

func sumID(h hash.Hash, data []byte) ChunkID {
	h.Reset()
	h.Write(data)
	var id ChunkID
	h.Sum(id[:0])
	return id
}

// Sealed blobs are nonce(12) || AES-GCM ciphertext || tag(16). Nonces are
// random; under one key that is safe for 2^32 blobs (4 PiB of 1 MiB chunks).
const sealOverhead = 12 + 16

func sealTo(dst []byte, aead cipher.AEAD, ad, plain []byte) []byte {
	var nonce [12]byte
	if _, err := rand.Read(nonce[:]); err != nil {
		panic("crypto/rand failed: " + err.Error()) // rand.Read never fails on Linux
	}
	dst = append(dst, nonce[:]...)
	return aead.Seal(dst, nonce[:], plain, ad)
}

// sealInPlace encrypts plain in place (its capacity must leave room for
// the tag), choosing a random nonce. It returns ciphertext || tag, which
// aliases plain; the blob is nonce || that.
func sealInPlace(aead cipher.AEAD, nonce *[12]byte, ad, plain []byte) []byte {
	if _, err := rand.Read(nonce[:]); err != nil {
		panic("crypto/rand failed: " + err.Error())
	}
	return aead.Seal(plain[:0], nonce[:], plain, ad)
}

// openInPlace is openSealed decrypting into sealed's own storage: the
// plaintext aliases sealed, which is overwritten.
func openInPlace(aead cipher.AEAD, ad, sealed []byte) ([]byte, error) {
	if len(sealed) < sealOverhead {
		return nil, fmt.Errorf("sealed blob of %d bytes: %w", len(sealed), ErrCorrupt)
	}
	ct := sealed[12:]
	plain, err := aead.Open(ct[:0], sealed[:12], ct, ad)
	if err != nil {
		return nil, ErrCorrupt
	}
	return plain, nil
}

func openSealed(aead cipher.AEAD, ad, sealed []byte) ([]byte, error) {
	if len(sealed) < sealOverhead {
		return nil, fmt.Errorf("sealed blob of %d bytes: %w", len(sealed), ErrCorrupt)
	}
	plain, err := aead.Open(nil, sealed[:12], sealed[12:], ad)
	if err != nil {
		return nil, ErrCorrupt
	}
	return plain, nil
}
