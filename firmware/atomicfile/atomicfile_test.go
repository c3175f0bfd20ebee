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
	if _, err := os.Stat(p + ".tmp"); !os.IsNotExist(err) {
		t.Fatal("temporary file left behind")
	}
	if fi, _ := os.Stat(p); fi.Mode().Perm() != 0o600 {
		t.Fatalf("mode %v", fi.Mode())
	}
	if err := Write(filepath.Join(dir, "missing", "f"), []byte("x"), false); err == nil {
		t.Fatal("write into a missing directory succeeded")
	}
}
