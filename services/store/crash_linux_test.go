package store

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

const crashSource = "crash-src"

// writerChild puts HOLDFAST_CRASH_DATA into the store at
// HOLDFAST_CRASH_STORE, resuming an interrupted snapshot of crashSource if
// there is one. With HOLDFAST_CRASH_AT=0 it prints every hook point it
// passes; with N > 0 it SIGKILLs itself at the N-th point. Both read one
// file at a time; with N < 0 it runs as the CLI does, files in parallel.
func writerChild() {
	crashAt, _ := strconv.Atoi(os.Getenv("HOLDFAST_CRASH_AT"))
	n := 0
	hook := func(point string) {
		n++
		if crashAt == 0 {
			fmt.Println(point)
		}
		if n == crashAt {
			unix.Kill(os.Getpid(), unix.SIGKILL)
			select {}
		}
	}
	err := func() error {
		ctx := context.Background()
		s, err := Open(ctx, os.Getenv("HOLDFAST_CRASH_STORE"), testKey, Options{Hook: hook})
		if err != nil {
			return err
		}
		defer s.Close()
		in, err := s.Interrupted()
		if err != nil {
			return err
		}
		var sn *Snapshot
		for _, i := range in {
			if i.Source == crashSource {
				if sn, err = s.Resume(ctx, i.ID); err != nil {
					return err
				}
			}
		}
		if sn == nil {
			if sn, err = s.Begin(ctx, BeginOptions{Source: crashSource, RetainUntil: time.Now().Add(time.Hour)}); err != nil {
				return err
			}
		}
		put := sn.PutPaths
		if crashAt >= 0 {
			// One file at a time: the N-th hook point is the same in every run.
			put = func(ctx context.Context, p []string) error { return sn.putPaths(ctx, p, 1) }
		}
		if err := put(ctx, []string{os.Getenv("HOLDFAST_CRASH_DATA")}); err != nil {
			return err
		}
		_, err = sn.Commit(ctx, CommitOptions{})
		return err
	}()
	if err != nil {
		fmt.Fprintln(os.Stderr, "writer:", err)
		os.Exit(1)
	}
	os.Exit(0)
}

// crashFixture is a store with two committed snapshots and a data set to
// put into copies of it.
type crashFixture struct {
	base     string
	data     string
	baseSnap map[string]map[string][]byte // snapshot ID -> objects
	want     map[string][]byte            // what the interrupted put stores
}

func newCrashFixture(t *testing.T) *crashFixture {
	s := newStore(t, InitOptions{PackSize: 1 << 20}, Options{})
	fx := &crashFixture{base: s.Dir(), data: filepath.Join(t.TempDir(), "data"), baseSnap: map[string]map[string][]byte{}, want: map[string][]byte{}}
	a := map[string][]byte{"a1": randBytes(40, 2<<20), "a2": randBytes(41, 4096), "shared": randBytes(42, 3<<20)}
	b := map[string][]byte{"b1": randBytes(43, 1<<20), "shared": randBytes(42, 3<<20)}
	fx.baseSnap[putObjects(t, s, "base-a", time.Now().Add(time.Hour), a).ID] = a
	fx.baseSnap[putObjects(t, s, "base-b", time.Now().Add(time.Hour), b).ID] = b
	s.Close()

	files := map[string][]byte{
		"big1": randBytes(50, 3<<20), "big2": randBytes(51, 3<<20), "dup-of-shared": randBytes(42, 3<<20),
		"mid1": randBytes(52, 200<<10), "mid2": randBytes(53, 200<<10), "mid3": randBytes(54, 1536<<10),
		"small1": randBytes(55, 4096), "small2": randBytes(56, 4096), "small3": randBytes(57, 4096),
		"empty": {}, "sub/deeper/file": randBytes(58, 700<<10), "big3": randBytes(59, 4<<20),
	}
	for i := 0; i < 24; i++ {
		files[fmt.Sprintf("many/%02d", i)] = randBytes(uint64(100+i), 96<<10)
	}
	for name, content := range files {
		p := filepath.Join(fx.data, name)
		os.MkdirAll(filepath.Dir(p), 0o755)
		if err := os.WriteFile(p, content, 0o644); err != nil {
			t.Fatal(err)
		}
		fx.want["data/"+name] = content
	}
	return fx
}

