package main

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/holdfast-appliance/holdfast/firmware/recoverykey"
	"github.com/holdfast-appliance/holdfast/services/restore"
	"github.com/holdfast-appliance/holdfast/services/restore/disk/disktest"
	"github.com/holdfast-appliance/holdfast/services/restore/restoretest"
	"github.com/holdfast-appliance/holdfast/tools/testminio"
)

// TestRestoreDiskCLI runs `holdfast restore --disk` end to end on data disk
// images: to a directory and to MinIO, and every refusal; after each run
// the image must be byte-identical and nothing left mounted or attached.
func TestRestoreDiskCLI(t *testing.T) {
	objs := []disktest.Object{
		{Key: "docs/a.txt", Data: []byte("alpha"), ContentType: "text/x-test", Meta: map[string]string{"Src": "disk"}},
		{Key: "docs/sub/b.bin", Data: make([]byte, 7<<20+5), ContentType: "text/x-test", Meta: map[string]string{"Src": "disk"}},
		{Key: "mail/Grüße\n🙂", Data: []byte("unicode and a newline"), ContentType: "text/x-test", Meta: map[string]string{"Src": "disk"}},
		{Key: "k\" level=error x=\"", Data: []byte("log forgery"), ContentType: "text/x-test", Meta: map[string]string{"Src": "disk"}},
		{Key: "%2e%2e%2f", Data: []byte("encoded dots"), ContentType: "text/x-test", Meta: map[string]string{"Src": "disk"}},
	}
	for i := range objs[1].Data {
		objs[1].Data[i] = byte(i * 7)
	}
	hostile := []disktest.Object{{Key: "../outside", Data: []byte("hostile")}, {Key: "\xffbad", Data: []byte("not utf-8")}}
	im := disktest.MakeImage(t, objs, append(append([]disktest.Object{}, objs...), hostile...))
	s3Snap, dirSnap := im.Snapshots[0], im.Snapshots[1]
	want := map[string][]byte{}
	for _, o := range append(append([]disktest.Object{}, objs...), hostile...) {
		want[o.Key] = o.Data
	}
	keyFile := filepath.Join(t.TempDir(), "hf.key")
	writeFile(t, keyFile, hex.EncodeToString(im.Master)+"\n")
	noStore := disktest.Blank(t, "holdfast-data")
	zero := filepath.Join(t.TempDir(), "zero.img")
	if err := os.WriteFile(zero, make([]byte, 4<<20), 0o600); err != nil {
		t.Fatal(err)
	}
	other, _ := recoverykey.Generate()

	m := testminio.Start(t)
	m.MakeBucket(t, "rescue", false)
	cfg := filepath.Join(t.TempDir(), "target.hcl")
	writeFile(t, cfg, fmt.Sprintf("target {\n  endpoint = %q\n  access_key = %q\n  secret_key = %q\n  tls = false\n}\n",
		m.Endpoint, testminio.AccessKey, testminio.SecretKey))

	rkey := im.Recovery.String()
	tests := []struct {
		name    string
		args    []string // "DIR" is replaced by a fresh directory
		img     string   // the image whose bytes must not change
		mounted bool     // the image is mounted elsewhere during the run
		stdin   string
		code    int
		want    []string // in stdout (success) or stderr (failure)
		check   func(t *testing.T, out string)
	}{
		{name: "recovery key to dir", img: im.Path,
			args: []string{"--disk", im.Path, "--recovery-key", rkey, "--snapshot", dirSnap, "--to", "DIR"},
			want: []string{"restored 7 objects", "2 keys are not clean paths"},
			check: func(t *testing.T, out string) {
				got := readRestoredDir(t, out)
				for k, v := range want {
					if sha256.Sum256(got[k]) != sha256.Sum256(v) {
						t.Errorf("key %q: restored file differs", k)
					}
				}
				if len(got) != len(want) {
					t.Errorf("%d files restored, want %d", len(got), len(want))
				}
			}},
		{name: "recovery key to S3", img: im.Path,
			args: []string{"--disk", im.Path, "--recovery-key", rkey, "--snapshot", s3Snap, "--to", "s3://rescue/d1/", "--config", cfg, "--part-size", "5MiB"},
			want: []string{fmt.Sprintf("restored %d objects", len(objs))},
			check: func(t *testing.T, _ string) {
				restoretest.CheckBucket(t, m, "rescue", "d1/", restoretest.Want(objs), restore.MinPartSize)
			}},
		{name: "recovery key on stdin, one object", img: im.Path, stdin: rkey + "\n",
			args: []string{"--disk", im.Path, "--recovery-key", "-", "--snapshot", dirSnap, "--prefix", "docs/a.txt", "--exact", "--to", "DIR"},
			want: []string{"restored 1 objects"},
			check: func(t *testing.T, out string) {
				if b, _ := os.ReadFile(filepath.Join(out, "docs/a.txt")); string(b) != "alpha" {
					t.Errorf("docs/a.txt: %q", b)
				}
			}},
		{name: "key file", img: im.Path,
			args: []string{"--disk", im.Path, "--key-file", keyFile, "--snapshot", dirSnap, "--prefix", "docs/", "--to", "DIR"},
			want: []string{"restored 2 objects"}},
		{name: "another recovery key", img: im.Path, code: 1,
			args: []string{"--disk", im.Path, "--recovery-key", other.String(), "--snapshot", dirSnap, "--to", "DIR"},
			want: []string{"not this store's", "store/ on disk " + im.Path}},
		{name: "typo in recovery key", img: im.Path, code: 2,
			args: []string{"--disk", im.Path, "--recovery-key", typo(im.Recovery), "--snapshot", dirSnap, "--to", "DIR"},
			want: []string{"check digit"}},
		{name: "mounted elsewhere", img: im.Path, mounted: true, code: 1,
			args: []string{"--disk", im.Path, "--recovery-key", rkey, "--snapshot", dirSnap, "--to", "DIR"},
			want: []string{"is mounted on", "unmount it"}},
		{name: "no store on the disk", img: noStore, code: 1,
			args: []string{"--disk", noStore, "--recovery-key", rkey, "--snapshot", dirSnap, "--to", "DIR"},
			want: []string{"no store/ directory", noStore}},
		{name: "not ext4", img: zero, code: 1,
			args: []string{"--disk", zero, "--recovery-key", rkey, "--snapshot", dirSnap, "--to", "DIR"},
			want: []string{"no ext4 file system"}},
		{name: "no such snapshot", img: im.Path, code: 1,
			args: []string{"--disk", im.Path, "--recovery-key", rkey, "--snapshot", "20990101T000000Z-00000000", "--to", "DIR"},
			want: []string{"20990101T000000Z-00000000"}},
		{name: "no such bucket", img: im.Path, code: 1,
			args: []string{"--disk", im.Path, "--recovery-key", rkey, "--snapshot", s3Snap, "--to", "s3://nobucket/", "--config", cfg},
			want: []string{`no bucket "nobucket"`}},
		{name: "both --store and --disk", code: 2,
			args: []string{"--disk", im.Path, "--store", t.TempDir(), "--recovery-key", rkey, "--snapshot", dirSnap, "--to", "DIR"},
			want: []string{"exactly one of --store and --disk"}},
		{name: "neither --store nor --disk", code: 2,
			args: []string{"--recovery-key", rkey, "--snapshot", dirSnap, "--to", "DIR"},
			want: []string{"exactly one of --store and --disk"}},
		{name: "missing disk", code: 1,
			args: []string{"--disk", filepath.Join(t.TempDir(), "nope.img"), "--recovery-key", rkey, "--snapshot", dirSnap, "--to", "DIR"},
			want: []string{"nope.img", "no such file"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var before [32]byte
			var loops []string
			if tt.img != "" {
				before = disktest.SHA256(t, tt.img)
			}
			if tt.mounted {
				disktest.Mount(t, tt.img, false)
				loops = disktest.Loops(t, tt.img)
				before = [32]byte{} // mounted read-write: the test's own mount may write
			}
			out := filepath.Join(t.TempDir(), "out")
			args := []string{"restore"}
			for _, a := range tt.args {
				if a == "DIR" {
					a = out
				}
				args = append(args, a)
			}
			var stdout, stderr strings.Builder
			code := runWithStdin(args, tt.stdin, &stdout, &stderr)
			if code != tt.code {
				t.Fatalf("exit %d, want %d\nstdout: %s\nstderr: %s", code, tt.code, stdout.String(), stderr.String())
			}
			text := stderr.String()
			if tt.code == 0 {
				text = stdout.String()
			}
			for _, w := range tt.want {
				if !strings.Contains(text, w) {
					t.Errorf("output %q lacks %q", text, w)
				}
			}
			if tt.check != nil {
				tt.check(t, out)
			}
			if tt.code != 0 {
				if ents, _ := os.ReadDir(out); len(ents) != 0 {
					t.Errorf("a failed restore left %d entries in the target", len(ents))
				}
			}
			if tt.img != "" {
				disktest.CheckReleased(t, tt.img, loops...)
				if before != [32]byte{} && disktest.SHA256(t, tt.img) != before {
					t.Errorf("%s changed", tt.img)
				}
			}
		})
	}
	if _, err := os.Stat(filepath.Join(t.TempDir(), "..", "outside")); err == nil {
		t.Error("a key escaped the target directory")
	}
}

