package export

// A second Holdfast store pulls from the first store's export as from any
// S3 source (services/ingest, TLS with a CA bundle), and ends up with the
// same objects.

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/holdfast-appliance/holdfast/services/config"
	"github.com/holdfast-appliance/holdfast/services/ingest"
	"github.com/holdfast-appliance/holdfast/services/store"
	"github.com/holdfast-appliance/holdfast/services/store/storetest"
)

// testPKI makes a CA and a server certificate it signs for 127.0.0.1.
func testPKI(t testing.TB) (caPEM, certPEM, keyPEM []byte) {
	t.Helper()
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	caTmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "Holdfast test CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	ca, _ := x509.ParseCertificate(caDER)
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: "holdfast-export.test"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		IPAddresses: []net.IP{net.ParseIP("127.0.0.1")},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	kder, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: caDER}),
		pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kder})
}

func TestChainPullFromExport(t *testing.T) {
	f := newFixture(t)
	caPEM, certPEM, keyPEM := testPKI(t)
	ts := startServer(t, f.dir, func(o *Options) { o.CertPEM, o.KeyPEM = certPEM, keyPEM })
	if !strings.Contains(ts.logs.String(), "TLS certificate loaded") {
		t.Fatal("the export did not use the given certificate")
	}
	ctx := context.Background()
	second, err := store.Init(ctx, storetest.Dir(t), testKey, store.InitOptions{PackSize: 4 << 20}, store.Options{Logger: testLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	defer second.Close()
	src := config.Source{
		Name: "docs-copy",
		S3: config.S3{Endpoint: ts.addr, Bucket: "docs", Prefix: "latest/", AccessKey: testAccess, SecretKey: config.Secret(testSecret),
			TLS: true, CABundle: "test-ca.pem", CAPEM: caPEM, CheckETagMD5: true},
		Schedule:              config.Schedule{Every: time.Hour},
		Retention:             config.Retention{Forever: true},
		Parallel:              4,
		Retries:               2,
		Limits:                config.Limits{MaxObjectSize: config.DefaultMaxObjectSize, MaxObjectsPerPull: config.DefaultMaxObjectsPerPull, Quota: config.DefaultQuota},
		MassChangeThreshold:   config.DefaultMassChangeThreshold,
		LegalHoldOnMassChange: true,
	}
	p := &ingest.Puller{Store: second, Log: testLogger(t)}
	res, err := p.Pull(ctx, src)
	if err != nil {
		t.Fatalf("pull from the export: %v", err)
	}
	want := f.latest("docs").live
	if !res.Complete || res.Versioned || res.Fetched != len(want) || res.Objects != int64(len(want)) {
		t.Fatalf("pull result %+v; want %d objects fetched, complete", res, len(want))
	}
	m, err := second.ReadManifest(res.Snapshot)
	if err != nil {
		t.Fatal(err)
	}
	seen := map[string]bool{}
	for _, o := range m.Objects {
		k, ok := strings.CutPrefix(string(o.Key), "latest/")
		w, known := want[k]
		if !ok || !known {
			t.Errorf("the second store holds %q, which the first does not", o.Key)
			continue
		}
		seen[k] = true
		var body bytes.Buffer
		if err := second.WriteObject(ctx, o, &body); err != nil {
			t.Fatalf("read %q from the second store: %v", o.Key, err)
		}
		if sha(body.Bytes()) != sha(w.data) {
			t.Errorf("%q: sha256 %s in the second store, %s in the first", k, sha(body.Bytes()), sha(w.data))
		}
		wantCT := w.contentType
		if wantCT == "" {
			wantCT = "application/octet-stream"
		}
		if o.ContentType != wantCT {
			t.Errorf("%q: content type %q, want %q", k, o.ContentType, wantCT)
		}
		if len(o.UserMeta) != len(w.meta) {
			t.Errorf("%q: user metadata %v, want %v", k, o.UserMeta, w.meta)
		}
		for mk, mv := range w.meta {
			if o.UserMeta[mk] != mv {
				t.Errorf("%q: user metadata %q = %q, want %q", k, mk, o.UserMeta[mk], mv)
			}
		}
		// What the puller verified on the way: the MD5 against the ETag
		// where the first store had one, the SHA-256 the export declared.
		if w.md5 && o.Checksums["md5"] != md5hex(w.data) {
			t.Errorf("%q: MD5 not verified by the pull: %v", k, o.Checksums)
		}
		if w.sha256 && o.Checksums["sha256"] != sha(w.data) {
			t.Errorf("%q: SHA-256 not verified by the pull: %v", k, o.Checksums)
		}
	}
	if len(seen) != len(want) {
		t.Errorf("the second store holds %d of the %d objects", len(seen), len(want))
	}

	// Pulled again with nothing changed: every object is reused (same
	// ETags and times), nothing fetched.
	res2, err := p.Pull(ctx, src)
	if err != nil {
		t.Fatal(err)
	}
	if res2.Fetched != 0 || res2.Reused != len(want) || !res2.Complete {
		t.Errorf("second pull %+v; want everything reused", res2)
	}
}
