package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// The "identity" techniques play the adversary who is root and becomes,
// in turn, every uid and gid that owns anything on the box (every file
// and directory of the root file system, /dev, /run, /tmp and the mount
// points included; every process's real, effective, saved and fs ids),
// plus 65534 (nobody, which owned the locked device nodes before /dev was
// replaced) and the roles' uid:
//
//	| technique                          | as             | tries                                          |
//	|------------------------------------|----------------|------------------------------------------------|
//	| setresuid-every-identity           | uid 0 itself   | setgroups, setresgid, setresuid to each; capset |
//	|                                    |                | and ambient raise of SETUID/SETGID/SETPCAP     |
//	| chmod-chown-nodes-every-identity   | each identity  | chmod 0666 and chown to itself of every node   |
//	|                                    |                | in /dev and of every dangerous node's path     |
//	| write-block-devices-every-identity | each identity  | open O_WRONLY and O_RDWR every block device in |
//	|                                    |                | /sys/class/block (disks, partitions, loop...)  |
//	| open-tpm-serial-every-identity     | each identity  | open the TPM, serial lines, console, RTC,      |
//	|                                    |                | watchdog, /dev/mem, /dev/port                  |
//	| mknod-every-identity               | each identity  | mknod a data disk's and the TPM's numbers in   |
//	|                                    |                | /dev and /tmp, open for write                  |
//	| mount-every-identity               | each identity  | devtmpfs on /tmp, tmpfs and bind over /dev,    |
//	|                                    |                | remount /dev read-write                        |
//
// The first is what the intruder can do himself, and must fail: after
// lockdown nothing on the box holds CAP_SETUID, CAP_SETGID or CAP_SETPCAP.
// The others assume he got there anyway (say, code running in a role):
// a test image's PID 1 starts this program as each identity (the attack
// broker). An absent node counts as refused: lockdown removed it.

// maxIdentities bounds how many identities the techniques play.
const maxIdentities = 32

// ident is a uid:gid pair, with supplementary groups and a role name when
// it is a role's identity (roles_linux.go).
type ident struct {
	uid, gid int
	groups   []int
	role     string
}

func (i ident) String() string {
	s := fmt.Sprintf("%d:%d", i.uid, i.gid)
	for _, g := range i.groups {
		s += fmt.Sprintf("+%d", g)
	}
	if i.role != "" {
		s += "(" + i.role + ")"
	}
	return s
}

// identities are the ids that own something on the box, 65534 and the
// owner uid, each played as uid = gid = id, sorted; total counts them all
// when there are more than maxIdentities.
func (e *env) identities() (ids []ident, total int) {
	seen := map[int]bool{0: true, 65534: true, e.cfg.ownerUID: true}
	for _, r := range e.cfg.roles {
		seen[r.uid] = true
	}
	for _, id := range ownerIDs("/", []string{"/proc", "/sys"}, 200000) {
		seen[id] = true
	}
	for _, id := range processIDs("/proc") {
		seen[id] = true
	}
	all := make([]int, 0, len(seen))
	for id := range seen {
		all = append(all, id)
	}
	sort.Ints(all)
	for _, id := range all {
		if id < 0 || id > 65535 {
			continue // beyond what the broker plays
		}
		if len(ids) == maxIdentities {
			break
		}
		if r, ok := e.cfg.roleOf(id); ok {
			ids = append(ids, ident{r.uid, r.gid, r.groups, r.name})
			continue
		}
		ids = append(ids, ident{uid: id, gid: id})
	}
	return ids, len(all)
}

// ownerIDs lists the uids and gids owning the paths under root, skipping
// skip and not reading more than limit entries.
func ownerIDs(root string, skip []string, limit int) []int {
	seen := map[int]bool{}
	n := 0
	_ = filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		for _, s := range skip {
			if p == s {
				return filepath.SkipDir
			}
		}
		n++
		if n > limit {
			return filepath.SkipAll
		}
		var st unix.Stat_t
		if unix.Lstat(p, &st) == nil {
			seen[int(st.Uid)], seen[int(st.Gid)] = true, true
		}
		if err != nil && d != nil && d.IsDir() {
			return filepath.SkipDir
		}
		return nil
	})
	return sortedIDs(seen)
}

