package export

import (
	"bytes"
	"context"
	"crypto/md5"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/hashicorp/go-hclog"
	"github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/credentials"
	"github.com/minio/minio-go/v7/pkg/signer"
	"github.com/pkg/xattr"

	"github.com/holdfast-appliance/holdfast/services/config"
	"github.com/holdfast-appliance/holdfast/services/store"
	"github.com/holdfast-appliance/holdfast/services/store/fsflag"
	"github.com/holdfast-appliance/holdfast/services/store/storetest"
)

var testKey = store.StaticKey(bytes.Repeat([]byte{0x42}, store.MasterKeySize))

const (
	testAccess = "export-reader"
	testSecret = "export-reader-secret-0123456789"
)

type testWriter struct{ t testing.TB }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(string(bytes.TrimRight(p, "\n")))
	return len(p), nil
}

func testLogger(t testing.TB) hclog.Logger {
	return hclog.New(&hclog.LoggerOptions{Name: "test", Level: hclog.Warn, Output: testWriter{t}})
}

func randBytes(seed uint64, n int) []byte {
	r := rand.NewChaCha8([32]byte{byte(seed), byte(seed >> 8), 9})
	b := make([]byte, n)
	r.Read(b)
	return b
}

// obj is one record a test puts into a snapshot.
type obj struct {
	key         string
	data        []byte
	contentType string
	meta        map[string]string
	etag        string
	md5         bool      // record the body's MD5 as verified (as a pull does)
	sha256      bool      // record the body's SHA-256 (as store put does)
	mod         time.Time // zero: a fixed time
	deleted     bool      // a delete marker
}

// snap is a committed snapshot and the objects it serves (key -> record).
type snap struct {
	id, source string
	complete   bool
	live       map[string]obj
}

// fixture is a store with several snapshots of several sources.
type fixture struct {
	dir   string
	snaps []snap
}

var baseTime = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

// hostileKeys are keys a hostile or careless source can hold; minio-go can
// ask for every one of them (valid UTF-8, at most 1024 bytes with the
// "<ID>/" prefix).
var hostileKeys = []string{
	"dir/sub/ünïcødé 🙂.bin",
	"with space/and  two  spaces ",
	"../x",
	"a/../../b",
	"./dot/./slash//double",
	"query?x=1&y=2",
	"percent%20literal%2F",
	"plus+sign",
	"hash#frag;semi,comma:colon@at!bang$'()*=",
	"back\\slash",
	"quote\"s<and>&amps",
	"tab\there",
	"newline\nkey",
	"/leading-slash",
	strings.Repeat("long/", 10) + strings.Repeat("k", 900), // 950 bytes
}

// addSnapshot commits objs as one snapshot of source, not sorted (as
// stores written before sorted snapshots hold them).
func (f *fixture) addSnapshot(t testing.TB, s *store.Store, source string, objs []obj, incomplete bool) snap {
	t.Helper()
	return f.add(t, s, source, objs, incomplete, false)
}

// addSorted commits objs, stably sorted by key, as one sorted snapshot
// of source (as a pull writes them).
func (f *fixture) addSorted(t testing.TB, s *store.Store, source string, objs []obj, incomplete bool) snap {
	t.Helper()
	objs = slices.Clone(objs)
	for i := range objs {
		if objs[i].mod.IsZero() {
			objs[i].mod = baseTime.Add(time.Duration(i) * time.Second) // as given, not as sorted
		}
	}
	slices.SortStableFunc(objs, func(a, b obj) int { return strings.Compare(a.key, b.key) })
	return f.add(t, s, source, objs, incomplete, true)
}

