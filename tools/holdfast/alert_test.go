package main

import (
	"crypto/hmac"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/minio/minio-go/v7"

	"github.com/holdfast-appliance/holdfast/services/alert"
	"github.com/holdfast-appliance/holdfast/tools/testminio"
)

const hookSecret = "0123456789abcdef-TOPSECRET"

// hookReceiver is an HTTPS webhook receiver on 127.0.0.1 that answers
// status and keeps every signed document it gets.
type hookReceiver struct {
	srv    *httptest.Server
	caFile string
	mu     sync.Mutex
	docs   []map[string]any
	bad    int // requests without a valid signature
}

func startHookReceiver(t *testing.T, dir string, status int) *hookReceiver {
	t.Helper()
	h := &hookReceiver{}
	h.srv = httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		h.mu.Lock()
		defer h.mu.Unlock()
		var doc map[string]any
		if !hmac.Equal([]byte(r.Header.Get(alert.SignatureHeader)), []byte(alert.Sign([]byte(hookSecret), body))) ||
			json.Unmarshal(body, &doc) != nil {
			h.bad++
		} else {
			h.docs = append(h.docs, doc)
		}
		w.WriteHeader(status)
	}))
	t.Cleanup(h.srv.Close)
	h.caFile = filepath.Join(dir, "hook-ca.pem")
	writeFile(t, h.caFile, string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: h.srv.Certificate().Raw})))
	return h
}

func (h *hookReceiver) Docs() ([]map[string]any, int) {
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([]map[string]any(nil), h.docs...), h.bad
}

// alertsBlock returns an alerts block sending to h.
func (h *hookReceiver) alertsBlock() string {
	return fmt.Sprintf(`
alerts {
  webhook {
    url       = %q
    secret    = %q
    ca_bundle = %q
  }
}
`, h.srv.URL+"/hooks/holdfast", hookSecret, h.caFile)
}

func TestAlertTestCommand(t *testing.T) {
	dir := t.TempDir()
	ok := startHookReceiver(t, dir, http.StatusNoContent)
	refusing := startHookReceiver(t, t.TempDir(), http.StatusForbidden)
	base := `appliance { name = "holdfast-01" }
source "docs" {
  s3 {
    endpoint   = "127.0.0.1:9000"
    bucket     = "docs"
    access_key = "a"
    secret_key = "b"
  }
  schedule = "every 6h"
}
`
	write := func(name, content string) string {
		p := filepath.Join(dir, name)
		writeFile(t, p, content)
		return p
	}
	good := write("good.hcl", base+ok.alertsBlock())
	bad := write("bad.hcl", base+refusing.alertsBlock())
	none := write("none.hcl", base)
	httpHook := write("http.hcl", base+strings.Replace(ok.alertsBlock(), "https://", "http://", 1))
	tests := []struct {
		name    string
		args    []string
		code    int
		wantOut string
		wantErr string
	}{
		{"sent", []string{"--config", good, "--source", "docs"}, exitOK, "webhook: sent", ""},
		{"refused", []string{"--config", bad}, exitFailure, "webhook: FAILED", "not delivered by webhook"},
		{"no alerts block", []string{"--config", none}, exitFailure, "", "has no alerts block"},
		{"http refused at load", []string{"--config", httpHook}, exitFailure, "", `http.hcl:14,`},
		{"no --config", nil, exitUsage, "", "config"},
		{"bad timeout", []string{"--config", good, "--timeout", "0s"}, exitUsage, "", "--timeout"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, out, errOut := runCLI(t, append([]string{"alert", "test"}, tt.args...)...)
			if code != tt.code || !strings.Contains(out, tt.wantOut) || !strings.Contains(errOut, tt.wantErr) {
				t.Fatalf("exit %d (want %d)\nstdout %q (want %q)\nstderr %q (want %q)", code, tt.code, out, tt.wantOut, errOut, tt.wantErr)
			}
			if strings.Contains(out+errOut, "TOPSECRET") {
				t.Error("the secret was printed")
			}
		})
	}
	docs, badSig := ok.Docs()
	if len(docs) != 1 || badSig != 0 {
		t.Fatalf("receiver got %d documents and %d badly signed; want 1 and 0", len(docs), badSig)
	}
	if d := docs[0]; d["kind"] != alert.KindTest || d["appliance"] != "holdfast-01" || d["source"] != "docs" {
		t.Errorf("document %v", d)
	}
	if docs, _ := refusing.Docs(); len(docs) != 1 {
		t.Errorf("the refusing receiver got %d documents, want 1 (no retry)", len(docs))
	}
	if code, out, _ := runCLI(t, "alert"); code != exitUsage || out != "" {
		t.Errorf("alert alone: exit %d, stdout %q", code, out)
	}
}

