package main

import (
	"bytes"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"strings"
	"testing"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/holdfast-appliance/holdfast/firmware/disks"
)

// These tests never run a technique: they check the table, the pure
// functions and that the built binary refuses to run outside the VM.

func TestTechniqueTable(t *testing.T) {
	ts := techniques()
	if len(ts) > 999 {
		t.Fatalf("%d techniques: numbers have at most three digits", len(ts))
	}
	kebab := regexp.MustCompile(`^[a-z0-9]+(-[a-z0-9]+)*$`)
	seen := map[string]bool{}
	counted := 0
	for i, tc := range ts {
		if !categories[tc.cat] {
			t.Errorf("%02d %s: unknown category %q", i+1, tc.name, tc.cat)
		}
		if !kebab.MatchString(tc.name) {
			t.Errorf("%02d: name %q is not kebab-case", i+1, tc.name)
		}
		if seen[tc.name] {
			t.Errorf("%02d: name %q is not unique", i+1, tc.name)
		}
		seen[tc.name] = true
		if tc.what == "" || tc.run == nil {
			t.Errorf("%02d %s: no description or no function", i+1, tc.name)
		}
		if tc.owner && tc.cat != "owner" && tc.cat != "fill" {
			t.Errorf("%02d %s: owner technique in category %s", i+1, tc.name, tc.cat)
		}
		if !tc.mayNA {
			counted++
		}
		if got := findTechnique(tc.name); got == nil || got.cat != tc.cat {
			t.Errorf("findTechnique(%q) = %v", tc.name, got)
		}
	}
	if counted < 40 {
		t.Errorf("%d techniques that cannot be n/a, want at least 40", counted)
	}
	// Order: the sealer's death last, reboot just before, SysRq after every
	// store, mount and fill technique.
	if ts[len(ts)-1].name != "kill-sealer" || ts[len(ts)-2].name != "reboot" {
		t.Errorf("last techniques are %s, %s; want reboot, kill-sealer", ts[len(ts)-2].name, ts[len(ts)-1].name)
	}
	sysrq := -1
	for i, tc := range ts {
		if tc.name == "sysrq-remount-ro" {
			sysrq = i
		}
	}
	for i, tc := range ts {
		if (tc.cat == "store" || tc.cat == "owner" || tc.cat == "mount" || tc.cat == "fill") && i > sysrq {
			t.Errorf("%s runs after sysrq-remount-ro", tc.name)
		}
	}
	var buf bytes.Buffer
	printList(&buf, ts)
	if n := strings.Count(buf.String(), "\n"); n != len(ts) {
		t.Errorf("-list printed %d lines for %d techniques", n, len(ts))
	}
}

func TestJudge(t *testing.T) {
	changed := []change{{"packs/ab/x", "removed (was file)"}}
	for _, tc := range []struct {
		name     string
		note     string
		err      error
		changes  []change
		checkErr error
		want     outcome
		contains string
	}{
		{"success", "unlinked", nil, nil, nil, outSucceeded, "unlinked"},
		{"success without note", "", nil, nil, nil, outSucceeded, "returned success"},
		{"refused, unchanged", "", unix.EPERM, nil, nil, outRefused, "operation not permitted"},
		{"failed but changed", "", unix.EIO, changed, nil, outSucceeded, "removed"},
		{"refused, not checked", "", unix.EACCES, nil, errors.New("no owner"), outRefused, "effect not checked"},
		{"success and changed", "truncated", nil, changed, nil, outSucceeded, "changed: packs/ab/x"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := judge(tc.note, tc.err, tc.changes, tc.checkErr)
			if r.outcome != tc.want || !strings.Contains(r.detail, tc.contains) {
				t.Errorf("judge = %v %q, want %v containing %q", r.outcome, r.detail, tc.want, tc.contains)
			}
		})
	}
}

func TestGate(t *testing.T) {
	for _, tc := range []struct {
		err  error
		want outcome
	}{
		{nil, outSucceeded},
		{unix.EPERM, outRefused},
		{unix.EACCES, outRefused},
		{&os.PathError{Op: "open", Path: "/x", Err: unix.EACCES}, outRefused},
		{unix.EINVAL, outSucceeded}, // past the permission check
		{unix.EBUSY, outSucceeded},
	} {
		if r := gate("call", tc.err); r.outcome != tc.want {
			t.Errorf("gate(%v) = %v %q, want %v", tc.err, r.outcome, r.detail, tc.want)
		}
	}
}

