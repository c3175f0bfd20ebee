package appliance

import (
	"bytes"
	"context"
	"fmt"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/holdfast-appliance/holdfast/firmware/control"
	"github.com/holdfast-appliance/holdfast/firmware/roles"
	"github.com/holdfast-appliance/holdfast/firmware/tpm"
	"github.com/holdfast-appliance/holdfast/firmware/tpm/tpmtest"
	"github.com/holdfast-appliance/holdfast/services/config"
	"github.com/holdfast-appliance/holdfast/services/restore/restoretest"
	"github.com/holdfast-appliance/holdfast/services/store"
	"github.com/holdfast-appliance/holdfast/services/store/storetest"
)

// These tests need root (storetest: the store seals its files), swtpm
// (tpmtest) and the pinned MinIO (testminio), as `make test` provides.

func TestParseRestoreArgs(t *testing.T) {
	tests := []struct {
		name string
		args []string
		want restoreArgs
		err  string // substring; "" means success
	}{
		{"whole snapshot", []string{"S", "t"}, restoreArgs{snapshot: "S", target: "t"}, ""},
		{"prefix", []string{"S", "t", "mail/"}, restoreArgs{snapshot: "S", target: "t", prefix: "mail/"}, ""},
		{"one object", []string{"S", "t", "--object", "mail/a.eml"}, restoreArgs{snapshot: "S", target: "t", prefix: "mail/a.eml", exact: true}, ""},
		{"quoted key from the host", []string{"S", "t", "--object", `"a  b\n\xff"`}, restoreArgs{snapshot: "S", target: "t", prefix: "a  b\n\xff", exact: true}, ""},
		{"quoted key typed (split on spaces)", []string{"S", "t", `"my`, `key\x20\x20x"`}, restoreArgs{snapshot: "S", target: "t", prefix: "my key  x"}, ""},
		{"quoted empty prefix", []string{"S", "t", `""`}, restoreArgs{snapshot: "S", target: "t"}, ""},
		{"quoted option-like prefix", []string{"S", "t", `"--object"`}, restoreArgs{snapshot: "S", target: "t", prefix: "--object"}, ""},
		{"literal quote inside", []string{"S", "t", `a"b`}, restoreArgs{snapshot: "S", target: "t", prefix: `a"b`}, ""},
		{"no args", nil, restoreArgs{}, "usage: restore SNAPSHOT TARGET"},
		{"no target", []string{"S"}, restoreArgs{}, "usage: restore SNAPSHOT TARGET"},
		{"object without key", []string{"S", "t", "--object"}, restoreArgs{}, "--object needs a KEY"},
		{"object with empty key", []string{"S", "t", "--object", `""`}, restoreArgs{}, "non-empty KEY"},
		{"unknown option", []string{"S", "t", "--objects", "k"}, restoreArgs{}, `unknown option "--objects"`},
		{"unquoted words", []string{"S", "t", "my", "key"}, restoreArgs{}, "double quotes"},
		{"bad quoting", []string{"S", "t", `"a\q"`}, restoreArgs{}, "not a Go-quoted string"},
		{"unterminated quote", []string{"S", "t", `"abc`}, restoreArgs{}, "not a Go-quoted string"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := parseRestoreArgs(tt.args)
			if tt.err != "" {
				if err == nil || !strings.Contains(err.Error(), tt.err) {
					t.Fatalf("parse %q: %v, %v; want an error mentioning %q", tt.args, got, err, tt.err)
				}
				return
			}
			if err != nil || got != tt.want {
				t.Fatalf("parse %q = %+v, %v; want %+v", tt.args, got, err, tt.want)
			}
		})
	}
}

// fakeRestorer is a worker that answers restore requests as told: what
// PID 1's side of a console restore is tested against (the worker's side
// is tested in firmware/worker against a fake PID 1, and both together in
// the VM).
type fakeRestorer struct {
	mu    sync.Mutex
	reqs  []control.RestoreRequest
	cur   *control.RestoreReport
	fail  error // the answer's error, after the progress
	total int
}

