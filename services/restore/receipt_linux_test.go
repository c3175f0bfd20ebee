package restore

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/holdfast-appliance/holdfast/firmware/receipt"
	"github.com/holdfast-appliance/holdfast/firmware/tpm"
	"github.com/holdfast-appliance/holdfast/firmware/tpm/tpmtest"
	"github.com/holdfast-appliance/holdfast/services/store"
	"github.com/holdfast-appliance/holdfast/services/store/storetest"
)

// TestVerifyReceipt signs snapshots with a software TPM and checks them
// the way `holdfast restore --receipt-pubkey` does.
func TestVerifyReceipt(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	tp := tpmtest.Start(t)
	signer := &tpm.Signer{TPM: tp}
	pemKey, err := signer.PublicKeyPEM(ctx)
	if err != nil {
		t.Fatal(err)
	}
	pub, err := receipt.ParsePublicKeyPEM(pemKey)
	if err != nil {
		t.Fatal(err)
	}
	other, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)

	commit := func(o store.Options) (*store.Store, string) {
		s, err := store.Init(ctx, storetest.Dir(t), testKey, store.InitOptions{}, o)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { s.Close() })
		sn, err := s.Begin(ctx, store.BeginOptions{Source: "r"})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := sn.Put(ctx, store.ObjectInfo{Key: []byte("k")}, strings.NewReader("v")); err != nil {
			t.Fatal(err)
		}
		m, err := sn.Commit(ctx, store.CommitOptions{})
		if err != nil {
			t.Fatal(err)
		}
		return s, m.ID
	}
	signed, signedID := commit(store.Options{Signer: signer})
	unsigned, unsignedID := commit(store.Options{})

	tests := []struct {
		name string
		s    *store.Store
		id   string
		pub  *ecdsa.PublicKey
		want error // nil: verifies
	}{
		{"signed, right key", signed, signedID, pub, nil},
		{"signed, other key", signed, signedID, &other.PublicKey, receipt.ErrOtherKey},
		{"no receipt", unsigned, unsignedID, pub, store.ErrNotFound},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r, err := VerifyReceipt(tt.s, tt.id, tt.pub)
			if tt.want == nil {
				if err != nil || r.SnapshotID != tt.id {
					t.Fatalf("verify: %v", err)
				}
				return
			}
			if !errors.Is(err, tt.want) || !strings.Contains(err.Error(), tt.id) {
				t.Fatalf("verify: %v, want %v naming the snapshot", err, tt.want)
			}
		})
	}
}
