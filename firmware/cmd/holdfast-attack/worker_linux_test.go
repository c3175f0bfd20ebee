package main

import (
	"bytes"
	"math/rand/v2"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/holdfast-appliance/holdfast/services/sealer"
	"github.com/holdfast-appliance/holdfast/services/store"
	"github.com/holdfast-appliance/holdfast/services/store/storetest"
)

// workerRowRE is one row the worker adversary prints.
var workerRowRE = regexp.MustCompile(`^ATTACK (\d+) worker (\S+): (planted|refused): disk=(\S+) path=(\S+); (.*)$`)

// TestWorkerAdversaryPlants runs the worker adversary's planting (code
// inside the worker, uid 1000, with its keys; here as root on the host,
// with a real sealer serving the store) against a store holding one
// snapshot on two "disks": every class is planted and reported in a row,
// the sealer seals the lying pack and nothing named like a manifest, and
// afterwards the store still opens as writer, cleans and prunes nothing
// unexpired, and every object reads back byte-identical.
func TestWorkerAdversaryPlants(t *testing.T) {
	ctx := t.Context()
	master := bytes.Repeat([]byte{7}, store.MasterKeySize)
	// The worker's keys: the subkeys of the one store ID every data disk
	// of the box holds (PID 1 derives them; the worker has no master key).
	id, err := store.NewID()
	if err != nil {
		t.Fatal(err)
	}
	keys, err := store.DeriveKeys(master, id)
	if err != nil {
		t.Fatal(err)
	}
	rnd := rand.New(rand.NewPCG(15, 2))
	objs := map[string][]byte{}
	for i := range 8 {
		b := make([]byte, 1000+rnd.IntN(300000))
		for j := range b {
			b[j] = byte(rnd.Uint32())
		}
		objs[strings.Repeat("k", i+1)] = b
	}
	var targets []plantTarget
	var dirs []string
	for _, disk := range []string{"vdb", "vdc"} {
		dir := storetest.Dir(t)
		st, err := store.Init(ctx, dir, keys, store.InitOptions{}, store.Options{})
		if err != nil {
			t.Fatal(err)
		}
		sn, err := st.Begin(ctx, store.BeginOptions{Source: "mail", RetainUntil: time.Now().AddDate(10, 0, 0)})
		if err != nil {
			t.Fatal(err)
		}
		for k, v := range objs {
			if _, err := sn.Put(ctx, store.ObjectInfo{Key: []byte(k)}, bytes.NewReader(v)); err != nil {
				t.Fatal(err)
			}
		}
		if _, err := sn.Commit(ctx, store.CommitOptions{}); err != nil {
			t.Fatal(err)
		}
		st.Close()
		fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
		if err != nil {
			t.Fatal(err)
		}
		srv := os.NewFile(uintptr(fds[0]), "sealer")
		if err := unix.SetNonblock(fds[1], true); err != nil {
			t.Fatal(err)
		}
		cli := os.NewFile(uintptr(fds[1]), "client")
		t.Cleanup(func() { cli.Close(); srv.Close() })
		go func() { _ = sealer.Serve(ctx, srv, dir, nil) }()
		targets = append(targets, plantTarget{dir: dir, disk: disk, seal: deadlineSealer(cli, dir)})
		dirs = append(dirs, dir)
	}
	var out bytes.Buffer
	n, err := plantAll(&out, keys, targets)
	if err != nil {
		t.Fatalf("plant: %v\n%s", err, out.String())
	}
	t.Logf("the worker adversary's rows:\n%s", out.String())
	got := map[string]string{} // disk/name -> detail
	for _, l := range strings.Split(strings.TrimSpace(out.String()), "\n") {
		m := workerRowRE.FindStringSubmatch(l)
		if m == nil {
			t.Errorf("not a row: %q", l)
			continue
		}
		if m[3] != "planted" {
			t.Errorf("not planted: %s", l)
		}
		got[m[4]+"/"+m[2]] = m[6]
	}
	if n != len(got) {
		t.Errorf("%d rows printed, %d distinct", n, len(got))
	}
	for _, c := range []struct {
		disk, name, detail string
	}{
		{"vdb", "index-cache-forged", "authentic under the meta key"},
		{"vdc", "index-devzero", "/dev/zero"},
		{"vdb", "lying-pack", "the sealer SEALED it"},
		{"vdc", "lying-pack", "the sealer SEALED it"},
		{"vdb", "journal-fifo", "FIFO"},
		{"vdb", "retention-sparse", "sparse"},
		{"vdb", "manifest-symlink", "the sealer refused"},
		{"vdb", "manifest-fifo", "the sealer refused"},
		{"vdb", "manifest-garbage", "the sealer refused"},
		{"vdb", "manifest-hardlink", "the sealer refused"},
		{"vdc", "manifest-hardlink", "the sealer refused"},
		{"vdb", "junk-wip", "3000 empty files"},
		{"vdb", "junk-state", "3000 empty files"},
		{"vdb", "junk-index", "3000 empty files"},
		{"vdc", "clock-log-junk", "appended"},
	} {
		d, ok := got[c.disk+"/"+c.name]
		if !ok || !strings.Contains(d, c.detail) {
			t.Errorf("%s on %s: %q, want %q", c.name, c.disk, d, c.detail)
		}
	}
	// What the next boot does on each disk: open as writer, clean, prune
	// with a time well past today (inside the retention), read back.
	for _, dir := range dirs {
		done := make(chan struct{})
		go func() {
			defer close(done)
			st, err := store.Open(ctx, dir, store.StaticKey(master), store.Options{})
			if err != nil {
				t.Errorf("open %s after the attack: %v", dir, err)
				return
			}
			defer st.Close()
			rep, err := st.CleanForeign(ctx)
			if err != nil || rep.Count < 3*junkFiles {
				t.Errorf("clean: %v, %+v entries", err, rep)
			}
			res, err := st.Prune(ctx, store.PruneOptions{Now: time.Now().AddDate(1, 0, 0)})
			if err != nil || len(res.Expired) != 0 || len(res.Packs) != 0 {
				t.Errorf("prune after the attack: %v, expired %v, packs removed %v", err, res.Expired, res.Packs)
			}
			snaps, err := st.Snapshots()
			if err != nil || len(snaps) != 1 {
				t.Errorf("snapshots after the attack: %v, %v", snaps, err)
				return
			}
			for k, v := range objs {
				_, o, err := st.FindObject(snaps[0].ID, []byte(k))
				if err != nil {
					t.Errorf("find %q: %v", k, err)
					continue
				}
				var b bytes.Buffer
				if err := st.WriteObject(ctx, o, &b); err != nil || !bytes.Equal(b.Bytes(), v) {
					t.Errorf("object %q after the attack: %v, %d bytes, want %d", k, err, b.Len(), len(v))
				}
			}
		}()
		select {
		case <-done:
		case <-time.After(2 * time.Minute):
			t.Fatalf("the store at %s hung after the attack", dir)
		}
	}
	if _, err := os.Lstat(filepath.Join(dirs[0], "wip", fakeID(1)+".journal")); err == nil {
		t.Error("the FIFO journal is still there after the clean")
	}
}

