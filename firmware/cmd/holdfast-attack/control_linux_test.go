package main

import (
	"bufio"
	"context"
	"errors"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/holdfast-appliance/holdfast/firmware/control"
	"github.com/holdfast-appliance/holdfast/services/store"
	"github.com/holdfast-appliance/holdfast/services/store/fsflag"
	"github.com/holdfast-appliance/holdfast/services/store/storetest"
)

// fakePID1 answers the worker as firmware/appliance's fromWorker does:
// sign only of a valid ID whose manifest is sealed (slowly, like the
// TPM), status only for the configured source "mail".
type fakePID1 struct {
	dir      string
	mu       sync.Mutex
	signed   int
	statuses map[string]int
}

func (p *fakePID1) handle(ctx context.Context, req control.Request) (control.Reply, error) {
	switch m := req.(type) {
	case *control.SignRequest:
		if !store.ValidSnapshotID(m.Snapshot) {
			return nil, control.Errorf(control.Invalid, "%q is not a snapshot ID", m.Snapshot)
		}
		path := filepath.Join(p.dir, "snapshots", m.Snapshot+".snap")
		var st unix.Stat_t
		if err := unix.Lstat(path, &st); err != nil {
			return nil, control.Errorf(control.NotFound, "no manifest %s", m.Snapshot)
		}
		if sealed, err := fsflag.Has(path, fsflag.Immutable); st.Mode&unix.S_IFMT != unix.S_IFREG || err != nil || !sealed {
			return nil, control.Errorf(control.Refused, "manifest %s is not sealed", m.Snapshot)
		}
		time.Sleep(20 * time.Millisecond)
		p.mu.Lock()
		p.signed++
		p.mu.Unlock()
		return &control.SignReply{Receipt: []byte("receipt")}, nil
	case *control.StatusNotice:
		if m.Source != "mail" {
			return nil, control.Errorf(control.NotFound, "no source %q", m.Source)
		}
		p.mu.Lock()
		p.statuses[m.Source]++
		p.mu.Unlock()
		return nil, nil
	case *control.AlertNotice, *control.MirrorNotice, *control.ScrubProgressNotice, *control.PrimaryNotice:
		return nil, nil
	}
	return nil, control.Errorf(control.Refused, "%s is not an op PID 1 answers", req.Op())
}

var controlRowRE = regexp.MustCompile(`^ATTACK \d+ worker-control (\S+): (refused|SUCCEEDED|n/a): (.*)$`)

// TestControlAttack runs the control techniques against the real
// protocol (firmware/control) served by a handler with PID 1's rules, and
// a PID 1 that carries out hold through the lying worker and judges it
// as the console does: every technique has a row, and none succeeds.
func TestControlAttack(t *testing.T) {
	dir := storetest.Dir(t)
	for _, d := range []string{"snapshots", "wip"} {
		if err := os.MkdirAll(filepath.Join(dir, d), 0o750); err != nil {
			t.Fatal(err)
		}
	}
	real := "20240101T000000Z-0123abcd"
	man := filepath.Join(dir, "snapshots", real+".snap")
	if err := os.WriteFile(man, []byte("HFSNAP manifest"), 0o640); err != nil {
		t.Fatal(err)
	}
	if err := fsflag.Set(man, fsflag.Immutable); err != nil {
		t.Fatal(err)
	}
	// The planted manifests the sign techniques name.
	if err := os.Symlink("/dev/zero", filepath.Join(dir, "snapshots", fakeID(2)+".snap")); err != nil {
		t.Fatal(err)
	}
	if err := unix.Mkfifo(filepath.Join(dir, "snapshots", fakeID(3)+".snap"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "snapshots", fakeID(4)+".snap"), []byte("garbage"), 0o640); err != nil {
		t.Fatal(err)
	}
	pid1 := &fakePID1{dir: dir, statuses: map[string]int{}}
	pair := func() (*os.File, *os.File) {
		fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
		if err != nil {
			t.Fatal(err)
		}
		a, b := os.NewFile(uintptr(fds[0]), "pid1"), os.NewFile(uintptr(fds[1]), "adversary")
		t.Cleanup(func() { a.Close(); b.Close() })
		return a, b
	}
	p1, adv := pair()
	served := control.New(p1, control.Options{Side: control.PID1, Handler: pid1.handle})
	l1, ladv := pair()
	lyingPID1 := control.New(l1, control.Options{Side: control.PID1, Handler: pid1.handle})
	lying := newLyingWorker(ladv)
	go func() {
		// PID 1's console: hold and extend through the lying worker, then
		// its verdict (the sealed record does not show them).
		for _, cmd := range []string{"hold " + real, "extend " + real + " 30y"} {
			req := &control.ExtendRequest{Snapshot: real, Hold: strings.HasPrefix(cmd, "hold"), Reason: "test"}
			if !req.Hold {
				req.Until = time.Now().AddDate(30, 0, 0)
			}
			_, err := lyingPID1.Call(t.Context(), req)
			text := "CONSOLE: " + cmd + " => error: " + cmd + " failed: the worker said done, but the sealed data shows otherwise"
			if err != nil {
				text = "CONSOLE: " + cmd + " => " + err.Error()
			}
			_ = lyingPID1.Notify(&control.SendAlert{Kind: "attack-verdict", Text: text})
		}
	}()
	rows := map[string]string{}
	var order []string
	controlAttack(controlTarget{ctl: newRawConn(adv), lying: lying, sources: []string{"mail"}, store: dir}, func(name string, r result) {
		line := "ATTACK 1 worker-control " + name + ": " + r.outcome.String() + ": " + oneLine(r.detail)
		m := controlRowRE.FindStringSubmatch(line)
		if m == nil {
			t.Errorf("row does not parse: %q", line)
			return
		}
		t.Log(line)
		rows[name] = m[2]
		order = append(order, name)
	})
	want := []string{"fake-hold", "fake-extend", "status-flood-invented", "status-flood-configured", "status-error-flood",
		"alert-flood", "escape-sequences", "sign-flood", "concurrent-flood", "sign-missing", "sign-unsealed", "sign-foreign-id",
		"sign-foreign-digest", "config-write-ops", "wrong-side-ops", "fake-replies", "notice-request-mixup", "malformed-frames",
		"primary-foreign", "oversized-frame", "pid1-memory"}
	if strings.Join(order, " ") != strings.Join(want, " ") {
		t.Errorf("rows %v, want %v", order, want)
	}
	for name, res := range rows {
		// The host's PID 1 is not the appliance's: its memory is no verdict.
		if res == "SUCCEEDED" && name != "pid1-memory" && !strings.HasPrefix(name, "status-flood") {
			t.Errorf("%s succeeded against PID 1's rules", name)
		}
	}
	if pid1.signed == 0 || pid1.signed > control.DefaultSignRate.Burst+60 {
		t.Errorf("%d receipts signed", pid1.signed)
	}
	select {
	case <-served.Done():
		if !errors.Is(served.Err(), bufio.ErrTooLong) {
			t.Errorf("channel ended: %v, want too long", served.Err())
		}
	case <-time.After(5 * time.Second):
		t.Error("the oversized frame did not end the channel")
	}
}
