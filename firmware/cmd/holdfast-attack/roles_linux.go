package main

import (
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// The role identities (issue 16): every role runs under a uid and gid of
// its own (firmware/roles roles_linux.go), the sealer and the export
// also in the worker's group, through which they read the store. PID 1
// names them with -roles; the identity techniques play each of them with
// its groups, besides every other identity that owns something, and run
// three more batteries as every identity:
//
//	| technique                     | as            | tries                                              |
//	|-------------------------------|---------------|----------------------------------------------------|
//	| store-every-identity          | each identity | on every data disk's store (primary and mirrors):  |
//	|                               |               | unlink, truncate, open for write, clear the flags, |
//	|                               |               | chmod a sealed pack and manifest, rename the       |
//	|                               |               | manifest; create a file in tmp/ and flock the      |
//	|                               |               | writer's lock (all but the owner)                  |
//	| config-every-identity         | each identity | unlink, truncate, overwrite the sealed files of the|
//	|                               |               | config partition                                   |
//	| signal-ptrace-every-identity  | each identity | kill(pid, 0) (the permission check of every signal)|
//	|                               |               | and PTRACE_ATTACH of PID 1, the sealer, the worker |
//	|                               |               | and the export, each one not of its own uid        |
//	| channels-every-identity       | each identity | the control channel and the sealer sockets: reopen |
//	|                               |               | /proc/PID/fd/* and pidfd_getfd fds 0-15 of PID 1,  |
//	|                               |               | the sealer, the worker and the export not of its   |
//	|                               |               | uid; connect to every named unix socket            |
//	| net-every-identity            | each identity | raw and packet sockets; bind TCP and UDP 22, 80,   |
//	|                               |               | 443, 873; add an address and a route, set lo down  |
//	|                               |               | (netlink); open ip_unprivileged_port_start and     |
//	|                               |               | ip_forward for writing                             |
//
// So the worker's uid may not signal or trace the sealer or the export,
// the export's uid may not write the mirror disk's store, no uid but
// the owner may write any store at all, no uid but the worker's reaches
// the control channel, and none makes the box listen on a privileged
// port or reroutes it. The identities hold no capability (the broker's
// children inherit PID 1's empty bounding set): the DHCP client's
// CAP_NET_ADMIN and CAP_NET_RAW exist only during its one exchange at
// boot, before the worker starts, and no uid can get them afterwards.

// roleIdent is one role's identity as -roles gives it: NAME=UID:GID[:GROUP...].
type roleIdent struct {
	name   string
	uid    int
	gid    int
	groups []int
}

// parseRoles parses "worker=1000:1000,sealer=1001:1001:1000,...".
func parseRoles(s string) ([]roleIdent, error) {
	var out []roleIdent
	for _, f := range strings.Split(s, ",") {
		if f = strings.TrimSpace(f); f == "" {
			continue
		}
		name, ids, ok := strings.Cut(f, "=")
		parts := strings.Split(ids, ":")
		if !ok || name == "" || len(parts) < 2 || len(parts) > 10 {
			return nil, fmt.Errorf("role %q: want NAME=UID:GID[:GROUP...]", f)
		}
		var n []int
		for _, p := range parts {
			v, err := strconv.Atoi(p)
			if err != nil || v < 0 || v > 65535 {
				return nil, fmt.Errorf("role %q: id %q", f, p)
			}
			n = append(n, v)
		}
		out = append(out, roleIdent{name: name, uid: n[0], gid: n[1], groups: n[2:]})
	}
	return out, nil
}

// roleOf returns the role whose uid is uid, if any.
func (c *config) roleOf(uid int) (roleIdent, bool) {
	for _, r := range c.roles {
		if r.uid == uid {
			return r, true
		}
	}
	return roleIdent{}, false
}

// storeEveryIdentity is the store battery: the sealed pack and manifest
// named after the flags (relative to a store), on every store.
func (e *env) storeEveryIdentity() result {
	if len(e.cfg.rest) < 2 {
		return succeededf("store battery without a pack and a manifest to attack, counted as a success to be safe")
	}
	pack, manifest := e.cfg.rest[0], e.cfg.rest[1]
	me := os.Getuid()
	t := tally{}
	var won []string
	try := func(what string, err error) {
		if err == nil {
			won = append(won, what)
			return
		}
		t.add(err)
	}
	for _, root := range append([]string{e.cfg.store}, e.cfg.otherStores...) {
		for _, rel := range []string{pack, manifest} {
			p := filepath.Join(root, rel)
			try("unlink "+p, unix.Unlink(p))
			try("truncate "+p, unix.Truncate(p, 0))
			if fd, err := unix.Open(p, unix.O_WRONLY|attackOpen, 0); err == nil {
				unix.Close(fd)
				try("open for write "+p, nil)
			} else {
				t.add(err)
			}
			if fd, err := unix.Open(p, unix.O_RDONLY|attackOpen, 0); err == nil {
				try("clear the flags of "+p, unix.IoctlSetPointerInt(fd, unix.FS_IOC_SETFLAGS, 0))
				unix.Close(fd)
			} else {
				t.add(err)
			}
			try("chmod "+p, unix.Chmod(p, 0o666))
		}
		try("rename the manifest", unix.Rename(filepath.Join(root, manifest), filepath.Join(root, "tmp", "stolen")))
		if me != e.cfg.ownerUID {
			// Only the owner may add to a store; anyone else who could
			// create a file could fill the disk or plant junk.
			p := filepath.Join(root, "tmp", "attack-"+strconv.Itoa(me))
			if fd, err := unix.Open(p, unix.O_WRONLY|unix.O_CREAT|unix.O_EXCL|attackOpen, 0o600); err == nil {
				unix.Close(fd)
				try("create "+p, nil)
			} else {
				t.add(err)
			}
			// Whoever holds the writer's lock stops every pull.
			lock := filepath.Join(root, "lock")
			if fd, err := unix.Open(lock, unix.O_RDONLY|attackOpen, 0); err == nil {
				try("flock "+lock, unix.Flock(fd, unix.LOCK_EX|unix.LOCK_NB))
				unix.Close(fd)
			} else {
				t.add(err)
			}
		}
	}
	if len(won) > 0 {
		return succeededf("stores %s: %s", strings.Join(append([]string{e.cfg.store}, e.cfg.otherStores...), " "), strings.Join(won, "; "))
	}
	return refusedf("%d stores, sealed pack and manifest: %s", 1+len(e.cfg.otherStores), t)
}

// configEveryIdentity is the config battery.
func (e *env) configEveryIdentity() result {
	return combine(e.configDelete(), e.configTruncate(), e.configOverwrite())
}

// signalPtraceEveryIdentity is the process battery: every long-running
// process of the box not of this uid.
func (e *env) signalPtraceEveryIdentity() result {
	me := os.Getuid()
	targets := []proc{e.pid1(), e.sealer(), e.worker()}
	if e.cfg.exportPID > 1 {
		targets = append(targets, proc{e.cfg.exportPID, "export"})
	}
	var rs []result
	var skipped []string
	for _, p := range targets {
		if uid, err := procUID(p.pid); err != nil || uid == me {
			// A process of one's own uid is one's own: the intruder in
			// the worker is the worker.
			skipped = append(skipped, fmt.Sprintf("%s (uid %d, %v)", p.who, uid, err))
			continue
		}
		if r, ok := alive(p); !ok {
			rs = append(rs, r)
			continue
		}
		rs = append(rs, gate(fmt.Sprintf("kill(%s %d, 0)", p.who, p.pid), unix.Kill(p.pid, 0)), ptraceResult(p))
	}
	if len(rs) == 0 {
		return naf("no process of another uid (skipped %s)", strings.Join(skipped, ", "))
	}
	r := combine(rs...)
	if len(skipped) > 0 {
		r.detail += "; its own: " + strings.Join(skipped, ", ")
	}
	return r
}

// procUID is the real uid of pid.
func procUID(pid int) (int, error) {
	st, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/status")
	if err != nil {
		return -1, err
	}
	for _, l := range strings.Split(string(st), "\n") {
		if v, ok := strings.CutPrefix(l, "Uid:"); ok {
			f := strings.Fields(v)
			if len(f) > 0 {
				return strconv.Atoi(f[0])
			}
		}
	}
	return -1, fmt.Errorf("no Uid line for %d", pid)
}

// channelsEveryIdentity is the channel battery (issue 16): an identity
// that is not the worker must reach neither the control channel between
// PID 1 and the worker nor a sealer's socket. Both are socketpairs,
// named nowhere in the file system, so the only ways in are the
// descriptors of the processes that hold them: /proc/PID/fd/N opened
// again, and pidfd_getfd. Every socket with a name (a path or an
// abstract name in /proc/net/unix) is tried too: the box must have none
// that answers.
func (e *env) channelsEveryIdentity() result {
	me := os.Getuid()
	targets := []proc{e.pid1(), e.sealer(), e.worker()}
	if e.cfg.exportPID > 1 {
		targets = append(targets, proc{e.cfg.exportPID, "export"})
	}
	var rs []result
	var skipped []string
	for _, p := range targets {
		if uid, err := procUID(p.pid); err != nil || uid == me {
			skipped = append(skipped, fmt.Sprintf("%s (uid %d, %v)", p.who, uid, err))
			continue
		}
		if r, ok := alive(p); !ok {
			rs = append(rs, r)
			continue
		}
		// Reopen its descriptors through /proc.
		dir := "/proc/" + strconv.Itoa(p.pid) + "/fd"
		ents, err := os.ReadDir(dir)
		if err != nil {
			rs = append(rs, gate("list "+dir, err))
		}
		for _, en := range ents {
			fd, err := unix.Open(filepath.Join(dir, en.Name()), unix.O_RDWR|unix.O_CLOEXEC|unix.O_NONBLOCK, 0)
			if err == nil {
				unix.Close(fd)
			}
			rs = append(rs, gate("reopen "+filepath.Join(dir, en.Name()), err))
		}
		// pidfd_getfd of the first descriptors.
		pidfd, err := unix.PidfdOpen(p.pid, 0)
		if err != nil {
			rs = append(rs, refusedf("pidfd_open %s: %v", p.who, err))
			continue
		}
		t := tally{}
		for n := 0; n < 16; n++ {
			fd, err := unix.PidfdGetfd(pidfd, n, 0)
			if err == nil {
				unix.Close(fd)
				rs = append(rs, succeededf("pidfd_getfd took fd %d of %s", n, p.who))
				continue
			}
			if errors.Is(err, unix.EBADF) {
				continue // no such descriptor: the permission check came first for the others
			}
			if !isPermErr(err) {
				rs = append(rs, succeededf("pidfd_getfd fd %d of %s got past the permission check: %v", n, p.who, err))
				continue
			}
			t.add(err)
		}
		unix.Close(pidfd)
		rs = append(rs, refusedf("pidfd_getfd of %s's fds 0-15: %s", p.who, t))
	}
	// Every named unix socket.
	names := unixSocketNames("/proc/net/unix")
	for _, n := range names {
		fd, err := unix.Socket(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
		if err != nil {
			continue
		}
		cerr := unix.Connect(fd, &unix.SockaddrUnix{Name: n})
		unix.Close(fd)
		switch {
		case cerr == nil:
			rs = append(rs, succeededf("connected to the unix socket %q", n))
		default:
			rs = append(rs, refusedf("connect %q: %v", n, cerr))
		}
	}
	if len(rs) == 0 {
		return naf("no process of another uid and no named socket (own: %s)", strings.Join(skipped, ", "))
	}
	r := combine(rs...)
	r.detail = fmt.Sprintf("%d named unix sockets; %s", len(names), r.detail)
	if len(skipped) > 0 {
		r.detail += "; its own: " + strings.Join(skipped, ", ")
	}
	return r
}

// unixSocketNames lists the paths and abstract names ("@..." as "\x00...")
// of the unix sockets in a /proc/net/unix table.
func unixSocketNames(table string) []string {
	b, _ := os.ReadFile(table)
	var out []string
	for i, l := range strings.Split(string(b), "\n") {
		f := strings.Fields(l)
		if i == 0 || len(f) < 8 {
			continue
		}
		n := f[7]
		if strings.HasPrefix(n, "@") {
			n = "\x00" + n[1:]
		}
		out = append(out, n)
	}
	return out
}

// netEveryIdentity is the network battery (issue 16): what an intruder in
// a role that touches the network (the DHCP client, the export, the
// worker) could do to make the box listen or reroute it. Raw and packet
// sockets, a privileged port (TCP and UDP, below
// ip_unprivileged_port_start), an address and a route added through
// netlink, and the sysctls that would undo these, must all be refused.
func (e *env) netEveryIdentity() result {
	var rs []result
	for _, s := range []struct {
		what            string
		domain, typ, pr int
	}{
		{"raw IPv4 socket", unix.AF_INET, unix.SOCK_RAW, unix.IPPROTO_UDP},
		{"raw IPv6 socket", unix.AF_INET6, unix.SOCK_RAW, unix.IPPROTO_UDP},
		{"packet socket", unix.AF_PACKET, unix.SOCK_RAW, 0x0300}, // htons(ETH_P_ALL)
	} {
		fd, err := unix.Socket(s.domain, s.typ|unix.SOCK_CLOEXEC, s.pr)
		if err == nil {
			unix.Close(fd)
		}
		rs = append(rs, gate(s.what, err))
	}
	for _, port := range []int{22, 80, 443, 873} {
		for _, typ := range []int{unix.SOCK_STREAM, unix.SOCK_DGRAM} {
			fd, err := unix.Socket(unix.AF_INET, typ|unix.SOCK_CLOEXEC, 0)
			if err != nil {
				rs = append(rs, refusedf("socket: %v", err))
				continue
			}
			err = unix.Bind(fd, &unix.SockaddrInet4{Port: port})
			if err == nil && typ == unix.SOCK_STREAM {
				err = unix.Listen(fd, 1)
			}
			unix.Close(fd)
			what := fmt.Sprintf("bind %s port %d on every address", map[int]string{unix.SOCK_STREAM: "TCP", unix.SOCK_DGRAM: "UDP"}[typ], port)
			rs = append(rs, gate(what, err))
		}
	}
	if lo, err := netlink.LinkByName("lo"); err != nil {
		rs = append(rs, naf("no lo: %v", err))
	} else {
		addr := &netlink.Addr{IPNet: &net.IPNet{IP: net.IPv4(192, 0, 2, 77), Mask: net.CIDRMask(32, 32)}}
		err := netlink.AddrAdd(lo, addr)
		if err == nil {
			_ = netlink.AddrDel(lo, addr)
		}
		rs = append(rs, gate("netlink add address 192.0.2.77/32 to lo", err))
		route := &netlink.Route{LinkIndex: lo.Attrs().Index, Dst: &net.IPNet{IP: net.IPv4(198, 51, 100, 0), Mask: net.CIDRMask(24, 32)}}
		err = netlink.RouteAdd(route)
		if err == nil {
			_ = netlink.RouteDel(route)
		}
		rs = append(rs, gate("netlink add route 198.51.100.0/24 via lo", err))
		err = netlink.LinkSetDown(lo)
		if err == nil {
			_ = netlink.LinkSetUp(lo)
		}
		rs = append(rs, gate("netlink set lo down", err))
	}
	for _, s := range []string{"/proc/sys/net/ipv4/ip_unprivileged_port_start", "/proc/sys/net/ipv4/ip_forward"} {
		fd, err := unix.Open(s, unix.O_WRONLY|unix.O_CLOEXEC, 0)
		if err == nil {
			unix.Close(fd)
			rs = append(rs, succeededf("opened %s for writing", s))
			continue
		}
		if isPermErr(err) || errors.Is(err, unix.EROFS) {
			rs = append(rs, refusedf("open %s for writing: %v", s, err))
		} else {
			rs = append(rs, succeededf("open %s for writing got past the permission check: %v", s, err))
		}
	}
	return combine(rs...)
}
