package store

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// ReadStoreID proves the key opens the store and returns its ID without
// opening the index: no run is read, none written, whatever index/ holds.
func TestReadStoreID(t *testing.T) {
	s := newStore(t, InitOptions{PackSize: 1 << 20}, Options{})
	putObjects(t, s, "src", time.Time{}, map[string][]byte{"a": randBytes(5, 2<<20)})
	want := s.ID()
	s.Close()
	// An index that Open would have to rebuild: ReadStoreID does not notice.
	for _, r := range runFiles(t, s) {
		if err := os.Remove(s.path(indexDir, r)); err != nil {
			t.Fatal(err)
		}
	}
	other := StaticKey(bytes.Repeat([]byte{0x17}, MasterKeySize))
	fifoDir := t.TempDir()
	if err := unix.Mkfifo(filepath.Join(fifoDir, configName), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		dir  string
		ks   KeySource
		err  error
	}{
		{"this box's key", s.Dir(), testKey, nil},
		{"another key", s.Dir(), other, ErrWrongKey},
		{"no store", t.TempDir(), testKey, ErrNotStore},
		{"a FIFO as the config", fifoDir, testKey, ErrForeign},
	} {
		t.Run(tc.name, func(t *testing.T) {
			id, err := ReadStoreID(t.Context(), tc.dir, tc.ks)
			if tc.err != nil {
				if !errors.Is(err, tc.err) {
					t.Fatalf("err %v, want %v", err, tc.err)
				}
				return
			}
			if err != nil || id != want {
				t.Fatalf("ID %q, %v; want %q", id, err, want)
			}
		})
	}
	if got := runFiles(t, s); len(got) != 0 {
		t.Errorf("ReadStoreID wrote index runs %v", got)
	}
}