// processIDs lists every uid and gid (real, effective, saved, fs) of the
// processes under procDir.
func processIDs(procDir string) []int {
	seen := map[int]bool{}
	ents, _ := os.ReadDir(procDir)
	for _, en := range ents {
		if _, err := strconv.Atoi(en.Name()); err != nil {
			continue
		}
		b, err := os.ReadFile(filepath.Join(procDir, en.Name(), "status"))
		if err != nil {
			continue
		}
		for _, l := range strings.Split(string(b), "\n") {
			k, v, _ := strings.Cut(l, ":")
			if k != "Uid" && k != "Gid" {
				continue
			}
			for _, f := range strings.Fields(v) {
				if id, err := strconv.Atoi(f); err == nil {
					seen[id] = true
				}
			}
		}
	}
	return sortedIDs(seen)
}

func sortedIDs(m map[int]bool) []int {
	out := make([]int, 0, len(m))
	for id := range m {
		out = append(out, id)
	}
	sort.Ints(out)
	return out
}

// tryBecome tries to become id on a thread of its own, which is thrown
// away afterwards (the goroutine ends locked), so that a success changes
// nothing else in this process.
func tryBecome(id ident) result {
	done := make(chan result, 1)
	go func() {
		runtime.LockOSThread() // never unlocked: the thread exits with the goroutine
		var parts []string
		var ok []string
		// Setting an id to the value it has needs no capability: only a
		// change is a success.
		uid0, gid0 := unix.Getuid(), unix.Getgid()
		note := func(what string, err error, change bool) {
			switch {
			case err == nil && change:
				ok = append(ok, what)
			case err == nil:
				parts = append(parts, what+": ok, but it is already this id")
				return
			}
			parts = append(parts, what+": "+errOr(err, "ok"))
		}
		// Raw system calls: unix.Setresuid and its kin change every
		// thread of the process (syscall.AllThreadsSyscall).
		g := uint32(id.gid)
		note("setgroups", errnoErr(rawErrno(unix.SYS_SETGROUPS, 1, uintptr(unsafe.Pointer(&g)), 0)), true)
		note("setresgid", errnoErr(rawErrno(unix.SYS_SETRESGID, uintptr(id.gid), uintptr(id.gid), uintptr(id.gid))), id.gid != gid0)
		note("setresuid", errnoErr(rawErrno(unix.SYS_SETRESUID, uintptr(id.uid), uintptr(id.uid), uintptr(id.uid))), id.uid != uid0)
		hdr := unix.CapUserHeader{Version: unix.LINUX_CAPABILITY_VERSION_3}
		var data [2]unix.CapUserData
		m := uint32(1)<<unix.CAP_SETUID | uint32(1)<<unix.CAP_SETGID | uint32(1)<<unix.CAP_SETPCAP
		data[0].Permitted, data[0].Effective, data[0].Inheritable = m, m, m
		note("capset", unix.Capset(&hdr, &data[0]), true)
		note("ambient-raise", unix.Prctl(unix.PR_CAP_AMBIENT, unix.PR_CAP_AMBIENT_RAISE, unix.CAP_SETUID, 0, 0), true)
		if uid, gid := unix.Getuid(), unix.Getgid(); uid != uid0 || gid != gid0 {
			ok = append(ok, fmt.Sprintf("now uid %d gid %d", uid, gid))
		}
		if len(ok) > 0 {
			done <- succeededf("%s: %s", id, strings.Join(parts, ", "))
			return
		}
		done <- refusedf("%s: %s", id, strings.Join(parts, ", "))
	}()
	return <-done
}

// rawErrno makes a system call on this thread only.
func rawErrno(trap, a1, a2, a3 uintptr) syscall.Errno {
	_, _, e := unix.RawSyscall(trap, a1, a2, a3)
	return e
}

// setresuidEveryIdentity is the technique the intruder can run himself.
func (e *env) setresuidEveryIdentity() result {
	ids, total := e.identities()
	var rs []result
	var refusedIDs []string
	for _, id := range ids {
		r := tryBecome(id)
		if r.outcome == outRefused {
			refusedIDs = append(refusedIDs, id.String())
			continue
		}
		rs = append(rs, r)
	}
	if len(rs) > 0 {
		return combine(rs...)
	}
	return refusedf("%d of %d identities (%s): setgroups, setresgid, setresuid, capset, ambient raise all refused", len(ids), total, strings.Join(refusedIDs, " "))
}

