package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"

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
//
// So the worker's uid may not signal or trace the sealer or the export,
// the export's uid may not write the mirror disk's store, and no uid but
// the owner may write any store at all.

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
