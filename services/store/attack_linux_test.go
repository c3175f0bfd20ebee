package store

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/pkg/xattr"
	"golang.org/x/sys/unix"

	"github.com/holdfast-appliance/holdfast/firmware/caps"
	"github.com/holdfast-appliance/holdfast/services/store/fsflag"
)

// attackTargets are the paths the attacker child goes after.
type attackTargets struct {
	Root, Pack, Shard, Manifest, Retention, Receipt, Recovery string
}

type attackResult struct {
	Name  string
	Errno string // "" when the attempt succeeded
}

type attackReport struct {
	UID                 int
	Bounding, Effective caps.Set
	Results             []attackResult
}

// attackDropChild removes CAP_LINUX_IMMUTABLE from the bounding set and
// re-executes the test binary as the attacker.
func attackDropChild() {
	err := caps.DropAndExec([]int{unix.CAP_LINUX_IMMUTABLE}, "/proc/self/exe", os.Args, childEnviron("attack"))
	fmt.Fprintln(os.Stderr, "drop and exec:", err)
	os.Exit(3)
}

// attackChild tries every way it knows to destroy or shorten a sealed
// snapshot and reports the errno of each attempt.
func attackChild() {
	var tg attackTargets
	if err := json.Unmarshal([]byte(os.Getenv("HOLDFAST_ATTACK_TARGETS")), &tg); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(4)
	}
	sets, err := caps.Read(0)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(5)
	}
	rep := attackReport{UID: os.Getuid(), Bounding: sets.Bounding, Effective: sets.Effective}
	try := func(name string, f func() error) {
		r := attackResult{Name: name}
		if err := f(); err != nil {
			var errno unix.Errno
			if errors.As(err, &errno) {
				r.Errno = unix.ErrnoName(errno)
			} else {
				r.Errno = "non-errno: " + err.Error()
			}
		}
		rep.Results = append(rep.Results, r)
	}
	writeOpen := func(path string, flag int) func() error {
		return func() error {
			f, err := os.OpenFile(path, flag, 0)
			if err != nil {
				return err
			}
			defer f.Close()
			_, err = f.Write([]byte("overwritten"))
			return err
		}
	}
	clearFlags := func(path string, bits uint32) func() error {
		return func() error { return fsflag.Clear(path, bits) }
	}
	for _, f := range []struct{ kind, path string }{
		{"pack", tg.Pack}, {"manifest", tg.Manifest}, {"retention-record", tg.Retention},
		{"receipt", tg.Receipt}, {"recovery-key-blob", tg.Recovery}, {"store-config", filepath.Join(tg.Root, configName)},
	} {
		try("unlink "+f.kind, func() error { return unix.Unlink(f.path) })
		try("rename "+f.kind, func() error { return unix.Rename(f.path, f.path+".moved") })
		try("rename "+f.kind+" out of the store", func() error { return unix.Rename(f.path, filepath.Join(tg.Root, "tmp", "stolen")) })
		try("truncate "+f.kind, func() error { return unix.Truncate(f.path, 0) })
		try("overwrite "+f.kind, writeOpen(f.path, os.O_WRONLY))
		try("open "+f.kind+" with O_TRUNC", writeOpen(f.path, os.O_WRONLY|os.O_TRUNC))
		try("append to "+f.kind, writeOpen(f.path, os.O_WRONLY|os.O_APPEND))
		try("clear immutable flag on "+f.kind, clearFlags(f.path, fsflag.Immutable))
		try("hard link "+f.kind, func() error { return unix.Link(f.path, filepath.Join(tg.Root, "tmp", "link")) })
		try("chmod "+f.kind, func() error { return unix.Chmod(f.path, 0) })
		try("utimes "+f.kind, func() error { return unix.Utimes(f.path, []unix.Timeval{{}, {}}) })
	}
	try("setxattr retain_until on manifest", func() error {
		return xattr.Set(tg.Manifest, xattrRetainUntil, []byte(time.Unix(0, 0).UTC().Format(time.RFC3339Nano)))
	})
	try("setxattr legal_hold on manifest", func() error { return xattr.Set(tg.Manifest, xattrLegalHold, []byte("0")) })
	try("removexattr retain_until on manifest", func() error { return xattr.Remove(tg.Manifest, xattrRetainUntil) })
	try("removexattr legal_hold on manifest", func() error { return xattr.Remove(tg.Manifest, xattrLegalHold) })
	try("setxattr on pack", func() error { return xattr.Set(tg.Pack, xattrRetainUntil, []byte("x")) })
	for _, d := range []struct{ kind, path string }{
		{"snapshots dir", filepath.Dir(tg.Manifest)}, {"packs dir", filepath.Join(tg.Root, packsDir)},
		{"pack shard dir", tg.Shard}, {"retention dir", filepath.Dir(tg.Retention)},
		{"receipts dir", filepath.Dir(tg.Receipt)}, {"recovery dir", filepath.Dir(tg.Recovery)},
	} {
		try("clear append flag on "+d.kind, clearFlags(d.path, fsflag.Append))
		try("rmdir "+d.kind, func() error { return unix.Rmdir(d.path) })
		try("rename "+d.kind, func() error { return unix.Rename(d.path, d.path+".old") })
		try("remove everything in "+d.kind, func() error { return removeAllReport(d.path) })
	}
	try("clear append flag on store root", clearFlags(tg.Root, fsflag.Append))
	try("rename store config", func() error {
		return unix.Rename(filepath.Join(tg.Root, configName), filepath.Join(tg.Root, "tmp", "cfg"))
	})
	try("remove snapshot by RemoveAll", func() error { return removeAllReport(tg.Manifest) })
	json.NewEncoder(os.Stdout).Encode(rep)
	os.Exit(0)
}

