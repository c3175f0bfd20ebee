package mirror

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// Entries the worker can plant on a disk, each named like a sealed file,
// never hang or stop a sync or a scrub, and are never copied.
func TestHostileEntriesNeverStopSyncOrScrub(t *testing.T) {
	const id = "20250101T000000Z-0badf00d"
	sparsePack := "packs/00/00" + strings.Repeat("1", 62)
	for _, tc := range []struct {
		name  string
		rel   string
		plant func(p string) error
	}{
		{"FIFO as a manifest", "snapshots/" + id + ".snap", func(p string) error { return unix.Mkfifo(p, 0o600) }},
		{"symlink to /dev/zero as a retention record", "retention/" + id + ".1.ext", func(p string) error { return os.Symlink("/dev/zero", p) }},
		{"sparse 1 TiB file as a pack", sparsePack, func(p string) error {
			if err := os.MkdirAll(filepath.Dir(p), 0o700); err != nil {
				return err
			}
			f, err := os.Create(p)
			if err != nil {
				return err
			}
			defer f.Close()
			return f.Truncate(1 << 40)
		}},
		{"sparse 1 TiB file as a receipt", "receipts/" + id + ".receipt", func(p string) error {
			f, err := os.Create(p)
			if err != nil {
				return err
			}
			defer f.Close()
			return f.Truncate(1 << 40)
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t, "")
			if err := tc.plant(filepath.Join(e.a.Dir(), tc.rel)); err != nil {
				t.Fatal(err)
			}
			deadline := func(what string, f func() error) {
				t.Helper()
				done := make(chan error, 1)
				go func() { done <- f() }()
				select {
				case err := <-done:
					if err != nil {
						t.Fatalf("%s: %v", what, err)
					}
				case <-time.After(60 * time.Second):
					t.Fatalf("%s hangs", what)
				}
			}
			deadline("sync", func() error {
				_, err := Sync(context.Background(), e.a, e.diskB(), e.opts)
				return err
			})
			if _, err := os.Lstat(filepath.Join(e.bDir, tc.rel)); err == nil {
				t.Errorf("%s was copied to the mirror", tc.rel)
			}
			readAlone(t, e.bDir, e.want)
			deadline("scrub", func() error {
				_, err := Scrub(context.Background(), e.disks(), e.opts)
				return err
			})
		})
	}
}
