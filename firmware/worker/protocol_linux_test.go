package worker

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/minio/minio-go/v7"

	"github.com/holdfast-appliance/holdfast/firmware/control"
	"github.com/holdfast-appliance/holdfast/firmware/roles"
	"github.com/holdfast-appliance/holdfast/services/restore/restoretest"
	"github.com/holdfast-appliance/holdfast/services/sealer"
	"github.com/holdfast-appliance/holdfast/services/store"
	"github.com/holdfast-appliance/holdfast/services/store/storetest"
	"github.com/holdfast-appliance/holdfast/tools/testminio"
)

// These tests drive the worker in-process over the control protocol
// against a fake PID 1 (a Conn on a real socketpair), with a real sealer
// (in-process, root), a real store on a filesystem with inode flags and
// the pinned MinIO as the source, as `make test` provides.

// fakePID1 answers the worker's sign by digesting the sealed manifest
// itself (as PID 1 does; the receipt is that digest) and records the
// notices.
type fakePID1 struct {
	dir string
	mu  sync.Mutex
	// signed are the snapshots it was asked to sign; statuses and
	// alerts the notices.
	signed   []string
	statuses []*control.StatusNotice
	alerts   []*control.AlertNotice
}

func (f *fakePID1) handle(ctx context.Context, req control.Request) (control.Reply, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	switch m := req.(type) {
	case *control.SignRequest:
		f.signed = append(f.signed, m.Snapshot)
		d, err := store.SealedManifestDigest(ctx, f.dir, m.Snapshot)
		if err != nil {
			return nil, control.Errorf(control.NotFound, "%v", err)
		}
		return &control.SignReply{Receipt: d[:]}, nil
	case *control.StatusNotice:
		f.statuses = append(f.statuses, m)
	case *control.AlertNotice:
		f.alerts = append(f.alerts, m)
	}
	return nil, nil
}

// workerOverProtocol starts a worker on one data disk (dir, with its own
// sealer) and returns PID 1's end of its control channel, the fake PID 1
// and the raw PID 1 socket.
func workerOverProtocol(t *testing.T, dir string) (*control.Conn, *fakePID1, *worker) {
	t.Helper()
	if err := os.MkdirAll(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	sealerEnd, workerSealerEnd, err := roles.Socketpair("sealer")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(func() { cancel(); sealerEnd.Close(); workerSealerEnd.Close() })
	go func() { _ = sealer.Serve(ctx, sealerEnd, dir, nil) }()
	p1End, wEnd, err := roles.Socketpair("control")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p1End.Close(); wEnd.Close() })
	w := &worker{log: restoretest.Logger(t, "worker", hclog.Warn), ready: make(chan struct{}), sealerConns: []*os.File{workerSealerEnd}, syncKick: make(chan struct{}, 1)}
	w.peer = control.New(wEnd, control.Options{Side: control.Worker, Handler: w.handle})
	f := &fakePID1{dir: dir}
	return control.New(p1End, control.Options{Side: control.PID1, Handler: f.handle}), f, w
}

