package appliance

import (
	"bufio"
	"context"
	"crypto/sha256"
	"encoding/base64"
	"fmt"
	"os"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/holdfast-appliance/holdfast/boards"
	"github.com/holdfast-appliance/holdfast/firmware/configpart"
	"github.com/holdfast-appliance/holdfast/firmware/control"
	"github.com/holdfast-appliance/holdfast/firmware/receipt"
	"github.com/holdfast-appliance/holdfast/firmware/roles"
	"github.com/holdfast-appliance/holdfast/firmware/tpm"
	"github.com/holdfast-appliance/holdfast/firmware/tpm/tpmtest"
	"github.com/holdfast-appliance/holdfast/services/config"
	"github.com/holdfast-appliance/holdfast/services/restore/restoretest"
	"github.com/holdfast-appliance/holdfast/services/store"
	"github.com/holdfast-appliance/holdfast/services/store/storetest"
)

// These tests play a hostile worker against PID 1's side of the control
// channel (fromWorker behind a real socketpair): everything it sends is
// data, checked against what PID 1 knows.

const oneSourceHCL = `appliance { name = "hf-test" }
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
`

// pid1ForTest is PID 1's state as the worker's messages reach it: one
// configured source, a config partition directory.
func pid1ForTest(t *testing.T) *appliance {
	t.Helper()
	cfg, err := config.Parse("config.sealed", []byte(oneSourceHCL))
	if err != nil {
		t.Fatal(err)
	}
	return &appliance{log: hclog.NewNullLogger(), cfg: cfg, mounted: map[string]string{}, pulls: map[string]*pullStatus{},
		part: &configpart.Partition{Dir: t.TempDir()}, o: Options{RunDir: t.TempDir()}}
}

// serveWorker connects PID 1's handler to a socketpair and returns the
// worker's end as a Conn.
func serveWorker(t *testing.T, a *appliance) *control.Conn {
	t.Helper()
	p1, w, err := roles.Socketpair("control")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p1.Close(); w.Close() })
	control.New(p1, control.Options{Side: control.PID1, Handler: a.fromWorker})
	return control.New(w, control.Options{Side: control.Worker, Handler: func(context.Context, control.Request) (control.Reply, error) { return nil, nil }})
}

// rawWorker connects PID 1's handler to a socketpair and returns the
// worker's end for lines written by hand.
func rawWorker(t *testing.T, a *appliance) (*os.File, *bufio.Reader) {
	t.Helper()
	p1, w, err := roles.Socketpair("control")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p1.Close(); w.Close() })
	control.New(p1, control.Options{Side: control.PID1, Handler: a.fromWorker})
	return w, bufio.NewReaderSize(w, 1<<20)
}

func heapInUse() uint64 {
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return m.HeapInuse
}

// TestStatusOnlyForConfiguredSources: 400 status messages of 256 KiB for
// invented sources must not grow what PID 1 keeps (before: every one was
// kept, 104 MiB measured in the appliance); a status for the configured
// source is kept, once.
func TestStatusOnlyForConfiguredSources(t *testing.T) {
	a := pid1ForTest(t)
	w, _ := rawWorker(t, a)
	big := strings.Repeat("x", 256<<10)
	before := heapInUse()
	for i := 0; i < 400; i++ {
		line := fmt.Sprintf(`{"op":"status","body":{"source":"invented-%d","status":{"summary":%q}}}`+"\n", i, big)
		if _, err := w.WriteString(line); err != nil {
			t.Fatal(err)
		}
	}
	c := serveWorker(t, a)
	for i := 0; i < 400; i++ {
		if err := c.Notify(&control.StatusNotice{Source: fmt.Sprintf("invented-%d", i), Status: &pullStatus{Summary: strings.Repeat("y", control.MaxText)}}); err != nil {
			t.Fatal(err)
		}
	}
	// A request after the notices: its reply means they were all read
	// (busy while notices are still being handled; a notice beyond the
	// limit in flight is dropped, so the flood ends before the real one).
	synced := func() {
		for {
			_, err := c.Call(context.Background(), &control.SignRequest{Snapshot: "20260101T000000Z-00000000"})
			if control.KindOf(err) == control.Busy {
				timeSleep()
				continue
			}
			if control.KindOf(err) != control.Refused {
				t.Fatalf("sign without a TPM: %v", err)
			}
			return
		}
	}
	synced()
	if err := c.Notify(&control.StatusNotice{Source: "mail", Status: &pullStatus{Summary: "ok"}}); err != nil {
		t.Fatal(err)
	}
	synced()
	waitFor(t, func() bool { a.mu.Lock(); defer a.mu.Unlock(); return a.pulls["mail"] != nil })
	grew := int64(heapInUse()) - int64(before)
	a.mu.Lock()
	n := len(a.pulls)
	a.mu.Unlock()
	t.Logf("statuses kept %d, heap grew %d KiB", n, grew>>10)
	if n != 1 {
		t.Errorf("PID 1 keeps status for %d sources, want 1 (mail)", n)
	}
	if grew > 8<<20 {
		t.Errorf("PID 1's heap grew %d MiB", grew>>20)
	}
}

func waitFor(t *testing.T, ok func() bool) {
	t.Helper()
	for i := 0; i < 500; i++ {
		if ok() {
			return
		}
		runtime.Gosched()
		timeSleep()
	}
	t.Fatal("condition not met")
}