// identityBatteries are the batteries an identity child runs
// (-identity-battery NAME).
var identityBatteries = map[string]func(*env) result{
	"chmod-chown-nodes":   (*env).chmodChownEveryNode,
	"write-block-devices": (*env).writeEveryBlockDevice,
	"open-tpm-serial":     (*env).openTPMSerial,
	"mknod":               (*env).mknodNodes,
	"mount":               (*env).mountOverDev,
	"store":               (*env).storeEveryIdentity,        // roles_linux.go
	"config":              (*env).configEveryIdentity,       // roles_linux.go
	"signal-ptrace":       (*env).signalPtraceEveryIdentity, // roles_linux.go
	"channels":            (*env).channelsEveryIdentity,     // roles_linux.go
	"net":                 (*env).netEveryIdentity,          // roles_linux.go
}

// asEveryIdentity runs a battery in a child as each identity.
func (e *env) asEveryIdentity(battery string) result {
	ids, total := e.identities()
	var rs []result
	var refusedIDs []string
	for _, id := range ids {
		args := append([]string{"-identity-battery", battery}, e.cfg.childArgs()...)
		if battery == "store" {
			args = append(args, e.t.pack, e.t.manifest)
		}
		out, errText, werr, serr := e.spawnAs(id.uid, id.gid, id.groups, time.Minute, args)
		if serr != nil {
			rs = append(rs, naf("%s: cannot be started as this identity: %v", id, serr))
			continue
		}
		var r reply
		if err := json.Unmarshal(out, &r); err != nil || r.Err != "" {
			rs = append(rs, succeededf("%s: child gave no verdict, counted as a success to be safe (%v %s; exit %v; stderr %s)", id, err, r.Err, werr, lastLine(errText)))
			continue
		}
		o, err := parseOutcome(r.Outcome)
		if err != nil {
			rs = append(rs, succeededf("%s: %v", id, err))
			continue
		}
		if o == outRefused {
			refusedIDs = append(refusedIDs, id.String())
			// One refused identity's detail is enough to show how.
			if len(refusedIDs) == 1 {
				rs = append(rs, result{o, "as " + id.String() + ": " + r.Detail})
			}
			continue
		}
		rs = append(rs, result{o, id.String() + ": " + r.Detail})
	}
	r := combine(rs...)
	if len(refusedIDs) > 0 {
		r.detail = fmt.Sprintf("refused as %d of %d identities (%s); %s", len(refusedIDs), total, strings.Join(refusedIDs, " "), r.detail)
	}
	return r
}

// identityChild is the -identity-battery mode: run one battery as this
// process's uid and print the verdict as JSON.
func identityChild(cfg *config, stdout io.Writer) int {
	e := newEnv(cfg, stdout, io.Discard)
	e.asOwner = true // never start further children
	var r reply
	if f, ok := identityBatteries[cfg.identityBattery]; ok {
		res := e.runBattery(f)
		groups, _ := unix.Getgroups()
		r.Outcome, r.Detail = res.outcome.String(), fmt.Sprintf("uid %d gid %d groups %v: %s", os.Getuid(), os.Getgid(), groups, res.detail)
	} else {
		r.Err = fmt.Sprintf("no battery %q", cfg.identityBattery)
	}
	if err := json.NewEncoder(stdout).Encode(r); err != nil {
		return 1
	}
	return 0
}

// runBattery runs a battery; a panic counts as a success, to be safe.
func (e *env) runBattery(f func(*env) result) (r result) {
	defer func() {
		if p := recover(); p != nil {
			r = succeededf("battery crashed, counted as a success to be safe: %v", p)
		}
	}()
	return f(e)
}

// denied reports a refusal for the identity techniques: permission
// (EPERM, EACCES), a read-only file system or an absent node (what
// lockdown removed).
func denied(err error) bool {
	return errors.Is(err, unix.EPERM) || errors.Is(err, unix.EACCES) || errors.Is(err, unix.EROFS) || errors.Is(err, unix.ENOENT)
}

// tally counts refusals by errno for a short detail.
type tally map[string]int

func (t tally) add(err error) {
	var en unix.Errno
	if errors.As(err, &en) {
		t[unix.ErrnoName(en)]++
		return
	}
	t[err.Error()]++
}

