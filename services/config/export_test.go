package config

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
)

// writeKeyPair writes a self-signed certificate and its key in PEM.
func writeKeyPair(t testing.TB, certPath, keyPath string) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(7), Subject: pkix.Name{CommonName: "export"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	kder, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(certPath, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyPath, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kder}), 0o600); err != nil {
		t.Fatal(err)
	}
}

func TestParseExport(t *testing.T) {
	dir := t.TempDir()
	writeKeyPair(t, filepath.Join(dir, "export.crt"), filepath.Join(dir, "export.key"))

	f, err := Parse(filepath.Join(dir, "cfg.hcl"), []byte(issueExample))
	if err != nil {
		t.Fatal(err)
	}
	if f.Export != nil {
		t.Fatalf("export is on without an export block: %+v", f.Export)
	}

	minimal := issueExample + `
export {
  access_key = "EXPORTER"
  secret_key = "a-long-random-secret"
}
`
	f, err = Parse(filepath.Join(dir, "cfg.hcl"), []byte(minimal))
	if err != nil {
		t.Fatalf("minimal export block: %v", err)
	}
	e := f.Export
	if e == nil || e.Listen != DefaultExportListen || e.AccessKey != "EXPORTER" || e.SecretKey.Reveal() != "a-long-random-secret" ||
		e.CertFile != "" || e.CertPEM != nil || e.KeyPEM != "" || e.Sources != nil {
		t.Fatalf("minimal export: %#v", e)
	}

	full := issueExample + `
export {
  listen     = "192.0.2.10:8443"
  access_key = "EXPORTER"
  secret_key = "a-long-random-secret"
  cert_file  = "export.crt"
  key_file   = "` + filepath.Join(dir, "export.key") + `"
  sources    = ["mail-archive", "retired-source"]
}
`
	f, err = Parse(filepath.Join(dir, "cfg.hcl"), []byte(full))
	if err != nil {
		t.Fatalf("full export block: %v", err)
	}
	e = f.Export
	if e.Listen != "192.0.2.10:8443" || e.CertFile != filepath.Join(dir, "export.crt") || e.KeyFile != filepath.Join(dir, "export.key") ||
		!bytes.Contains(e.CertPEM, []byte("BEGIN CERTIFICATE")) || !strings.Contains(e.KeyPEM.Reveal(), "PRIVATE KEY") ||
		fmt.Sprint(e.Sources) != "[mail-archive retired-source]" {
		t.Fatalf("full export: %#v", e)
	}

	// Neither secret prints.
	var logs bytes.Buffer
	hclog.New(&hclog.LoggerOptions{Output: &logs, JSONFormat: true}).Info("export", "export", e)
	for how, out := range map[string]string{"%v": fmt.Sprintf("%v", *e), "%+v": fmt.Sprintf("%+v", *e), "%#v": fmt.Sprintf("%#v", *e), "hclog": logs.String()} {
		if strings.Contains(out, "a-long-random-secret") || strings.Contains(out, "PRIVATE KEY") {
			t.Errorf("%s prints a secret: %s", how, out)
		}
	}
}

