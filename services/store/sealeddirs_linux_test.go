package store

import (
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"
)

// TestSealedDirsMatchListSealed: walking SealedDirs and ListSealedDir in
// order gives exactly ListSealed, with foreign entries (a symlink, a FIFO,
// a directory, a misnamed file, a non-shard directory in packs/) left out
// by both.
func TestSealedDirsMatchListSealed(t *testing.T) {
	s := newStore(t, InitOptions{PackSize: 1 << 20, RecoveryBlob: []byte("wrapped")}, Options{Signer: &hmacSigner{}})
	for i := range 3 {
		m := putObjects(t, s, "src", time.Now().Add(time.Hour), map[string][]byte{"big": randBytes(uint64(i), 3<<20), "small": {byte(i)}})
		if err := s.Extend(m.ID, time.Time{}, true, "hold"); err != nil {
			t.Fatal(err)
		}
	}
	root := s.Dir()
	for _, foreign := range []func() error{
		func() error {
			return os.Symlink("/etc/passwd", filepath.Join(root, "snapshots", "20260101T000000Z-00000000.snap"))
		},
		func() error { return os.Mkdir(filepath.Join(root, "packs", "zz"), 0o700) },
		func() error { return os.WriteFile(filepath.Join(root, "receipts", "junk"), nil, 0o600) },
	} {
		if err := foreign(); err != nil {
			t.Fatal(err)
		}
	}
	want, err := ListSealed(root)
	if err != nil {
		t.Fatal(err)
	}
	dirs, err := SealedDirs(root)
	if err != nil {
		t.Fatal(err)
	}
	var got []SealedFile
	for _, d := range dirs {
		fs, err := ListSealedDir(root, d)
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, fs...)
	}
	if !slices.Equal(got, want) || len(got) == 0 {
		t.Errorf("walk by directory:\n%v\nListSealed:\n%v", got, want)
	}
	for _, bad := range []string{"packs", "packs/zz", "../x", "state", "packs/00/.."} {
		if _, err := ListSealedDir(root, bad); err == nil {
			t.Errorf("ListSealedDir(%q) accepted", bad)
		}
	}
	if _, err := SealedDirs(t.TempDir()); err == nil {
		t.Error("SealedDirs of a directory without a store succeeded")
	}
}
