package worker

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"golang.org/x/sys/unix"

	"github.com/holdfast-appliance/holdfast/firmware/control"
	"github.com/holdfast-appliance/holdfast/firmware/receipt"
	"github.com/holdfast-appliance/holdfast/firmware/roles"
	"github.com/holdfast-appliance/holdfast/firmware/tpm"
	"github.com/holdfast-appliance/holdfast/firmware/tpm/tpmtest"
	"github.com/holdfast-appliance/holdfast/services/config"
	"github.com/holdfast-appliance/holdfast/services/restore"
	"github.com/holdfast-appliance/holdfast/services/restore/restoretest"
	"github.com/holdfast-appliance/holdfast/services/store"
	"github.com/holdfast-appliance/holdfast/services/store/fsflag"
	"github.com/holdfast-appliance/holdfast/services/store/storetest"
	"github.com/holdfast-appliance/holdfast/tools/testminio"
)

// These tests need root (storetest: the store seals its files), swtpm
// (tpmtest) and the pinned MinIO (testminio), as `make test` provides.

// testKeys derives the worker's subkeys of the store at dir from testMaster.
func testKeys(t testing.TB, dir string) store.StoreKeys {
	t.Helper()
	id, err := store.ReadID(dir)
	if err != nil {
		t.Fatal(err)
	}
	k, err := store.DeriveKeys(testMaster, id)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// hostileObjects are keys MinIO stores as they are: the shared set (an
// object larger than the default part size, a 1000-byte key that leaves
// room for a destination prefix) and the worker's own; the snapshot also
// records a key deleted at the source.
func hostileObjects() []restoretest.Object {
	return append(restoretest.HostileObjects(20<<20+333, 1000),
		restoretest.Object{Key: "with space and\nnewline", Data: restoretest.RandBytes(3, 1001), ContentType: "message/rfc822"},
		restoretest.Object{Key: "x\r\ny\tz", Data: restoretest.RandBytes(4, 1002)},
		restoretest.Object{Key: "%2e%2e%2f..%2F", Data: restoretest.RandBytes(6, 1004)},
		restoretest.Object{Key: "\x1b[2Jescape", Data: restoretest.RandBytes(8, 1006)},
		restoretest.Object{Key: "dir/a", Data: restoretest.RandBytes(9, 1007)},
		restoretest.Object{Key: "dir/b c", Data: restoretest.RandBytes(10, 1008), Meta: map[string]string{"Spaced": "v a l"}},
	)
}

// refusedObjects are keys a snapshot may hold but MinIO refuses.
func refusedObjects() []restoretest.Object {
	return []restoretest.Object{
		{Key: "../etc/passwd", Data: []byte("escape")},
		{Key: "a/../b", Data: []byte("dot dot")},
		{Key: "\xff\xfe bad utf8", Data: []byte("bad utf8")},
		{Key: "ok", Data: []byte("fine")},
	}
}

var testMaster = bytes.Repeat([]byte{0x42}, store.MasterKeySize)

// restoreFixture is a store with signed snapshots, a MinIO, and a worker
// whose config has targets on it.
type restoreFixture struct {
	w        *worker
	mc       *testminio.Server
	dir      string
	pub      []byte // PEM of the receipt key
	good     string // hostileObjects
	refused  string // refusedObjects
	unsigned string // committed without a signer
	want     map[string]restoretest.Object
}

// targetHCL is a target block on the test MinIO.
func targetHCL(name, endpoint, bucket, prefix string) string {
	return fmt.Sprintf("target %q {\n  s3 {\n    endpoint = %q\n    bucket = %q\n    prefix = %q\n    access_key = %q\n    secret_key = %q\n    tls = false\n  }\n}\n",
		name, endpoint, bucket, prefix, testminio.AccessKey, testminio.SecretKey)
}

// newRestoreFixture builds the store (receipts signed by a software TPM)
// and a worker whose config has a target "tN" with bucket "bucket-N" for
// each prefix given, plus extra config text.
func newRestoreFixture(t *testing.T, prefixes []string, extra string) *restoreFixture {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	log := restoretest.Logger(t, "worker", hclog.Info)
	tp := tpmtest.Start(t)
	signer := &tpm.Signer{TPM: tp}
	pub, err := signer.PublicKeyPEM(ctx)
	if err != nil {
		t.Fatal(err)
	}
	dir := storetest.Dir(t)
	s, err := store.Init(ctx, dir, store.StaticKey(testMaster), store.InitOptions{PackSize: 4 << 20}, store.Options{Signer: signer, Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	objs := hostileObjects()
	f := &restoreFixture{dir: dir, pub: pub, want: restoretest.Want(objs)}
	f.good = restoretest.Commit(t, s, "mail", objs)
	f.refused = restoretest.Commit(t, s, "odd", refusedObjects())
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	unsigned, err := store.Open(ctx, dir, store.StaticKey(testMaster), store.Options{Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	f.unsigned = restoretest.Commit(t, unsigned, "mail", []restoretest.Object{{Key: "k", Data: []byte("v")}})
	if err := unsigned.Close(); err != nil {
		t.Fatal(err)
	}

	f.mc = testminio.Start(t)
	src := `appliance { name = "hf-test" }
source "mail" {
  s3 {
    endpoint   = "127.0.0.1:1"
    bucket     = "mail"
    access_key = "a"
    secret_key = "b"
    tls        = false
  }
  schedule = "every 6h"
}
` + extra
	for i, p := range prefixes {
		b := fmt.Sprintf("bucket-%d", i)
		f.mc.MakeBucket(t, b, false)
		src += targetHCL(fmt.Sprintf("t%d", i), f.mc.Endpoint, b, p)
	}
	cfg, err := config.Parse("config.sealed", []byte(src))
	if err != nil {
		t.Fatal(err)
	}
	f.w = &worker{log: log, cfg: cfg, disks: []*wdisk{{ref: control.Disk{Name: "data", Dir: dir}}}, keys: testKeys(t, dir)}
	return f
}

// TestWorkerRestore drives the worker's restore directly: a whole
// snapshot of hostile keys (a multipart-sized object among them), a
// prefix, and single objects, each to its own bucket; every object's
// SHA-256, content type and metadata is compared, and the progress
// callbacks are checked.
func TestWorkerRestore(t *testing.T) {
	tests := []struct {
		name      string
		dstPrefix string
		prefix    string
		exact     bool
		keys      []string // nil: every live key
	}{
		{"whole snapshot", "r/", "", false, nil},
		{"prefix", "", "dir/", false, []string{"dir/a", "dir/b c"}},
		{"one object with a newline", "one/", "with space and\nnewline", true, []string{"with space and\nnewline"}},
		{"one multipart object", "", "big/multipart.bin", true, []string{"big/multipart.bin"}},
		{"the last version", "v/", "versioned", true, []string{"versioned"}},
	}
	prefixes := make([]string, len(tests))
	for i, tt := range tests {
		prefixes[i] = tt.dstPrefix
	}
	f := newRestoreFixture(t, prefixes, "")
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var calls []control.RestoreReport
			rep, err := f.w.restoreSnapshot(context.Background(), restoreRequest{
				Snapshot: f.good, Target: fmt.Sprintf("t%d", i), Prefix: tt.prefix, Exact: tt.exact, ReceiptKey: f.pub,
			}, func(r control.RestoreReport) { calls = append(calls, r) })
			if err != nil {
				t.Fatalf("restore: %v", err)
			}
			want := restoretest.Only(f.want, tt.keys)
			var total int64
			for _, w := range want {
				total += int64(len(w.Data))
			}
			if rep.Objects != len(want) || rep.TotalObjects != len(want) || rep.Bytes != total || rep.TotalBytes != total || rep.Source != "mail" || len(rep.Receipt) != 64 {
				t.Errorf("report %+v; want %d objects, %d bytes, source mail, a receipt digest", rep, len(want), total)
			}
			if wantDel := map[bool]int{true: 1, false: 0}[tt.keys == nil]; rep.DeleteMarkers != wantDel {
				t.Errorf("%d delete markers skipped, want %d", rep.DeleteMarkers, wantDel)
			}
			// One call once the receipt is verified, then one per object,
			// counting up to the totals.
			if len(calls) != len(want)+1 {
				t.Fatalf("%d progress calls, want %d", len(calls), len(want)+1)
			}
			for j, c := range calls {
				if c.Objects != j || c.TotalObjects != len(want) || c.TotalBytes != total || c.Receipt != rep.Receipt || (j > 0 && c.Bytes < calls[j-1].Bytes) {
					t.Errorf("progress call %d: %+v", j, c)
				}
			}
			if last := calls[len(calls)-1]; last.Bytes != total {
				t.Errorf("last progress %+v, want %d bytes", last, total)
			}
			restoretest.CheckBucket(t, f.mc, fmt.Sprintf("bucket-%d", i), tt.dstPrefix, want, restore.DefaultPartSize)
		})
	}
}

// flipReceiptByte changes one byte of a sealed receipt file, counted from
// its end when off is negative.
func flipReceiptByte(t *testing.T, path string, off int) {
	t.Helper()
	if err := fsflag.Clear(path, fsflag.Immutable); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if off < 0 {
		off += len(b)
	}
	b[off] ^= 0x01
	if err := os.WriteFile(path, b, 0o444); err != nil {
		t.Fatal(err)
	}
	if err := fsflag.Set(path, fsflag.Immutable); err != nil {
		t.Fatal(err)
	}
}

// TestWorkerRestoreRefused: a tampered receipt, another key's receipt, no
// receipt, an unknown target or snapshot, nothing matching: refused with a
// clear error before anything is written. Keys MinIO refuses fail naming
// the key.
func TestWorkerRestoreRefused(t *testing.T) {
	f := newRestoreFixture(t, []string{""}, "")
	other, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	otherPEM, err := receipt.MarshalPublicKeyPEM(&other.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	// A second store whose receipt is tampered with: the last byte of
	// the ECDSA signature changed.
	tampered := newRestoreFixture(t, []string{""}, "")
	flipReceiptByte(t, filepath.Join(tampered.dir, "receipts", tampered.good+".receipt"), -1)

	req := func(fx *restoreFixture, snap, target, prefix string, exact bool, key []byte) restoreRequest {
		return restoreRequest{Snapshot: snap, Target: target, Prefix: prefix, Exact: exact, ReceiptKey: key}
	}
	tests := []struct {
		name string
		fx   *restoreFixture
		req  restoreRequest
		want []string
	}{
		{"tampered receipt", tampered, req(tampered, tampered.good, "t0", "", false, tampered.pub), []string{"refused, nothing was written", "receipt of snapshot " + tampered.good, "INVALID", "does not verify"}},
		{"another key's receipt", f, req(f, f.good, "t0", "", false, otherPEM), []string{"refused", "INVALID", "another key"}},
		{"no receipt", f, req(f, f.unsigned, "t0", "", false, f.pub), []string{"refused", "receipt", f.unsigned, "not found"}},
		{"no receipt key", f, req(f, f.good, "t0", "", false, nil), []string{"no receipt key"}},
		{"unknown target", f, req(f, f.good, "nope", "", false, f.pub), []string{`no target "nope"`, "targets: t0"}},
		{"unknown snapshot", f, req(f, "20260101T000000Z-0011aabb", "t0", "", false, f.pub), []string{`no snapshot "20260101T000000Z-0011aabb"`}},
		{"no such object", f, req(f, f.good, "t0", "nope", true, f.pub), []string{`holds no object "nope"`}},
		{"deleted object", f, req(f, f.good, "t0", "deleted-later", true, f.pub), []string{`holds no object "deleted-later"`, "deleted at the source"}},
		{"no such prefix", f, req(f, f.good, "t0", "zzz/", false, f.pub), []string{`holds no object under "zzz/"`}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := tt.fx.w.restoreSnapshot(context.Background(), tt.req, func(control.RestoreReport) {})
			if err == nil {
				t.Fatal("restore succeeded")
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not mention %q", err, w)
				}
			}
			if got := restoretest.ListBucket(t, tt.fx.mc, "bucket-0", ""); len(got) != 0 {
				t.Errorf("%d objects written", len(got))
			}
		})
	}

	// MinIO refuses these keys: the restore of each fails naming it
	// (Go-quoted), while a fine key of the same snapshot restores.
	for _, o := range refusedObjects() {
		t.Run("key "+strconv.Quote(o.Key), func(t *testing.T) {
			_, err := f.w.restoreSnapshot(context.Background(), req(f, f.refused, "t0", o.Key, true, f.pub), func(control.RestoreReport) {})
			if o.Key == "ok" {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), fmt.Sprintf("%q", o.Key)) {
				t.Fatalf("restore of %q: %v, want an error naming the key", o.Key, err)
			}
		})
	}
}

