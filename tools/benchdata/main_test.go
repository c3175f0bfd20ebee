package main

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"
)

var tiny = spec{Seed: 7, Large: 2, LargeSize: 3 << 20, Medium: 3, MediumSize: 100_000, Small: 10, SmallSize: 4096, SmallPerDir: 4}

func readAll(t *testing.T, root string) map[string][]byte {
	t.Helper()
	out := map[string][]byte{}
	err := filepath.WalkDir(root, func(p string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := os.ReadFile(p)
		rel, _ := filepath.Rel(root, p)
		out[filepath.ToSlash(rel)] = b
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func TestGenerateIsDeterministic(t *testing.T) {
	base := t.TempDir()
	a, b := filepath.Join(base, "a"), filepath.Join(base, "b")
	if err := generate(a, tiny, 1); err != nil {
		t.Fatal(err)
	}
	if err := generate(b, tiny, 4); err != nil {
		t.Fatal(err)
	}
	fa, fb := readAll(t, a), readAll(t, b)
	if len(fa) != 15 || len(fb) != 15 {
		t.Fatalf("got %d and %d files, want 15", len(fa), len(fb))
	}
	var total int64
	for rel, da := range fa {
		if !bytes.Equal(da, fb[rel]) {
			t.Errorf("%s differs between runs", rel)
		}
		total += int64(len(da))
	}
	if total != tiny.total() {
		t.Errorf("wrote %d bytes, want %d", total, tiny.total())
	}
	for _, rel := range []string{"large/large-01.bin", "medium/medium-0002.bin", "small/000/small-00003.bin", "small/002/small-00009.bin"} {
		if _, ok := fa[rel]; !ok {
			t.Errorf("missing %s", rel)
		}
	}
	if _, err := os.Stat(a + ".tmp"); !os.IsNotExist(err) {
		t.Errorf("temporary directory left behind: %v", err)
	}
}

func TestGenerateContentIsDistinct(t *testing.T) {
	base := t.TempDir()
	dir := filepath.Join(base, "d")
	if err := generate(dir, tiny, 2); err != nil {
		t.Fatal(err)
	}
	seen := map[string]string{}
	for rel, data := range readAll(t, dir) {
		head := string(data[:64])
		if other, dup := seen[head]; dup {
			t.Errorf("%s and %s start with the same bytes", rel, other)
		}
		seen[head] = rel
	}
	other := tiny
	other.Seed = 8
	dir2 := filepath.Join(base, "e")
	if err := generate(dir2, other, 2); err != nil {
		t.Fatal(err)
	}
	a, _ := os.ReadFile(filepath.Join(dir, "large/large-00.bin"))
	b, _ := os.ReadFile(filepath.Join(dir2, "large/large-00.bin"))
	if bytes.Equal(a, b) {
		t.Error("a different seed gave the same content")
	}
}

func TestGenerateRefusesExisting(t *testing.T) {
	dir := t.TempDir()
	if err := generate(dir, tiny, 1); err == nil {
		t.Error("generate into an existing directory succeeded")
	}
}
