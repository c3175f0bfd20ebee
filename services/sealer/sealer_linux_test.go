package sealer

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/holdfast-appliance/holdfast/firmware/caps"
	"github.com/holdfast-appliance/holdfast/services/store"
	"github.com/holdfast-appliance/holdfast/services/store/fsflag"
	"github.com/holdfast-appliance/holdfast/services/store/storetest"
)

const childEnv = "HOLDFAST_SEALER_TEST_CHILD"

func TestMain(m *testing.M) {
	switch os.Getenv(childEnv) {
	case "drop":
		// Keep only CAP_LINUX_IMMUTABLE in the bounding set, as lockdown does.
		var drop []int
		for c := 0; c <= unix.CAP_LAST_CAP; c++ {
			if c != unix.CAP_LINUX_IMMUTABLE {
				drop = append(drop, c)
			}
		}
		env := []string{childEnv + "=serve"}
		for _, kv := range os.Environ() {
			if !strings.HasPrefix(kv, childEnv+"=") {
				env = append(env, kv)
			}
		}
		fmt.Fprintln(os.Stderr, caps.DropAndExec(drop, "/proc/self/exe", os.Args, env))
		os.Exit(3)
	case "become":
		// The appliance's sealer: its own uid and gid, the worker's
		// group only to read, the capabilities of the row under test.
		var keep []int
		for _, f := range strings.Fields(os.Getenv("HOLDFAST_SEALER_CAPS")) {
			n, _ := strconv.Atoi(f)
			keep = append(keep, n)
		}
		var groups []int
		if g := os.Getenv("HOLDFAST_SEALER_GROUP"); g != "" {
			n, _ := strconv.Atoi(g)
			groups = []int{n}
		}
		env := []string{childEnv + "=serve", "HOLDFAST_SEALER_ROOT=" + os.Getenv("HOLDFAST_SEALER_ROOT")}
		fmt.Fprintln(os.Stderr, caps.BecomeIdentityAndExec(caps.Identity{UID: sealerUID, GID: sealerUID, Groups: groups}, keep, "/proc/self/exe", os.Args, env))
		os.Exit(3)
	case "worker":
		// The appliance's worker: uid and gid 1000, no capabilities; it
		// writes the store and has the sealer seal over fd 3.
		os.Exit(runWorkerChild(os.Getenv("HOLDFAST_SEALER_ROOT")))
	case "serve":
		conn := os.NewFile(3, "conn")
		if err := Serve(context.Background(), conn, os.Getenv("HOLDFAST_SEALER_ROOT"), nil); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

func TestCheckPath(t *testing.T) {
	pack := strings.Repeat("ab", 32)
	for _, tc := range []struct {
		op   byte
		rel  string
		want bool
	}{
		{OpSealFile, "holdfast-store", true},
		{OpSealFile, "packs/ab/" + pack, true},
		{OpSealFile, "packs/cd/" + pack, false}, // wrong shard
		{OpSealFile, "packs/ab/" + pack[:63], false},
		{OpSealFile, "snapshots/20261122T052100Z-1a2b3c4d.snap", true},
		{OpSealFile, "snapshots/../holdfast-store", false},
		{OpSealFile, "retention/20261122T052100Z-1a2b3c4d.1763790000000000000.ext", true},
		{OpSealFile, "receipts/20261122T052100Z-1a2b3c4d.receipt", true},
		{OpSealFile, "../../etc/passwd", false},
		{OpSealFile, "/etc/passwd", false},
		{OpSealFile, "lock", false},
		{OpSealFile, "index/index", false},
		{OpSealFile, "wip/20261122T052100Z-1a2b3c4d.journal", false},
		{OpSealFile, "snapshots/20261122T052100Z-1a2b3c4d.snap\n", false},
		{OpAppendDir, ".", true},
		{OpAppendDir, "packs", true},
		{OpAppendDir, "packs/0f", true},
		{OpAppendDir, "packs/0g", false},
		{OpAppendDir, "state/clock.log", true},
		{OpAppendDir, "tmp", false},
		{OpAppendDir, "..", false},
		{'C', "packs", false}, // no op clears a flag
	} {
		err := checkPath(tc.op, tc.rel)
		if (err == nil) != tc.want {
			t.Errorf("checkPath(%q, %q) = %v, want allowed=%v", tc.op, tc.rel, err, tc.want)
		}
	}
}

// startSealer runs the sealer in a child process holding only
// CAP_LINUX_IMMUTABLE and returns a client connected to it.
func startSealer(t *testing.T, root string) (*Client, *os.File, int) {
	t.Helper()
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	ours, theirs := os.NewFile(uintptr(fds[0]), "sealer-client"), os.NewFile(uintptr(fds[1]), "sealer-server")
	cmd := exec.Command("/proc/self/exe", "-test.run=^$")
	cmd.Env = append(os.Environ(), childEnv+"=drop", "HOLDFAST_SEALER_ROOT="+root)
	cmd.ExtraFiles = []*os.File{theirs}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	theirs.Close()
	t.Cleanup(func() {
		ours.Close()
		done := make(chan error, 1)
		go func() { done <- cmd.Wait() }()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("sealer exited: %v", err)
			}
		case <-time.After(10 * time.Second):
			cmd.Process.Kill()
			t.Error("sealer did not stop when its connection closed")
		}
	})
	return NewClient(ours, root), ours, cmd.Process.Pid
}

