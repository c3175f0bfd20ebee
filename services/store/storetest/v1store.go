package storetest

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	_ "embed"
	"encoding/json"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/holdfast-appliance/holdfast/services/store/fsflag"
)

// v1store.tar.gz is a store written by the code before snapshot heads: its
// manifests are in the first format (HFSNAP01). testdata/v1store.gen.go
// says how it was made.
//
//go:embed testdata/v1store.tar.gz
var v1Store []byte

// V1Fixture describes the store V1Store writes.
type V1Fixture struct {
	Master    string                       `json:"master"`    // master key, hex
	Recovery  string                       `json:"recovery"`  // paper recovery key, display form
	Snapshots []string                     `json:"snapshots"` // committed snapshot IDs, oldest first
	Objects   map[string]map[string]string `json:"objects"`   // snapshot -> key -> sha256 hex of the content
	Errors    map[string][]string          `json:"errors"`    // snapshot -> errors it recorded
}

// V1Store writes into dir (which must not exist; on a filesystem with
// inode flags, such as Dir returns) a store whose manifests are in the
// first manifest format, written by the old code, and seals it as the
// store would have: files immutable (the clock log append-only),
// append-only directories, retention xattrs on the manifests.
func V1Store(t testing.TB, dir string) V1Fixture {
	t.Helper()
	zr, err := gzip.NewReader(bytes.NewReader(v1Store))
	if err != nil {
		t.Fatal(err)
	}
	var fx V1Fixture
	var dirs []string
	tr := tar.NewReader(zr)
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		name := strings.TrimSuffix(h.Name, "/")
		if name == "fixture.json" {
			if err := json.NewDecoder(tr).Decode(&fx); err != nil {
				t.Fatal(err)
			}
			continue
		}
		p := filepath.Join(dir, filepath.FromSlash(name))
		if h.Typeflag == tar.TypeDir {
			if err := os.MkdirAll(p, 0o700); err != nil {
				t.Fatal(err)
			}
			dirs = append(dirs, name)
			continue
		}
		if err := os.MkdirAll(filepath.Dir(p), 0o700); err != nil {
			t.Fatal(err)
		}
		b, err := io.ReadAll(tr)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, b, 0o600); err != nil {
			t.Fatal(err)
		}
		for k, v := range h.PAXRecords {
			if x, ok := strings.CutPrefix(k, "SCHILY.xattr."); ok {
				if err := unix.Setxattr(p, x, []byte(v), 0); err != nil {
					t.Fatal(err)
				}
			}
		}
		switch {
		case name == "state/clock.log":
			err = fsflag.Set(p, fsflag.Append)
		case strings.HasPrefix(name, "index/"):
		default:
			err = fsflag.Set(p, fsflag.Immutable)
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(dir, "lock"), nil, 0o600); err != nil {
		t.Fatal(err)
	}
	for _, d := range append(dirs, ".") {
		switch d {
		case "index", "state", "tmp", "wip":
			continue
		}
		if err := fsflag.Set(filepath.Join(dir, d), fsflag.Append); err != nil {
			t.Fatal(err)
		}
	}
	if len(fx.Snapshots) == 0 {
		t.Fatal("v1 fixture: no fixture.json")
	}
	return fx
}
