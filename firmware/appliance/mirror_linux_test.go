package appliance

import (
	"context"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/holdfast-appliance/holdfast/firmware/control"
	"github.com/holdfast-appliance/holdfast/firmware/roles"
	"github.com/holdfast-appliance/holdfast/services/alertkind"
	"github.com/holdfast-appliance/holdfast/services/store/fsflag"
)

// TestGiveToWorker checks that files PID 1 made at boot become the
// worker's with their inode flags kept, sealed ones included, and that
// every inode ends readable by the worker's group (the sealer and the
// export read the store through it) and by no one else, a store written
// before the roles had uids of their own (files 0600) included.
func TestGiveToWorker(t *testing.T) {
	if os.Getuid() != 0 {
		t.Skip("needs root (chown, inode flags)")
	}
	dir := t.TempDir()
	if err := fsflag.Set(dir, 0); err != nil {
		t.Skipf("file system of %s keeps no inode flags: %v", dir, err)
	}
	tests := []struct {
		name  string
		dir   bool
		flags uint32
		owner int // 0: made by PID 1; roles.WorkerUID: the worker's already
	}{
		{"plain file", false, 0, 0},
		{"sealed pack", false, fsflag.Immutable, 0},
		{"append-only dir", true, fsflag.Append, 0},
		{"immutable and append", false, fsflag.Immutable | fsflag.Append, 0},
		{"worker's sealed file", false, fsflag.Immutable, roles.WorkerUID},
		{"worker's file of an old store, 0600", false, 0, roles.WorkerUID},
		{"worker's sealed dir of an old store, 0700", true, fsflag.Append, roles.WorkerUID},
		{"worker's group-readable file", false, fsflag.Immutable, roles.WorkerUID},
		{"lock", false, 0, roles.WorkerUID}, // the writer's lock: the owner's alone
	}
	groupReadable := map[string]bool{"worker's group-readable file": true, "lock": true}
	made := 0
	for _, tt := range tests {
		p := filepath.Join(dir, tt.name)
		var err error
		if tt.dir {
			err = os.Mkdir(p, 0o700)
		} else {
			err = os.WriteFile(p, []byte(tt.name), 0o600)
		}
		if err == nil && groupReadable[tt.name] {
			err = os.Chmod(p, 0o640)
		}
		if err == nil {
			err = os.Chown(p, tt.owner, tt.owner)
		}
		if err == nil && tt.flags != 0 {
			err = fsflag.Set(p, tt.flags)
		}
		if err != nil {
			t.Fatal(err)
		}
		if tt.owner != roles.WorkerUID || !groupReadable[tt.name] || tt.name == "lock" { // the lock: 0640 made 0600
			made++
		}
	}
	t.Cleanup(func() {
		for _, tt := range tests {
			_ = fsflag.Clear(filepath.Join(dir, tt.name), fsflag.Immutable|fsflag.Append)
		}
	})
	n, err := giveToWorker(dir, time.Time{})
	if err != nil {
		t.Fatal(err)
	}
	if n != made+1 { // the directory itself too
		t.Errorf("gave %d inodes, want %d", n, made+1)
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := filepath.Join(dir, tt.name)
			fi, err := os.Lstat(p)
			if err != nil {
				t.Fatal(err)
			}
			st := fi.Sys().(*syscall.Stat_t)
			if st.Uid != roles.WorkerUID || st.Gid != roles.WorkerUID {
				t.Errorf("owner %d:%d, want %d", st.Uid, st.Gid, roles.WorkerUID)
			}
			want := os.FileMode(0o640)
			switch {
			case tt.dir:
				want = 0o750
			case tt.name == "lock":
				want = 0o600
			}
			if fi.Mode().Perm() != want {
				t.Errorf("mode %o, want %o", fi.Mode().Perm(), want)
			}
			flags, err := fsflag.Get(p)
			if err != nil {
				t.Fatal(err)
			}
			if got := flags & (fsflag.Immutable | fsflag.Append); got != tt.flags {
				t.Errorf("flags %#x, want %#x", got, tt.flags)
			}
		})
	}
}