func TestCombine(t *testing.T) {
	r, s, n := refusedf("r"), succeededf("s"), naf("n")
	for _, tc := range []struct {
		in   []result
		want outcome
	}{
		{[]result{r, r}, outRefused},
		{[]result{r, s, n}, outSucceeded},
		{[]result{n, n}, outNA},
		{[]result{n, r}, outRefused},
		{nil, outNA},
	} {
		if got := combine(tc.in...); got.outcome != tc.want {
			t.Errorf("combine(%v) = %v, want %v", tc.in, got.outcome, tc.want)
		}
	}
	if got := combine(r, s).detail; got != "r; s" {
		t.Errorf("combined detail %q", got)
	}
}

func TestFormatLine(t *testing.T) {
	line := regexp.MustCompile(`^ATTACK \d\d [a-z]+ [a-z0-9-]+: (refused|SUCCEEDED|n/a): [^\n]+$`)
	tc := &technique{cat: "store", name: "truncate-pack"}
	for _, r := range []result{
		refusedf("truncate %s: operation not permitted", short("packs/ab/"+strings.Repeat("ab", 32))),
		succeededf("two\nlines\r\tand a tab"),
		naf(""),
		refusedf("%s", strings.Repeat("x", 5000)),
	} {
		got := formatLine(7, tc, r)
		if !line.MatchString(got) || len(got) > 700 {
			t.Errorf("bad line %q", got)
		}
	}
	if got := formatLine(7, tc, refusedf("truncate %s: operation not permitted", short("packs/ab/ab12"+strings.Repeat("0", 60)))); got != "ATTACK 07 store truncate-pack: refused: truncate packs/ab/ab12…: operation not permitted" {
		t.Errorf("line %q", got)
	}
}

func TestDiffStates(t *testing.T) {
	base := entry{Type: "file", Mode: 0o400, UID: 1000, GID: 1000, Size: 10, SHA256: "aa", Flags: 0x10,
		Xattrs: map[string][]byte{"user.holdfast.retain_until": []byte("2030-01-01T00:00:00Z"), "user.holdfast.legal_hold": []byte("0")}}
	mod := func(f func(*entry)) entry {
		e := base
		e.Xattrs = map[string][]byte{}
		for k, v := range base.Xattrs {
			e.Xattrs[k] = v
		}
		f(&e)
		return e
	}
	for _, tc := range []struct {
		name  string
		after map[string]entry
		want  string // substring of the one change; "" for none
	}{
		{"same", map[string]entry{"f": mod(func(*entry) {})}, ""},
		{"removed", map[string]entry{}, "removed"},
		{"missing entry", map[string]entry{"f": {Type: "missing"}}, "removed"},
		{"size", map[string]entry{"f": mod(func(e *entry) { e.Size = 0 })}, "size 10 -> 0"},
		{"mode", map[string]entry{"f": mod(func(e *entry) { e.Mode = 0o666 })}, "mode 0400 -> 0666"},
		{"owner", map[string]entry{"f": mod(func(e *entry) { e.UID = 0 })}, "owner 1000:1000 -> 0:1000"},
		{"content", map[string]entry{"f": mod(func(e *entry) { e.SHA256 = "bb" })}, "content changed"},
		{"flags", map[string]entry{"f": mod(func(e *entry) { e.Flags = 0 })}, "flags 0x10 -> 0x0"},
		{"xattr changed", map[string]entry{"f": mod(func(e *entry) { e.Xattrs["user.holdfast.retain_until"] = []byte("2000-01-01T00:00:00Z") })}, "retain_until"},
		{"xattr removed", map[string]entry{"f": mod(func(e *entry) { delete(e.Xattrs, "user.holdfast.legal_hold") })}, "legal_hold removed"},
		{"unreadable", map[string]entry{"f": {Type: "error", Err: "lstat: permission denied"}}, "unreadable"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := diffStates(map[string]entry{"f": base}, tc.after)
			if tc.want == "" {
				if len(got) != 0 {
					t.Fatalf("changes %v, want none", got)
				}
				return
			}
			if len(got) != 1 || got[0].path != "f" || !strings.Contains(got[0].what, tc.want) {
				t.Fatalf("changes %v, want one on f containing %q", got, tc.want)
			}
		})
	}
	if got := diffStates(map[string]entry{}, map[string]entry{"new": {Type: "file"}}); len(got) != 1 || !strings.Contains(got[0].what, "appeared") {
		t.Errorf("new file: %v", got)
	}
}