// copyStore copies the base store (flags are not copied; Open reseals).
func copyStore(t *testing.T, src string) string {
	dst := filepath.Join(storeDir(t), "copy")
	err := filepath.WalkDir(src, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(src, p)
		to := filepath.Join(dst, rel)
		if d.IsDir() {
			return os.MkdirAll(to, 0o700)
		}
		in, err := os.Open(p)
		if err != nil {
			return err
		}
		defer in.Close()
		out, err := os.Create(to)
		if err != nil {
			return err
		}
		if _, err := io.Copy(out, in); err != nil {
			out.Close()
			return err
		}
		return out.Close()
	})
	if err != nil {
		t.Fatalf("copy store: %v", err)
	}
	return dst
}

// newSnapshot returns the one snapshot that is not in the base store.
func (fx *crashFixture) newSnapshot(t *testing.T, infos []SnapshotInfo) string {
	t.Helper()
	var ids []string
	for _, i := range infos {
		if _, ok := fx.baseSnap[i.ID]; !ok {
			ids = append(ids, i.ID)
		}
	}
	if len(ids) != 1 {
		t.Fatalf("want exactly one new snapshot, have %v", ids)
	}
	return ids[0]
}

func (fx *crashFixture) runWriter(t *testing.T, dir string, crashAt int) (*exec.Cmd, []byte, error) {
	cmd := exec.Command("/proc/self/exe", "-test.run=^$")
	cmd.Env = childEnviron("writer", "HOLDFAST_CRASH_STORE="+dir, "HOLDFAST_CRASH_DATA="+fx.data, "HOLDFAST_CRASH_AT="+strconv.Itoa(crashAt))
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil && !killed(cmd) {
		t.Logf("writer stderr: %s", stderr.String())
	}
	return cmd, out, err
}

func killed(cmd *exec.Cmd) bool {
	if cmd.ProcessState == nil {
		return false
	}
	ws, ok := cmd.ProcessState.Sys().(syscall.WaitStatus)
	return ok && ws.Signaled() && ws.Signal() == syscall.SIGKILL
}