// TestGiveToWorkerOnlyWhatThisBootMade: with the store's directory
// already the worker's, giveToWorker enters only the directories whose
// ctime is after the maintenance window started (so boot work does not
// grow with the store): what PID 1 made this boot, a new directory and a
// file in a pack shard (two levels down, below a directory whose ctime did
// not change), is given; a directory untouched since an earlier boot is
// not examined (the root-owned files planted in them before the window
// stay as they were, which shows they were not walked). A store directory
// that is not yet the worker's, 0750, is walked whole.
func TestGiveToWorkerOnlyWhatThisBootMade(t *testing.T) {
	if os.Getuid() != 0 {
		t.Skip("needs root (chown, inode flags)")
	}
	mk := func(t *testing.T, p string, dir bool, owner int, mode os.FileMode) {
		t.Helper()
		var err error
		if dir {
			err = os.Mkdir(p, mode)
		} else {
			err = os.WriteFile(p, []byte(p), mode)
		}
		if err == nil {
			err = os.Chown(p, owner, owner)
		}
		if err == nil {
			err = os.Chmod(p, mode)
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	owner := func(t *testing.T, p string) int {
		t.Helper()
		fi, err := os.Lstat(p)
		if err != nil {
			t.Fatal(err)
		}
		return int(fi.Sys().(*syscall.Stat_t).Uid)
	}
	for _, tc := range []struct {
		name      string
		rootMode  os.FileMode
		wantOld   int // owner of the files planted in untouched directories afterwards
		wantGiven int
	}{
		{"store already the worker's", 0o750, 0, 3},
		{"store of an older firmware", 0o700, roles.WorkerUID, 6}, // the root and the planted files too
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := filepath.Join(t.TempDir(), "store")
			mk(t, dir, true, roles.WorkerUID, tc.rootMode)
			for _, d := range []string{"old", "packs", "packs/ab", "packs/cd"} {
				mk(t, filepath.Join(dir, d), true, roles.WorkerUID, 0o750)
			}
			// Made as root before this boot's window: left alone unless
			// the whole store is walked.
			planted := []string{"old/f", "packs/cd/q"}
			for _, f := range planted {
				mk(t, filepath.Join(dir, f), false, 0, 0o600)
			}
			time.Sleep(2100 * time.Millisecond) // past the second of slack
			since := time.Now()
			// Made this boot: a new directory with a file, and a file in
			// a pack shard (its parent, packs, keeps its old ctime).
			mk(t, filepath.Join(dir, "new"), true, 0, 0o700)
			mk(t, filepath.Join(dir, "new", "f"), false, 0, 0o600)
			mk(t, filepath.Join(dir, "packs", "ab", "p"), false, 0, 0o600)
			n, err := giveToWorker(dir, since)
			if err != nil {
				t.Fatal(err)
			}
			if n != tc.wantGiven {
				t.Errorf("gave %d inodes, want %d", n, tc.wantGiven)
			}
			for _, p := range []string{"new", "new/f", "packs/ab/p", ""} {
				if got := owner(t, filepath.Join(dir, p)); got != roles.WorkerUID {
					t.Errorf("%q owned by %d, want the worker", p, got)
				}
			}
			for _, p := range planted {
				if got := owner(t, filepath.Join(dir, p)); got != tc.wantOld {
					t.Errorf("%s owned by %d, want %d", p, got, tc.wantOld)
				}
			}
		})
	}
}

// TestBootAlertsReachTheWorker checks that alerts PID 1 raises before the
// worker runs (a missing disk, a frozen prune) are handed to it once it
// does, with their kind, and later ones at once.
func TestBootAlertsReachTheWorker(t *testing.T) {
	a := &appliance{log: hclog.NewNullLogger()}
	a.alert(alertkind.DiskError, "disk-error: mirror degraded: data disk missing or unreadable", "serial", "HOLDFAST-DATA1")
	a.alert(alertkind.ClockAnomaly, "prune frozen: nothing was deleted", "error", "clock")
	a.alert(alertkind.Appliance, "export not started", "error", "x")

	pid1End, workerEnd, err := roles.Socketpair("control")
	if err != nil {
		t.Fatal(err)
	}
	defer pid1End.Close()
	defer workerEnd.Close()
	got := make(chan *control.SendAlert, 8)
	control.New(workerEnd, control.Options{Side: control.Worker, Handler: func(_ context.Context, req control.Request) (control.Reply, error) {
		got <- req.(*control.SendAlert)
		return nil, nil
	}})
	a.worker = control.New(pid1End, control.Options{Side: control.PID1, Handler: func(context.Context, control.Request) (control.Reply, error) { return nil, nil }})
	a.sendBootAlerts()
	a.alert(alertkind.ScrubDamage, "scrub-damage: damaged files are repaired at the next boot")

	want := []struct{ kind, text string }{
		{"disk-error", "disk-error: mirror degraded: data disk missing or unreadable serial=HOLDFAST-DATA1"},
		{"clock-anomaly", "prune frozen: nothing was deleted error=clock"},
		{"appliance", "export not started error=x"},
		{"scrub-damage", "scrub-damage: damaged files are repaired at the next boot"},
	}
	// The worker handles each message in its own goroutine: any order.
	kinds := map[string]string{}
	for range want {
		select {
		case m := <-got:
			kinds[m.Text] = m.Kind
		case <-time.After(5 * time.Second):
			t.Fatalf("worker got only %v", kinds)
		}
	}
	for _, w := range want {
		if k, ok := kinds[w.text]; !ok || k != w.kind {
			t.Errorf("alert %q reached the worker as kind %q (present %v), want %q", w.text, k, ok, w.kind)
		}
	}
	if len(a.alerts) != len(want) {
		t.Errorf("status keeps %d alerts, want %d", len(a.alerts), len(want))
	}
}
