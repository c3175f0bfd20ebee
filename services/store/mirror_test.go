package store

import (
	"context"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestKindOf(t *testing.T) {
	const id = "20260101T000000Z-0011aabb"
	pack := "ab" + strings.Repeat("0123456789abcdef", 4)[2:]
	for _, tc := range []struct {
		rel  string
		want FileKind // "" means refused
	}{
		{"packs/ab/" + pack, KindPack},
		{"packs/cd/" + pack, ""}, // not in its shard
		{"packs/AB/" + pack, ""},
		{"packs/ab/" + pack + "x", ""},
		{"packs/ab/../ab/" + pack, ""},
		{"packs/" + pack, ""},
		{"snapshots/" + id + ".snap", KindManifest},
		{"snapshots/" + id + ".snap/x", ""},
		{"snapshots/../" + id + ".snap", ""},
		{"snapshots/20261301T000000Z-0011aabb.snap", ""}, // month 13
		{"retention/" + id + ".1767225600000000000.ext", KindRetention},
		{"retention/" + id + "..ext", ""},
		{"retention/" + id + ".12a.ext", ""},
		{"retention/" + id + ".123456789012345678901.ext", ""}, // 21 digits
		{"retention/../../etc/passwd", ""},
		{"receipts/" + id + ".receipt", KindReceipt},
		{"receipts/x.receipt", ""},
		{"recovery/wrapped-key", KindRecovery},
		{"recovery/other", ""},
		{"holdfast-store", ""}, // cloned by InitMirror, never copied or replaced
		{"index/index", ""},
		{"state/clock.log", ""},
		{"wip/" + id + ".journal", ""},
		{"/packs/ab/" + pack, ""},
		{"", ""},
	} {
		k, ok := KindOf(tc.rel)
		if tc.want == "" && ok || tc.want != "" && (!ok || k != tc.want) {
			t.Errorf("KindOf(%q) = %q, %v; want %q", tc.rel, k, ok, tc.want)
		}
	}
}

// TestInstallCopyAndReplaceRefuse covers what the mirror's helpers must
// never do: replace an existing file by InstallCopy, or touch a good file
// by ReplaceDamaged.
func TestInstallCopyAndReplaceRefuse(t *testing.T) {
	ctx := context.Background()
	a := newStore(t, InitOptions{PackSize: 1 << 20}, Options{})
	m := putObjects(t, a, "src", time.Now().Add(time.Hour), map[string][]byte{"x": randBytes(5, 2<<20)})
	b, err := InitMirror(ctx, storeDir(t), a, testKey, Options{Logger: testLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.Close() })
	files, err := ListSealed(a.Dir())
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range files {
		if _, err := b.InstallCopy(ctx, a.Dir(), f.Rel); err != nil {
			t.Fatalf("install %s: %v", f.Rel, err)
		}
		if _, err := b.InstallCopy(ctx, a.Dir(), f.Rel); !errors.Is(err, fs.ErrExist) {
			t.Errorf("second install of %s: %v", f.Rel, err)
		}
		st, _ := os.Stat(b.path(f.Rel))
		if _, err := b.ReplaceDamaged(ctx, a.Dir(), f.Rel); !errors.Is(err, ErrNotDamaged) {
			t.Errorf("replace of a good %s: %v", f.Rel, err)
		}
		if st2, _ := os.Stat(b.path(f.Rel)); !os.SameFile(st, st2) || !st2.ModTime().Equal(st.ModTime()) {
			t.Errorf("%s was touched", f.Rel)
		}
	}
	if err := b.SaveIndex(); err != nil {
		t.Fatal(err)
	}
	checkSnapshot(t, b, m.ID, map[string][]byte{"x": randBytes(5, 2<<20)})
	mustVerify(t, b)
	if es, _ := os.ReadDir(b.path(tmpDir)); len(es) != 0 {
		t.Errorf("tmp/ holds %d files", len(es))
	}
	// A foreign store's files do not authenticate under b's keys.
	other := newStore(t, InitOptions{}, Options{})
	mo := putObjects(t, other, "src", time.Time{}, map[string][]byte{"y": []byte("other")})
	rel := filepath.ToSlash(filepath.Join(snapshotsDir, mo.ID+".snap"))
	if _, err := b.InstallCopy(ctx, other.Dir(), rel); !errors.Is(err, ErrSourceDamaged) {
		t.Errorf("install of another store's manifest: %v", err)
	}
	if _, err := os.Lstat(b.path(rel)); !errors.Is(err, fs.ErrNotExist) {
		t.Error("another store's manifest was installed")
	}
}
