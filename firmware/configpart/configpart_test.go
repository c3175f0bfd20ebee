package configpart

import (
	"bytes"
	"errors"
	"os"
	"testing"
)

func TestSealConfig(t *testing.T) {
	master := bytes.Repeat([]byte{7}, 32)
	other := bytes.Repeat([]byte{8}, 32)
	cfg := []byte("appliance { name = \"x\" }\n")
	blob, err := SealConfig(master, cfg)
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(blob, []byte("appliance")) {
		t.Fatal("config in clear in the sealed file")
	}
	got, err := OpenConfig(master, blob)
	if err != nil || !bytes.Equal(got, cfg) {
		t.Fatalf("OpenConfig = %q, %v", got, err)
	}
	flip := func(i int) []byte { b := bytes.Clone(blob); b[i] ^= 1; return b }
	for _, tc := range []struct {
		name   string
		master []byte
		blob   []byte
	}{
		{"other key", other, blob},
		{"magic", master, flip(0)},
		{"version", master, flip(8)},
		{"nonce", master, flip(10)},
		{"ciphertext", master, flip(len(blob) - 20)},
		{"tag", master, flip(len(blob) - 1)},
		{"truncated", master, blob[:15]},
		{"empty", master, nil},
	} {
		if _, err := OpenConfig(tc.master, tc.blob); !errors.Is(err, ErrBadConfigFile) {
			t.Errorf("%s: err = %v, want ErrBadConfigFile", tc.name, err)
		}
	}
	b2, _ := SealConfig(master, cfg)
	if Digest(blob) == Digest(b2) {
		t.Error("two seals of one config share a digest: nonce not random")
	}
}

func TestPartitionFiles(t *testing.T) {
	p := &Partition{Dir: t.TempDir()}
	if _, err := p.ReadConfig(); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("ReadConfig on empty = %v", err)
	}
	for _, v := range []string{"one", "two"} {
		if err := p.WriteConfig([]byte(v)); err != nil {
			t.Fatal(err)
		}
		if b, err := p.ReadConfig(); err != nil || string(b) != v {
			t.Fatalf("ReadConfig = %q, %v", b, err)
		}
	}
	if !p.Has(ConfigFile) || p.Has(ConfigFile+".tmp") {
		t.Fatal("temporary file left behind")
	}
}
