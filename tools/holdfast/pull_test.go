package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/minio/minio-go/v7"

	"github.com/holdfast-appliance/holdfast/tools/testminio"
)

var pulledRe = regexp.MustCompile(`snapshot (\d{8}T\d{6}Z-[0-9a-f]{8}):`)

func pulledID(t *testing.T, out string) string {
	t.Helper()
	m := pulledRe.FindStringSubmatch(out)
	if m == nil {
		t.Fatalf("no snapshot ID in %q", out)
	}
	return m[1]
}

// pullConfig writes a config for one source on endpoint.
func pullConfig(t *testing.T, dir, endpoint, secret string) string {
	t.Helper()
	path := filepath.Join(dir, "cfg.hcl")
	writeFile(t, path, fmt.Sprintf(`appliance { name = "test" }
source "docs" {
  s3 {
    endpoint   = %q
    bucket     = "docs"
    access_key = %q
    secret_key = %q
    tls        = false
  }
  schedule = "every 6h"
  retention {
    all_for   = "14d"
    daily_for = "90d"
  }
}
`, endpoint, testminio.AccessKey, secret))
	return path
}

// checkJSONLogs asserts every stderr line is a JSON log record.
func checkJSONLogs(t *testing.T, stderr string) {
	t.Helper()
	sc := bufio.NewScanner(strings.NewReader(stderr))
	n := 0
	for sc.Scan() {
		var rec map[string]any
		if err := json.Unmarshal(sc.Bytes(), &rec); err != nil {
			t.Errorf("stderr line is not JSON: %q", sc.Text())
			continue
		}
		if rec["@message"] == nil || rec["@level"] == nil {
			t.Errorf("log record without message or level: %q", sc.Text())
		}
		n++
	}
	if n == 0 {
		t.Errorf("no JSON log lines on stderr")
	}
}

func TestPullAndDiff(t *testing.T) {
	m := testminio.Start(t)
	m.MakeBucket(t, "docs", false)
	put := func(k, v string) { m.Put(t, "docs", k, []byte(v), minio.PutObjectOptions{}) }
	put("a.txt", "alpha")
	put("b.txt", "bravo")
	put("line\nbreak", "newline key")
	put("gone", "to be removed")
	base := storeTestDir(t)
	dir := filepath.Join(base, "store")
	key := filepath.Join(base, "key")
	cfg := pullConfig(t, base, m.Endpoint, testminio.SecretKey)
	mustRun(t, 0, "store", "init", dir, "--key-file", key)

	out, errOut := mustRun(t, 0, "pull", "--config", cfg, "--store", dir, "--key-file", key)
	if !strings.Contains(out, "docs: snapshot") || !strings.Contains(out, "4 objects") || !strings.Contains(out, "complete") {
		t.Errorf("pull output %q", out)
	}
	checkJSONLogs(t, errOut)
	if strings.Contains(errOut, testminio.SecretKey) || strings.Contains(out, testminio.SecretKey) {
		t.Errorf("the secret key was printed")
	}
	first := pulledID(t, out)

	put("b.txt", "bravo, changed")
	put("c.txt", "charlie")
	if err := m.Client.RemoveObject(t.Context(), "docs", "gone", minio.RemoveObjectOptions{}); err != nil {
		t.Fatal(err)
	}
	out, _ = mustRun(t, 0, "pull", "--config", cfg, "--store", dir, "--key-file", key, "--source", "docs")
	if !strings.Contains(out, "2 fetched") || !strings.Contains(out, "2 unchanged") {
		t.Errorf("second pull output %q", out)
	}
	second := pulledID(t, out)

	out, _ = mustRun(t, 0, "store", "diff", dir, "--key-file", key, first, second)
	want := []string{
		`changed  `, ` b.txt`,
		`added    `, ` c.txt`,
		`removed  `, ` gone`,
		"1 added, 1 changed, 1 removed, 2 unchanged",
	}
	for _, w := range want {
		if !strings.Contains(out, w) {
			t.Errorf("diff output lacks %q:\n%s", w, out)
		}
	}
	if strings.Contains(out, "line\nbreak") || strings.Count(out, "\n") != 4 {
		t.Errorf("diff output %q: want 4 lines and no raw newline in a key", out)
	}

	// The newline key is listed escaped when it changes.
	put("line\nbreak", "changed")
	out, _ = mustRun(t, 0, "pull", "--config", cfg, "--store", dir, "--key-file", key)
	third := pulledID(t, out)
	out, _ = mustRun(t, 0, "store", "diff", dir, "--key-file", key, second, third)
	if !strings.Contains(out, `"line\nbreak"`) {
		t.Errorf("diff does not show the key escaped: %q", out)
	}
}

func TestPullFailures(t *testing.T) {
	m := testminio.Start(t)
	m.MakeBucket(t, "docs", false)
	base := storeTestDir(t)
	dir := filepath.Join(base, "store")
	key := filepath.Join(base, "key")
	mustRun(t, 0, "store", "init", dir, "--key-file", key)
	good := pullConfig(t, base, m.Endpoint, testminio.SecretKey)
	badDir := filepath.Join(base, "bad")
	if err := os.Mkdir(badDir, 0o755); err != nil {
		t.Fatal(err)
	}
	wrongSecret := pullConfig(t, badDir, m.Endpoint, "not-the-secret")
	broken := filepath.Join(base, "broken.hcl")
	writeFile(t, broken, "appliance { name = \"x\" }\nsource \"s\" {\n  schedule = \"every 6h\"\n}\n")
	tests := []struct {
		name    string
		args    []string
		code    int
		wantOut string
		wantErr string
	}{
		{"unknown source", []string{"--config", good, "--source", "nope"}, exitUsage, "", `no such source (it has: docs)`},
		{"wrong secret", []string{"--config", wrongSecret}, exitFailure, "SignatureDoesNotMatch", "1 of 1 sources failed"},
		{"broken config", []string{"--config", broken}, exitFailure, "", "broken.hcl:2"},
		{"missing config", []string{"--config", filepath.Join(base, "absent.hcl")}, exitFailure, "", "absent.hcl"},
		{"missing --store", []string{"--config", good}, exitUsage, "", "store"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			args := append([]string{"pull", "--key-file", key}, tt.args...)
			if tt.name != "missing --store" {
				args = append(args, "--store", dir)
			}
			code, out, errOut := runCLI(t, args...)
			if code != tt.code || !strings.Contains(out, tt.wantOut) || !strings.Contains(errOut, tt.wantErr) {
				t.Fatalf("exit %d (want %d)\nstdout %q (want %q)\nstderr %q (want %q)", code, tt.code, out, tt.wantOut, errOut, tt.wantErr)
			}
			if strings.Contains(out+errOut, "not-the-secret") {
				t.Errorf("the secret was printed")
			}
		})
	}
}