func TestWorkerOverProtocol(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	mc := testminio.Start(t)
	mc.MakeBucket(t, "mail", false)
	for i := 0; i < 5; i++ {
		mc.Put(t, "mail", fmt.Sprintf("m/%d.eml", i), restoretest.RandBytes(uint64(i), 1000+i), minio.PutObjectOptions{})
	}
	cfg := fmt.Sprintf(`appliance { name = "hf-test" }
source "mail" {
  s3 {
    endpoint   = %q
    bucket     = "mail"
    access_key = %q
    secret_key = %q
    tls        = false
  }
  schedule = "every 6h"
  retention {
    all_for = "14d"
  }
}
`, mc.Endpoint, testminio.AccessKey, testminio.SecretKey)
	dir := storetest.Dir(t)
	p1, f, _ := workerOverProtocol(t, dir)
	keys, err := newStoreKeys() // a new store: PID 1 picks its ID
	if err != nil {
		t.Fatal(err)
	}
	initReq := &control.InitRequest{Keys: controlKeys(keys), Config: []byte(cfg), StoreDir: dir,
		Disks: []control.Disk{{Name: "vdb", Serial: "HOLDFAST-DATA0", Dir: dir}}, Create: true}

	// Before init the worker does nothing.
	if _, err := p1.Call(ctx, &control.PullRequest{Source: "mail"}); control.KindOf(err) != control.Refused {
		t.Fatalf("pull before init: %v, want refused", err)
	}
	if _, err := p1.Call(ctx, initReq); err != nil {
		t.Fatalf("init: %v", err)
	}
	if _, err := p1.Call(ctx, initReq); control.KindOf(err) != control.Refused {
		t.Fatalf("second init: %v, want refused", err)
	}
	if _, err := store.Open(ctx, dir, store.StaticKey(testMaster), store.Options{ReadOnly: true}); err != nil {
		t.Fatalf("init made no store: %v", err)
	}

	var snap string
	tests := []struct {
		name  string
		req   func() control.Request
		kind  control.Kind
		check func(t *testing.T, r control.Reply)
	}{
		{"pull of an unknown source", func() control.Request { return &control.PullRequest{Source: "nope"} }, control.NotFound, nil},
		{"pull", func() control.Request { return &control.PullRequest{Source: "mail"} }, "", func(t *testing.T, r control.Reply) {
			st := r.(*control.PullReply).Status
			if st == nil || st.Snapshot == "" || st.Err != "" || !strings.Contains(st.Summary, "5 objects") {
				t.Fatalf("status %+v", st)
			}
			snap = st.Snapshot
		}},
		{"extend of an unknown snapshot", func() control.Request {
			return &control.ExtendRequest{Snapshot: "20200101T000000Z-000000aa", Hold: true, Reason: "test"}
		}, control.NotFound, nil},
		{"extend", func() control.Request {
			return &control.ExtendRequest{Snapshot: snap, Until: time.Now().AddDate(5, 0, 0), Reason: "test"}
		}, "", nil},
		{"hold", func() control.Request { return &control.ExtendRequest{Snapshot: snap, Hold: true, Reason: "test"} }, "", nil},
		{"restore-progress with none running", func() control.Request { return &control.RestoreProgressRequest{} }, control.NotFound, nil},
		{"quiesce", func() control.Request { return &control.QuiesceRequest{} }, "", func(t *testing.T, r control.Reply) {
			if b := r.(*control.QuiesceReply).Busy; b != "" {
				t.Fatalf("busy %q", b)
			}
		}},
		{"pull after quiesce", func() control.Request { return &control.PullRequest{Source: "mail"} }, control.Busy, nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r, err := p1.Call(ctx, tc.req())
			if control.KindOf(err) != tc.kind {
				t.Fatalf("%v, want kind %q", err, tc.kind)
			}
			if tc.check != nil {
				tc.check(t, r)
			}
		})
	}
	// The pull asked PID 1 to sign its snapshot by name; the receipt it
	// got is the sealed manifest's digest, and the hold and extension are
	// in the sealed records.
	f.mu.Lock()
	signed := append([]string(nil), f.signed...)
	f.mu.Unlock()
	if len(signed) != 1 || signed[0] != snap {
		t.Errorf("sign requests %v, want [%s]", signed, snap)
	}
	s, err := store.Open(ctx, dir, store.StaticKey(testMaster), store.Options{ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if rc, err := s.Receipt(snap); err != nil || len(rc) != 32 {
		t.Errorf("receipt %x, %v", rc, err)
	}
	if err := s.ConfirmRetention(snap, time.Time{}, true); err != nil {
		t.Errorf("hold not sealed: %v", err)
	}
}

// TestWorkerRefusesHostileRequests: what reaches the worker from its
// channel is decoded strictly; a request it does not take is answered
// with a typed error and never handled, and an oversized line ends the
// channel.
func TestWorkerRefusesHostileRequests(t *testing.T) {
	dir := storetest.Dir(t)
	_, _, w := workerOverProtocol(t, dir)
	p1End, wEnd, err := roles.Socketpair("control")
	if err != nil {
		t.Fatal(err)
	}
	defer p1End.Close()
	defer wEnd.Close()
	c := control.New(wEnd, control.Options{Side: control.Worker, Handler: w.handle})
	r := bufio.NewReader(p1End)
	for _, tc := range []struct{ line, kind string }{
		{`{"id":1,"op":"sign","body":{"snapshot":"20200101T000000Z-000000aa"}}`, "refused"},
		{`{"id":2,"op":"pull","body":{"source":"mail","path":"/etc"}}`, "invalid"},
		{`{"id":3,"op":"pull","body":{"source":"` + strings.Repeat("m", control.MaxName+1) + `"}}`, "invalid"},
		{`{"id":4,"op":"init","body":{"master":"","config":""}}`, "invalid"},
		{`{"id":5,"op":"format","body":{}}`, "invalid"},
		{`{"id":6,"op":"extend","body":{"snapshot":"x","hold":true,"until":"2030-01-01T00:00:00Z","reason":""}}`, "invalid"},
	} {
		if _, err := p1End.WriteString(tc.line + "\n"); err != nil {
			t.Fatal(err)
		}
		reply, err := r.ReadString('\n')
		if err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(reply, `"kind":"`+tc.kind+`"`) {
			t.Errorf("%s: reply %s, want kind %s", tc.line, reply, tc.kind)
		}
	}
	select {
	case <-w.ready:
		t.Fatal("a hostile init initialised the worker")
	default:
	}
	go func() { _, _ = p1End.WriteString(strings.Repeat("{", control.MaxLine+1)) }()
	select {
	case <-c.Done():
	case <-time.After(30 * time.Second):
		t.Fatal("an oversized line did not end the channel")
	}
}

// newStoreKeys are the subkeys of a new store of testMaster, as PID 1
// derives them before it asks the worker to create the store.
func newStoreKeys() (store.StoreKeys, error) {
	id, err := store.NewID()
	if err != nil {
		return store.StoreKeys{}, err
	}
	return store.DeriveKeys(testMaster, id)
}

// controlKeys carries keys over the protocol, as PID 1 does.
func controlKeys(k store.StoreKeys) control.StoreKeys {
	return control.StoreKeys{ID: k.ID, ChunkID: k.ChunkID, Data: k.Data, Meta: k.Meta, Clock: k.Clock}
}
