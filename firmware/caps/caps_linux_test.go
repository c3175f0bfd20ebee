package caps

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

const childEnv = "HOLDFAST_CAPS_TEST_CHILD"

func TestMain(m *testing.M) {
	switch os.Getenv(childEnv) {
	case "drop":
		env := []string{childEnv + "=report"}
		for _, kv := range os.Environ() {
			if !strings.HasPrefix(kv, childEnv+"=") {
				env = append(env, kv)
			}
		}
		err := DropAndExec([]int{unix.CAP_LINUX_IMMUTABLE, unix.CAP_SYS_ADMIN}, "/proc/self/exe", os.Args, env)
		fmt.Fprintln(os.Stderr, "DropAndExec:", err)
		os.Exit(3)
	case "become":
		env := []string{childEnv + "=report"}
		for _, kv := range os.Environ() {
			if !strings.HasPrefix(kv, childEnv+"=") {
				env = append(env, kv)
			}
		}
		err := BecomeAndExec(65534, 65534, []int{unix.CAP_LINUX_IMMUTABLE}, "/proc/self/exe", os.Args, env)
		fmt.Fprintln(os.Stderr, "BecomeAndExec:", err)
		os.Exit(3)
	case "become-groups":
		env := []string{childEnv + "=report-groups"}
		for _, kv := range os.Environ() {
			if !strings.HasPrefix(kv, childEnv+"=") {
				env = append(env, kv)
			}
		}
		err := BecomeIdentityAndExec(Identity{UID: 1001, GID: 1001, Groups: []int{1000}}, []int{unix.CAP_LINUX_IMMUTABLE, unix.CAP_FOWNER}, "/proc/self/exe", os.Args, env)
		fmt.Fprintln(os.Stderr, "BecomeIdentityAndExec:", err)
		os.Exit(3)
	case "report-groups":
		s, err := Read(0)
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(4)
		}
		groups, err := unix.Getgroups()
		if err != nil {
			os.Exit(5)
		}
		old := unix.Umask(0)
		fmt.Printf("uid=%d gid=%d groups=%v bnd=%x eff=%x umask=%03o\n", os.Getuid(), os.Getgid(), groups, s.Bounding, s.Effective, old)
		os.Exit(0)
	case "romounts":
		// In a mount namespace of its own: a tmpfs below the read-only
		// directory, then everything read-only but $RO_WRITABLE.
		ro, w := os.Getenv("RO_OTHER"), os.Getenv("RO_WRITABLE")
		sub := ro + "/sub"
		if err := unix.Mount("tmpfs", sub, "tmpfs", 0, ""); err != nil {
			fmt.Fprintln(os.Stderr, "tmpfs:", err)
			os.Exit(4)
		}
		if err := ReadOnlyMounts(w); err != nil {
			fmt.Fprintln(os.Stderr, "ReadOnlyMounts:", err)
			os.Exit(3)
		}
		name := func(err error) string {
			if err == nil {
				return "ok"
			}
			var e unix.Errno
			if errors.As(err, &e) {
				return unix.ErrnoName(e)
			}
			return err.Error()
		}
		try := func(p string) string {
			return name(os.WriteFile(p, []byte("x"), 0o600))
		}
		f, err := os.Open(ro + "/file")
		if err != nil {
			os.Exit(6)
		}
		flags := name(unix.IoctlSetPointerInt(int(f.Fd()), unix.FS_IOC_SETFLAGS, 0x10)) // FS_IMMUTABLE_FL
		fmt.Printf("writable=%s other=%s tmpfs=%s root=%s setflags=%s\n", try(w+"/new"), try(ro+"/new"), try(sub+"/new"), try("/holdfast-caps-test"), flags)
		os.Exit(0)
	case "limit":
		// Busy threads first, so that the limit must reach threads other
		// than the caller's.
		stop := make(chan struct{})
		for i := 0; i < 4; i++ {
			go func() {
				runtime.LockOSThread()
				<-stop
			}()
		}
		time.Sleep(50 * time.Millisecond)
		err := LimitProcess([]int{unix.CAP_SETUID, unix.CAP_SETGID}, []int{unix.CAP_SETUID, unix.CAP_SYS_BOOT})
		if err != nil {
			fmt.Fprintln(os.Stderr, "LimitProcess:", err)
			os.Exit(3)
		}
		tasks, _ := os.ReadDir("/proc/self/task")
		seen := map[string]bool{}
		for _, t := range tasks {
			b, err := os.ReadFile("/proc/self/task/" + t.Name() + "/status")
			if err != nil {
				os.Exit(4)
			}
			var line []string
			for _, l := range strings.Split(string(b), "\n") {
				if strings.HasPrefix(l, "Cap") {
					line = append(line, l)
				}
			}
			seen[strings.Join(line, " ")] = true
		}
		if len(tasks) < 5 {
			fmt.Fprintln(os.Stderr, "only", len(tasks), "threads")
			os.Exit(6)
		}
		for l := range seen {
			fmt.Println(l)
		}
		// A uid-0 program started now holds at most the bounding set.
		out, err := exec.Command("grep", "-E", "CapPrm|CapBnd", "/proc/self/status").Output()
		if err != nil {
			os.Exit(5)
		}
		fmt.Print(string(out))
		close(stop)
		os.Exit(0)
	case "limit-empty":
		// PID 1 after lockdown: an empty bounding set, SETUID and SETGID
		// kept in the permitted set only. It starts one child as
		// 65534:65534 and one as 0:0 with exec.Cmd's Credential (the
		// forked child changes ids with the parent's permitted set);
		// each reports what it holds and what it can regain.
		if err := LimitProcess(nil, []int{unix.CAP_SETUID, unix.CAP_SETGID}); err != nil {
			fmt.Fprintln(os.Stderr, "LimitProcess:", err)
			os.Exit(3)
		}
		for _, id := range []uint32{65534, 0} {
			cmd := exec.Command("/proc/self/exe", "-test.run=^$")
			cmd.Env = append(os.Environ(), childEnv+"=regain")
			cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: id, Gid: id, Groups: []uint32{}}}
			out, err := cmd.CombinedOutput()
			if err != nil {
				fmt.Fprintf(os.Stderr, "child as %d: %v: %s\n", id, err, out)
				os.Exit(5)
			}
			fmt.Print(string(out))
		}
		os.Exit(0)
	case "regain":
		// unix.Setresuid and its kin apply to every thread; here they
		// must all fail.
		s, err := Read(0)
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(4)
		}
		name := func(err error) string {
			if err == nil {
				return "ok"
			}
			return unix.ErrnoName(err.(unix.Errno))
		}
		setuid := unix.Setresuid(1000, 1000, 1000)
		setgid := unix.Setresgid(1000, 1000, 1000)
		groups := unix.Setgroups([]int{0})
		ambient := unix.Prctl(unix.PR_CAP_AMBIENT, unix.PR_CAP_AMBIENT_RAISE, unix.CAP_SETUID, 0, 0)
		hdr := unix.CapUserHeader{Version: unix.LINUX_CAPABILITY_VERSION_3}
		var data [2]unix.CapUserData
		m := uint32(1)<<unix.CAP_SETUID | uint32(1)<<unix.CAP_SETGID | uint32(1)<<unix.CAP_SETPCAP
		data[0].Permitted, data[0].Effective = m, m
		capset := unix.Capset(&hdr, &data[0])
		drop := unix.Prctl(unix.PR_CAPBSET_DROP, unix.CAP_CHOWN, 0, 0, 0)
		fmt.Printf("uid=%d gid=%d bnd=%x prm=%x eff=%x amb=%x setresuid=%s setresgid=%s setgroups=%s ambient=%s capset=%s bset_drop=%s\n",
			os.Getuid(), os.Getgid(), s.Bounding, s.Permitted, s.Effective, s.Ambient,
			name(setuid), name(setgid), name(groups), name(ambient), name(capset), name(drop))
		os.Exit(0)
	case "report":
		s, err := Read(0)
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(4)
		}
		fmt.Printf("%d %x %x %x %x\n", os.Getuid(), s.Bounding, s.Effective, s.Permitted, s.Inheritable)
		// A child of the child inherits the reduced bounding set.
		out, err := exec.Command("grep", "CapBnd", "/proc/self/status").Output()
		if err != nil {
			os.Exit(5)
		}
		fmt.Print(string(out))
		os.Exit(0)
	}
	os.Exit(m.Run())
}