// add commits objs; the export serves each key's current record by the
// store's rule: the first in a sorted snapshot, the last in another.
func (f *fixture) add(t testing.TB, s *store.Store, source string, objs []obj, incomplete, sorted bool) snap {
	t.Helper()
	ctx := context.Background()
	sn, err := s.Begin(ctx, store.BeginOptions{Source: source, Sorted: sorted})
	if err != nil {
		t.Fatal(err)
	}
	live := map[string]obj{}
	seen := map[string]bool{}
	for i, o := range objs {
		if o.mod.IsZero() {
			o.mod = baseTime.Add(time.Duration(i) * time.Second)
		}
		if o.deleted {
			if err := sn.PutExisting(store.Object{Key: []byte(o.key), ModTime: o.mod, DeleteMarker: true}); err != nil {
				t.Fatal(err)
			}
		} else {
			sums := map[string]string{}
			if o.md5 {
				m := md5.Sum(o.data)
				sums["md5"] = hex.EncodeToString(m[:])
			}
			if o.sha256 {
				h := sha256.Sum256(o.data)
				sums["sha256"] = hex.EncodeToString(h[:])
			}
			if len(sums) == 0 {
				sums = nil
			}
			info := store.ObjectInfo{Key: []byte(o.key), ModTime: o.mod, ETag: o.etag, ContentType: o.contentType, UserMeta: o.meta, Checksums: sums}
			if _, err := sn.Put(ctx, info, bytes.NewReader(o.data)); err != nil {
				t.Fatalf("put %q: %v", o.key, err)
			}
		}
		if !seen[o.key] || !sorted {
			seen[o.key] = true
			if o.deleted {
				delete(live, o.key)
			} else {
				live[o.key] = o
			}
		}
	}
	m, err := sn.Commit(ctx, store.CommitOptions{Incomplete: incomplete})
	if err != nil {
		t.Fatal(err)
	}
	sp := snap{id: m.ID, source: source, complete: !incomplete, live: live}
	f.snaps = append(f.snaps, sp)
	return sp
}

// newFixture builds the store every export test serves:
//
//	docs  snapshot 1: hostile keys, content types, metadata, versions,
//	                  a delete marker, keys XML cannot carry, a 20 MiB
//	                  object; not sorted (an older store's)
//	docs  snapshot 2: a subset, changed content, sorted, with a version
//	                  and a delete marker    <- latest/ (newest complete)
//	docs  snapshot 3: incomplete                  (not latest)
//	mail  snapshot 1: file-system-safe keys for rclone, sorted
//	"bad name" snapshot: a source that cannot be a bucket
func newFixture(t testing.TB) *fixture {
	t.Helper()
	dir := storetest.Dir(t)
	s, err := store.Init(context.Background(), dir, testKey, store.InitOptions{PackSize: 4 << 20}, store.Options{Logger: testLogger(t)})
	if err != nil {
		t.Fatalf("init store: %v", err)
	}
	defer s.Close()
	f := &fixture{dir: dir}

	var first []obj
	first = append(first,
		obj{key: "plain.txt", data: []byte("hello, export\n"), contentType: "text/plain; charset=utf-8",
			meta: map[string]string{"owner": "alice", "project": "Grüße"}, md5: true},
		obj{key: "empty", data: []byte{}},
		obj{key: "big.bin", data: randBytes(1, 20<<20+12345), contentType: "application/x-big", sha256: true},
		obj{key: "multipart-etag", data: randBytes(2, 70000), etag: "0123456789abcdef0123456789abcdef-3"},
		obj{key: "gone", data: []byte("deleted later")},
		obj{key: "gone", deleted: true, mod: baseTime.Add(time.Hour)},
		obj{key: "versioned", data: []byte("newest version"), mod: baseTime.Add(2 * time.Hour)},
		obj{key: "versioned", data: []byte("older version recorded after it"), mod: baseTime.Add(time.Hour)},
		obj{key: "bad\xffutf8", data: []byte("invalid UTF-8 key")},
		obj{key: "ctrl\x01char", data: []byte("control character key")},
	)
	for i, k := range hostileKeys {
		first = append(first, obj{key: k, data: randBytes(uint64(100+i), 1000+i*37), sha256: i%2 == 0})
	}
	f.addSnapshot(t, s, "docs", first, false)

	second := []obj{
		{key: "plain.txt", data: []byte("hello again, export\n"), contentType: "text/plain", meta: map[string]string{"owner": "bob"}, md5: true},
		{key: "big.bin", data: randBytes(3, 9<<20+7), sha256: true},
		{key: "empty", data: []byte{}},
		// A pull records a key's versions newest first: the first is current.
		{key: "versioned", data: []byte("newest version, recorded first"), mod: baseTime.Add(2 * time.Hour)},
		{key: "versioned", data: []byte("older version"), mod: baseTime.Add(time.Hour)},
		{key: "gone", deleted: true, mod: baseTime.Add(time.Hour)},
		{key: "gone", data: []byte("deleted since")},
	}
	for i, k := range hostileKeys {
		second = append(second, obj{key: k, data: randBytes(uint64(200+i), 500+i), md5: i%3 == 0, sha256: i%3 == 1,
			contentType: []string{"", "image/png", "text/x-odd"}[i%3], meta: map[string]string{"index": fmt.Sprint(i)}})
	}
	f.addSorted(t, s, "docs", second, false)
	f.addSnapshot(t, s, "docs", []obj{{key: "partial", data: []byte("from a pull that failed")}}, true)

	mail := []obj{
		{key: "inbox/1.eml", data: []byte("From: a\n\nhi\n"), contentType: "message/rfc822", md5: true},
		{key: "inbox/ünïcødé 🙂.eml", data: randBytes(4, 3000)},
		{key: "inbox/with space and ?question%percent#hash.eml", data: randBytes(5, 4000), sha256: true},
		{key: "archive/2025/big.mbox", data: randBytes(6, 11<<20+3)},
		{key: "archive/empty.mbox", data: []byte{}},
		{key: "a/b/c/d/e/f/g/deep.txt", data: []byte("deep")},
		{key: strings.Repeat("n", 200) + "/" + strings.Repeat("m", 200), data: []byte("long names")},
	}
	f.addSorted(t, s, "mail", mail, false)
	f.addSnapshot(t, s, "bad name", []obj{{key: "x", data: []byte("x")}}, false)
	return f
}

