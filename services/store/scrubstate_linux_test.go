package store

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestScrubState: the scrub state round-trips, and every hostile form of
// the file (symlink, FIFO, over its bound, junk) is refused as foreign,
// never followed or waited on; CleanForeign keeps a good one.
func TestScrubState(t *testing.T) {
	s := newStore(t, InitOptions{}, Options{})
	dir := s.Dir()
	if st, err := ReadScrubState(dir); err != nil || st != (ScrubState{}) {
		t.Fatalf("no state: %+v, %v", st, err)
	}
	want := ScrubState{Last: time.Date(2026, 3, 4, 5, 6, 7, 0, time.UTC), Damaged: 3}
	if err := WriteScrubState(dir, want); err != nil {
		t.Fatal(err)
	}
	got, err := ReadScrubState(dir)
	if err != nil || !got.Last.Equal(want.Last) || got.Damaged != want.Damaged {
		t.Fatalf("read %+v, %v; want %+v", got, err, want)
	}
	rep, err := s.CleanForeign(context.Background())
	if err != nil || rep.Count != 0 {
		t.Fatalf("CleanForeign on a good scrub state: %+v, %v", rep, err)
	}
	p := filepath.Join(dir, stateDir, scrubStateName)
	target := filepath.Join(t.TempDir(), "elsewhere")
	if err := os.WriteFile(target, []byte(scrubMagic+"\ndamaged 1\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		make func() error
	}{
		{"symlink", func() error { return os.Symlink(target, p) }},
		{"fifo", func() error { return syscall.Mkfifo(p, 0o600) }},
		{"directory", func() error { return os.Mkdir(p, 0o700) }},
		{"too big", func() error {
			return os.WriteFile(p, []byte(scrubMagic+"\n"+strings.Repeat("x", maxScrubState)), 0o600)
		}},
		{"no magic", func() error { return os.WriteFile(p, []byte("damaged 1\n"), 0o600) }},
		{"negative count", func() error { return os.WriteFile(p, []byte(scrubMagic+"\ndamaged -1\n"), 0o600) }},
		{"unknown line", func() error { return os.WriteFile(p, []byte(scrubMagic+"\nrm -rf 1\n"), 0o600) }},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if err := os.RemoveAll(p); err != nil {
				t.Fatal(err)
			}
			if err := tc.make(); err != nil {
				t.Fatal(err)
			}
			done := make(chan error, 1)
			go func() { _, err := ReadScrubState(dir); done <- err }()
			select {
			case err := <-done:
				if !errors.Is(err, ErrForeign) {
					t.Fatalf("read: %v, want ErrForeign", err)
				}
			case <-time.After(10 * time.Second):
				t.Fatal("read hangs")
			}
		})
	}
}
