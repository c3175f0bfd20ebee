package store

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
)

// Receipts are signatures over a committed manifest's digest, made by a key
// that lives in the TPM. The store keeps them next to the snapshots and does
// not interpret them:
//
//	| path                          | flags     | what                          |
//	|-------------------------------|-----------|-------------------------------|
//	| STORE/receipts/               | APPEND    | one receipt per snapshot      |
//	| STORE/receipts/<id>.receipt   | IMMUTABLE | opaque bytes from the signer  |
const receiptsDir = "receipts"

// ReceiptSigner signs the SHA-256 digest of a committed manifest file.
type ReceiptSigner interface {
	SignManifest(ctx context.Context, snapshotID string, digest [32]byte) ([]byte, error)
}

// ManifestDigest returns the SHA-256 of a committed manifest file, the value
// a receipt signs.
func (s *Store) ManifestDigest(id string) ([32]byte, error) {
	if !ValidSnapshotID(id) {
		return [32]byte{}, fmt.Errorf("snapshot %q: %w", id, ErrNotFound)
	}
	f, _, err := openStoreFile(s.path(snapshotsDir, id+".snap"), os.O_RDONLY, maxManifestFile)
	if errors.Is(err, os.ErrNotExist) {
		return [32]byte{}, fmt.Errorf("snapshot %s: %w", id, ErrNotFound)
	}
	if err != nil {
		return [32]byte{}, err
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return [32]byte{}, fmt.Errorf("digest manifest %s: %w", id, err)
	}
	var d [32]byte
	h.Sum(d[:0])
	return d, nil
}

// AddReceipt stores a receipt for snapshot id and seals it. A snapshot has at
// most one receipt; a second is refused.
func (s *Store) AddReceipt(id string, receipt []byte) error {
	if s.ro {
		return errors.New("add receipt: store opened read-only")
	}
	if !ValidSnapshotID(id) {
		return fmt.Errorf("add receipt: bad snapshot id %q", id)
	}
	if err := s.installSealed(receiptsDir, id+".receipt", receipt); err != nil {
		return fmt.Errorf("add receipt: %w", err)
	}
	return nil
}

// Receipt returns the receipt of snapshot id.
func (s *Store) Receipt(id string) ([]byte, error) {
	if !ValidSnapshotID(id) {
		return nil, fmt.Errorf("receipt %q: %w", id, ErrNotFound)
	}
	b, err := readStoreFile(s.path(receiptsDir, id+".receipt"), maxRecordFile)
	if errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("receipt for %s: %w", id, ErrNotFound)
	}
	return b, err
}

// issueReceipt asks the signer for a receipt of a just-committed snapshot.
func (s *Store) issueReceipt(ctx context.Context, id string) error {
	if s.signer == nil {
		return nil
	}
	d, err := s.ManifestDigest(id)
	if err != nil {
		return err
	}
	r, err := s.signer.SignManifest(ctx, id, d)
	if err != nil {
		return fmt.Errorf("sign manifest %s: %w", id, err)
	}
	return s.AddReceipt(id, r)
}

func isReceiptName(n string) bool {
	id, ok := strings.CutSuffix(n, ".receipt")
	return ok && ValidSnapshotID(id)
}

// ReadReceiptAt is Receipt for a process that does not open the store
// (PID 1 checking a receipt before a console restore): the receipt of
// snapshot id in the store at dir, read as hostile input (no symlink, no
// FIFO, a regular file within the record bound). A missing one is
// ErrNotFound.
func ReadReceiptAt(dir, id string) ([]byte, error) {
	if !ValidSnapshotID(id) {
		return nil, fmt.Errorf("receipt %q: %w", id, ErrNotFound)
	}
	b, err := readStoreFile(pathIn(dir, receiptsDir, id+".receipt"), maxRecordFile)
	if errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("receipt for %s: %w", id, ErrNotFound)
	}
	return b, err
}
