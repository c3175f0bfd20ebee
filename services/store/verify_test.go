package store

import (
	"bytes"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"testing"
	"time"

	"github.com/holdfast-appliance/holdfast/services/store/fsflag"
)

// flipByte clears the immutable flag (the test holds the capability), flips
// one byte at off (negative: from the end), and seals the file again.
func flipByte(t *testing.T, path string, off int64) {
	t.Helper()
	if err := fsflag.Clear(path, fsflag.Immutable); err != nil {
		t.Fatal(err)
	}
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	if off < 0 {
		st, _ := f.Stat()
		off += st.Size()
	}
	b := make([]byte, 1)
	f.ReadAt(b, off)
	b[0] ^= 0x01
	if _, err := f.WriteAt(b, off); err != nil {
		t.Fatal(err)
	}
	f.Close()
	if err := fsflag.Set(path, fsflag.Immutable); err != nil {
		t.Fatal(err)
	}
}

func TestVerifyNamesDamage(t *testing.T) {
	// "victim" and "also-victim" have the same content, so they share their
	// chunks; "safe" shares none.
	shared := randBytes(60, 600<<10)
	objs := map[string][]byte{
		"victim":      shared,
		"also-victim": bytes.Clone(shared),
		"safe":        randBytes(62, 2<<20),
	}
	for _, tc := range []struct {
		name        string
		damage      func(t *testing.T, s *Store, m *Manifest)
		wantSnaps   int
		wantObjects []string
	}{
		{"flipped byte in a chunk", func(t *testing.T, s *Store, m *Manifest) {
			for _, o := range m.Objects {
				if string(o.Key) == "victim" {
					loc := s.idx.locations(o.Chunks[0])[0]
					flipByte(t, s.packPath(loc.packName()), int64(loc.offset)+100)
				}
			}
		}, 1, []string{"also-victim", "victim"}},
		{"flipped byte in a pack trailer", func(t *testing.T, s *Store, m *Manifest) {
			for _, o := range m.Objects {
				if string(o.Key) == "safe" {
					loc := s.idx.locations(o.Chunks[0])[0]
					flipByte(t, s.packPath(loc.packName()), -(packFooter + 20))
				}
			}
		}, 0, nil}, // trailer damage is reported; the index still finds every chunk intact
		{"flipped byte in a manifest", func(t *testing.T, s *Store, m *Manifest) {
			flipByte(t, s.path(snapshotsDir, m.ID+".snap"), 60)
		}, 1, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := newStore(t, InitOptions{PackSize: 8 << 20}, Options{})
			m := putObjects(t, s, "src", time.Now().Add(time.Hour), objs)
			mustVerify(t, s)
			tc.damage(t, s, m)
			s = reopen(t, s, Options{})
			r, err := s.Verify(t.Context())
			if err != nil {
				t.Fatal(err)
			}
			if r.OK() {
				t.Fatal("verify found nothing after damage")
			}
			// The same report with the set of good chunks merged from
			// runs of one chunk into a file (idset.go).
			s.idRun = 1
			rFile, err := s.Verify(t.Context())
			s.idRun = 0
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(r, rFile) {
				t.Errorf("verify with the good chunks in a file reported\n%+v\nin RAM\n%+v", rFile, r)
			}
			for _, p := range r.Problems {
				t.Logf("problem: %s", p)
			}
			if len(r.DamagedSnapshots) != tc.wantSnaps {
				t.Errorf("damaged snapshots %v, want %d", r.DamagedSnapshots, tc.wantSnaps)
			}
			var got []string
			for _, d := range r.DamagedObjects {
				if d.Snapshot != m.ID {
					t.Errorf("damaged object names snapshot %s, want %s", d.Snapshot, m.ID)
				}
				got = append(got, string(d.Key))
			}
			slices.Sort(got)
			if !slices.Equal(got, tc.wantObjects) {
				t.Errorf("damaged objects %q, want %q", got, tc.wantObjects)
			}
		})
	}
}

// TestVerifyTempDir: Verify sorts its good chunks in Options.TempDir when
// given (an error there is Verify's), else in the store's tmp/ when
// read-write and os.TempDir() when read-only; it leaves nothing there.
func TestVerifyTempDir(t *testing.T) {
	s := newStore(t, InitOptions{}, Options{})
	putObjects(t, s, "src", time.Time{}, map[string][]byte{"a": randBytes(1, 300<<10), "b": randBytes(2, 300<<10)})
	if got := s.verifyTempDir(); got != s.path(tmpDir) {
		t.Errorf("read-write store: temporary files go to %s, want its tmp/", got)
	}
	dir := t.TempDir()
	for _, tc := range []struct {
		name    string
		o       Options
		wantDir string
		wantErr bool
	}{
		{"read-only", Options{ReadOnly: true}, os.TempDir(), false},
		{"given", Options{TempDir: dir}, dir, false},
		{"given, read-only", Options{ReadOnly: true, TempDir: dir}, dir, false},
		{"given, missing", Options{ReadOnly: true, TempDir: filepath.Join(dir, "missing")}, filepath.Join(dir, "missing"), true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := reopen(t, s, tc.o)
			if got := s.verifyTempDir(); got != tc.wantDir {
				t.Errorf("temporary files go to %s, want %s", got, tc.wantDir)
			}
			s.idRun = 1
			r, err := s.Verify(t.Context())
			if (err != nil) != tc.wantErr {
				t.Fatalf("verify: %v, want an error: %v", err, tc.wantErr)
			}
			if err == nil && !r.OK() {
				t.Fatalf("verify: %v", r.Problems)
			}
			if es, _ := os.ReadDir(dir); len(es) != 0 {
				t.Errorf("verify left %d entries in %s", len(es), dir)
			}
		})
	}
}
