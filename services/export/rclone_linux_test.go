package export

// rclone (Debian's, installed by tools/scripts/setup.sh) lists the export
// and copies snapshots out of it, once as a generic S3 provider (ListObjects
// V1, keys in plain XML) and once as MinIO (ListObjectsV2, URL-encoded
// keys).

import (
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"testing"
)

// rclone runs rclone against the export as remote "exp:" and returns its
// combined output.
func rclone(t *testing.T, ts *testServer, provider string, args ...string) (string, error) {
	t.Helper()
	bin, err := exec.LookPath("rclone")
	if err != nil {
		t.Fatalf("rclone is not installed (%v): run `make setup` (tools/scripts/setup.sh installs Debian's rclone)", err)
	}
	home := t.TempDir()
	ca := filepath.Join(home, "export-ca.pem")
	if err := os.WriteFile(ca, ts.CertificatePEM(), 0o600); err != nil {
		t.Fatal(err)
	}
	conf := filepath.Join(home, "rclone.conf")
	if err := os.WriteFile(conf, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, append([]string{"--ca-cert", ca, "--retries", "1", "--low-level-retries", "1", "--contimeout", "10s", "--timeout", "60s"}, args...)...)
	// AWS_CA_BUNDLE in the environment makes rclone's S3 client refuse its
	// own transport ("unsupported transport"); --ca-cert says what to trust.
	for _, e := range os.Environ() {
		if !strings.HasPrefix(e, "AWS_") && !strings.HasPrefix(e, "RCLONE_") && !strings.HasPrefix(e, "HOME=") {
			cmd.Env = append(cmd.Env, e)
		}
	}
	cmd.Env = append(cmd.Env, "HOME="+home, "XDG_CACHE_HOME="+home, "XDG_CONFIG_HOME="+home, "RCLONE_CONFIG="+conf,
		"RCLONE_CONFIG_EXP_TYPE=s3", "RCLONE_CONFIG_EXP_PROVIDER="+provider,
		"RCLONE_CONFIG_EXP_ACCESS_KEY_ID="+testAccess, "RCLONE_CONFIG_EXP_SECRET_ACCESS_KEY="+testSecret,
		"RCLONE_CONFIG_EXP_ENDPOINT=https://"+ts.addr)
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// dirFiles returns relative path -> sha256 of every regular file below dir.
func dirFiles(t *testing.T, dir string) map[string]string {
	t.Helper()
	out := map[string]string{}
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || !d.Type().IsRegular() {
			return err
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		out[rel] = sha(b)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func TestRclone(t *testing.T) {
	f := newFixture(t)
	ts := startServer(t, f.dir, nil)
	mail := f.latest("mail")
	docs := f.latest("docs")
	for _, provider := range []string{"Other", "Minio"} {
		t.Run(provider, func(t *testing.T) {
			out, err := rclone(t, ts, provider, "lsf", "exp:")
			if err != nil || out != "docs/\nmail/\n" {
				t.Fatalf("lsf exp: %v\n%s", err, out)
			}
			out, err = rclone(t, ts, provider, "lsf", "exp:docs")
			var want []string
			for _, s := range f.snaps {
				if s.source == "docs" {
					want = append(want, s.id+"/")
				}
			}
			sort.Strings(want) // IDs of one second sort by their random part
			want = append(want, "latest/")
			if err != nil || out != strings.Join(want, "\n")+"\n" {
				t.Fatalf("lsf exp:docs: %v\n%s\nwant %q", err, out, want)
			}

			// Every key of the mail snapshot, listed and copied byte for byte.
			out, err = rclone(t, ts, provider, "lsf", "-R", "--files-only", "exp:mail/"+mail.id)
			if err != nil {
				t.Fatalf("lsf -R: %v\n%s", err, out)
			}
			var keys []string
			for k := range mail.live {
				keys = append(keys, k)
			}
			sort.Strings(keys)
			got := strings.Split(strings.TrimSuffix(out, "\n"), "\n")
			sort.Strings(got)
			if !slices.Equal(got, keys) {
				t.Errorf("lsf -R exp:mail/%s:\n got %q\nwant %q", mail.id, got, keys)
			}
			for _, from := range []string{"exp:mail/" + mail.id, "exp:mail/latest"} {
				dst := filepath.Join(t.TempDir(), "copy")
				if out, err := rclone(t, ts, provider, "copy", from, dst); err != nil {
					t.Fatalf("rclone copy %s: %v\n%s", from, err, out)
				}
				files := dirFiles(t, dst)
				if len(files) != len(mail.live) {
					t.Errorf("copy of %s: %d files, want %d: %v", from, len(files), len(mail.live), files)
				}
				for k, o := range mail.live {
					if files[k] != sha(o.data) {
						t.Errorf("copy of %s: %q has sha256 %q, want %s", from, k, files[k], sha(o.data))
					}
				}
			}

			// The hostile keys of docs/latest: nothing lands outside the
			// destination, every file that lands holds one of the
			// snapshot's bodies whole, and every key that is a plain path
			// arrives. (rclone 1.60 skips keys with "", "." or ".."
			// segments, and cannot write the 900-byte name: excluded.)
			sandbox := t.TempDir()
			dst := filepath.Join(sandbox, "dst")
			if out, err := rclone(t, ts, provider, "copy", "--exclude", "/long/**", "exp:docs/latest", dst); err != nil {
				t.Fatalf("rclone copy exp:docs/latest: %v\n%s", err, out)
			}
			if es, err := os.ReadDir(sandbox); err != nil || len(es) != 1 || es[0].Name() != "dst" {
				t.Fatalf("rclone wrote beside its destination: %v %v", es, err)
			}
			bodies := map[string]bool{}
			for _, o := range docs.live {
				bodies[sha(o.data)] = true
			}
			files := dirFiles(t, dst)
			for name, sum := range files {
				if !bodies[sum] {
					t.Errorf("copy of docs/latest: %q holds bytes of no object (sha256 %s)", name, sum)
				}
			}
			for k, o := range docs.live {
				if plainPath(k) && !strings.HasPrefix(k, "long/") && files[k] != sha(o.data) {
					t.Errorf("copy of docs/latest: %q has sha256 %q, want %s", k, files[k], sha(o.data))
				}
			}
		})
	}
}

// plainPath reports whether k is a relative path whose segments are all
// ordinary names.
func plainPath(k string) bool {
	for _, seg := range strings.Split(k, "/") {
		if seg == "" || seg == "." || seg == ".." || len(seg) > 255 {
			return false
		}
	}
	return true
}