func TestStoreSealedThroughSealerProcess(t *testing.T) {
	if os.Getuid() != 0 {
		t.Fatal("run as root: the sealer test drops capabilities")
	}
	dir := storetest.Dir(t)
	ctx := context.Background()
	// Init creates the layout (the maintenance window may do that itself);
	// from then on every seal goes through the sealer process.
	s, err := store.Init(ctx, dir, store.StaticKey(bytes.Repeat([]byte{7}, 32)), store.InitOptions{}, store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	s.Close()
	client, conn, pid := startSealer(t, dir)

	s, err = store.Open(ctx, dir, store.StaticKey(bytes.Repeat([]byte{7}, 32)), store.Options{Sealer: client})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	// Open sealed the store's directories through the sealer, so it has
	// exec'd: it holds CAP_LINUX_IMMUTABLE and nothing else.
	sets, err := caps.Read(pid)
	if err != nil {
		t.Fatal(err)
	}
	if sets.Bounding != 1<<unix.CAP_LINUX_IMMUTABLE || sets.Effective != 1<<unix.CAP_LINUX_IMMUTABLE || sets.Permitted != 1<<unix.CAP_LINUX_IMMUTABLE {
		t.Fatalf("sealer capabilities: bounding %x effective %x permitted %x, want only CAP_LINUX_IMMUTABLE", sets.Bounding, sets.Effective, sets.Permitted)
	}
	sn, err := s.Begin(ctx, store.BeginOptions{Source: "src", RetainUntil: time.Now().Add(time.Hour)})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := sn.Put(ctx, store.ObjectInfo{Key: []byte("a")}, bytes.NewReader(bytes.Repeat([]byte("holdfast"), 1<<18))); err != nil {
		t.Fatal(err)
	}
	m, err := sn.Commit(ctx, store.CommitOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Extend(m.ID, time.Now().Add(48*time.Hour), false, "test"); err != nil {
		t.Fatal(err)
	}
	r, err := s.Verify(ctx)
	if err != nil || !r.OK() {
		t.Fatalf("verify: %v %+v", err, r)
	}
	sealed := 0
	filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
		rel, _ := filepath.Rel(dir, p)
		if err != nil || !d.Type().IsRegular() || checkPath(OpSealFile, filepath.ToSlash(rel)) != nil {
			return nil
		}
		if ok, _ := fsflag.Has(p, fsflag.Immutable); !ok {
			t.Errorf("%s is not sealed", rel)
		}
		sealed++
		return nil
	})
	if sealed < 4 {
		t.Fatalf("only %d sealed files (config, pack, manifest, retention record expected)", sealed)
	}

	// Hostile requests, sent raw as a compromised store process would.
	outside := filepath.Join(t.TempDir(), "outside")
	os.WriteFile(outside, []byte("x"), 0o600)
	evil := filepath.Join(dir, "snapshots", "20261122T000000Z-deadbeef.snap")
	if err := os.Symlink(outside, evil); err != nil {
		t.Fatal(err)
	}
	for _, req := range []struct {
		op  byte
		rel string
	}{
		{OpSealFile, "snapshots/20261122T000000Z-deadbeef.snap"}, // a symlink to a file outside
		{OpSealFile, "../../" + strings.TrimPrefix(outside, "/")},
		{OpSealFile, outside},
		{OpSealFile, "lock"},
		{OpAppendDir, "tmp"},
		{OpAppendDir, "holdfast-store"}, // a file where a directory is expected
		{'C', "packs"},
	} {
		if err := writeMsg(conn, req.op, req.rel); err != nil {
			t.Fatal(err)
		}
		status, msg, err := readMsg(conn)
		if err != nil {
			t.Fatal(err)
		}
		if status == 0 {
			t.Errorf("sealer accepted %q %q", req.op, req.rel)
		}
		t.Logf("refused %q %q: %s", req.op, req.rel, msg)
	}
	if ok, _ := fsflag.Has(outside, fsflag.Immutable); ok {
		t.Fatal("the sealer sealed a file outside the store through a symlink")
	}
	if err := client.SealFile("/etc/passwd"); !errors.Is(err, ErrRefused) {
		t.Fatalf("client sealing outside the store: %v", err)
	}
}

