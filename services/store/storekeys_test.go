package store

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// TestStoreKeysOpen: a store made and opened with the subkeys PID 1 derives
// (never the master key) is the same store the master key opens, and the
// subkeys of one store open no other.
func TestStoreKeysOpen(t *testing.T) {
	ctx := context.Background()
	id, err := NewID()
	if err != nil {
		t.Fatal(err)
	}
	keys, err := DeriveKeys(testKey, id)
	if err != nil {
		t.Fatal(err)
	}
	dir := storeDir(t)
	s, err := Init(ctx, dir, keys, InitOptions{PackSize: 4 << 20}, Options{Logger: testLogger(t)})
	if err != nil {
		t.Fatalf("init with store keys: %v", err)
	}
	if s.ID() != keys.IDString() {
		t.Fatalf("store ID %s, the keys were for %s", s.ID(), keys.IDString())
	}
	objs := map[string][]byte{"a": randBytes(7, 100<<10), "b": []byte("bee")}
	m := putObjects(t, s, "src", time.Now().Add(time.Hour), objs)
	s.Close()

	got, err := ReadID(dir)
	if err != nil || got != id {
		t.Fatalf("ReadID = %x, %v; want %x", got, err, id)
	}
	// The master key opens what the subkeys wrote, and the other way round.
	for _, tc := range []struct {
		name string
		ks   KeySource
		o    Options
	}{
		{"master", testKey, Options{}},
		{"store keys", keys, Options{}},
		{"read-only store keys", keys.ReadOnly(), Options{ReadOnly: true}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tc.o.Logger = testLogger(t)
			r, err := Open(ctx, dir, tc.ks, tc.o)
			if err != nil {
				t.Fatalf("open: %v", err)
			}
			defer r.Close()
			checkSnapshot(t, r, m.ID, objs)
		})
	}

	// A store made with the master key (another ID) refuses these keys
	// with the typed error, before it reads anything but the header.
	other := newStore(t, InitOptions{}, Options{})
	other.Close()
	_, err = Open(ctx, other.Dir(), keys, Options{Logger: testLogger(t)})
	var wrong *WrongStoreError
	if !errors.As(err, &wrong) || !errors.Is(err, ErrWrongKey) || wrong.Have != id || wrong.Want == id {
		t.Fatalf("open another store with these keys: %v, want a WrongStoreError", err)
	}
	// Keys without the clock key only open read-only: a writer could
	// otherwise append clock records tagged with an empty key.
	if _, err := Open(ctx, dir, keys.ReadOnly(), Options{Logger: testLogger(t)}); !errors.Is(err, ErrReadOnlyKeys) {
		t.Fatalf("open read-write with read-only keys: %v, want ErrReadOnlyKeys", err)
	}
	// The subkeys are no master key and cannot pose as one.
	if mk, err := keys.MasterKey(ctx); !errors.Is(err, ErrNoMasterKey) || mk != nil {
		t.Fatalf("StoreKeys.MasterKey = %x, %v; want ErrNoMasterKey", mk, err)
	}
	// Tampered keys do not open the store (wrong meta key).
	bad := keys
	bad.Meta = bytes.Repeat([]byte{1}, 32)
	if _, err := Open(ctx, dir, bad, Options{ReadOnly: true}); !errors.Is(err, ErrWrongKey) {
		t.Fatalf("open with a wrong meta key: %v, want ErrWrongKey", err)
	}
}

// TestDeriveKeysMatchesMaster: DeriveKeys gives the same keys Open derives
// from the master key, none of them equals the master key or another.
func TestDeriveKeysMatchesMaster(t *testing.T) {
	id := [16]byte{1, 2, 3}
	k, err := DeriveKeys(testKey, id)
	if err != nil {
		t.Fatal(err)
	}
	seen := map[string]string{string(testKey): "master"}
	for _, f := range []struct {
		name string
		b    []byte
	}{{"chunk-id", k.ChunkID}, {"data", k.Data}, {"meta", k.Meta}, {"clock", k.Clock}} {
		if len(f.b) != 32 {
			t.Fatalf("%s key is %d bytes", f.name, len(f.b))
		}
		if o, dup := seen[string(f.b)]; dup {
			t.Fatalf("%s key equals the %s key", f.name, o)
		}
		seen[string(f.b)] = f.name
	}
	if _, err := DeriveKeys(testKey[:31], id); err == nil {
		t.Fatal("DeriveKeys took a 31-byte master key")
	}
	if ro := k.ReadOnly(); ro.Clock != nil || !bytes.Equal(ro.Meta, k.Meta) {
		t.Fatalf("ReadOnly keeps the clock key or loses the meta key")
	}
}

// TestReadIDHostile: ReadID reads the header only, as hostile input.
func TestReadIDHostile(t *testing.T) {
	for _, tc := range []struct {
		name  string
		setup func(t *testing.T, dir string)
		want  error
	}{
		{"missing", func(t *testing.T, dir string) {}, ErrNotStore},
		{"short", func(t *testing.T, dir string) { write(t, filepath.Join(dir, configName), []byte("HOLDFAST")) }, ErrNotStore},
		{"bad magic", func(t *testing.T, dir string) { write(t, filepath.Join(dir, configName), make([]byte, 64)) }, ErrNotStore},
		{"symlink", func(t *testing.T, dir string) {
			write(t, filepath.Join(dir, "real"), append([]byte(configMagic), make([]byte, 30)...))
			if err := os.Symlink("real", filepath.Join(dir, configName)); err != nil {
				t.Fatal(err)
			}
		}, ErrForeign},
		{"huge", func(t *testing.T, dir string) {
			write(t, filepath.Join(dir, configName), append([]byte(configMagic), make([]byte, maxConfigFile+1)...))
		}, ErrForeign},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			tc.setup(t, dir)
			if _, err := ReadID(dir); !errors.Is(err, tc.want) {
				t.Fatalf("ReadID: %v, want %v", err, tc.want)
			}
		})
	}
}

func write(t *testing.T, p string, b []byte) {
	t.Helper()
	if err := os.WriteFile(p, b, 0o600); err != nil {
		t.Fatal(err)
	}
}

// TestModesGroupReadable: every file and directory the store makes is
// readable (directories searchable) by its group and by no one else, and
// writable by its owner only: on the appliance the sealer and the export
// read the worker's store through the worker's group and own nothing of it.
func TestModesGroupReadable(t *testing.T) {
	s := newStore(t, InitOptions{PackSize: 1 << 20, RecoveryBlob: []byte("HFRK blob")}, Options{})
	putObjects(t, s, "src", time.Now().Add(time.Hour), map[string][]byte{"a": randBytes(3, 3<<20), "b": []byte("b")})
	s = reopen(t, s, Options{}) // writes the index cache, the clock log
	m := putObjects(t, s, "src", time.Now().Add(2*time.Hour), map[string][]byte{"c": randBytes(4, 1<<20)})
	if err := s.Extend(m.ID, time.Now().Add(48*time.Hour), false, "test"); err != nil {
		t.Fatal(err)
	}
	s.Close()
	n := 0
	err := filepath.WalkDir(s.Dir(), func(p string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		fi, err := d.Info()
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(s.Dir(), p)
		perm := fi.Mode().Perm()
		want := os.FileMode(0o640)
		switch {
		case d.IsDir():
			want = 0o750
		case rel == lockName:
			want = 0o600 // only the writer takes the lock
		}
		if perm != want {
			t.Errorf("%s has mode %o, want %o", rel, perm, want)
		}
		n++
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if n < 20 {
		t.Fatalf("only %d entries checked", n)
	}
}