func TestDropAndExec(t *testing.T) {
	if os.Getuid() != 0 {
		t.Fatal("this test must run as root: it proves root loses capabilities")
	}
	before, err := Read(0)
	if err != nil {
		t.Fatal(err)
	}
	if !before.Bounding.Has(unix.CAP_LINUX_IMMUTABLE) {
		t.Fatal("test process lacks CAP_LINUX_IMMUTABLE to start with; cannot show it being dropped")
	}
	cmd := exec.Command("/proc/self/exe", "-test.run=^$")
	cmd.Env = append(os.Environ(), childEnv+"=drop")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("child: %v\n%s", err, out)
	}
	lines := strings.Split(strings.TrimSpace(string(out)), "\n")
	if len(lines) != 2 {
		t.Fatalf("child output: %q", out)
	}
	var uid int
	var bnd, eff, prm, inh Set
	if _, err := fmt.Sscanf(lines[0], "%d %x %x %x %x", &uid, &bnd, &eff, &prm, &inh); err != nil {
		t.Fatalf("parse %q: %v", lines[0], err)
	}
	if uid != 0 {
		t.Fatalf("child uid %d, want 0", uid)
	}
	for _, c := range []int{unix.CAP_LINUX_IMMUTABLE, unix.CAP_SYS_ADMIN} {
		for name, set := range map[string]Set{"bounding": bnd, "effective": eff, "permitted": prm, "inheritable": inh} {
			if set.Has(c) {
				t.Errorf("capability %d still in the child's %s set", c, name)
			}
		}
	}
	if !eff.Has(unix.CAP_CHOWN) {
		t.Errorf("child lost CAP_CHOWN, which was not dropped (eff=%x)", eff)
	}
	var grand Set
	if _, err := fmt.Sscanf(strings.TrimSpace(strings.TrimPrefix(lines[1], "CapBnd:")), "%x", &grand); err != nil {
		t.Fatalf("parse %q: %v", lines[1], err)
	}
	if grand.Has(unix.CAP_LINUX_IMMUTABLE) {
		t.Errorf("grandchild regained CAP_LINUX_IMMUTABLE in its bounding set")
	}
}