// TestWalkAndDiff records a plain directory laid out like a store (no
// inode flags: they need privileges), changes it, and diffs.
func TestWalkAndDiff(t *testing.T) {
	root := t.TempDir()
	pack := "packs/ab/ab" + strings.Repeat("0", 62)
	files := map[string]string{
		pack: "pack bytes",
		"snapshots/20261122T052100Z-1a2b3c4d.snap":   "manifest",
		"receipts/20261122T052100Z-1a2b3c4d.receipt": "receipt",
		"holdfast-store":  "config",
		"tmp/junk":        "scratch",
		"wip/x.journal":   "journal",
		"index/index":     "index",
		"state/clock.log": "clock",
		"lock":            "",
	}
	for rel, body := range files {
		p := filepath.Join(root, rel)
		if err := os.MkdirAll(filepath.Dir(p), 0o700); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(body), 0o400); err != nil {
			t.Fatal(err)
		}
	}
	before, err := walkStore(root)
	if err != nil {
		t.Fatal(err)
	}
	for _, rel := range []string{"tmp", "tmp/junk", "wip/x.journal", "index/index", "state/clock.log", "lock"} {
		if _, ok := before[rel]; ok {
			t.Errorf("walk recorded excluded %s", rel)
		}
	}
	if e := before[pack]; e.Type != "file" || e.Size != 10 || len(e.SHA256) != 64 {
		t.Errorf("pack entry %+v", e)
	}
	if e := before["packs/ab"]; e.Type != "dir" || e.Mode != 0o700 {
		t.Errorf("shard entry %+v", e)
	}
	// Changes to excluded paths are not changes.
	if err := os.WriteFile(filepath.Join(root, "tmp/more"), []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}
	os.Remove(filepath.Join(root, "wip/x.journal"))
	if after, err := walkStore(root); err != nil || len(diffStates(before, after)) != 0 {
		t.Fatalf("excluded changes reported: %v %v", err, diffStates(before, after))
	}
	// Real changes.
	os.Chmod(filepath.Join(root, pack), 0o600)
	os.WriteFile(filepath.Join(root, pack), []byte("PACK BYTES"), 0o600)
	os.Remove(filepath.Join(root, "receipts/20261122T052100Z-1a2b3c4d.receipt"))
	os.Chmod(filepath.Join(root, "snapshots"), 0o755)
	os.WriteFile(filepath.Join(root, "packs/ab/forged"), nil, 0o600)
	after, err := walkStore(root)
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]string{}
	for _, c := range diffStates(before, after) {
		got[c.path] = c.what
	}
	want := map[string]string{
		pack: "content changed",
		"receipts/20261122T052100Z-1a2b3c4d.receipt": "removed",
		"snapshots":       "mode 0700 -> 0755",
		"packs/ab/forged": "appeared",
		"packs/ab":        "", // its mtime is not recorded: no change
	}
	for p, w := range want {
		if w == "" {
			if g, ok := got[p]; ok {
				t.Errorf("%s: unexpected change %q", p, g)
			}
			continue
		}
		if !strings.Contains(got[p], w) {
			t.Errorf("%s: change %q, want %q", p, got[p], w)
		}
	}
	if !strings.Contains(got[pack], "mode 0400 -> 0600") {
		t.Errorf("pack mode change missing: %q", got[pack])
	}
	// statePaths sees the same as the walk.
	st := statePaths(root, []string{pack, "nonexistent"})
	if st[pack].SHA256 != after[pack].SHA256 || st["nonexistent"].Type != "missing" {
		t.Errorf("statePaths %+v", st)
	}
	// A walk of a missing store fails, and integrityChanges reports it.
	_, werr := walkStore(filepath.Join(root, "gone"))
	if werr == nil {
		t.Fatal("walk of a missing store succeeded")
	}
	if ch := integrityChanges(before, nil, nil, werr); len(ch) != 1 {
		t.Errorf("integrityChanges with a failed walk: %v", ch)
	}
	rels, err := listStore(root)
	if err != nil {
		t.Fatal(err)
	}
	if tg := pickTargets(rels); tg.pack != pack || tg.manifest != "snapshots/20261122T052100Z-1a2b3c4d.snap" || tg.receipt != configName {
		t.Errorf("targets %+v", tg)
	}
}