func (f *fakeRestorer) handle(ctx context.Context, req control.Request) (control.Reply, error) {
	switch m := req.(type) {
	case *control.RestoreRequest:
		f.mu.Lock()
		f.reqs = append(f.reqs, *m)
		f.cur = &control.RestoreReport{Snapshot: m.Snapshot, Target: m.Target, Source: "mail", Receipt: strings.Repeat("ab", 32), TotalObjects: f.total, TotalBytes: int64(f.total) << 20}
		f.mu.Unlock()
		for i := 1; i <= f.total; i++ {
			time.Sleep(20 * time.Millisecond)
			f.mu.Lock()
			f.cur.Objects, f.cur.Bytes = i, int64(i)<<20
			f.mu.Unlock()
		}
		f.mu.Lock()
		defer f.mu.Unlock()
		r := *f.cur
		f.cur = nil
		return &control.RestoreReply{Restore: &r}, f.fail
	case *control.RestoreProgressRequest:
		f.mu.Lock()
		defer f.mu.Unlock()
		if f.cur == nil {
			return nil, control.Errorf(control.NotFound, "no restore is running")
		}
		r := *f.cur
		return &control.RestoreReply{Restore: &r}, nil
	}
	return nil, control.Errorf(control.Refused, "not here")
}

// TestRestoreCommand is PID 1's side of the console's restore, against a
// fake worker over a real control channel: PID 1 reads the receipt key
// from the TPM and checks the snapshot's receipt itself (signed by that
// key, naming the snapshot, signing the sealed manifest's digest, which
// it computes) before it asks the worker anything; then it prints the
// worker's progress and a summary. A snapshot without a valid receipt is
// refused with nothing asked of the worker.
func TestRestoreCommand(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	tp := tpmtest.Start(t)
	pub, err := (&tpm.Signer{TPM: tp}).PublicKeyPEM(ctx)
	if err != nil {
		t.Fatal(err)
	}
	other := tpmtest.Start(t) // another box's TPM
	dir := storetest.Dir(t)
	log := restoretest.Logger(t, "pid1", hclog.Info)
	objs := []restoretest.Object{{Key: "a", Data: []byte("one")}, {Key: "b/c", Data: []byte("two")}}
	commit := func(signer store.ReceiptSigner) string {
		s, err := store.Open(ctx, dir, store.StaticKey(testMaster), store.Options{Signer: signer, Logger: log})
		if err != nil {
			t.Fatal(err)
		}
		defer s.Close()
		return restoretest.Commit(t, s, "mail", objs)
	}
	s, err := store.Init(ctx, dir, store.StaticKey(testMaster), store.InitOptions{PackSize: 4 << 20}, store.Options{Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	s.Close()
	good := commit(&tpm.Signer{TPM: tp})
	foreign := commit(&tpm.Signer{TPM: other})
	unsigned := commit(nil)
	digest, err := store.SealedManifestDigest(ctx, dir, good)
	if err != nil {
		t.Fatal(err)
	}

	cfg, err := config.Parse("config.sealed", []byte(`appliance { name = "hf-test" }
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
target "t0" {
  s3 {
    endpoint   = "127.0.0.1:2"
    bucket     = "rescue"
    access_key = "a"
    secret_key = "b"
    tls        = false
  }
}
`))
	if err != nil {
		t.Fatal(err)
	}
	fw := &fakeRestorer{total: 3}
	pid1End, workerEnd, err := roles.Socketpair("control")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { pid1End.Close(); workerEnd.Close() })
	control.New(workerEnd, control.Options{Side: control.Worker, Handler: fw.handle})
	a := &appliance{log: log, cfg: cfg, tpm: tp, storeDir: dir,
		worker: control.New(pid1End, control.Options{Side: control.PID1, Handler: func(context.Context, control.Request) (control.Reply, error) { return nil, nil }})}

	tests := []struct {
		name     string
		args     []string
		fail     error
		wantErr  string   // "" for success
		wantOut  []string // lines (parts) the console shows
		askedFor *control.RestoreRequest
	}{
		{name: "whole snapshot", args: []string{good, "t0"},
			wantOut: []string{
				fmt.Sprintf("restore: snapshot %s, all objects, to target \"t0\" (127.0.0.1:2 bucket \"rescue\" prefix \"\"); receipt checked by PID 1 (manifest sha256 %x)", good, digest),
				"restore: 3/3 objects, 3.0/3.0 MiB",
				"restore: done: 3 objects, 3.0 MiB of snapshot " + good + " (source \"mail\") to target \"t0\"",
			},
			askedFor: &control.RestoreRequest{Snapshot: good, Target: "t0", ReceiptKey: pub}},
		{name: "one object, key not UTF-8", args: []string{good, "t0", "--object", `"\xff\xfe bad utf8"`},
			wantOut:  []string{`object "\xff\xfe bad utf8"`, "restore: done: 3 objects"},
			askedFor: &control.RestoreRequest{Snapshot: good, Target: "t0", Prefix: []byte("\xff\xfe bad utf8"), Exact: true, ReceiptKey: pub}},
		{name: "the worker fails halfway", args: []string{good, "t0", "b/"}, fail: control.Errorf(control.Internal, "bucket went away"),
			wantErr: "bucket went away", wantOut: []string{"restore: stopped after 3/3 objects"},
			askedFor: &control.RestoreRequest{Snapshot: good, Target: "t0", Prefix: []byte("b/"), ReceiptKey: pub}},
		{name: "receipt of another TPM", args: []string{foreign, "t0"}, wantErr: "INVALID"},
		{name: "no receipt", args: []string{unsigned, "t0"}, wantErr: "not found"},
		{name: "no such snapshot", args: []string{"20990101T000000Z-00000000", "t0"}, wantErr: "not found"},
		{name: "unknown target", args: []string{good, "nope"}, wantErr: `no target "nope" in the config (targets: t0)`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			fw.mu.Lock()
			fw.reqs, fw.fail = nil, tc.fail
			fw.mu.Unlock()
			var out bytes.Buffer
			err := a.restore(ctx, tc.args, &out)
			if tc.wantErr == "" && err != nil || tc.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tc.wantErr)) {
				t.Fatalf("restore %q: %v, want error %q\n%s", tc.args, err, tc.wantErr, out.String())
			}
			for _, w := range tc.wantOut {
				if !strings.Contains(out.String(), w) {
					t.Errorf("output lacks %q:\n%s", w, out.String())
				}
			}
			fw.mu.Lock()
			reqs := fw.reqs
			fw.mu.Unlock()
			switch {
			case tc.askedFor == nil && len(reqs) > 0:
				t.Errorf("the worker was asked %+v; PID 1 should have refused first", reqs)
			case tc.askedFor != nil && (len(reqs) != 1 || reqs[0].Snapshot != tc.askedFor.Snapshot || reqs[0].Target != tc.askedFor.Target ||
				!bytes.Equal(reqs[0].Prefix, tc.askedFor.Prefix) || reqs[0].Exact != tc.askedFor.Exact || !bytes.Equal(reqs[0].ReceiptKey, tc.askedFor.ReceiptKey)):
				t.Errorf("the worker was asked %+v, want %+v", reqs, tc.askedFor)
			}
		})
	}

	// The primary disk failed this boot (its store unreadable): the
	// receipt is proved on the mirror's copy, and the restore goes on.
	t.Run("primary failed, mirror proves it", func(t *testing.T) {
		fw.mu.Lock()
		fw.reqs, fw.fail = nil, nil
		fw.mu.Unlock()
		gone := filepath.Join(t.TempDir(), "failed-primary")
		a.mu.Lock()
		a.storeDir, a.stores = gone, []dataStore{{Name: "vdb", Dir: gone}, {Name: "vdc", Dir: dir}}
		a.mu.Unlock()
		var out bytes.Buffer
		if err := a.restore(ctx, []string{good, "t0"}, &out); err != nil {
			t.Fatalf("restore with the primary gone: %v\n%s", err, out.String())
		}
		if !strings.Contains(out.String(), fmt.Sprintf("receipt checked by PID 1 (manifest sha256 %x)", digest)) {
			t.Errorf("output %q", out.String())
		}
		a.mu.Lock()
		a.stores = []dataStore{{Name: "vdb", Dir: gone}}
		a.mu.Unlock()
		if err := a.restore(ctx, []string{good, "t0"}, &out); err == nil || !strings.Contains(err.Error(), "restore refused") {
			t.Errorf("restore with no readable store: %v", err)
		}
	})
}
