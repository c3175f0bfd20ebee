package store

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
)

// KeySource supplies the 32-byte master key. The TPM provides it on the
// appliance; a key file or a test key provides it on a host.
type KeySource interface {
	MasterKey(ctx context.Context) ([]byte, error)
}

// StaticKey is a KeySource holding a key in memory (tests, recovery).
type StaticKey []byte

// MasterKey returns a copy of the key.
func (k StaticKey) MasterKey(context.Context) ([]byte, error) {
	if len(k) != MasterKeySize {
		return nil, fmt.Errorf("static key is %d bytes, want %d", len(k), MasterKeySize)
	}
	return bytes.Clone(k), nil
}

// KeyFile is a KeySource reading a file of 64 hex digits (surrounding
// whitespace allowed).
type KeyFile string

// MasterKey reads and decodes the key file.
func (f KeyFile) MasterKey(context.Context) ([]byte, error) {
	raw, err := os.ReadFile(string(f))
	if err != nil {
		return nil, fmt.Errorf("read key file: %w", err)
	}
	key, err := hex.DecodeString(string(bytes.TrimSpace(raw)))
	if err != nil || len(key) != MasterKeySize {
		return nil, fmt.Errorf("key file %s: want %d hex digits", f, 2*MasterKeySize)
	}
	return key, nil
}

// CreateKeyFile writes a new random key to path with mode 0600. It never
// overwrites: an existing file is an error wrapping os.ErrExist.
func CreateKeyFile(path string) error {
	key := make([]byte, MasterKeySize)
	if _, err := rand.Read(key); err != nil {
		return fmt.Errorf("generate key: %w", err)
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return fmt.Errorf("create key file: %w", err)
	}
	if _, err := f.WriteString(hex.EncodeToString(key) + "\n"); err != nil {
		f.Close()
		return fmt.Errorf("write key file: %w", err)
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return fmt.Errorf("sync key file: %w", err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("close key file: %w", err)
	}
	return nil
}

// IsKeyFileMissing reports whether err means the key file does not exist.
func IsKeyFileMissing(err error) bool { return errors.Is(err, os.ErrNotExist) }
