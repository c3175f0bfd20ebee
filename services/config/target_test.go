package config

import (
	"fmt"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

func TestParseTargets(t *testing.T) {
	dir := t.TempDir()
	writeCA(t, filepath.Join(dir, "ca.pem"))
	src := issueExample + `
target "offsite" {
  s3 {
    endpoint   = "backup.example.net:443"
    bucket     = "restored"
    prefix     = "from-holdfast/"
    region     = "eu-central-1"
    access_key = "WRITER"
    secret_key = "w-secret"
    ca_bundle  = "ca.pem"
  }
}
target "lab" {
  s3 {
    endpoint   = "10.0.0.9:9000"
    bucket     = "lab-restore"
    access_key = "a"
    secret_key = "b"
    tls        = false
  }
}
`
	f, err := Parse(filepath.Join(dir, "cfg.hcl"), []byte(src))
	if err != nil {
		t.Fatalf("parse: %v", err)
	}
	if len(f.Targets) != 2 {
		t.Fatalf("%d targets, want 2: %+v", len(f.Targets), f.Targets)
	}
	off, ok := f.Target("offsite")
	if !ok {
		t.Fatal(`Target("offsite") not found`)
	}
	lab, _ := f.Target("lab")
	tests := []struct {
		name      string
		got, want any
	}{
		{"name", off.Name, "offsite"},
		{"endpoint", off.S3.Endpoint, "backup.example.net:443"},
		{"bucket", off.S3.Bucket, "restored"},
		{"prefix", off.S3.Prefix, "from-holdfast/"},
		{"region", off.S3.Region, "eu-central-1"},
		{"access key", off.S3.AccessKey, "WRITER"},
		{"secret", off.S3.SecretKey.Reveal(), "w-secret"},
		{"tls default", off.S3.TLS, true},
		{"ca bundle", off.S3.CABundle, filepath.Join(dir, "ca.pem")},
		{"ca pem read", len(off.S3.CAPEM) > 0, true},
		{"etag check off", off.S3.CheckETagMD5, false},
		{"lab tls", lab.S3.TLS, false},
		{"lab prefix", lab.S3.Prefix, ""},
	}
	for _, tt := range tests {
		if tt.got != tt.want {
			t.Errorf("%s = %v, want %v", tt.name, tt.got, tt.want)
		}
	}
	if _, ok := f.Target("nope"); ok {
		t.Error(`Target("nope") found`)
	}
	if strings.Contains(fmt.Sprintf("%v %+v %#v", off, off, off), "w-secret") {
		t.Error("a target prints its secret")
	}

	none, err := Parse("cfg.hcl", []byte(issueExample))
	if err != nil {
		t.Fatal(err)
	}
	if len(none.Targets) != 0 {
		t.Errorf("targets without a target block: %+v", none.Targets)
	}
}

// TestParseTargetErrors checks that each bad target is refused with an
// error naming the file, the line, the target and the field.
func TestParseTargetErrors(t *testing.T) {
	dir := t.TempDir()
	good := "    endpoint = \"h:9000\"\n    bucket = \"bkt\"\n    access_key = \"a\"\n    secret_key = \"TOPSECRET\"\n"
	// The issue example is 17 lines: the target block starts on line 18,
	// its s3 block on line 19, the s3 block's first field is on line 20.
	target := func(name, s3 string) string {
		return fmt.Sprintf("target %q {\n  s3 {\n%s  }\n}\n", name, s3)
	}
	tests := []struct {
		name string
		src  string
		want []string
	}{
		{"duplicate name", target("t", good) + target("t", good), []string{"cfg.hcl:26", "Duplicate target", `target "t" is already defined at`, "cfg.hcl:18"}},
		{"name clashes nowhere with a source", target("mail-archive", good) + target("mail-archive", good), []string{"Duplicate target"}},
		{"missing bucket", target("t", "    endpoint = \"h:9000\"\n    access_key = \"a\"\n    secret_key = \"x\"\n"), []string{"cfg.hcl:19", "bucket", "required"}},
		{"bad bucket", target("t", strings.Replace(good, `"bkt"`, `"Bad_Bucket"`, 1)), []string{"cfg.hcl:21", `target "t": bucket "Bad_Bucket"`}},
		{"missing s3 block", "target \"t\" {\n}\n", []string{"cfg.hcl:18", `Missing "s3" block`, `target "t"`}},
		{"bad name", target("../up", good), []string{"cfg.hcl:18", "Invalid target name", `"../up"`}},
		{"no label", "target {\n  s3 {\n" + good + "  }\n}\n", []string{"cfg.hcl:18", "name"}},
		{"scheme in endpoint", target("t", strings.Replace(good, `"h:9000"`, `"https://h:9000"`, 1)), []string{"cfg.hcl:20", `target "t"`, "scheme"}},
		{"empty secret", target("t", strings.Replace(good, `"TOPSECRET"`, `""`, 1)), []string{"cfg.hcl:23", `target "t": secret_key is empty`}},
		{"empty access key", target("t", strings.Replace(good, `access_key = "a"`, `access_key = " "`, 1)), []string{"cfg.hcl:22", `target "t": access_key is empty`}},
		{"long prefix", target("t", good+"    prefix = \""+strings.Repeat("p", 1025)+"\"\n"), []string{"cfg.hcl:24", `target "t": prefix is 1025 bytes`}},
		{"ca bundle missing", target("t", good+"    ca_bundle = \"nope.pem\"\n"), []string{"cfg.hcl:24", `target "t"`, "nope.pem"}},
		{"etag check", target("t", good+"    check_etag_md5 = true\n"), []string{"cfg.hcl:24", "check_etag_md5", "not to restore targets"}},
		{"unknown field", target("t", good+"    colour = \"red\"\n"), []string{"cfg.hcl:24", "colour"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Parse(filepath.Join(dir, "cfg.hcl"), []byte(issueExample+tt.src))
			if err == nil {
				t.Fatalf("parse succeeded; want an error mentioning %q", tt.want)
			}
			msg := err.Error()
			for _, w := range tt.want {
				if !strings.Contains(msg, w) {
					t.Errorf("error %q does not mention %q", msg, w)
				}
			}
			if strings.Contains(msg, "TOPSECRET") {
				t.Errorf("error leaks the secret: %q", msg)
			}
		})
	}
}

// TestDocTargetExample: the target example in docs/config.md parses.
func TestDocTargetExample(t *testing.T) {
	var block string
	for _, ex := range docExamples(t) {
		if strings.HasPrefix(strings.TrimSpace(ex), "target ") {
			block = ex
		}
	}
	if block == "" {
		t.Fatal(`docs/config.md has no ` + "```hcl" + ` example starting with target "NAME" {`)
	}
	block = regexp.MustCompile(`(?m)^\s*ca_bundle\s*=.*$`).ReplaceAllString(block, "")
	f, err := Parse("cfg.hcl", []byte(issueExample+block))
	if err != nil {
		t.Fatalf("the documented example does not parse: %v", err)
	}
	if len(f.Targets) == 0 {
		t.Fatal("the documented example configures no target")
	}
}