func TestSetHas(t *testing.T) {
	for _, tc := range []struct {
		set  Set
		cap  int
		want bool
	}{
		{0, 0, false}, {1, 0, true}, {1 << 9, unix.CAP_LINUX_IMMUTABLE, true}, {1 << 9, unix.CAP_SYS_ADMIN, false},
		{0x1ffffffffff, 40, true},
	} {
		if got := tc.set.Has(tc.cap); got != tc.want {
			t.Errorf("Set(%x).Has(%d) = %v, want %v", tc.set, tc.cap, got, tc.want)
		}
	}
}

func TestBecomeAndExec(t *testing.T) {
	if os.Getuid() != 0 {
		t.Fatal("this test must run as root")
	}
	cmd := exec.Command("/proc/self/exe", "-test.run=^$")
	cmd.Env = append(os.Environ(), childEnv+"=become")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("child: %v\n%s", err, out)
	}
	li := fmt.Sprintf("%x", uint64(1)<<unix.CAP_LINUX_IMMUTABLE)
	// uid, bounding, effective, permitted, inheritable; then the
	// grandchild's bounding set.
	want := fmt.Sprintf("65534 %s %s %s %s\nCapBnd:\t%016s\n", li, li, li, li, li)
	if string(out) != want {
		t.Fatalf("child reports %q, want %q", out, want)
	}
}