func (t tally) String() string {
	keys := make([]string, 0, len(t))
	for k := range t {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var parts []string
	for _, k := range keys {
		parts = append(parts, fmt.Sprintf("%s x%d", k, t[k]))
	}
	return strings.Join(parts, ", ")
}

// dangerousNodes are the paths of the nodes that must stay out of reach,
// present or not: the data and boot disks and their partitions, every
// block device the kernel knows, the TPM, serial lines, console, RTC,
// watchdog and raw memory.
func (e *env) dangerousNodes() []string {
	set := map[string]bool{}
	for _, d := range append(append([]string{}, e.cfg.dataDisks...), e.cfg.bootDisk) {
		set[d] = true
		for _, p := range partitions(d) {
			set[p] = true
		}
	}
	for _, b := range blockDevices() {
		set["/dev/"+b] = true
	}
	for _, n := range []string{"tpm0", "tpmrm0", "ttyS0", "ttyS1", "ttyS2", "ttyS3", "ttyAMA0", "hvc0", "console", "rtc0", "watchdog", "watchdog0", "mem", "kmem", "port", "nvram", "kmsg"} {
		set["/dev/"+n] = true
	}
	out := make([]string, 0, len(set))
	for p := range set {
		out = append(out, p)
	}
	sort.Strings(out)
	return out
}

// blockDevices are the kernel names in /sys/class/block.
func blockDevices() []string {
	ents, _ := os.ReadDir("/sys/class/block")
	out := make([]string, 0, len(ents))
	for _, en := range ents {
		out = append(out, en.Name())
	}
	return out
}

// devEntries are every device node now under /dev.
func devEntries() []string {
	var out []string
	_ = filepath.WalkDir("/dev", func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return nil
		}
		if t := d.Type(); t&fs.ModeDevice != 0 {
			out = append(out, p)
		}
		return nil
	})
	return out
}

func (e *env) chmodChownEveryNode() result {
	uid, gid := os.Getuid(), os.Getgid()
	set := map[string]bool{}
	for _, p := range append(devEntries(), e.dangerousNodes()...) {
		set[p] = true
	}
	var rs []result
	t := tally{}
	for p := range set {
		var before unix.Stat_t
		serr := unix.Lstat(p, &before)
		cerr := unix.Chmod(p, 0o666)
		oerr := unix.Chown(p, uid, gid)
		if !denied(cerr) || !denied(oerr) {
			if serr == nil {
				_ = unix.Chmod(p, uint32(before.Mode&0o7777))
				_ = unix.Chown(p, int(before.Uid), int(before.Gid))
			}
			rs = append(rs, succeededf("%s: chmod 0666: %s; chown %d:%d: %s", p, errOr(cerr, "ok"), uid, gid, errOr(oerr, "ok")))
			continue
		}
		t.add(cerr)
		t.add(oerr)
	}
	if len(rs) > 0 {
		return combine(rs...)
	}
	return refusedf("chmod and chown of %d node paths: %s", len(set), t)
}

func (e *env) writeEveryBlockDevice() result {
	var rs []result
	t := tally{}
	devs := blockDevices()
	for _, b := range devs {
		p := "/dev/" + b
		for _, fl := range []int{unix.O_WRONLY, unix.O_RDWR} {
			fd, err := unix.Open(p, fl|unix.O_CLOEXEC, 0)
			if err == nil {
				unix.Close(fd)
				rs = append(rs, succeededf("OPENED %s for write", p))
				continue
			}
			if !denied(err) {
				rs = append(rs, succeededf("open %s for write: got past the permission check (%v)", p, err))
				continue
			}
			t.add(err)
		}
	}
	if len(devs) == 0 {
		return naf("no block device in /sys/class/block")
	}
	if len(rs) > 0 {
		return combine(rs...)
	}
	return refusedf("open O_WRONLY and O_RDWR of %d block devices (%s): %s", len(devs), strings.Join(devs, " "), t)
}