// The sealer seals only a regular file with one name whose content starts
// (and for a pack ends) with the magic of the kind its name claims: the
// worker cannot make it freeze the lock file or junk under a store name.
func TestSealerRefusesForeignContent(t *testing.T) {
	if os.Getuid() != 0 {
		t.Fatal("run as root: the sealer test drops capabilities")
	}
	dir := storetest.Dir(t)
	s, err := store.Init(t.Context(), dir, store.StaticKey(bytes.Repeat([]byte{7}, 32)), store.InitOptions{}, store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	s.Close()
	if err := os.Mkdir(filepath.Join(dir, "recovery"), 0o700); err != nil {
		t.Fatal(err)
	}
	client, _, _ := startSealer(t, dir)
	pack := "ab" + strings.Repeat("0", 62)
	write := func(b []byte) func(string) error {
		return func(p string) error { return os.WriteFile(p, b, 0o600) }
	}
	// Entries of append-only directories cannot be removed: each case
	// has its own snapshot ID.
	id := func(i int) string { return fmt.Sprintf("20261122T0000%02dZ-deadbeef", i) }
	for _, tc := range []struct {
		name  string
		rel   string
		plant func(path string) error
	}{
		{"hard link of the lock as a manifest", "snapshots/" + id(1) + ".snap", func(p string) error { return os.Link(filepath.Join(dir, "lock"), p) }},
		{"garbage as a manifest", "snapshots/" + id(2) + ".snap", write([]byte("garbage garbage garbage garbage garbage"))},
		{"manifest naming another snapshot", "snapshots/" + id(3) + ".snap", write([]byte("HFSNAP0120261122T000000Z-00000000......"))},
		{"new manifest naming another snapshot", "snapshots/" + id(7) + ".snap", write([]byte("HFSNAP0220261122T000000Z-00000000......"))},
		{"manifest of an unknown format", "snapshots/" + id(8) + ".snap", func(p string) error { return os.WriteFile(p, []byte("HFSNAP03"+id(8)+"......"), 0o600) }},
		{"empty manifest", "snapshots/" + id(4) + ".snap", write(nil)},
		{"FIFO as a manifest", "snapshots/" + id(5) + ".snap", func(p string) error { return unix.Mkfifo(p, 0o600) }},
		{"garbage as a pack", "packs/ab/" + pack, func(p string) error {
			if err := os.Mkdir(filepath.Dir(p), 0o700); err != nil {
				return err
			}
			return os.WriteFile(p, []byte("HFPACK01 no end magic"), 0o600)
		}},
		{"garbage as a retention record", "retention/" + id(6) + ".1.ext", write([]byte("HFSNAP01"))},
		{"garbage as the recovery blob", "recovery/wrapped-key", write([]byte("HFRETX01"))},
		{"oversized receipt", "receipts/" + id(7) + ".receipt", write(make([]byte, 1<<20))},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := filepath.Join(dir, tc.rel)
			if err := tc.plant(p); err != nil {
				t.Fatal(err)
			}
			done := make(chan error, 1)
			go func() { done <- client.SealFile(p) }()
			select {
			case err := <-done:
				if !errors.Is(err, ErrRefused) {
					t.Fatalf("sealer: %v, want a refusal", err)
				}
				t.Logf("refused: %v", err)
			case <-time.After(10 * time.Second):
				t.Fatal("sealer hangs")
			}
			if ok, _ := fsflag.Has(p, fsflag.Immutable); ok {
				t.Fatalf("%s was sealed", tc.rel)
			}
		})
	}
	if ok, _ := fsflag.Has(filepath.Join(dir, "lock"), fsflag.Immutable); ok {
		t.Fatal("the lock file was sealed")
	}
	if _, err := store.Open(t.Context(), dir, store.StaticKey(bytes.Repeat([]byte{7}, 32)), store.Options{Sealer: client}); err != nil {
		t.Fatalf("the store no longer opens as writer: %v", err)
	}
}