func TestLimitProcess(t *testing.T) {
	if os.Getuid() != 0 {
		t.Fatal("this test must run as root")
	}
	cmd := exec.Command("/proc/self/exe", "-test.run=^$")
	cmd.Env = append(os.Environ(), childEnv+"=limit")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("child: %v\n%s", err, out)
	}
	bnd := uint64(1)<<unix.CAP_SETUID | uint64(1)<<unix.CAP_SETGID
	prm := uint64(1)<<unix.CAP_SETUID | uint64(1)<<unix.CAP_SYS_BOOT
	// Every thread the same; then the uid-0 grandchild: permitted is the
	// bounding set (it lost CAP_SYS_BOOT, which only the parent kept).
	want := fmt.Sprintf("CapInh:\t%016x CapPrm:\t%016x CapEff:\t%016x CapBnd:\t%016x CapAmb:\t%016x\nCapPrm:\t%016x\nCapBnd:\t%016x\n",
		0, prm, prm, bnd, 0, bnd, bnd)
	if string(out) != want {
		t.Fatalf("child reports\n%s\nwant\n%s", out, want)
	}
}

// TestCredentialUnderEmptyBounding is the lockdown design: PID 1 empties
// its bounding set and keeps CAP_SETUID and CAP_SETGID only in its
// permitted set. A child it starts with exec.Cmd's Credential runs as the
// uid asked for, but holds no capability, as uid 65534 or as uid 0, and
// cannot change its uid, its gid, its groups, or raise or regain any
// capability.
func TestCredentialUnderEmptyBounding(t *testing.T) {
	if os.Getuid() != 0 {
		t.Fatal("this test must run as root")
	}
	cmd := exec.Command("/proc/self/exe", "-test.run=^$")
	cmd.Env = append(os.Environ(), childEnv+"=limit-empty")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("child: %v\n%s", err, out)
	}
	refused := "bnd=0 prm=0 eff=0 amb=0 setresuid=EPERM setresgid=EPERM setgroups=EPERM ambient=EPERM capset=EPERM bset_drop=EPERM"
	want := "uid=65534 gid=65534 " + refused + "\nuid=0 gid=0 " + refused + "\n"
	if string(out) != want {
		t.Fatalf("children report\n%s\nwant\n%s", out, want)
	}
}

// TestBecomeIdentityAndExec: a role that reads through another role's
// group gets exactly its uid, gid, that group and its capabilities.
func TestBecomeIdentityAndExec(t *testing.T) {
	if os.Getuid() != 0 {
		t.Fatal("this test must run as root")
	}
	cmd := exec.Command("/proc/self/exe", "-test.run=^$")
	cmd.Env = append(os.Environ(), childEnv+"=become-groups")
	// Whatever umask the parent has, the role gets RoleUmask.
	old := unix.Umask(0)
	defer unix.Umask(old)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("child: %v\n%s", err, out)
	}
	m := uint64(1)<<unix.CAP_LINUX_IMMUTABLE | uint64(1)<<unix.CAP_FOWNER
	want := fmt.Sprintf("uid=1001 gid=1001 groups=[1000] bnd=%x eff=%x umask=027\n", m, m)
	if string(out) != want {
		t.Fatalf("child reports %q, want %q", out, want)
	}
}

// TestReadOnlyMounts: in a mount namespace of its own, after
// ReadOnlyMounts(w) only w takes writes; every other mount (the root file
// system, a tmpfs below) refuses them, and inode flags with them, while
// the caller's namespace is untouched.
func TestReadOnlyMounts(t *testing.T) {
	if os.Getuid() != 0 {
		t.Fatal("this test must run as root")
	}
	base := t.TempDir()
	w, ro := base+"/writable", base+"/other"
	for _, d := range []string{w, ro, ro + "/sub"} {
		if err := os.Mkdir(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(ro+"/file", []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("/proc/self/exe", "-test.run=^$")
	cmd.Env = append(os.Environ(), childEnv+"=romounts", "RO_OTHER="+ro, "RO_WRITABLE="+w)
	cmd.SysProcAttr = &syscall.SysProcAttr{Cloneflags: syscall.CLONE_NEWNS}
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("child: %v\n%s", err, out)
	}
	want := "writable=ok other=EROFS tmpfs=EROFS root=EROFS setflags=EROFS\n"
	if string(out) != want {
		t.Fatalf("child reports %q, want %q", out, want)
	}
	if err := os.WriteFile(ro+"/after", []byte("x"), 0o600); err != nil {
		t.Fatalf("the caller's namespace changed: %v", err)
	}
}
