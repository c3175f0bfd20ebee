package atomicfile

import (
	"errors"
	"os"
	"path/filepath"
	"testing"
)

func TestWrite(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "f")
	for _, tc := range []struct {
		data      string
		exclusive bool
		wantErr   error
		want      string
	}{
		{"one", true, nil, "one"},
		{"two", true, os.ErrExist, "one"},
		{"three", false, nil, "three"},
	} {
		err := Write(p, []byte(tc.data), tc.exclusive)
		if !errors.Is(err, tc.wantErr) {
			t.Fatalf("Write(%q, exclusive %v) = %v, want %v", tc.data, tc.exclusive, err, tc.wantErr)
		}
		if b, _ := os.ReadFile(p); string(b) != tc.want {
			t.Fatalf("file holds %q, want %q", b, tc.want)
		}
	}
	if ents, _ := os.ReadDir(dir); len(ents) != 1 {
		t.Fatalf("temporary files left behind: %v", ents)
	}
	if fi, _ := os.Stat(p); fi.Mode().Perm() != 0o600 {
		t.Fatalf("mode %v", fi.Mode())
	}
	if err := Write(filepath.Join(dir, "missing", "f"), []byte("x"), false); err == nil {
		t.Fatal("write into a missing directory succeeded")
	}
}

// TestWriteNeverFollowsPlanted: a symlink or file planted under the old
// fixed temporary name, or under the new prefix, is never written
// through; the target is replaced and the symlink's target is untouched.
func TestWriteNeverFollowsPlanted(t *testing.T) {
	dir := t.TempDir()
	victim := filepath.Join(t.TempDir(), "victim")
	if err := os.WriteFile(victim, []byte("precious"), 0o600); err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(dir, "f")
	for _, name := range []string{"f.tmp", ".f.tmp-0000000000000000"} {
		if err := os.Symlink(victim, filepath.Join(dir, name)); err != nil {
			t.Fatal(err)
		}
	}
	if err := Write(p, []byte("new"), false); err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(victim); string(b) != "precious" {
		t.Fatalf("victim now holds %q", b)
	}
	if b, _ := os.ReadFile(p); string(b) != "new" {
		t.Fatalf("target holds %q", b)
	}
	if fi, err := os.Lstat(p); err != nil || !fi.Mode().IsRegular() {
		t.Fatalf("target is %v, %v", fi, err)
	}
}