// runWithStdin runs the command line in-process with stdin from a string.
func runWithStdin(args []string, stdin string, stdout, stderr io.Writer) int {
	if stdin == "" {
		return run(context.Background(), args, stdout, stderr)
	}
	r, w, err := os.Pipe()
	if err != nil {
		panic(err)
	}
	go func() {
		io.WriteString(w, stdin)
		w.Close()
	}()
	old := os.Stdin
	os.Stdin = r
	defer func() { os.Stdin = old; r.Close() }()
	return run(context.Background(), args, stdout, stderr)
}

// readRestoredDir maps each key restored below dir to its content, unsafe
// keys through the index.
func readRestoredDir(t *testing.T, dir string) map[string][]byte {
	t.Helper()
	got := map[string][]byte{}
	names := map[string]string{}
	if idx, err := os.ReadFile(filepath.Join(dir, restore.UnsafeDir, restore.UnsafeIndex)); err == nil {
		for _, line := range strings.Split(strings.TrimSuffix(string(idx), "\n"), "\n") {
			f := strings.SplitN(line, "\t", 3)
			var k string
			if _, err := fmt.Sscanf(f[1], "%q", &k); err != nil {
				t.Fatalf("index line %q: %v", line, err)
			}
			names[filepath.Join(restore.UnsafeDir, f[0])] = k
		}
	}
	err := filepath.Walk(dir, func(p string, fi os.FileInfo, err error) error {
		if err != nil || fi.IsDir() {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		if rel == filepath.Join(restore.UnsafeDir, restore.UnsafeIndex) {
			return nil
		}
		b, err := os.ReadFile(p)
		if k, ok := names[rel]; ok {
			rel = k
		}
		got[rel] = b
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return got
}
