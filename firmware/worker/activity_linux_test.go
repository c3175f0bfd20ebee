package worker

import (
	"context"
	"errors"
	"testing"

	"github.com/hashicorp/go-hclog"

	"github.com/holdfast-appliance/holdfast/firmware/control"
	"github.com/holdfast-appliance/holdfast/services/config"
)

// quiesceNow asks w's handler to quiesce.
func quiesceNow(t *testing.T, w *worker) *control.QuiesceReply {
	t.Helper()
	r, err := w.handle(context.Background(), &control.QuiesceRequest{})
	if err != nil {
		t.Fatal(err)
	}
	return r.(*control.QuiesceReply)
}

// TestWorkerQuiesce: the worker answers quiesce with what runs; once idle
// and quiesced it starts no pull and no restore.
func TestWorkerQuiesce(t *testing.T) {
	w := &worker{log: hclog.NewNullLogger(), cfg: &config.File{}}
	if err := w.act.startPull("mail"); err != nil {
		t.Fatal(err)
	}
	if err := w.act.startPull("mail"); err != nil { // scheduled and console pull at once
		t.Fatal(err)
	}
	if r := quiesceNow(t, w); r.Busy != "pull of mail running" {
		t.Fatalf("quiesce during a pull: %+v", r)
	}
	w.act.endPull("mail")
	if r := quiesceNow(t, w); r.Busy != "pull of mail running" {
		t.Fatalf("quiesce during the second pull: %+v", r)
	}
	w.act.endPull("mail")
	if err := w.act.startRestore(&w.restores, control.RestoreReport{Snapshot: "s1", Target: "t0"}); err != nil {
		t.Fatal(err)
	}
	if r := quiesceNow(t, w); r.Busy != "restore of s1 to t0 running" {
		t.Fatalf("quiesce during a restore: %+v", r)
	}
	w.restores.end()
	if r := quiesceNow(t, w); r.Busy != "" {
		t.Fatalf("quiesce when idle: %+v", r)
	}
	if err := w.act.startPull("mail"); !errors.Is(err, errQuiesced) {
		t.Errorf("pull after quiesce: %v", err)
	}
	if err := w.act.startRestore(&w.restores, control.RestoreReport{Snapshot: "s1", Target: "t0"}); !errors.Is(err, errQuiesced) {
		t.Errorf("restore after quiesce: %v", err)
	}
	if _, running := w.restores.get(); running {
		t.Error("a refused restore is recorded as running")
	}
}
