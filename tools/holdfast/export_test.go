package main

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/credentials"
)

// syncBuffer is a bytes.Buffer safe to read while a command writes it.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func TestExportServeUsage(t *testing.T) {
	dir := t.TempDir()
	key := filepath.Join(dir, "k")
	writeFile(t, key, strings.Repeat("17", 32)+"\n")
	noExport := filepath.Join(dir, "cfg.hcl")
	writeFile(t, noExport, "appliance { name = \"hf\" }\nsource \"s\" {\n  s3 {\n    endpoint = \"h:1\"\n    bucket = \"bkt\"\n    access_key = \"a\"\n    secret_key = \"b\"\n  }\n  schedule = \"every 6h\"\n}\n")
	const secret = "a-long-random-secret"
	tests := []struct {
		name string
		args []string
		code int
		want string
	}{
		{"no store", []string{"export", "serve", "--key-file", key, "--access-key", "r", "--secret-key", secret}, exitUsage, "arg(s)"},
		{"no key file", []string{"export", "serve", dir, "--access-key", "r", "--secret-key", secret}, exitUsage, `"key-file"`},
		{"no credentials", []string{"export", "serve", dir, "--key-file", key}, exitUsage, "access key and a secret key"},
		{"short secret", []string{"export", "serve", dir, "--key-file", key, "--access-key", "r", "--secret-key", "short"}, exitUsage, "at least 16"},
		{"access key with a slash", []string{"export", "serve", dir, "--key-file", key, "--access-key", "a/b", "--secret-key", secret}, exitUsage, "access_key"},
		{"cert without key", []string{"export", "serve", dir, "--key-file", key, "--access-key", "r", "--secret-key", secret, "--tls-cert", key}, exitUsage, "--tls-cert and --tls-key"},
		{"bad listen", []string{"export", "serve", dir, "--key-file", key, "--access-key", "r", "--secret-key", secret, "--listen", "9443"}, exitUsage, "--listen"},
		{"config without export", []string{"export", "serve", dir, "--key-file", key, "--config", noExport}, exitUsage, "no export block"},
		{"export alone", []string{"export"}, exitUsage, "needs a subcommand"},
		{"not a store", []string{"export", "serve", filepath.Join(dir, "none"), "--key-file", key, "--access-key", "r", "--secret-key", secret}, exitFailure, "not a Holdfast store"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, out, errOut := runCLI(t, tt.args...)
			if code != tt.code || !strings.Contains(errOut, tt.want) {
				t.Errorf("exit %d, want %d; stderr %q should mention %q (stdout %q)", code, tt.code, errOut, tt.want, out)
			}
			if strings.Contains(errOut, secret) {
				t.Errorf("stderr shows the secret: %q", errOut)
			}
		})
	}
}

// TestExportServe serves a store with the command, reads it with minio-go
// and stops the command with its context.
func TestExportServe(t *testing.T) {
	f := newRestoreFixture(t)
	certOut := filepath.Join(t.TempDir(), "export.pem")
	const access, secret = "reader", "a-long-random-secret"
	t.Setenv(secretKeyEnv, secret)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var stdout, stderr syncBuffer
	done := make(chan int, 1)
	go func() {
		done <- run(ctx, []string{"export", "serve", f.dir, "--key-file", f.keyFile, "--access-key", access,
			"--listen", "127.0.0.1:0", "--cert-out", certOut}, &stdout, &stderr)
	}()
	addrRE := regexp.MustCompile(`at https://(127\.0\.0\.1:[0-9]+)/`)
	var addr string
	for deadline := time.Now().Add(30 * time.Second); addr == ""; {
		if m := addrRE.FindStringSubmatch(stdout.String()); m != nil {
			addr = m[1]
			break
		}
		select {
		case code := <-done:
			t.Fatalf("export serve exited %d early\nstdout: %s\nstderr: %s", code, stdout.String(), stderr.String())
		case <-time.After(20 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatalf("no address printed\nstdout: %s\nstderr: %s", stdout.String(), stderr.String())
		}
	}
	if !strings.Contains(stdout.String(), "certificate SHA-256 fingerprint ") || strings.Contains(stdout.String(), secret) {
		t.Errorf("stdout: %s", stdout.String())
	}
	pemBytes, err := os.ReadFile(certOut)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pemBytes) {
		t.Fatalf("--cert-out wrote no certificate: %q", pemBytes)
	}
	cl, err := minio.New(addr, &minio.Options{
		Creds: credentials.NewStaticV4(access, secret, ""), Secure: true,
		Transport: &http.Transport{Proxy: nil, TLSClientConfig: &tls.Config{RootCAs: pool}},
	})
	if err != nil {
		t.Fatal(err)
	}
	bs, err := cl.ListBuckets(ctx)
	if err != nil || len(bs) != 1 || bs[0].Name != "cli" {
		t.Fatalf("buckets %v, %v", bs, err)
	}
	for k, want := range f.objs {
		for _, prefix := range []string{"latest/", f.snapshot + "/"} {
			o, err := cl.GetObject(ctx, "cli", prefix+k, minio.GetObjectOptions{})
			if err != nil {
				t.Fatal(err)
			}
			got, err := io.ReadAll(o)
			o.Close()
			if err != nil || !bytes.Equal(got, want) {
				t.Errorf("%s%q: %d bytes, %v", prefix, k, len(got), err)
			}
		}
	}
	if _, err := cl.PutObject(ctx, "cli", "latest/new", strings.NewReader("x"), 1, minio.PutObjectOptions{}); minio.ToErrorResponse(err).Code != "AccessDenied" {
		t.Errorf("put: %v", err)
	}
	cancel()
	select {
	case code := <-done:
		if code != exitOK {
			t.Errorf("exit %d after the context ended\nstderr: %s", code, stderr.String())
		}
	case <-time.After(30 * time.Second):
		t.Fatal("export serve did not stop")
	}
}