// restoreOver sends req over p1 (PID 1's end) and, until the worker
// answers, asks every `every` how far it got; it returns the answer and
// the progress reports seen, in order.
func restoreOver(ctx context.Context, p1 *control.Conn, req *control.RestoreRequest, every time.Duration) (*control.RestoreReport, []control.RestoreReport, error) {
	type answer struct {
		r   *control.RestoreReply
		err error
	}
	done := make(chan answer, 1)
	go func() {
		r, err := control.Do[*control.RestoreReply](ctx, p1, req)
		done <- answer{r, err}
	}()
	var seen []control.RestoreReport
	tick := time.NewTicker(every)
	defer tick.Stop()
	for {
		select {
		case a := <-done:
			if a.r == nil {
				return nil, seen, a.err
			}
			return a.r.Restore, seen, a.err
		case <-tick.C:
			if r, err := control.Do[*control.RestoreReply](ctx, p1, &control.RestoreProgressRequest{}); err == nil && r.Restore != nil {
				seen = append(seen, *r.Restore)
			}
		}
	}
}

// TestRestoreOverControlChannel runs restores the way PID 1 asks for them:
// "restore" and "restore-progress" requests from a fake PID 1 over a real
// control channel to the worker's handler; one restore at a time, the
// maintenance reboot's quiesce waits for it, and closing the channel stops
// it. PID 1's side (the console lines, the receipt key read from the TPM)
// is tested in firmware/appliance against a fake worker, and both together
// in the VM (images: TestApplianceEndToEnd).
func TestRestoreOverControlChannel(t *testing.T) {
	// "stall" accepts connections and never answers: a restore to it
	// runs until the control channel closes.
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var held []net.Conn
	var heldMu sync.Mutex
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			heldMu.Lock()
			held = append(held, c)
			heldMu.Unlock()
		}
	}()
	t.Cleanup(func() {
		l.Close()
		heldMu.Lock()
		for _, c := range held {
			c.Close()
		}
		heldMu.Unlock()
	})
	f := newRestoreFixture(t, []string{"", "x/"}, targetHCL("stall", l.Addr().String(), "stall", ""))
	pid1End, workerEnd, err := roles.Socketpair("control")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { pid1End.Close(); workerEnd.Close() })
	f.w.peer = control.New(workerEnd, control.Options{Side: control.Worker, Handler: f.w.handle})
	p1 := control.New(pid1End, control.Options{Side: control.PID1, Handler: func(context.Context, control.Request) (control.Reply, error) { return nil, nil }})
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()

	t.Run("progress", func(t *testing.T) {
		r, seen, err := restoreOver(ctx, p1, &control.RestoreRequest{Snapshot: f.good, Target: "t0", ReceiptKey: f.pub}, 2*time.Millisecond)
		if err != nil {
			t.Fatalf("restore: %v", err)
		}
		n := len(f.want)
		if r == nil || r.Objects != n || r.TotalObjects != n || r.DeleteMarkers != 1 || r.Source != "mail" || r.Target != "t0" || len(r.Receipt) != 64 {
			t.Fatalf("answer %+v, want %d objects of source mail to t0, 1 delete marker, a receipt digest", r, n)
		}
		for i, p := range seen {
			if p.Snapshot != f.good || p.TotalObjects != 0 && p.TotalObjects != n || p.Objects > n {
				t.Errorf("progress %d: %+v", i, p)
			}
			if i > 0 && p.Objects < seen[i-1].Objects {
				t.Errorf("progress went back: %+v after %+v", p, seen[i-1])
			}
		}
		t.Logf("%d progress reports", len(seen))
		restoretest.CheckBucket(t, f.mc, "bucket-0", "", f.want, restore.DefaultPartSize)
	})

	t.Run("refused and bad requests", func(t *testing.T) {
		other, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		otherPEM, err := receipt.MarshalPublicKeyPEM(&other.PublicKey)
		if err != nil {
			t.Fatal(err)
		}
		for _, tc := range []struct {
			name string
			req  control.RestoreRequest
			want string
		}{
			{"another TPM's key", control.RestoreRequest{Snapshot: f.refused, Target: "t1", ReceiptKey: otherPEM}, "refused, nothing was written"},
			{"no receipt key", control.RestoreRequest{Snapshot: f.good, Target: "t0"}, "receipt_key: 0 bytes"},
			{"unknown target", control.RestoreRequest{Snapshot: f.good, Target: "nope", ReceiptKey: f.pub}, `no target "nope" in the config (targets: stall, t0, t1)`},
			{"unsigned snapshot", control.RestoreRequest{Snapshot: f.unsigned, Target: "t0", ReceiptKey: f.pub}, "refused, nothing was written"},
			// The key crosses the channel intact and MinIO refuses it.
			{"key not UTF-8", control.RestoreRequest{Snapshot: f.refused, Target: "t1", Prefix: []byte("\xff\xfe bad utf8"), Exact: true, ReceiptKey: f.pub}, `"\xff\xfe bad utf8"`},
		} {
			t.Run(tc.name, func(t *testing.T) {
				req := tc.req
				_, err := control.Do[*control.RestoreReply](ctx, p1, &req)
				if err == nil || !strings.Contains(err.Error(), tc.want) {
					t.Fatalf("got %v, want an error with %q", err, tc.want)
				}
			})
		}
	})

	t.Run("one at a time", func(t *testing.T) {
		first := make(chan error, 1)
		go func() {
			_, _, err := restoreOver(ctx, p1, &control.RestoreRequest{Snapshot: f.good, Target: "stall", ReceiptKey: f.pub}, time.Hour)
			first <- err
		}()
		// Wait until the first restore is past its receipt check.
		for {
			r, err := control.Do[*control.RestoreReply](ctx, p1, &control.RestoreProgressRequest{})
			if err == nil && r != nil && r.Restore != nil && r.Restore.Receipt != "" {
				if r.Restore.Target != "stall" || r.Restore.TotalObjects != len(f.want) {
					t.Errorf("progress %+v", r.Restore)
				}
				break
			}
			select {
			case err := <-first:
				t.Fatalf("the stalled restore ended: %v", err)
			case <-time.After(10 * time.Millisecond):
			}
		}
		_, err := control.Do[*control.RestoreReply](ctx, p1, &control.RestoreRequest{Snapshot: f.good, Target: "t0", ReceiptKey: f.pub})
		if err == nil || control.KindOf(err) != control.Busy || !strings.Contains(err.Error(), `a restore is already running (snapshot `+f.good+` to target "stall"`) {
			t.Errorf("second restore: %v", err)
		}
		// The maintenance reboot waits for the running restore, and the
		// restore goes on.
		q, err := control.Do[*control.QuiesceReply](ctx, p1, &control.QuiesceRequest{})
		if err != nil || q.Busy != "restore of "+f.good+" to stall running" {
			t.Errorf("quiesce during a restore: %+v, %v", q, err)
		}
		if r, err := control.Do[*control.RestoreReply](ctx, p1, &control.RestoreProgressRequest{}); err != nil || r.Restore == nil || r.Restore.Target != "stall" {
			t.Errorf("the restore stopped when the maintenance reboot asked: %+v, %v", r, err)
		}
		// Closing the control channel stops the worker's restore (a
		// shutdown: a blocked read on a blocking socket outlives Close).
		if err := unix.Shutdown(int(workerEnd.Fd()), unix.SHUT_RDWR); err != nil {
			t.Fatal(err)
		}
		select {
		case err := <-first:
			if err == nil {
				t.Error("the stalled restore succeeded")
			}
		case <-time.After(time.Minute):
			t.Fatal("the stalled restore did not stop when the control channel closed")
		}
		deadline := time.Now().Add(30 * time.Second)
		for {
			if _, running := f.w.restores.get(); !running {
				break
			}
			if time.Now().After(deadline) {
				t.Fatal("the worker still records a running restore")
			}
			time.Sleep(10 * time.Millisecond)
		}
		if _, err := f.w.restoreProgress(); control.KindOf(err) != control.NotFound {
			t.Errorf("progress after the end: %v", err)
		}
	})
}