// checkAfterCrash opens a crashed store, verifies it, checks every earlier
// snapshot, and then resumes (resume=true) or discards the interrupted put.
// It returns what happened to the interrupted snapshot.
func (fx *crashFixture) checkAfterCrash(t *testing.T, dir string, resume bool) string {
	t.Helper()
	ctx := context.Background()
	s, err := Open(ctx, dir, testKey, Options{Logger: testLogger(t)})
	if err != nil {
		t.Fatalf("open after crash: %v", err)
	}
	defer s.Close()
	mustVerify(t, s)
	for id, objs := range fx.baseSnap {
		checkSnapshot(t, s, id, objs)
	}
	infos, err := s.Snapshots()
	if err != nil {
		t.Fatal(err)
	}
	if len(infos) == len(fx.baseSnap)+1 {
		// The crash came after the commit point.
		checkSnapshot(t, s, fx.newSnapshot(t, infos), fx.want)
		return "committed"
	}
	if len(infos) != len(fx.baseSnap) {
		t.Fatalf("%d snapshots after crash, want %d or %d", len(infos), len(fx.baseSnap), len(fx.baseSnap)+1)
	}
	in, err := s.Interrupted()
	if err != nil {
		t.Fatal(err)
	}
	if len(in) > 1 {
		t.Fatalf("%d interrupted snapshots", len(in))
	}
	if !resume {
		for _, i := range in {
			if err := s.Discard(i.ID); err != nil {
				t.Fatal(err)
			}
		}
		mustVerify(t, s)
		return "discarded"
	}
	s.Close()
	cmd, _, err := fx.runWriter(t, dir, -1)
	if err != nil {
		t.Fatalf("resume run: %v (%v)", err, cmd.ProcessState)
	}
	s2, err := Open(ctx, dir, testKey, Options{Logger: testLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	defer s2.Close()
	mustVerify(t, s2)
	infos, err = s2.Snapshots()
	if err != nil || len(infos) != len(fx.baseSnap)+1 {
		t.Fatalf("after resume: %d snapshots (%v)", len(infos), err)
	}
	checkSnapshot(t, s2, fx.newSnapshot(t, infos), fx.want)
	for id, objs := range fx.baseSnap {
		checkSnapshot(t, s2, id, objs)
	}
	if len(in) == 1 {
		return "resumed"
	}
	return "restarted"
}

// TestCrashAtEveryKindOfPoint kills a writer with SIGKILL at 60 points of a
// put (between chunk writes, mid-pack, around pack fsync, rename and seal,
// mid journal frame, around journal fsync, around the manifest rename,
// xattrs and seal) and checks that the store opens, verifies clean, keeps
// every earlier snapshot byte-identical, and resumes or discards the put.
func TestCrashAtEveryKindOfPoint(t *testing.T) {
	fx := newCrashFixture(t)
	cmd, out, err := fx.runWriter(t, copyStore(t, fx.base), 0)
	if err != nil {
		t.Fatalf("counting run: %v (%v)", err, cmd.ProcessState)
	}
	labels := strings.Fields(string(out))
	kinds := map[string][]int{}
	for i, l := range labels {
		kinds[l] = append(kinds[l], i+1)
	}
	for _, want := range []string{"chunk-written", "pack-before-fsync", "pack-before-rename", "pack-after-rename", "pack-before-seal", "pack-after-seal",
		"journal-mid-frame", "journal-before-fsync", "journal-after-fsync", "commit-before-rename", "commit-after-rename", "commit-before-xattr", "commit-before-seal", "commit-after-seal", "commit-done"} {
		if len(kinds[want]) == 0 {
			t.Fatalf("the put never passes point %q (saw %v)", want, kinds)
		}
	}
	picks := map[int]bool{}
	for _, at := range kinds {
		picks[at[0]] = true
		picks[at[len(at)/2]] = true
	}
	for i := 0; len(picks) < 60 && i < len(labels); i++ {
		picks[1+i*len(labels)/60] = true
	}
	if len(picks) < 50 {
		t.Fatalf("only %d crash points (of %d hook calls)", len(picks), len(labels))
	}
	outcomes := map[string]int{}
	n := 0
	for at := range picks {
		n++
		dir := copyStore(t, fx.base)
		cmd, _, err := fx.runWriter(t, dir, at)
		if !killed(cmd) {
			t.Fatalf("crash at %d (%s): writer was not killed: %v", at, labels[at-1], err)
		}
		outcome := fx.checkAfterCrash(t, dir, n%2 == 0)
		outcomes[labels[at-1]+" -> "+outcome]++
		unsealAll(t, filepath.Dir(dir))
		os.RemoveAll(filepath.Dir(dir))
	}
	t.Logf("%d SIGKILLs at %d hook points of a %d-point put; outcomes: %v", len(picks), len(picks), len(labels), outcomes)
}

// TestCrashAtRandomInstants kills the writer after a random delay, which
// also lands inside write(2) calls and between hook points.
func TestCrashAtRandomInstants(t *testing.T) {
	fx := newCrashFixture(t)
	start := time.Now()
	if _, _, err := fx.runWriter(t, copyStore(t, fx.base), -1); err != nil {
		t.Fatal(err)
	}
	full := time.Since(start)
	rng := rand.New(rand.NewPCG(2026, 11))
	for i := 0; i < 10; i++ {
		dir := copyStore(t, fx.base)
		cmd := exec.Command("/proc/self/exe", "-test.run=^$")
		cmd.Env = childEnviron("writer", "HOLDFAST_CRASH_STORE="+dir, "HOLDFAST_CRASH_DATA="+fx.data, "HOLDFAST_CRASH_AT=-1")
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		delay := time.Duration(rng.Int64N(int64(full)))
		time.Sleep(delay)
		cmd.Process.Signal(syscall.SIGKILL)
		err := cmd.Wait()
		var ee *exec.ExitError
		if err != nil && !errors.As(err, &ee) {
			t.Fatal(err)
		}
		outcome := fx.checkAfterCrash(t, dir, i%2 == 0)
		t.Logf("kill after %s of a %s put: %s", delay.Round(time.Millisecond), full.Round(time.Millisecond), outcome)
	}
}