// The uids of the appliance's roles the non-owner test plays.
const (
	workerUID = 1000 // owns the store; its gid is the store's group
	sealerUID = 1001
)

var testMaster = bytes.Repeat([]byte{7}, 32)

// runWorkerChild commits a snapshot, extends it and verifies the store at
// dir, every seal asked of the sealer on fd 3; it prints the error, if
// any, and returns the exit code.
func runWorkerChild(dir string) int {
	if os.Getuid() != workerUID || os.Getgid() != workerUID {
		fmt.Printf("worker child runs as %d:%d\n", os.Getuid(), os.Getgid())
		return 2
	}
	ctx := context.Background()
	id, err := store.ReadID(dir)
	if err != nil {
		fmt.Println(err)
		return 1
	}
	keys, err := store.DeriveKeys(testMaster, id)
	if err != nil {
		fmt.Println(err)
		return 1
	}
	client := NewClient(os.NewFile(3, "sealer"), dir)
	err = func() error {
		s, err := store.Open(ctx, dir, keys, store.Options{Sealer: client})
		if err != nil {
			return err
		}
		defer s.Close()
		sn, err := s.Begin(ctx, store.BeginOptions{Source: "src", RetainUntil: time.Now().Add(time.Hour)})
		if err != nil {
			return err
		}
		if _, err := sn.Put(ctx, store.ObjectInfo{Key: []byte("a")}, bytes.NewReader(bytes.Repeat([]byte("holdfast"), 1<<18))); err != nil {
			return err
		}
		m, err := sn.Commit(ctx, store.CommitOptions{})
		if err != nil {
			return err
		}
		if err := s.Extend(m.ID, time.Now().Add(48*time.Hour), false, "test"); err != nil {
			return err
		}
		r, err := s.Verify(ctx)
		if err != nil {
			return err
		}
		if !r.OK() {
			return fmt.Errorf("verify: %+v", r)
		}
		return nil
	}()
	if err != nil {
		fmt.Println(err)
		return 1
	}
	fmt.Println("ok")
	return 0
}

