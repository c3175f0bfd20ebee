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

// TestMissingReceiptIssuedAtOpen: a snapshot committed without a receipt
// (a power cut between the commit's rename and its receipt, or a commit
// that recovery finished at boot, where the appliance's open has no signer)
// gets one at the next open that has a signer; a snapshot that has one is
// not signed again.
func TestMissingReceiptIssuedAtOpen(t *testing.T) {
	s := newStore(t, InitOptions{}, Options{})
	m := putObjects(t, s, "src", time.Now().Add(time.Hour), map[string][]byte{"a": []byte("hello")})
	s = reopen(t, s, Options{})
	if _, err := s.Receipt(m.ID); !errors.Is(err, ErrNotFound) {
		t.Fatalf("receipt without a signer: %v", err)
	}
	signer := &hmacSigner{}
	for range 2 {
		s = reopen(t, s, Options{Signer: signer})
		if signer.calls != 1 {
			t.Fatalf("signer called %d times, want 1", signer.calls)
		}
	}
	got, err := s.Receipt(m.ID)
	if err != nil {
		t.Fatal(err)
	}
	d, err := s.ManifestDigest(m.ID)
	if err != nil {
		t.Fatal(err)
	}
	if want, _ := (&hmacSigner{}).SignManifest(context.Background(), m.ID, d); !hmac.Equal(got, want) {
		t.Fatal("issued receipt is not the signature of the manifest digest")
	}
	if ok, err := fsflag.Has(s.path(receiptsDir, m.ID+".receipt"), fsflag.Immutable); err != nil || !ok {
		t.Fatalf("issued receipt not sealed: %v", err)
	}
	mustVerify(t, s)
}