// TestParseExportErrors: each bad value is refused naming the file, the
// line and the field, and never echoing the secret.
func TestParseExportErrors(t *testing.T) {
	dir := t.TempDir()
	writeKeyPair(t, filepath.Join(dir, "a.crt"), filepath.Join(dir, "a.key"))
	writeKeyPair(t, filepath.Join(dir, "b.crt"), filepath.Join(dir, "b.key"))
	if err := os.WriteFile(filepath.Join(dir, "junk.pem"), []byte("not a cert"), 0o600); err != nil {
		t.Fatal(err)
	}
	// The export block starts on line 18 of the file (after issueExample's
	// 17 lines); its first field is on line 19.
	block := func(fields string) string {
		return issueExample + "export {\n" + fields + "}\n"
	}
	creds := "  access_key = \"EXPORTER\"\n  secret_key = \"TOPSECRET-TOPSECRET\"\n"
	tests := []struct {
		name string
		src  string
		want []string
	}{
		{"no access key", block("  secret_key = \"TOPSECRET-TOPSECRET\"\n"), []string{"cfg.hcl:18", "access_key"}},
		{"no secret", block("  access_key = \"EXPORTER\"\n"), []string{"cfg.hcl:18", "secret_key"}},
		{"short secret", block("  access_key = \"EXPORTER\"\n  secret_key = \"TOPSECRET\"\n"), []string{"cfg.hcl:20", "secret_key", "at least 16"}},
		{"access key with a slash", block("  access_key = \"EXP/ORTER\"\n  secret_key = \"TOPSECRET-TOPSECRET\"\n"), []string{"cfg.hcl:19", "access_key"}},
		{"access key with a space", block("  access_key = \"EXP ORTER\"\n  secret_key = \"TOPSECRET-TOPSECRET\"\n"), []string{"cfg.hcl:19", "access_key"}},
		{"listen without port", block("  listen = \"0.0.0.0\"\n" + creds), []string{"cfg.hcl:19", "listen"}},
		{"listen bad port", block("  listen = \"0.0.0.0:70000\"\n" + creds), []string{"cfg.hcl:19", "listen", "port"}},
		{"listen with a scheme", block("  listen = \"https://0.0.0.0:9443\"\n" + creds), []string{"cfg.hcl:19", "listen"}},
		{"cert without key", block(creds + "  cert_file = \"a.crt\"\n"), []string{"cfg.hcl:21", "cert_file", "key_file"}},
		{"key without cert", block(creds + "  key_file = \"a.key\"\n"), []string{"cfg.hcl:21", "key_file", "cert_file"}},
		{"cert missing", block(creds + "  cert_file = \"nope.crt\"\n  key_file = \"a.key\"\n"), []string{"cfg.hcl:21", "cert_file", "nope.crt"}},
		{"cert junk", block(creds + "  cert_file = \"junk.pem\"\n  key_file = \"a.key\"\n"), []string{"cfg.hcl:21", "cert_file", "not a TLS certificate"}},
		{"key of another cert", block(creds + "  cert_file = \"a.crt\"\n  key_file = \"b.key\"\n"), []string{"cfg.hcl:21", "cert_file"}},
		{"key is a device", block(creds + "  cert_file = \"a.crt\"\n  key_file = \"/dev/zero\"\n"), []string{"cfg.hcl:22", "key_file", "regular file"}},
		{"bad source name", block(creds + "  sources = [\"../x\"]\n"), []string{"cfg.hcl:21", "sources", "../x"}},
		{"no sources", block(creds + "  sources = []\n"), []string{"cfg.hcl:21", "sources", "empty"}},
		{"source twice", block(creds + "  sources = [\"a\", \"a\"]\n"), []string{"cfg.hcl:21", "sources", "twice"}},
		{"sources not a list", block(creds + "  sources = \"a\"\n"), []string{"cfg.hcl:21", "sources"}},
		{"unknown field", block(creds + "  port = 9443\n"), []string{"cfg.hcl:21", "port"}},
		{"two export blocks", block(creds) + "export {\n" + creds + "}\n", []string{"cfg.hcl", "export"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Parse(filepath.Join(dir, "cfg.hcl"), []byte(tt.src))
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

func TestCheckExportCredential(t *testing.T) {
	tests := []struct {
		access, secret string
		ok             bool
	}{
		{"reader", "", true},
		{"reader", strings.Repeat("s", MinExportSecretLength), true},
		{"reader", strings.Repeat("s", MinExportSecretLength-1), false},
		{"", "", false},
		{strings.Repeat("a", 129), "", false},
		{"a/b", "", false},
		{"a b", "", false},
		{"ünï", "", false},
	}
	for _, tt := range tests {
		if err := CheckExportCredential(tt.access, tt.secret); (err == nil) != tt.ok {
			t.Errorf("CheckExportCredential(%q, %d chars) = %v", tt.access, len(tt.secret), err)
		}
	}
}
