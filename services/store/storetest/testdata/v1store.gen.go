//go:build ignore

// v1store.gen.go wrote v1store.tar.gz: a store whose manifests are in the
// first manifest format (HFSNAP01), made by the code at commit 1c48222
// (before snapshot heads). It is kept to show how the fixture was made;
// run at a later commit it would write the current format instead.
//
//	go run ./services/store/storetest/testdata/v1store.gen.go DIR
//
// DIR must be on a filesystem with inode flags (the store seals its
// files); the archive holds the store's files, their retention xattrs as
// PAX records, and fixture.json (keys, snapshot IDs, object digests).
package main

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"io/fs"
	"log"
	"math/rand/v2"
	"os"
	"path/filepath"
	"time"

	"github.com/holdfast-appliance/holdfast/firmware/recoverykey"
	"github.com/holdfast-appliance/holdfast/services/store"
	"golang.org/x/sys/unix"
)

func randBytes(seed uint64, n int) []byte {
	r := rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(r.Uint32())
	}
	return b
}

type fixture struct {
	Master    string                       `json:"master"`
	Recovery  string                       `json:"recovery"`
	Snapshots []string                     `json:"snapshots"`
	Objects   map[string]map[string]string `json:"objects"` // snapshot -> key -> sha256
	Errors    map[string][]string          `json:"errors"`
}

func main() {
	ctx := context.Background()
	dir := filepath.Join(os.Args[1], "store")
	master := bytes.Repeat([]byte{0x5a}, store.MasterKeySize)
	rk, err := recoverykey.Generate()
	check(err)
	blob, err := recoverykey.Wrap(master, rk)
	check(err)
	s, err := store.Init(ctx, dir, store.StaticKey(master), store.InitOptions{PackSize: 4 << 20, RecoveryBlob: blob}, store.Options{})
	check(err)
	fx := fixture{Master: hex.EncodeToString(master), Recovery: rk.String(), Objects: map[string]map[string]string{}, Errors: map[string][]string{}}
	snaps := [][]string{
		{"a/one", "a/two", "b/three", "c/four", "c/five"},
		{"a/one", "a/two", "b/three-changed", "d/six"},
	}
	for i, keys := range snaps {
		sn, err := s.Begin(ctx, store.BeginOptions{Source: "v1-fixture", RetainUntil: time.Now().AddDate(20, 0, 0)})
		check(err)
		got := map[string]string{}
		for j, k := range keys {
			seed := uint64(j + 1)
			if k == "b/three-changed" || k == "d/six" {
				seed = uint64(100 + j)
			}
			data := randBytes(seed, 3000+int(seed)*1000)
			_, err := sn.Put(ctx, store.ObjectInfo{Key: []byte(k), ContentType: "text/plain", UserMeta: map[string]string{"n": k}}, bytes.NewReader(data))
			check(err)
			sum := sha256.Sum256(data)
			got[k] = hex.EncodeToString(sum[:])
		}
		if i == 1 {
			sn.RecordError("fixture: one recorded error")
		}
		m, err := sn.Commit(ctx, store.CommitOptions{})
		check(err)
		fx.Snapshots = append(fx.Snapshots, m.ID)
		fx.Objects[m.ID] = got
		fx.Errors[m.ID] = m.Errors
		time.Sleep(1100 * time.Millisecond) // distinct IDs to the second
	}
	check(s.Close())

	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	tw := tar.NewWriter(zw)
	check(filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		check(err)
		rel, _ := filepath.Rel(dir, p)
		if rel == "." || rel == "lock" {
			return nil
		}
		info, err := d.Info()
		check(err)
		h, err := tar.FileInfoHeader(info, "")
		check(err)
		h.Name = filepath.ToSlash(rel)
		h.ModTime, h.Uid, h.Gid, h.Uname, h.Gname = time.Unix(0, 0), 0, 0, "", ""
		h.Format = tar.FormatPAX
		for _, x := range []string{"user.holdfast.retain_until", "user.holdfast.legal_hold"} {
			v := make([]byte, 256)
			if n, err := unix.Getxattr(p, x, v); err == nil {
				if h.PAXRecords == nil {
					h.PAXRecords = map[string]string{}
				}
				h.PAXRecords["SCHILY.xattr."+x] = string(v[:n])
			}
		}
		if d.IsDir() {
			h.Name += "/"
		}
		check(tw.WriteHeader(h))
		if info.Mode().IsRegular() {
			b, err := os.ReadFile(p)
			check(err)
			_, err = tw.Write(b)
			check(err)
		}
		return nil
	}))
	js, err := json.MarshalIndent(fx, "", "  ")
	check(err)
	check(tw.WriteHeader(&tar.Header{Name: "fixture.json", Mode: 0o600, Size: int64(len(js)), ModTime: time.Unix(0, 0), Format: tar.FormatPAX}))
	_, err = tw.Write(js)
	check(err)
	check(tw.Close())
	check(zw.Close())
	check(os.WriteFile("services/store/storetest/testdata/v1store.tar.gz", buf.Bytes(), 0o644))
}

func check(err error) {
	if err != nil {
		log.Fatal(err)
	}
}
