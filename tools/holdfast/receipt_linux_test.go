package main

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/holdfast-appliance/holdfast/firmware/receipt"
	"github.com/holdfast-appliance/holdfast/firmware/tpm"
	"github.com/holdfast-appliance/holdfast/firmware/tpm/tpmtest"
)

// TestReceiptVerify signs a manifest with a real (software) TPM and checks
// the receipt with `holdfast receipt verify`, which needs no TPM.
func TestReceiptVerify(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	tp := tpmtest.Start(t)

	dir := t.TempDir()
	manifest := []byte("manifest bytes of snapshot 20260101T000000Z-0011aabb")
	id := "20260101T000000Z-0011aabb"
	signer := &tpm.Signer{TPM: tp}
	raw, err := signer.SignManifest(ctx, id, sha256.Sum256(manifest))
	if err != nil {
		t.Fatal(err)
	}
	pemKey, err := signer.PublicKeyPEM(ctx)
	if err != nil {
		t.Fatal(err)
	}
	other, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	otherPEM, _ := receipt.MarshalPublicKeyPEM(&other.PublicKey)
	changedReceipt := bytes.Clone(raw)
	changedReceipt[len(changedReceipt)-40] ^= 1
	files := map[string][]byte{
		"key.pem": pemKey, "other.pem": otherPEM, "r.receipt": raw, "changed.receipt": changedReceipt,
		"m.snap": manifest, "changed.snap": append(bytes.Clone(manifest), '\n'),
	}
	for name, b := range files {
		if err := os.WriteFile(filepath.Join(dir, name), b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	p := func(name string) string { return filepath.Join(dir, name) }
	cases := []struct {
		name     string
		args     []string
		want     int
		contains string
	}{
		{"valid", []string{p("r.receipt"), "--pubkey", p("key.pem")}, exitOK, "snapshot:         " + id},
		{"valid with its manifest", []string{p("r.receipt"), "--pubkey", p("key.pem"), "--manifest", p("m.snap")}, exitOK, "(matches)"},
		{"changed manifest", []string{p("r.receipt"), "--pubkey", p("key.pem"), "--manifest", p("changed.snap")}, exitFailure, "does not match"},
		{"changed receipt", []string{p("changed.receipt"), "--pubkey", p("key.pem")}, exitFailure, "INVALID"},
		{"another key", []string{p("r.receipt"), "--pubkey", p("other.pem")}, exitFailure, "another key"},
		{"no --pubkey", []string{p("r.receipt")}, exitUsage, "pubkey"},
		{"no receipt", []string{"--pubkey", p("key.pem")}, exitUsage, "arg"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			code, stdout, stderr := runCLI(t, append([]string{"receipt", "verify"}, tc.args...)...)
			if code != tc.want {
				t.Fatalf("exit %d, want %d\nstdout: %s\nstderr: %s", code, tc.want, stdout, stderr)
			}
			if !strings.Contains(stdout+stderr, tc.contains) {
				t.Fatalf("output lacks %q\nstdout: %s\nstderr: %s", tc.contains, stdout, stderr)
			}
		})
	}
}