// TestPullAlerts: with an alerts block, "holdfast pull" POSTs the
// mass-change alert of a wiped bucket, and a pull-failed alert for a
// source it cannot read, to the webhook before it exits.
func TestPullAlerts(t *testing.T) {
	m := testminio.Start(t)
	m.MakeBucket(t, "docs", false)
	for i := range 5 {
		m.Put(t, "docs", fmt.Sprintf("mail-%d", i), []byte("mail body"), minio.PutObjectOptions{})
	}
	base := storeTestDir(t)
	dir := filepath.Join(base, "store")
	key := filepath.Join(base, "key")
	mustRun(t, 0, "store", "init", dir, "--key-file", key)
	h := startHookReceiver(t, base, http.StatusOK)
	cfg := pullConfig(t, base, m.Endpoint, testminio.SecretKey)
	raw, err := os.ReadFile(cfg)
	if err != nil {
		t.Fatal(err)
	}
	writeFile(t, cfg, string(raw)+h.alertsBlock())

	mustRun(t, 0, "pull", "--config", cfg, "--store", dir, "--key-file", key)
	if docs, _ := h.Docs(); len(docs) != 0 {
		t.Fatalf("a clean pull sent %d alerts", len(docs))
	}
	for i := range 5 {
		if err := m.Client.RemoveObject(t.Context(), "docs", fmt.Sprintf("mail-%d", i), minio.RemoveObjectOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	out, errOut := mustRun(t, 0, "pull", "--config", cfg, "--store", dir, "--key-file", key)
	second := pulledID(t, out)
	docs, badSig := h.Docs()
	if len(docs) != 1 || badSig != 0 {
		t.Fatalf("after wiping the bucket: %d documents, %d badly signed; want 1 mass-change\nstderr: %s", len(docs), badSig, errOut)
	}
	d := docs[0]
	mc, _ := d["mass_change"].(map[string]any)
	if d["kind"] != alert.KindMassChange || d["source"] != "docs" || d["snapshot"] != second || mc["gone"] != float64(5) {
		t.Errorf("mass-change document %v", d)
	}
	if held, _ := d["held"].([]any); len(held) != 1 {
		t.Errorf("held %v, want the first snapshot", d["held"])
	}

	badDir := filepath.Join(base, "bad")
	wrong := pullConfig(t, badDir, m.Endpoint, "not-the-secret")
	raw, err = os.ReadFile(wrong)
	if err != nil {
		t.Fatal(err)
	}
	writeFile(t, wrong, string(raw)+h.alertsBlock())
	code, _, errOut := runCLI(t, "pull", "--config", wrong, "--store", dir, "--key-file", key)
	if code != exitFailure {
		t.Fatalf("pull with a wrong secret: exit %d\n%s", code, errOut)
	}
	docs, _ = h.Docs()
	if len(docs) != 2 {
		t.Fatalf("%d documents, want a pull-failed alert too\nstderr: %s", len(docs), errOut)
	}
	if d := docs[1]; d["kind"] != alert.KindPullFailed || d["source"] != "docs" ||
		!strings.Contains(fmt.Sprint(d["message"]), `pull of source "docs" failed`) ||
		!strings.Contains(fmt.Sprint(d["message"]), "SignatureDoesNotMatch") {
		t.Errorf("pull-failed document %v", d)
	}
	if strings.Contains(errOut, "TOPSECRET") || strings.Contains(errOut, "not-the-secret") {
		t.Error("a secret was logged")
	}
}
