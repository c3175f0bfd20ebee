package store

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// TestSealedManifestDigest: PID 1's digest of a sealed manifest equals the
// store's own; a manifest that is missing, unsealed or a symlink gives none.
func TestSealedManifestDigest(t *testing.T) {
	ctx := context.Background()
	s := newStore(t, InitOptions{}, Options{})
	m := putObjects(t, s, "mail", time.Now().Add(time.Hour), map[string][]byte{"k": []byte("v")})
	want, err := s.ManifestDigest(m.ID)
	if err != nil {
		t.Fatal(err)
	}
	got, err := SealedManifestDigest(ctx, s.Dir(), m.ID)
	if err != nil || got != want {
		t.Fatalf("digest %x, %v; want %x", got, err, want)
	}
	fake := "20200101T000000Z-000000aa"
	link := "20200101T000000Z-000000bb"
	if err := os.WriteFile(filepath.Join(s.Dir(), snapshotsDir, fake+".snap"), []byte("unsealed"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(filepath.Join(s.Dir(), snapshotsDir, m.ID+".snap"), filepath.Join(s.Dir(), snapshotsDir, link+".snap")); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name, id string
		want     error
	}{
		{"missing", "20200101T000000Z-000000cc", ErrNotFound},
		{"not an ID", "../holdfast-store", ErrNotFound},
		{"unsealed", fake, ErrForeign},
		{"symlink to a sealed one", link, ErrForeign},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := SealedManifestDigest(ctx, s.Dir(), tc.id); !errors.Is(err, tc.want) {
				t.Fatalf("%v, want %v", err, tc.want)
			}
		})
	}
}