// TestNonOwnerSealer plays the appliance's roles: the worker (uid and gid
// 1000, no capabilities) owns and writes the store; the sealer runs as
// uid and gid 1001, owns nothing of it and reads it through the worker's
// group. It seals everything with CAP_LINUX_IMMUTABLE and CAP_FOWNER
// (Capabilities); without CAP_FOWNER the kernel refuses to set a flag on a
// file it does not own, and outside the group it cannot read a magic.
func TestNonOwnerSealer(t *testing.T) {
	if os.Getuid() != 0 {
		t.Fatal("run as root: the test changes uids")
	}
	for _, tc := range []struct {
		name   string
		caps   []int
		group  bool
		wantOK bool
		want   string // in the worker's error when it fails
	}{
		{"appliance: group reader, CAP_LINUX_IMMUTABLE and CAP_FOWNER", Capabilities(), true, true, ""},
		{"without CAP_FOWNER", []int{unix.CAP_LINUX_IMMUTABLE}, true, false, "operation not permitted"},
		{"outside the store's group", Capabilities(), false, false, "permission denied"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := storetest.Dir(t)
			// The directories above the store: searchable by the roles.
			for p := filepath.Dir(dir); p != os.TempDir() && p != "/"; p = filepath.Dir(p) {
				if err := os.Chmod(p, 0o711); err != nil {
					t.Fatal(err)
				}
			}
			id, err := store.NewID()
			if err != nil {
				t.Fatal(err)
			}
			keys, err := store.DeriveKeys(testMaster, id)
			if err != nil {
				t.Fatal(err)
			}
			// PID 1 made the store directory for the worker; the worker
			// made the layout (here: root, handing it over as PID 1's
			// newStoreDir and the maintenance window would).
			s, err := store.Init(t.Context(), dir, keys, store.InitOptions{}, store.Options{})
			if err != nil {
				t.Fatal(err)
			}
			s.Close()
			storetest.Unseal(t, dir)
			if err := filepath.WalkDir(dir, func(p string, _ os.DirEntry, err error) error {
				if err != nil {
					return err
				}
				return os.Lchown(p, workerUID, workerUID)
			}); err != nil {
				t.Fatal(err)
			}

			fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
			if err != nil {
				t.Fatal(err)
			}
			workerEnd, sealerEnd := os.NewFile(uintptr(fds[0]), "worker"), os.NewFile(uintptr(fds[1]), "sealer")
			var capList []string
			for _, c := range tc.caps {
				capList = append(capList, strconv.Itoa(c))
			}
			group := ""
			if tc.group {
				group = strconv.Itoa(workerUID)
			}
			sealerCmd := exec.Command("/proc/self/exe", "-test.run=^$")
			sealerCmd.Env = append(os.Environ(), childEnv+"=become", "HOLDFAST_SEALER_ROOT="+dir,
				"HOLDFAST_SEALER_CAPS="+strings.Join(capList, " "), "HOLDFAST_SEALER_GROUP="+group)
			sealerCmd.ExtraFiles = []*os.File{sealerEnd}
			sealerCmd.Stderr = os.Stderr
			if err := sealerCmd.Start(); err != nil {
				t.Fatal(err)
			}
			sealerEnd.Close()
			workerCmd := exec.Command("/proc/self/exe", "-test.run=^$")
			workerCmd.Env = append(os.Environ(), childEnv+"=worker", "HOLDFAST_SEALER_ROOT="+dir)
			workerCmd.ExtraFiles = []*os.File{workerEnd}
			workerCmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: workerUID, Gid: workerUID, Groups: []uint32{}}}
			out, werr := workerCmd.CombinedOutput()
			workerEnd.Close()
			if err := sealerCmd.Wait(); err != nil {
				t.Errorf("sealer: %v", err)
			}
			t.Logf("worker: %s", bytes.TrimSpace(out))
			if tc.wantOK != (werr == nil) || !bytes.Contains(out, []byte(tc.want)) {
				t.Fatalf("worker: %v, %q; want success %v, output with %q", werr, out, tc.wantOK, tc.want)
			}
			if !tc.wantOK {
				return
			}
			sealed := 0
			filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
				rel, _ := filepath.Rel(dir, p)
				if err != nil || !d.Type().IsRegular() || checkPath(OpSealFile, filepath.ToSlash(rel)) != nil {
					return nil
				}
				var st unix.Stat_t
				if err := unix.Lstat(p, &st); err != nil || st.Uid != workerUID {
					t.Errorf("%s: owner %d (%v), want the worker", rel, st.Uid, err)
				}
				if ok, _ := fsflag.Has(p, fsflag.Immutable); !ok {
					t.Errorf("%s is not sealed", rel)
				}
				sealed++
				return nil
			})
			if sealed < 4 {
				t.Fatalf("only %d sealed files (config, pack, manifest, retention record expected)", sealed)
			}
		})
	}
}