// latest returns the newest complete snapshot of source.
func (f *fixture) latest(source string) snap {
	var out snap
	for _, s := range f.snaps {
		if s.source == source && s.complete {
			out = s
		}
	}
	return out
}

// keys returns every key the export should list for source, in order.
func (f *fixture) keys(source string) []string {
	var out []string
	for _, s := range f.snaps {
		if s.source != source {
			continue
		}
		for k := range s.live {
			out = append(out, s.id+"/"+k)
		}
	}
	if l := f.latest(source); l.id != "" {
		for k := range l.live {
			out = append(out, "latest/"+k)
		}
	}
	sort.Strings(out)
	return out
}

// lookup returns the record the export should serve as bucket/key.
func (f *fixture) lookup(source, key string) (obj, bool) {
	seg, rest, _ := strings.Cut(key, "/")
	for _, s := range f.snaps {
		if s.source == source && (s.id == seg || seg == "latest" && s.id == f.latest(source).id) {
			o, ok := s.live[rest]
			return o, ok
		}
	}
	return obj{}, false
}

// testServer is a running export.
type testServer struct {
	*Server
	addr   string
	pool   *x509.CertPool
	offset atomic.Int64 // server clock offset, ns
	logs   *lockedBuf
}

type lockedBuf struct {
	mu chan struct{}
	b  bytes.Buffer
}

func (l *lockedBuf) Write(p []byte) (int, error) {
	l.mu <- struct{}{}
	defer func() { <-l.mu }()
	return l.b.Write(p)
}

func (l *lockedBuf) String() string {
	l.mu <- struct{}{}
	defer func() { <-l.mu }()
	return l.b.String()
}

// readOnlyKeys derives the read-only StoreKeys of the store at dir.
func readOnlyKeys(t testing.TB, dir string) store.StoreKeys {
	t.Helper()
	id, err := store.ReadID(dir)
	if err != nil {
		t.Fatal(err)
	}
	k, err := store.DeriveKeys(testKey, id)
	if err != nil {
		t.Fatal(err)
	}
	return k.ReadOnly()
}