func TestPickTargets(t *testing.T) {
	p1 := "packs/00/00" + strings.Repeat("1", 62)
	p2 := "packs/ff/ff" + strings.Repeat("2", 62)
	tg := pickTargets([]string{".", "holdfast-store", "packs", "packs/00", p1, p2, "packs/ff/not-a-pack",
		"snapshots/20261122T052100Z-1a2b3c4d.snap", "receipts/20261122T052100Z-1a2b3c4d.receipt"})
	if tg.pack != p1 || tg.pack2 != p2 || tg.helperPack != p2 || tg.manifest != "snapshots/20261122T052100Z-1a2b3c4d.snap" || tg.receipt != "receipts/20261122T052100Z-1a2b3c4d.receipt" {
		t.Errorf("targets %+v", tg)
	}
	empty := pickTargets(nil)
	if empty.pack != configName || empty.manifest != configName {
		t.Errorf("empty store targets %+v", empty)
	}
	set := tg.checkSet()
	if set[0] != "." || len(set) != 9 {
		t.Errorf("check set %v", set)
	}
}

func TestMounts(t *testing.T) {
	// Parsing is disks.Mounts' (and tested there); here: the options
	// become mount flags, and a path finds its mount.
	if fl := mountFlags("rw,nosuid,nodev,noexec,noatime"); fl != unix.MS_NOSUID|unix.MS_NODEV|unix.MS_NOEXEC|unix.MS_NOATIME {
		t.Errorf("flags %#x", fl)
	}
	ms := []disks.MountEntry{{Target: "/"}, {Target: "/run"}, {Target: "/run/holdfast/data"}, {Target: "/run/holdfast/data2"}}
	for _, tc := range []struct{ path, want string }{
		{"/run/holdfast/data/store", "/run/holdfast/data"},
		{"/run/holdfast/data2/store", "/run/holdfast/data2"},
		{"/run/other", "/run"},
		{"/etc", "/"},
	} {
		if got := mountFor(tc.path, ms); got.Target != tc.want {
			t.Errorf("mountFor(%s) = %s, want %s", tc.path, got.Target, tc.want)
		}
	}
}

func TestGuard(t *testing.T) {
	dir := t.TempDir()
	board := filepath.Join(dir, "board")
	os.WriteFile(board, []byte("qemu-x86_64\n"), 0o644)
	comm := func(s string) string {
		p := filepath.Join(dir, "comm-"+strings.TrimSpace(s))
		os.WriteFile(p, []byte(s), 0o644)
		return p
	}
	for _, tc := range []struct {
		name        string
		inVM        bool
		board, comm string
		wantRefusal bool
	}{
		{"no -in-vm", false, board, comm("init\n"), true},
		{"no board", true, filepath.Join(dir, "absent"), comm("init\n"), true},
		{"pid 1 is systemd", true, board, comm("systemd\n"), true},
		{"pid 1 unreadable", true, board, filepath.Join(dir, "absent"), true},
		{"init", true, board, comm("init\n"), false},
		{"holdfast-init", true, board, comm("holdfast-init\n"), false},
	} {
		err := guard(tc.inVM, tc.board, tc.comm)
		if (err != nil) != tc.wantRefusal {
			t.Errorf("%s: guard = %v, want refusal %v", tc.name, err, tc.wantRefusal)
		}
	}
}

// TestKernelABI checks the structures and ioctl numbers defined here
// against the kernel's _IOC encoding (asm-generic, as on x86 and arm64).
func TestKernelABI(t *testing.T) {
	ioc := func(dir, typ, nr, size uintptr) uintptr { return dir<<30 | size<<16 | typ<<8 | nr }
	const w, r = 1, 2
	for _, tc := range []struct {
		name      string
		got, want uintptr
	}{
		{"FIFREEZE", fiFreeze, ioc(w|r, 'X', 119, 4)},
		{"FITHAW", fiThaw, ioc(w|r, 'X', 120, 4)},
		{"FS_IOC_FSGETXATTR", fsIocFsgetxattr, ioc(r, 'X', 31, unsafe.Sizeof(fsxattr{}))},
		{"FS_IOC_FSSETXATTR", fsIocFssetxattr, ioc(w, 'X', 32, unsafe.Sizeof(fsxattr{}))},
		{"NVME_IOCTL_ADMIN_CMD", nvmeIoctlAdminCmd, ioc(w|r, 'N', 0x41, unsafe.Sizeof(nvmeAdminCmd{}))},
		{"sizeof fsxattr", unsafe.Sizeof(fsxattr{}), 28},
		{"sizeof nvme_passthru_cmd", unsafe.Sizeof(nvmeAdminCmd{}), 72},
		{"BLKDISCARD", unix.BLKDISCARD, 0x1277},
		{"BLKSECDISCARD", unix.BLKSECDISCARD, 0x127d},
		{"BLKZEROOUT", unix.BLKZEROOUT, 0x127f},
		{"BLKRRPART", unix.BLKRRPART, 0x125f},
	} {
		if tc.got != tc.want {
			t.Errorf("%s = %#x, want %#x", tc.name, tc.got, tc.want)
		}
	}
	if unsafe.Sizeof(uintptr(0)) == 8 {
		if got := unsafe.Sizeof(sgIOHdr{}); got != 88 {
			t.Errorf("sizeof sg_io_hdr = %d, want 88", got)
		}
		if got := unsafe.Sizeof(kexecSegment{}); got != 32 {
			t.Errorf("sizeof kexec_segment = %d, want 32", got)
		}
		if got := unsafe.Offsetof(sgIOHdr{}.UsrPtr); got != 56 {
			t.Errorf("offsetof sg_io_hdr.usr_ptr = %d, want 56", got)
		}
	}
	if got := partNode("/dev/vda", 1); got != "/dev/vda1" {
		t.Errorf("partNode vda = %s", got)
	}
	if got := partNode("/dev/nvme0n1", 1); got != "/dev/nvme0n1p1" {
		t.Errorf("partNode nvme0n1 = %s", got)
	}
}