// removeAllReport runs os.RemoveAll and returns the first errno it meets.
func removeAllReport(p string) error {
	err := os.RemoveAll(p)
	if err == nil && exists(p) {
		return errors.New("RemoveAll returned nil but the path exists")
	}
	return err
}

// TestRootWithoutCapLinuxImmutableCannotDestroy runs the attacker against a
// store on each filesystem Holdfast supports, each a loop-mounted image.
func TestRootWithoutCapLinuxImmutableCannotDestroy(t *testing.T) {
	if os.Getuid() != 0 {
		t.Fatal("run as root: the test proves root without CAP_LINUX_IMMUTABLE is powerless")
	}
	for _, fstype := range []string{"ext4", "xfs", "btrfs"} {
		t.Run(fstype, func(t *testing.T) {
			opts := Options{Signer: &hmacSigner{}}
			attackStore(t, newStoreIn(t, filepath.Join(mountFS(t, fstype), "store"), InitOptions{PackSize: 1 << 20, RecoveryBlob: []byte("wrapped master key")}, opts), opts)
		})
	}
}

func attackStore(t *testing.T, s *Store, opts Options) {
	objs := map[string][]byte{"a": randBytes(30, 3<<20), "b": randBytes(31, 100), "../../etc/passwd": []byte("x")}
	m := putObjects(t, s, "src", time.Now().Add(24*time.Hour), objs)
	if err := s.Extend(m.ID, time.Now().Add(48*time.Hour), false, "test"); err != nil {
		t.Fatal(err)
	}
	packs, err := s.listPacks()
	if err != nil || len(packs) == 0 {
		t.Fatalf("packs: %v %v", packs, err)
	}
	exts, _ := os.ReadDir(s.path(retentionDir))
	if len(exts) != 1 {
		t.Fatalf("retention records: %d", len(exts))
	}
	tg := attackTargets{
		Root: s.Dir(), Pack: s.packPath(packs[0]), Shard: s.path(packsDir, packs[0][:2]),
		Manifest: s.path(snapshotsDir, m.ID+".snap"), Retention: s.path(retentionDir, exts[0].Name()),
		Receipt: s.path(receiptsDir, m.ID+".receipt"), Recovery: s.path(recoveryDir, recoveryName),
	}
	for _, p := range []string{tg.Receipt, tg.Recovery} {
		if !exists(p) {
			t.Fatalf("%s was not written", p)
		}
	}
	raw, _ := json.Marshal(tg)
	s.Close()

	cmd := exec.Command("/proc/self/exe", "-test.run=^$")
	cmd.Env = childEnviron("attack-drop", "HOLDFAST_ATTACK_TARGETS="+string(raw))
	cmd.Stderr = os.Stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("attacker: %v", err)
	}
	var rep attackReport
	if err := json.Unmarshal(out, &rep); err != nil {
		t.Fatalf("attacker report %q: %v", out, err)
	}
	if rep.UID != 0 {
		t.Fatalf("attacker ran as uid %d, want root", rep.UID)
	}
	if rep.Bounding.Has(unix.CAP_LINUX_IMMUTABLE) || rep.Effective.Has(unix.CAP_LINUX_IMMUTABLE) {
		t.Fatalf("attacker still holds CAP_LINUX_IMMUTABLE (bnd %x eff %x)", rep.Bounding, rep.Effective)
	}
	if !rep.Effective.Has(unix.CAP_SYS_ADMIN) || !rep.Effective.Has(unix.CAP_DAC_OVERRIDE) {
		t.Fatalf("attacker should keep root's other powers for this test (eff %x)", rep.Effective)
	}
	if len(rep.Results) < 80 {
		t.Fatalf("only %d attempts ran", len(rep.Results))
	}
	for _, r := range rep.Results {
		if r.Errno != "EPERM" {
			t.Errorf("%s: got %q, want EPERM", r.Name, r.Errno)
		}
	}
	t.Logf("%d destructive attempts by root without CAP_LINUX_IMMUTABLE, all EPERM", len(rep.Results))

	s = reopen(t, s, opts)
	r := mustVerify(t, s)
	if b, err := ReadRecoveryBlob(s.Dir()); err != nil || string(b) != "wrapped master key" {
		t.Fatalf("recovery blob after the attack: %q %v", b, err)
	}
	if _, err := s.Receipt(m.ID); err != nil {
		t.Fatalf("receipt after the attack: %v", err)
	}
	if r.Snapshots != 1 || r.Objects != len(objs) {
		t.Fatalf("after the attack: %d snapshots, %d objects", r.Snapshots, r.Objects)
	}
	checkSnapshot(t, s, m.ID, objs)
	infos, err := s.Snapshots()
	if err != nil || len(infos) != 1 || infos[0].Retention.Disagree || infos[0].Retention.RetainUntil.Before(time.Now().Add(47*time.Hour)) {
		t.Fatalf("retention after the attack: %+v %v", infos, err)
	}
	if strings.Contains(fmt.Sprint(os.ReadDir(s.path(tmpDir))), "stolen") {
		t.Fatal("a sealed file was moved out")
	}
}