// startServer serves dir on 127.0.0.1 until the test ends.
func startServer(t testing.TB, dir string, mod func(*Options)) *testServer {
	t.Helper()
	ts := &testServer{logs: &lockedBuf{mu: make(chan struct{}, 1)}}
	log := hclog.New(&hclog.LoggerOptions{Name: "export", Level: hclog.Debug, Output: io.MultiWriter(ts.logs)})
	o := Options{
		StoreDir: dir,
		// What the appliance gives the export: the store's read-only
		// subkeys, never the master key.
		Key:             readOnlyKeys(t, dir),
		Credentials:     []Credential{{AccessKey: testAccess, SecretKey: config.Secret(testSecret)}},
		Logger:          log,
		Now:             func() time.Time { return time.Now().Add(time.Duration(ts.offset.Load())) },
		RefreshInterval: 20 * time.Millisecond,
	}
	if mod != nil {
		mod(&o)
	}
	ctx, cancel := context.WithCancel(context.Background())
	srv, err := New(ctx, o)
	if err != nil {
		cancel()
		t.Fatalf("new export: %v", err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ctx, ln) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("serve: %v", err)
		}
		if t.Failed() {
			t.Logf("export log:\n%s", ts.logs.String())
		}
	})
	ts.Server, ts.addr = srv, ln.Addr().String()
	ts.pool = x509.NewCertPool()
	if !ts.pool.AppendCertsFromPEM(srv.CertificatePEM()) {
		t.Fatal("certificate PEM holds no certificate")
	}
	return ts
}

func (ts *testServer) transport() *http.Transport {
	return &http.Transport{Proxy: nil, TLSClientConfig: &tls.Config{RootCAs: ts.pool}, DisableCompression: true}
}

// client returns a minio-go client of the export.
func (ts *testServer) client(t testing.TB, access, secret string) *minio.Client {
	return ts.clientRetries(t, access, secret, 0)
}

// clientRetries is client with minio-go's retry count set (0: its default).
func (ts *testServer) clientRetries(t testing.TB, access, secret string, retries int) *minio.Client {
	t.Helper()
	cl, err := minio.New(ts.addr, &minio.Options{
		Creds:      credentials.NewStaticV4(access, secret, ""),
		Secure:     true,
		Transport:  ts.transport(),
		MaxRetries: retries,
	})
	if err != nil {
		t.Fatal(err)
	}
	return cl
}

// do sends a request signed with the test credentials (unless unsigned)
// and returns status, headers and body.
func (ts *testServer) do(t testing.TB, method, path, rawQuery string, hdr map[string]string, unsigned bool) (int, http.Header, []byte) {
	t.Helper()
	u := fmt.Sprintf("https://%s%s", ts.addr, (&urlPath{path}).escaped())
	if rawQuery != "" {
		u += "?" + rawQuery
	}
	req, err := http.NewRequest(method, u, nil)
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	if !unsigned {
		if req.Header.Get("X-Amz-Content-Sha256") == "" {
			req.Header.Set("X-Amz-Content-Sha256", unsignedPayload)
		}
		if utf8.ValidString(path) {
			req = signer.SignV4(*req, testAccess, testSecret, "", "us-east-1")
		} else {
			// minio-go's signer turns invalid UTF-8 into U+FFFD; the spec
			// (and the AWS SDKs) encode the bytes.
			signSpec(req, testAccess, testSecret)
		}
	}
	resp, err := (&http.Client{Transport: ts.transport()}).Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("%s %s: read body: %v", method, path, err)
	}
	return resp.StatusCode, resp.Header, body
}