// The adversary refuses to start without its guard and with a malformed
// command line.
func TestWorkerAdversaryArgs(t *testing.T) {
	for _, c := range []struct {
		name string
		args []string
		ok   bool
	}{
		{"two disks", []string{"-in-vm", "-stores", "/a/store,/b/store", "-disks", "vdb,vdc"}, true},
		{"no stores", []string{"-in-vm"}, false},
		{"disks and stores differ", []string{"-stores", "/a/store", "-disks", "vdb,vdc"}, false},
		{"relative store", []string{"-stores", "store", "-disks", "vdb"}, false},
		{"root", []string{"-stores", "/a/store", "-disks", "vdb", "-uid", "0"}, false},
	} {
		_, err := parseWorkerArgs(c.args, &bytes.Buffer{})
		if (err == nil) != c.ok {
			t.Errorf("%s: %v, want ok=%v", c.name, err, c.ok)
		}
	}
	var errOut bytes.Buffer
	if rc := run([]string{"holdfast-attack", workerCommand, "-stores", "/a/store", "-disks", "vdb"}, &bytes.Buffer{}, &errOut); rc != 2 || !strings.Contains(errOut.String(), "-in-vm") {
		t.Errorf("without -in-vm: exit %d, %q", rc, errOut.String())
	}
}