// TestUnsolicitedScrubDoneWritesNothing: the worker's old scrub-done (and
// any op PID 1 does not answer) is refused, and nothing is written to the
// config partition (before: repair.request and scrub.last, with worker
// text in the first, after a read-write remount).
func TestUnsolicitedScrubDoneWritesNothing(t *testing.T) {
	a := pid1ForTest(t)
	w, r := rawWorker(t, a)
	for i, line := range []string{
		`{"id":1,"op":"scrub-done","body":{"text":"delete master.sealed","repair":true}}`,
		`{"id":2,"op":"init","body":{}}`,
		`{"id":3,"op":"primary","body":{"disk":{"name":"vdz","serial":"x","dir":"/run/holdfast/config"}}}`,
	} {
		if _, err := w.WriteString(line + "\n"); err != nil {
			t.Fatal(err)
		}
		if i < 2 {
			reply, err := r.ReadString('\n')
			if err != nil {
				t.Fatal(err)
			}
			if !strings.Contains(reply, `"err":{"kind":"`) {
				t.Errorf("%s answered %s", line, reply)
			}
		}
	}
	ents, err := os.ReadDir(a.part.Dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range ents {
		t.Errorf("config partition has %s after a worker message", e.Name())
	}
	if a.storeDir != "" {
		t.Errorf("primary notice for an unknown disk followed: %q", a.storeDir)
	}
}

// TestSignOnlySealedManifestDigest: PID 1 signs the digest of the named
// sealed manifest, computed by itself; a digest the worker names is
// refused on decode, a snapshot that is not sealed is not signed, and
// signing is rate-limited with a bound on the requests in flight.
func TestSignOnlySealedManifestDigest(t *testing.T) {
	ctx := context.Background()
	dir := storetest.Dir(t)
	s, err := store.Init(ctx, dir, store.StaticKey(testMaster), store.InitOptions{PackSize: 4 << 20}, store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	id := restoretest.Commit(t, s, "mail", []restoretest.Object{{Key: "k", Data: []byte("v")}})
	want, err := s.ManifestDigest(id)
	if err != nil {
		t.Fatal(err)
	}
	s.Close()
	a := pid1ForTest(t)
	a.tpm = tpmtest.Start(t)
	a.storeDir = dir
	pub, err := (&tpm.Signer{TPM: a.tpm}).PublicKey(ctx)
	if err != nil {
		t.Fatal(err)
	}

	w, r := rawWorker(t, a)
	foreign := sha256.Sum256([]byte("a manifest the worker made up"))
	line := fmt.Sprintf(`{"id":1,"op":"sign","body":{"snapshot":%q,"digest":%q}}`+"\n", id, base64.StdEncoding.EncodeToString(foreign[:]))
	if _, err := w.WriteString(line); err != nil {
		t.Fatal(err)
	}
	if reply, err := r.ReadString('\n'); err != nil || !strings.Contains(reply, `"kind":"invalid"`) {
		t.Fatalf("sign with a worker's digest: %s, %v", reply, err)
	}

	c := serveWorker(t, a)
	rep, err := control.Do[*control.SignReply](ctx, c, &control.SignRequest{Snapshot: id})
	if err != nil {
		t.Fatal(err)
	}
	rc, err := receipt.Verify(rep.Receipt, pub)
	if err != nil {
		t.Fatal(err)
	}
	if rc.ManifestDigest != want || rc.SnapshotID != id {
		t.Fatalf("receipt for %s %x; the sealed manifest's digest is %x", rc.SnapshotID, rc.ManifestDigest, want)
	}
	if _, err := c.Call(ctx, &control.SignRequest{Snapshot: "20260101T000000Z-0000ffff"}); control.KindOf(err) != control.NotFound {
		t.Errorf("sign of a snapshot not in the store: %v", err)
	}

	// A flood: at most the in-flight limit runs at once, the rest is
	// answered busy at once, and no more than the burst is signed.
	const n = 100
	var wg sync.WaitGroup
	kinds := make(chan control.Kind, n)
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, err := c.Call(ctx, &control.SignRequest{Snapshot: id})
			kinds <- control.KindOf(err)
		}()
	}
	wg.Wait()
	close(kinds)
	count := map[control.Kind]int{}
	for k := range kinds {
		count[k]++
	}
	t.Logf("flood of %d signs: %v", n, count)
	if count[""] > control.DefaultSignRate.Burst-2 || count[control.Busy] == 0 || count[""]+count[control.Busy]+count[control.Refused] != n {
		t.Errorf("flood answered %v; want at most %d signed, some busy, the rest refused", count, control.DefaultSignRate.Burst-2)
	}
}

func timeSleep() { time.Sleep(10 * time.Millisecond) }

// TestWorkerCannotWashPID1Alerts: PID 1's own alerts stay in the
// console's status however many alerts and failed pulls the worker
// reports (before: one ring of 50 for both, and 50 alert notices pushed
// PID 1's out; the worker adversary's alert-flood, issue 16).
func TestWorkerCannotWashPID1Alerts(t *testing.T) {
	a := pid1ForTest(t)
	a.o.Board = &boards.Board{Name: "test"}
	const own = "lockdown: PID 1 keeps capabilities it should have dropped"
	a.alert("appliance", own)
	for i := range 2 * maxAlerts {
		if _, err := a.fromWorker(t.Context(), &control.AlertNotice{Kind: "attack", Text: fmt.Sprintf("verify OK %d", i)}); err != nil {
			t.Fatal(err)
		}
		if err := a.recordPull("mail", &pullStatus{Err: fmt.Sprintf("fake failure %d", i)}); err != nil {
			t.Fatal(err)
		}
	}
	st := a.status()
	if !strings.Contains(st, own) {
		t.Errorf("PID 1's alert is gone from status after the worker's flood:\n%s", st)
	}
	if !strings.Contains(st, "verify OK 99") || !strings.Contains(st, "fake failure 99") {
		t.Errorf("status does not show the worker's latest alerts:\n%s", st)
	}
	if n := strings.Count(st, "\n  "); n > 3*maxAlerts {
		t.Errorf("status shows %d alert lines, more than PID 1's and the worker's rings", n)
	}
}