// buildBinary builds the command into a temporary directory.
func buildBinary(t *testing.T) string {
	t.Helper()
	if _, err := os.Stat(boardFile); err == nil {
		t.Skipf("%s exists: this looks like an appliance; not running the binary here", boardFile)
	}
	goTool, err := exec.LookPath("go")
	if err != nil {
		goTool = filepath.Join(runtime.GOROOT(), "bin", "go")
	}
	bin := filepath.Join(t.TempDir(), "holdfast-attack")
	cmd := exec.Command(goTool, "build", "-o", bin, ".")
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	return bin
}

// TestBinaryRefusesOutsideVM runs the built binary only in ways that must
// do nothing: -list, and every mode without -in-vm on a host without
// /etc/holdfast/board.
func TestBinaryRefusesOutsideVM(t *testing.T) {
	bin := buildBinary(t)
	attackFlags := []string{"-store", "/nonexistent/store", "-data-disks", "/dev/null-attack-test", "-boot-disk", "/dev/null-attack-test",
		"-config-dir", "/nonexistent/config", "-sealer-pid", "2", "-worker-pid", "3", "-owner-uid", "1000",
		"-modules-dir", "/nonexistent/modules", "-mke2fs", "/nonexistent/mke2fs"}
	run := func(argv0 string, args ...string) (int, string, string) {
		var out, errb bytes.Buffer
		cmd := exec.Command(argv0, args...)
		cmd.Stdout, cmd.Stderr = &out, &errb
		cmd.Dir = t.TempDir()
		err := cmd.Run()
		var ee *exec.ExitError
		if err != nil && !errors.As(err, &ee) {
			t.Fatalf("run %s: %v", argv0, err)
		}
		return cmd.ProcessState.ExitCode(), out.String(), errb.String()
	}

	code, out, _ := run(bin, "-list")
	if code != 0 || strings.Count(out, "\n") != len(techniques()) || !strings.HasPrefix(out, "01 store") {
		t.Fatalf("-list: exit %d, output:\n%s", code, out)
	}
	for _, tc := range []struct {
		name string
		args []string
	}{
		{"no flags", nil},
		{"attack without -in-vm", attackFlags},
		{"owner child without -in-vm", append([]string{"-as-owner", "unlink-pack-as-owner"}, attackFlags...)},
		{"userns child without -in-vm", append([]string{"-userns-mount"}, attackFlags...)},
	} {
		code, out, errOut := run(bin, tc.args...)
		if code != 2 || out != "" || !strings.Contains(errOut, "refusing to run") {
			t.Errorf("%s: exit %d, stdout %q, stderr %q; want exit 2, no output, a refusal", tc.name, code, out, errOut)
		}
	}
	// Helper mode (named hf-helper-*) checks the board file and PID 1.
	helper := filepath.Join(t.TempDir(), helperPrefix+"attack-test")
	if err := os.Symlink(bin, helper); err != nil {
		t.Fatal(err)
	}
	code, out, errOut := run(helper)
	if code != 2 || out != "" || !strings.Contains(errOut, "refusing to run") {
		t.Errorf("helper mode: exit %d, stdout %q, stderr %q", code, out, errOut)
	}
	if _, err := os.Stat("/tmp/" + helperPrefix + "attack-test.result"); err == nil {
		t.Error("helper mode wrote a result outside the VM")
	}
}