// signSpec signs req as the AWS specification says, byte by byte: what
// the AWS SDKs do for keys that are not UTF-8.
func signSpec(req *http.Request, access, secret string) {
	now := time.Now().UTC()
	req.Header.Set("X-Amz-Date", now.Format(amzDateFmt))
	names := []string{"host"}
	for k := range req.Header {
		names = append(names, strings.ToLower(k))
	}
	sort.Strings(names)
	var b strings.Builder
	fmt.Fprintf(&b, "%s\n%s\n", req.Method, awsEscape(req.URL.Path, false))
	q, _ := parseRawQuery(req.URL.RawQuery)
	b.WriteString(q.canonical(false) + "\n")
	for _, n := range names {
		v := req.URL.Host
		if n != "host" {
			v = strings.TrimSpace(req.Header.Get(n))
		}
		fmt.Fprintf(&b, "%s:%s\n", n, v)
	}
	fmt.Fprintf(&b, "\n%s\n%s", strings.Join(names, ";"), req.Header.Get("X-Amz-Content-Sha256"))
	c := credential{accessKey: access, date: now.Format(scopeDateFmt), region: "us-east-1", service: "s3"}
	req.Header.Set("Authorization", fmt.Sprintf("AWS4-HMAC-SHA256 Credential=%s/%s,SignedHeaders=%s,Signature=%s",
		access, c.scope(), strings.Join(names, ";"), signature(secret, c, now.Format(amzDateFmt), b.String())))
}

// urlPath escapes a path the way S3 clients do (every byte but
// unreserved characters and '/').
type urlPath struct{ p string }

func (u *urlPath) escaped() string { return awsEscape(u.p, false) }

// treeState records every entry below dir: path, mode, size, mtime,
// inode flags, xattrs and a hash of the content.
func treeState(t testing.TB, dir string) map[string]string {
	t.Helper()
	out := map[string]string{}
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		fi, err := os.Lstat(p)
		if err != nil {
			return err
		}
		st := fi.Sys().(*syscall.Stat_t)
		desc := fmt.Sprintf("mode %v size %d mtime %d ctime %d.%d", fi.Mode(), fi.Size(), fi.ModTime().UnixNano(), st.Ctim.Sec, st.Ctim.Nsec)
		if fi.Mode().IsRegular() || fi.IsDir() {
			imm, _ := fsflag.Has(p, fsflag.Immutable)
			app, _ := fsflag.Has(p, fsflag.Append)
			desc += fmt.Sprintf(" immutable %v append %v", imm, app)
			if names, err := xattr.LList(p); err == nil {
				sort.Strings(names)
				for _, n := range names {
					v, _ := xattr.LGet(p, n)
					desc += fmt.Sprintf(" %s=%x", n, v)
				}
			}
		}
		if fi.Mode().IsRegular() {
			b, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			desc += fmt.Sprintf(" sha256 %x", sha256.Sum256(b))
		}
		rel, _ := filepath.Rel(dir, p)
		out[rel] = desc
		return nil
	})
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		t.Fatal(err)
	}
	return out
}

func sha(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

func md5Sum(b []byte) [16]byte { return md5.Sum(b) }

func b64sha(b []byte) string {
	s := sha256.Sum256(b)
	return base64.StdEncoding.EncodeToString(s[:])
}

// damagePacks flips a byte every 32 KiB of every pack file in the store.
func damagePacks(t testing.TB, dir string) {
	t.Helper()
	n := 0
	err := filepath.WalkDir(filepath.Join(dir, "packs"), func(p string, d fs.DirEntry, err error) error {
		if err != nil || !d.Type().IsRegular() {
			return err
		}
		if err := fsflag.Clear(p, fsflag.Immutable); err != nil {
			return err
		}
		fh, err := os.OpenFile(p, os.O_RDWR, 0)
		if err != nil {
			return err
		}
		defer fh.Close()
		fi, err := fh.Stat()
		if err != nil {
			return err
		}
		for off := int64(100); off < fi.Size()-4096; off += 32 << 10 {
			var b [1]byte
			if _, err := fh.ReadAt(b[:], off); err != nil {
				return err
			}
			b[0] ^= 0x40
			if _, err := fh.WriteAt(b[:], off); err != nil {
				return err
			}
		}
		n++
		return nil
	})
	if err != nil || n == 0 {
		t.Fatalf("damage packs: %d packs, %v", n, err)
	}
}
