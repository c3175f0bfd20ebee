package mirror

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/holdfast-appliance/holdfast/services/store"
	"github.com/holdfast-appliance/holdfast/services/store/fsflag"
)

// The test binary doubles as the process a crash test kills mid-Sync;
// childEnv selects that role.
const childEnv = "HOLDFAST_MIRROR_TEST_CHILD"

func TestMain(m *testing.M) {
	switch role := os.Getenv(childEnv); role {
	case "":
		os.Exit(m.Run())
	case "sync":
		syncChild()
	case "repair":
		repairChild()
	default:
		fmt.Fprintln(os.Stderr, "unknown child role", role)
		os.Exit(2)
	}
}

// syncChild syncs the store at HOLDFAST_MIRROR_A (opened read-only, as a
// second process may) to HOLDFAST_MIRROR_B and SIGKILLs itself at the N-th
// time it passes hook point HOLDFAST_MIRROR_POINT.
func syncChild() {
	point := os.Getenv("HOLDFAST_MIRROR_POINT")
	nth, _ := strconv.Atoi(os.Getenv("HOLDFAST_MIRROR_NTH"))
	hits := 0
	hook := func(p string) {
		if p != point {
			return
		}
		if hits++; hits == nth {
			unix.Kill(os.Getpid(), unix.SIGKILL)
			select {}
		}
	}
	ctx := context.Background()
	a, err := store.Open(ctx, os.Getenv("HOLDFAST_MIRROR_A"), testKey, store.Options{ReadOnly: true})
	if err == nil {
		_, err = Sync(ctx, a, Disk{Name: "B", Dir: os.Getenv("HOLDFAST_MIRROR_B")}, Options{Keys: testKey, Hook: hook})
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "sync child:", err)
		os.Exit(1)
	}
	fmt.Fprintf(os.Stderr, "sync child: point %s passed %d times, never the %d-th\n", point, hits, nth)
	os.Exit(3)
}

// repairChild repairs HOLDFAST_MIRROR_REL on disk B from disk A, in the
// maintenance window, and SIGKILLs itself at hook point
// HOLDFAST_MIRROR_POINT.
func repairChild() {
	point := os.Getenv("HOLDFAST_MIRROR_POINT")
	hook := func(p string) {
		if p == point {
			unix.Kill(os.Getpid(), unix.SIGKILL)
			select {}
		}
	}
	disks := []Disk{{Name: "A", Dir: os.Getenv("HOLDFAST_MIRROR_A")}, {Name: "B", Dir: os.Getenv("HOLDFAST_MIRROR_B")}}
	fix := Fix{Rel: os.Getenv("HOLDFAST_MIRROR_REL"), From: "A", To: "B"}
	_, err := Repair(context.Background(), []Fix{fix}, disks, Options{Keys: testKey, Hook: hook, Maintenance: true})
	fmt.Fprintf(os.Stderr, "repair child: never passed %s: %v\n", point, err)
	os.Exit(3)
}

// TestRepairCrash kills a repair of a damaged pack and of a damaged
// manifest at every named point: the name always holds the damaged or the
// good file, recovery restores the directory flags, and a second repair
// finishes the job.
func TestRepairCrash(t *testing.T) {
	for _, kind := range []store.FileKind{store.KindPack, store.KindManifest} {
		for _, point := range []string{"copy-mid", "repair-before-unseal", "repair-before-rename", "repair-before-seal"} {
			t.Run(string(kind)+"/"+point, func(t *testing.T) {
				ctx := context.Background()
				e := newEnv(t, "")
				e.sync(t)
				rel := firstOf(t, e.a.Dir(), kind)
				p := filepath.Join(e.bDir, rel)
				good := mustRead(t, filepath.Join(e.a.Dir(), rel))
				flip(t, p)
				damaged := mustRead(t, p)
				cmd := exec.Command(os.Args[0])
				cmd.Env = append(os.Environ(), childEnv+"=repair", "HOLDFAST_MIRROR_A="+e.a.Dir(), "HOLDFAST_MIRROR_B="+e.bDir,
					"HOLDFAST_MIRROR_POINT="+point, "HOLDFAST_MIRROR_REL="+rel)
				out, err := cmd.CombinedOutput()
				var ee *exec.ExitError
				if !errors.As(err, &ee) || ee.Sys().(syscall.WaitStatus).Signal() != syscall.SIGKILL {
					t.Fatalf("child was not killed at %s: %v\n%s", point, err, out)
				}
				now := mustRead(t, p)
				wantGood := point == "repair-before-seal"
				if !bytes.Equal(now, damaged) && !bytes.Equal(now, good) || bytes.Equal(now, good) != wantGood {
					t.Fatalf("after a kill at %s the file holds neither the damaged nor the good bytes as expected (good: %v)", point, bytes.Equal(now, good))
				}
				// Recovery (a read-write open) restores the directory flag
				// and seals a good file; the next repair finishes.
				e.sync(t)
				if ok, _ := fsflag.Has(filepath.Dir(p), fsflag.Append); !ok {
					t.Fatalf("%s lost its append-only flag", filepath.Dir(p))
				}
				rep, err := Scrub(ctx, e.disks(), e.opts)
				if err != nil {
					t.Fatal(err)
				}
				o := e.opts
				o.Maintenance = true
				if _, err := Repair(ctx, rep.Fixes, e.disks(), o); err != nil {
					t.Fatal(err)
				}
				if !bytes.Equal(mustRead(t, p), good) {
					t.Fatal("not repaired")
				}
				sameFiles(t, e.a.Dir(), e.bDir)
				readAlone(t, e.bDir, e.want)
			})
		}
	}
}

