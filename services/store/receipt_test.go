package store

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"errors"
	"testing"
	"time"

	"github.com/holdfast-appliance/holdfast/services/store/fsflag"
)

// hmacSigner stands in for the TPM signer: it MACs the digest.
type hmacSigner struct{ calls int }

func (h *hmacSigner) SignManifest(_ context.Context, id string, d [32]byte) ([]byte, error) {
	h.calls++
	m := hmac.New(sha256.New, []byte("receipt-test"))
	m.Write([]byte(id))
	m.Write(d[:])
	return m.Sum(nil), nil
}

func TestReceiptsAreIssuedAndSealed(t *testing.T) {
	signer := &hmacSigner{}
	s := newStore(t, InitOptions{}, Options{Signer: signer})
	m := putObjects(t, s, "src", time.Now().Add(time.Hour), map[string][]byte{"a": []byte("hello")})
	if signer.calls != 1 {
		t.Fatalf("signer called %d times, want 1", signer.calls)
	}
	got, err := s.Receipt(m.ID)
	if err != nil {
		t.Fatal(err)
	}
	d, err := s.ManifestDigest(m.ID)
	if err != nil {
		t.Fatal(err)
	}
	want, _ := (&hmacSigner{}).SignManifest(context.Background(), m.ID, d)
	if !hmac.Equal(got, want) {
		t.Fatal("stored receipt is not the signature of the manifest digest")
	}
	if ok, err := fsflag.Has(s.path(receiptsDir, m.ID+".receipt"), fsflag.Immutable); err != nil || !ok {
		t.Fatalf("receipt not sealed: %v", err)
	}
	if err := s.AddReceipt(m.ID, []byte("forged")); err == nil {
		t.Fatal("a second receipt replaced the first")
	}
	if _, err := s.Receipt("20260101T000000Z-00000000"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("missing receipt: %v", err)
	}
	mustVerify(t, s)
}
