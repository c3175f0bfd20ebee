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

// checkReceipt checks that snapshot id's receipt is hmacSigner's signature
// of its manifest digest and is sealed; what names the receipt in errors.
func checkReceipt(t *testing.T, s *Store, id, what string) {
	t.Helper()
	got, err := s.Receipt(id)
	if err != nil {
		t.Fatal(err)
	}
	d, err := s.ManifestDigest(id)
	if err != nil {
		t.Fatal(err)
	}
	if want, _ := (&hmacSigner{}).SignManifest(context.Background(), id, d); !hmac.Equal(got, want) {
		t.Fatalf("%s receipt is not the signature of the manifest digest", what)
	}
	if ok, err := fsflag.Has(s.path(receiptsDir, id+".receipt"), fsflag.Immutable); err != nil || !ok {
		t.Fatalf("%s receipt not sealed: %v", what, err)
	}
}

func TestReceiptsAreIssuedAndSealed(t *testing.T) {
	signer := &hmacSigner{}
	s := newStore(t, InitOptions{}, Options{Signer: signer})
	m := putObjects(t, s, "src", time.Now().Add(time.Hour), map[string][]byte{"a": []byte("hello")})
	if signer.calls != 1 {
		t.Fatalf("signer called %d times, want 1", signer.calls)
	}
	checkReceipt(t, s, m.ID, "stored")
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
	checkReceipt(t, s, m.ID, "issued")
	mustVerify(t, s)
}