// TestSyncCrash kills a Sync at every named point of a copy, for a pack and
// for a manifest, and checks that the secondary never holds part of a file
// under its final name (in packs/ or anywhere else), that at most the one
// file being installed is left unsealed, whole, for recovery to seal, and
// that the next Sync finishes the job.
func TestSyncCrash(t *testing.T) {
	points := []string{"copy-mid", "copy-before-fsync", "copy-before-rename", "copy-after-rename", "copy-before-seal", "copy-after-seal"}
	for _, file := range []string{"pack", "manifest"} {
		for _, point := range points {
			t.Run(file+"/"+point, func(t *testing.T) {
				ctx := context.Background()
				e := newEnv(t, "")
				all, err := store.ListSealed(e.a.Dir())
				if err != nil {
					t.Fatal(err)
				}
				packs := 0
				for _, f := range all {
					if f.Kind == store.KindPack {
						packs++
					}
				}
				nth := 3 // the third pack
				if file == "manifest" {
					nth = packs + 1 // the first manifest
				}
				cmd := exec.Command(os.Args[0])
				cmd.Env = append(os.Environ(), childEnv+"=sync", "HOLDFAST_MIRROR_A="+e.a.Dir(), "HOLDFAST_MIRROR_B="+e.bDir,
					"HOLDFAST_MIRROR_POINT="+point, "HOLDFAST_MIRROR_NTH="+strconv.Itoa(nth))
				out, err := cmd.CombinedOutput()
				var ee *exec.ExitError
				if !errors.As(err, &ee) || ee.Sys().(syscall.WaitStatus).Signal() != syscall.SIGKILL {
					t.Fatalf("child was not killed at %s #%d: %v\n%s", point, nth, err, out)
				}

				// Every file under its final name is whole; only the one
				// being installed may be unsealed.
				left, err := store.ListSealed(e.bDir)
				if err != nil {
					t.Fatal(err)
				}
				unsealed := 0
				for _, f := range left {
					c, err := e.a.CheckFile(ctx, e.bDir, f.Rel)
					if err != nil {
						t.Errorf("after a kill at %s: %s on the secondary: %v", point, f.Rel, err)
						continue
					}
					if !c.Sealed {
						unsealed++
						t.Logf("left unsealed: %s", f.Rel)
					}
				}
				wantUnsealed := 0
				if point == "copy-after-rename" || point == "copy-before-seal" {
					wantUnsealed = 1
				}
				if unsealed != wantUnsealed {
					t.Errorf("%d files left unsealed, want %d", unsealed, wantUnsealed)
				}
				if got, want := countKind(left, store.KindPack), min(nth-1+wantUnsealed+b2i(point == "copy-after-seal"), packs); got != want {
					t.Errorf("%d packs on the secondary after the kill, want %d", got, want)
				}
				// Nothing in packs/ that is not a whole, named pack.
				filepath.WalkDir(filepath.Join(e.bDir, "packs"), func(p string, d os.DirEntry, err error) error {
					if err == nil && d.Type().IsRegular() {
						rel, _ := filepath.Rel(e.bDir, p)
						if _, ok := store.KindOf(rel); !ok {
							t.Errorf("stray file in packs/: %s", rel)
						}
					}
					return nil
				})

				// The next Sync opens the secondary read-write (recovery
				// empties tmp/ and seals the whole file) and catches up.
				e.sync(t)
				if es, _ := os.ReadDir(filepath.Join(e.bDir, "tmp")); len(es) != 0 {
					t.Errorf("tmp/ not emptied: %v", es)
				}
				sameFiles(t, e.a.Dir(), e.bDir)
				readAlone(t, e.bDir, e.want)
				if ok, _ := fsflag.Has(filepath.Join(e.bDir, "packs"), fsflag.Append); !ok {
					t.Error("packs/ lost its append-only flag")
				}
			})
		}
	}
}

func countKind(fs []store.SealedFile, k store.FileKind) int {
	n := 0
	for _, f := range fs {
		if f.Kind == k {
			n++
		}
	}
	return n
}

func b2i(b bool) int {
	if b {
		return 1
	}
	return 0
}