func (e *env) openTPMSerial() result {
	var rs []result
	t := tally{}
	var tried []string
	for _, n := range []string{"tpm0", "tpmrm0", "ttyS0", "ttyS1", "ttyAMA0", "hvc0", "console", "rtc0", "watchdog", "watchdog0", "mem", "port", "kmsg"} {
		p := "/dev/" + n
		tried = append(tried, n)
		for _, fl := range []int{unix.O_RDWR, unix.O_RDONLY} {
			fd, err := unix.Open(p, fl|unix.O_CLOEXEC|unix.O_NOCTTY|unix.O_NONBLOCK, 0)
			if err == nil {
				unix.Close(fd)
				rs = append(rs, succeededf("OPENED %s", p))
				break
			}
			if !denied(err) {
				rs = append(rs, succeededf("open %s: got past the permission check (%v)", p, err))
				break
			}
			t.add(err)
		}
	}
	if len(rs) > 0 {
		return combine(rs...)
	}
	return refusedf("open read-write and read-only of %s: %s", strings.Join(tried, " "), t)
}

// sysDev reads the major:minor of a kernel device from sysfs.
func sysDev(class, name string) (uint32, uint32, error) {
	b, err := os.ReadFile(filepath.Join("/sys/class", class, name, "dev"))
	if err != nil {
		return 0, 0, err
	}
	maj, min, ok := strings.Cut(strings.TrimSpace(string(b)), ":")
	a, err1 := strconv.ParseUint(maj, 10, 32)
	c, err2 := strconv.ParseUint(min, 10, 32)
	if !ok || err1 != nil || err2 != nil {
		return 0, 0, fmt.Errorf("%s/%s: bad dev %q", class, name, b)
	}
	return uint32(a), uint32(c), nil
}

func (e *env) mknodNodes() result {
	type target struct {
		class, name string
		mode        uint32
	}
	var rs []result
	t := tally{}
	n := 0
	for _, tg := range []target{{"block", filepath.Base(e.cfg.dataDisks[0]), unix.S_IFBLK}, {"block", filepath.Base(e.cfg.bootDisk), unix.S_IFBLK}, {"tpmrm", "tpmrm0", unix.S_IFCHR}, {"tty", "ttyS0", unix.S_IFCHR}} {
		maj, min, err := sysDev(tg.class, tg.name)
		if err != nil {
			continue
		}
		for _, dir := range []string{"/dev", "/tmp"} {
			p := filepath.Join(dir, fmt.Sprintf("hf-attack-%s-%d", tg.name, os.Getuid()))
			_ = unix.Unlink(p)
			n++
			err := unix.Mknod(p, tg.mode|0o666, int(unix.Mkdev(maj, min)))
			if err == nil {
				fd, oerr := unix.Open(p, unix.O_RDWR|unix.O_CLOEXEC|unix.O_NOCTTY|unix.O_NONBLOCK, 0)
				if oerr == nil {
					unix.Close(fd)
				}
				_ = unix.Unlink(p)
				rs = append(rs, succeededf("mknod %s %d:%d returned success; open read-write: %s", p, maj, min, errOr(oerr, "ok")))
				continue
			}
			if !denied(err) {
				rs = append(rs, succeededf("mknod %s: got past the permission check (%v)", p, err))
				continue
			}
			t.add(err)
		}
	}
	if n == 0 {
		return naf("no device numbers readable in /sys/class")
	}
	if len(rs) > 0 {
		return combine(rs...)
	}
	return refusedf("%d mknod attempts in /dev and /tmp (a data disk, the boot disk, tpmrm0, ttyS0): %s", n, t)
}

func (e *env) mountOverDev() result {
	undo := func(p string) { _ = unix.Unmount(p, unix.MNT_DETACH) }
	attempts := []struct {
		what                string
		src, target, fstype string
		flags               uintptr
		data                string
	}{
		{"devtmpfs on /tmp", "devtmpfs", "/tmp", "devtmpfs", unix.MS_NOSUID, ""},
		{"tmpfs over /dev", "tmpfs", "/dev", "tmpfs", 0, ""},
		{"bind /tmp over /dev", "/tmp", "/dev", "", unix.MS_BIND, ""},
		{"remount /dev read-write", "", "/dev", "", unix.MS_REMOUNT, ""},
		{"bind-remount /dev read-write", "", "/dev", "", unix.MS_REMOUNT | unix.MS_BIND, ""},
	}
	var rs []result
	for _, a := range attempts {
		err := unix.Mount(a.src, a.target, a.fstype, a.flags, a.data)
		switch {
		case err == nil && a.flags&unix.MS_REMOUNT == 0:
			undo(a.target)
		case err == nil:
			_ = unix.Mount("", a.target, "", a.flags|unix.MS_RDONLY, "")
		}
		rs = append(rs, gate(a.what, err))
	}
	return combine(rs...)
}
