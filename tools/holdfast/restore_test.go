package main

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/holdfast-appliance/holdfast/firmware/recoverykey"
	"github.com/holdfast-appliance/holdfast/services/restore"
	"github.com/holdfast-appliance/holdfast/services/restore/restoretest"
	"github.com/holdfast-appliance/holdfast/services/store"
	"github.com/holdfast-appliance/holdfast/services/store/storetest"
	"github.com/holdfast-appliance/holdfast/tools/testminio"
)

// restoreFixture is a closed store holding one committed snapshot, with a
// key file and a recovery key that both open it.
type restoreFixture struct {
	dir, keyFile, snapshot string
	recovery               recoverykey.Key
	objs                   map[string][]byte
}

func newRestoreFixture(t *testing.T) *restoreFixture {
	t.Helper()
	ctx := context.Background()
	dir := storetest.Dir(t)
	master := bytes.Repeat([]byte{0x17}, store.MasterKeySize)
	keyFile := filepath.Join(t.TempDir(), "hf.key")
	if err := os.WriteFile(keyFile, []byte(hex.EncodeToString(master)+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	rk, err := recoverykey.Generate()
	if err != nil {
		t.Fatal(err)
	}
	blob, err := recoverykey.Wrap(master, rk)
	if err != nil {
		t.Fatal(err)
	}
	s, err := store.Init(ctx, dir, store.StaticKey(master), store.InitOptions{RecoveryBlob: blob}, store.Options{})
	if err != nil {
		t.Fatalf("init store: %v", err)
	}
	sn, err := s.Begin(ctx, store.BeginOptions{Source: "cli"})
	if err != nil {
		t.Fatal(err)
	}
	objs := map[string][]byte{
		"docs/a.txt":           []byte("alpha"),
		"docs/sub/b.bin":       bytes.Repeat([]byte{1, 2, 3}, 100000),
		"mail/Grüße\n🙂":        []byte("unicode and a newline"),
		"../outside":           []byte("hostile"),
		"k\" level=error x=\"": []byte("log forgery"),
	}
	for k, v := range objs {
		if _, err := sn.Put(ctx, store.ObjectInfo{Key: []byte(k), ContentType: "text/x-test", UserMeta: map[string]string{"Src": "cli"}}, bytes.NewReader(v)); err != nil {
			t.Fatal(err)
		}
	}
	m, err := sn.Commit(ctx, store.CommitOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	return &restoreFixture{dir: dir, keyFile: keyFile, snapshot: m.ID, recovery: rk, objs: objs}
}

// typo changes one digit of the first group of a recovery key.
func typo(k recoverykey.Key) string {
	s := []byte(k.String())
	s[2] = '0' + (s[2]-'0'+1)%10
	return string(s)
}

func TestRestoreCLI(t *testing.T) {
	f := newRestoreFixture(t)
	other, _ := recoverykey.Generate()
	m := testminio.Start(t)
	m.MakeBucket(t, "rescue", false)
	cfg := filepath.Join(t.TempDir(), "target.hcl")
	writeFile(t, cfg, fmt.Sprintf("target {\n  endpoint = %q\n  access_key = %q\n  secret_key = %q\n  tls = false\n}\n",
		m.Endpoint, testminio.AccessKey, testminio.SecretKey))
	badCfg := filepath.Join(t.TempDir(), "bad.hcl")
	writeFile(t, badCfg, "target {\n  endpoint = \"x:1\"\n}\n")
	pem := filepath.Join(t.TempDir(), "nokey.pem")
	writeFile(t, pem, "not a key")

	base := []string{"restore", "--store", f.dir, "--snapshot", f.snapshot}
	withKey := append(append([]string{}, base...), "--key-file", f.keyFile)
	tests := []struct {
		name    string
		args    []string
		to      string // "dir": a fresh directory is appended as --to
		code    int
		want    []string // in stderr (failures) or stdout (success)
		wantDir []string // keys expected in the restored directory (or bucket)
		wantS3  string   // when set: the prefix in bucket "rescue" holding wantDir
	}{
		{"key file to dir", withKey, "dir", 0, []string{"restored 5 objects", "1 keys are not clean paths"}, []string{"docs/a.txt", "docs/sub/b.bin", "mail/Grüße\n🙂", "k\" level=error x=\""}, ""},
		{"prefix to dir", append(append([]string{}, withKey...), "--prefix", "docs/"), "dir", 0, []string{"restored 2 objects"}, []string{"docs/a.txt", "docs/sub/b.bin"}, ""},
		{"exact key to dir", append(append([]string{}, withKey...), "--prefix", "docs/a.txt", "--exact"), "dir", 0, []string{"restored 1 objects"}, []string{"docs/a.txt"}, ""},
		{"recovery key to S3", append(append([]string{}, base...), "--recovery-key", f.recovery.String(), "--to", "s3://rescue/r1/", "--config", cfg, "--prefix", "docs/"), "", 0, []string{"restored 2 objects"}, []string{"docs/a.txt", "docs/sub/b.bin"}, "r1/"},
		{"odd keys to S3", append(append([]string{}, withKey...), "--to", "s3://rescue/r2/", "--config", cfg, "--prefix", "mail/"), "", 0, []string{"restored 1 objects"}, []string{"mail/Grüße\n🙂"}, "r2/"},
		{"key MinIO refuses", append(append([]string{}, withKey...), "--to", "s3://rescue/r3/", "--config", cfg, "--parallel", "1"), "", 1, []string{`restore "../outside"`, "bad components"}, nil, ""},
		{"recovery key typed without dashes", append(append([]string{}, base...), "--recovery-key", strings.ReplaceAll(f.recovery.String(), "-", " "), "--prefix", "docs/"), "dir", 0, []string{"restored 2 objects"}, []string{"docs/a.txt", "docs/sub/b.bin"}, ""},
		{"typo in recovery key", append(append([]string{}, base...), "--recovery-key", typo(f.recovery)), "dir", 2, []string{"recovery key group 1", "check digit"}, nil, ""},
		{"another recovery key", append(append([]string{}, base...), "--recovery-key", other.String()), "dir", 1, []string{"not this store's"}, nil, ""},
		{"no key", base, "dir", 2, []string{"exactly one of --key-file and --recovery-key"}, nil, ""},
		{"both keys", append(append([]string{}, withKey...), "--recovery-key", f.recovery.String()), "dir", 2, []string{"exactly one"}, nil, ""},
		{"no --to", withKey, "", 2, []string{"to"}, nil, ""},
		{"s3 without config", append(append([]string{}, withKey...), "--to", "s3://rescue/x"), "", 2, []string{"needs --config"}, nil, ""},
		{"bad config", append(append([]string{}, withKey...), "--to", "s3://rescue/x", "--config", badCfg), "", 2, []string{"access_key"}, nil, ""},
		{"no such bucket", append(append([]string{}, withKey...), "--to", "s3://nobucket/x", "--config", cfg), "", 1, []string{`no bucket "nobucket"`}, nil, ""},
		{"unknown snapshot", []string{"restore", "--store", f.dir, "--snapshot", "20990101T000000Z-00000000", "--key-file", f.keyFile}, "dir", 1, []string{"20990101T000000Z-00000000"}, nil, ""},
		{"no such prefix", append(append([]string{}, withKey...), "--prefix", "nothing/"), "dir", 1, []string{`no object matching "nothing/"`}, nil, ""},
		{"bad receipt key", append(append([]string{}, withKey...), "--receipt-pubkey", pem), "dir", 1, []string{"nokey.pem"}, nil, ""},
		{"part size too small", append(append([]string{}, withKey...), "--part-size", "1MiB"), "dir", 2, []string{"--part-size"}, nil, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			args := append([]string{}, tt.args...)
			out := filepath.Join(t.TempDir(), "out")
			if tt.to == "dir" {
				args = append(args, "--to", out)
			}
			code, stdout, stderr := runCLI(t, args...)
			if code != tt.code {
				t.Fatalf("exit %d, want %d\nstdout: %s\nstderr: %s", code, tt.code, stdout, stderr)
			}
			text := stderr
			if tt.code == 0 {
				text = stdout
			}
			for _, w := range tt.want {
				if !strings.Contains(text, w) {
					t.Errorf("output %q lacks %q", text, w)
				}
			}
			for _, k := range tt.wantDir {
				if tt.wantS3 != "" {
					break
				}
				b, err := os.ReadFile(filepath.Join(out, k))
				if err != nil || sha256.Sum256(b) != sha256.Sum256(f.objs[k]) {
					t.Errorf("key %q: restored file differs (%v)", k, err)
				}
			}
			if tt.wantS3 != "" {
				want := map[string]restoretest.Object{}
				for _, k := range tt.wantDir {
					want[k] = restoretest.Object{Key: k, Data: f.objs[k], ContentType: "text/x-test", Meta: map[string]string{"Src": "cli"}}
				}
				restoretest.CheckBucket(t, m, "rescue", tt.wantS3, want, restore.DefaultPartSize)
			}
			if tt.code != 0 && tt.to == "dir" {
				if ents, _ := os.ReadDir(out); len(ents) != 0 {
					t.Errorf("a failed restore left %d entries in the target", len(ents))
				}
			}
		})
	}
	// The hostile key landed under the unsafe-keys directory only.
	out := filepath.Join(t.TempDir(), "out")
	mustRun(t, 0, append(append([]string{}, withKey...), "--to", out)...)
	idx, err := os.ReadFile(filepath.Join(out, restore.UnsafeDir, restore.UnsafeIndex))
	if err != nil {
		t.Fatal(err)
	}
	if want := restore.UnsafeName([]byte("../outside")) + "\t\"../outside\"\t"; !strings.HasPrefix(string(idx), want) {
		t.Errorf("index %q, want a line starting %q", idx, want)
	}
	if _, err := os.Stat(filepath.Join(filepath.Dir(out), "outside")); err == nil {
		t.Error("a key escaped the target directory")
	}
}
