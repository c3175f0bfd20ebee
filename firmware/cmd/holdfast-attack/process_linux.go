package main

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// proc is a process the techniques aim at.
type proc struct {
	pid int
	who string
}

func (e *env) pid1() proc   { return proc{1, "PID 1"} }
func (e *env) sealer() proc { return proc{e.cfg.sealerPID, "sealer"} }
func (e *env) worker() proc { return proc{e.cfg.workerPID, "worker"} }

// stolenFD is a descriptor obtained from another process.
type stolenFD struct {
	from     proc
	num, fd  int
	isSocket bool
}

// procState is the state letter of pid from /proc/PID/stat.
func procState(pid int) (byte, error) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0, err
	}
	i := bytes.LastIndexByte(b, ')')
	if i < 0 || i+2 >= len(b) {
		return 0, fmt.Errorf("malformed /proc/%d/stat", pid)
	}
	return b[i+2], nil
}

// alive returns a reason when pid does not exist (an n/a result).
func alive(p proc) (result, bool) {
	st, err := procState(p.pid)
	if err != nil || st == 'Z' || st == 'X' {
		return naf("%s: no process %d", p.who, p.pid), false
	}
	return result{}, true
}

// ptraceTry attaches to pid on a dedicated thread and detaches at once.
// The thread is never unlocked, so it ends with the goroutine and the
// kernel detaches anything it still traces.
func ptraceTry(pid int) error {
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		err := unix.PtraceAttach(pid)
		if err == nil {
			deadline := time.Now().Add(2 * time.Second)
			for time.Now().Before(deadline) {
				var ws unix.WaitStatus
				if n, werr := unix.Wait4(pid, &ws, unix.WALL|unix.WNOHANG, nil); n == pid || werr != nil {
					break
				}
				time.Sleep(10 * time.Millisecond)
			}
			_ = unix.PtraceDetach(pid)
		}
		errc <- err
	}()
	return <-errc
}

func ptraceResult(p proc) result {
	if r, ok := alive(p); !ok {
		return r
	}
	return gate(fmt.Sprintf("PTRACE_ATTACH %s (%d)", p.who, p.pid), ptraceTry(p.pid))
}

// vmWriteResult writes one byte at an unmapped address of p: EPERM is the
// refusal, EFAULT means the permission check let us in.
func vmWriteResult(p proc) result {
	if r, ok := alive(p); !ok {
		return r
	}
	b := []byte{0}
	local := []unix.Iovec{{Base: &b[0], Len: 1}}
	remote := []unix.RemoteIovec{{Base: 0x1000, Len: 1}}
	_, err := unix.ProcessVMWritev(p.pid, local, remote, 0)
	return gate(fmt.Sprintf("process_vm_writev into %s (%d)", p.who, p.pid), err)
}

func procMemResult(p proc) result {
	if r, ok := alive(p); !ok {
		return r
	}
	path := fmt.Sprintf("/proc/%d/mem", p.pid)
	fd, err := unix.Open(path, unix.O_RDWR|unix.O_CLOEXEC, 0)
	if err == nil {
		unix.Close(fd)
		return succeededf("opened %s for write", path)
	}
	return refusedf("open %s for write: %v", path, err)
}

// procFDResult opens every /proc/PID/fd/N of p.
func procFDResult(p proc) result {
	if r, ok := alive(p); !ok {
		return r
	}
	dir := fmt.Sprintf("/proc/%d/fd", p.pid)
	var nums []int
	ents, lerr := os.ReadDir(dir)
	if lerr == nil {
		for _, de := range ents {
			if n, err := strconv.Atoi(de.Name()); err == nil {
				nums = append(nums, n)
			}
		}
	} else {
		for n := range 256 {
			nums = append(nums, n)
		}
	}
	var got, passed []string
	var firstErr error
	for _, n := range nums {
		path := fmt.Sprintf("%s/%d", dir, n)
		fd, err := unix.Open(path, unix.O_RDONLY|unix.O_NONBLOCK|unix.O_NOCTTY|unix.O_CLOEXEC, 0)
		switch {
		case err == nil:
			target, _ := os.Readlink(path)
			got = append(got, fmt.Sprintf("%d (%s)", n, target))
			unix.Close(fd)
		case errors.Is(err, unix.ENOENT):
		case isPermErr(err):
			if firstErr == nil {
				firstErr = err
			}
		default:
			// ENXIO (a socket) and the like: the link was followed.
			passed = append(passed, fmt.Sprintf("%d (%v)", n, err))
		}
	}
	switch {
	case len(got) > 0 || len(passed) > 0:
		return succeededf("%s: opened fds %s; reached %s", p.who, strings.Join(got, ","), strings.Join(passed, ","))
	case firstErr != nil:
		return refusedf("%s: open %s/N: %v (listing: %s)", p.who, dir, firstErr, errOr(lerr, "ok"))
	default:
		return refusedf("%s: no fd could be opened (listing: %s)", p.who, errOr(lerr, "ok"))
	}
}

// pidfdSteal takes every descriptor of p with pidfd_getfd.
func pidfdSteal(p proc) ([]stolenFD, error) {
	pidfd, err := unix.PidfdOpen(p.pid, 0)
	if err != nil {
		return nil, fmt.Errorf("pidfd_open %s (%d): %w", p.who, p.pid, err)
	}
	defer unix.Close(pidfd)
	var out []stolenFD
	for n := range 1024 {
		fd, err := unix.PidfdGetfd(pidfd, n, 0)
		switch {
		case err == nil:
			var st unix.Stat_t
			sock := unix.Fstat(fd, &st) == nil && st.Mode&unix.S_IFMT == unix.S_IFSOCK
			out = append(out, stolenFD{from: p, num: n, fd: fd, isSocket: sock})
		case errors.Is(err, unix.EBADF):
		default:
			if len(out) == 0 {
				return nil, fmt.Errorf("pidfd_getfd %s (%d) fd %d: %w", p.who, p.pid, n, err)
			}
			return out, nil
		}
	}
	return out, nil
}

func (e *env) pidfdResult(p proc) result {
	if r, ok := alive(p); !ok {
		return r
	}
	fds, err := pidfdSteal(p)
	if len(fds) == 0 {
		return refusedf("%v", err)
	}
	var names []string
	for _, s := range fds {
		kind := "file"
		if s.isSocket {
			kind = "socket"
		}
		names = append(names, fmt.Sprintf("%d(%s)", s.num, kind))
		if s.isSocket && s.from.who == "worker" {
			e.stolen = append(e.stolen, s)
		} else {
			unix.Close(s.fd)
		}
	}
	return succeededf("pidfd_getfd took %d fds of %s: %s", len(fds), p.who, strings.Join(names, " "))
}

// sealerExchange sends one request in the sealer's wire format
// (services/sealer: op, u16 BE length, path) and reads one reply (status,
// u16 BE length, message), waiting at most 2 s.
func sealerExchange(fd int, op byte, path string) (byte, string, error) {
	req := append([]byte{op}, binary.BigEndian.AppendUint16(nil, uint16(len(path)))...)
	req = append(req, path...)
	if _, err := unix.Write(fd, req); err != nil {
		return 0, "", fmt.Errorf("send: %w", err)
	}
	read := func(n int) ([]byte, error) {
		buf := make([]byte, 0, n)
		deadline := time.Now().Add(2 * time.Second)
		for len(buf) < n {
			left := time.Until(deadline)
			if left <= 0 {
				return buf, errors.New("no reply within 2 s")
			}
			pfd := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN}}
			if k, err := unix.Poll(pfd, int(left/time.Millisecond)+1); err != nil && !errors.Is(err, unix.EINTR) {
				return buf, err
			} else if k == 0 {
				continue
			}
			tmp := make([]byte, n-len(buf))
			k, err := unix.Read(fd, tmp)
			if err != nil && !errors.Is(err, unix.EAGAIN) && !errors.Is(err, unix.EINTR) {
				return buf, err
			}
			if k == 0 && err == nil {
				return buf, errors.New("connection closed")
			}
			if k > 0 {
				buf = append(buf, tmp[:k]...)
			}
		}
		return buf, nil
	}
	h, err := read(3)
	if err != nil {
		return 0, "", err
	}
	n := int(binary.BigEndian.Uint16(h[1:]))
	if h[0] > 1 || n > 1024 {
		return 0, "", fmt.Errorf("reply %x is not in the sealer's format", h)
	}
	msg, err := read(n)
	return h[0], string(msg), err
}

// forgeSealer looks for the sealer among stolen sockets and sends it
// forged requests. The probe ends with a newline: the sealer refuses it
// (the layout patterns match whole strings), and PID 1's line-based JSON
// control channel, should the socket lead there, skips it as one bad line.
func (e *env) forgeSealer(fds []stolenFD) result {
	shard := "00"
	if rePack.MatchString(e.t.pack) {
		shard = e.t.pack[6:8]
	}
	forged := []struct {
		op   byte
		path string
	}{
		{'C', "packs/" + shard},              // a "clear" verb: the protocol has none
		{'U', "snapshots"},                   // another made-up verb
		{'F', "../hf-attack-outside"},        // traversal out of the store
		{'F', "snapshots/../../etc/passwd"},  // traversal through a store directory
		{'F', "/etc/holdfast/board"},         // absolute path outside the store
		{'D', "tmp"},                         // append-only on a directory the store empties
		{'D', "../"},                         // the store's parent
		{'F', "packs/" + shard + "/../../x"}, // traversal inside a shard
	}
	var notes, accepted []string
	for _, s := range fds {
		status, msg, err := sealerExchange(s.fd, 'F', "hf-attack-probe\n")
		if err != nil {
			notes = append(notes, fmt.Sprintf("%s fd %d: not the sealer (%v)", s.from.who, s.num, err))
			continue
		}
		notes = append(notes, fmt.Sprintf("%s fd %d is the sealer socket (probe status %d: %s)", s.from.who, s.num, status, msg))
		for _, f := range forged {
			st, m, err := sealerExchange(s.fd, f.op, f.path)
			switch {
			case err != nil:
				notes = append(notes, fmt.Sprintf("%c %q: %v", f.op, f.path, err))
			case st == 0:
				accepted = append(accepted, fmt.Sprintf("%c %q", f.op, f.path))
			default:
				notes = append(notes, fmt.Sprintf("%c %q refused", f.op, f.path))
				_ = m
			}
		}
		if len(accepted) > 0 {
			return succeededf("sealer ACCEPTED forged requests %s; %s", strings.Join(accepted, ", "), strings.Join(notes, "; "))
		}
		return refusedf("%s", strings.Join(notes, "; "))
	}
	return refusedf("sealer socket unreachable: no stolen socket answered as the sealer: %s", strings.Join(notes, "; "))
}

// forgeResult sends forged requests to the sealer through whatever socket
// of the worker could be obtained.
func (e *env) forgeResult() result {
	fds := e.stolen
	var why []string
	if len(fds) == 0 {
		got, err := pidfdSteal(e.worker())
		for _, s := range got {
			if s.isSocket {
				fds = append(fds, s)
			} else {
				unix.Close(s.fd)
			}
		}
		if err != nil {
			why = append(why, err.Error())
		}
	}
	if len(fds) == 0 {
		if len(why) == 0 {
			why = append(why, "the worker holds no socket we could take")
		}
		return refusedf("sealer socket unreachable: %s", strings.Join(why, "; "))
	}
	return e.forgeSealer(fds)
}

// injectSealer is the owner's try at the sealer's memory (same uid).
func (e *env) injectSealer() result {
	p := e.sealer()
	if r, ok := alive(p); !ok {
		return r
	}
	return combine(ptraceResult(p), vmWriteResult(p), procMemResult(p))
}

// pid1Trouble says what is wrong with PID 1, if anything (and resumes it
// when stopped).
func pid1Trouble() string {
	st, err := procState(1)
	switch {
	case err != nil:
		return "PID 1 gone: " + err.Error()
	case st == 'Z' || st == 'X':
		return fmt.Sprintf("PID 1 is dead (state %c)", st)
	case st == 'T' || st == 't':
		_ = unix.Kill(1, unix.SIGCONT)
		return fmt.Sprintf("PID 1 was stopped (state %c; sent SIGCONT)", st)
	}
	return ""
}

func signalsResult() result {
	var ok, denied int
	var errs []string
	for sig := 1; sig <= 31; sig++ {
		if sig == int(unix.SIGKILL) || sig == int(unix.SIGSTOP) {
			continue
		}
		s := syscall.Signal(sig)
		if err := unix.Kill(1, s); err != nil {
			denied++
			if len(errs) < 3 {
				errs = append(errs, fmt.Sprintf("%s: %v", unix.SignalName(s), err))
			}
		} else {
			ok++
		}
		time.Sleep(50 * time.Millisecond)
		if t := pid1Trouble(); t != "" {
			return succeededf("after %s: %s", unix.SignalName(s), t)
		}
	}
	time.Sleep(500 * time.Millisecond)
	if t := pid1Trouble(); t != "" {
		return succeededf("after signals 1-31: %s", t)
	}
	st, _ := procState(1)
	return refusedf("29 signals sent to PID 1 (kill returned 0 for %d, failed for %d %s); PID 1 alive, state %c", ok, denied, strings.Join(errs, ","), st)
}

func killStopResult() result {
	var parts []string
	for _, s := range []syscall.Signal{unix.SIGKILL, unix.SIGSTOP} {
		err := unix.Kill(1, s)
		time.Sleep(300 * time.Millisecond)
		if t := pid1Trouble(); t != "" {
			return succeededf("after %s: %s", unix.SignalName(s), t)
		}
		parts = append(parts, fmt.Sprintf("%s: kill %s", unix.SignalName(s), errOr(err, "returned 0")))
	}
	st, _ := procState(1)
	return refusedf("%s; PID 1 alive, state %c", strings.Join(parts, "; "), st)
}

// killSealerResult kills the sealer (as uid 0, else as the owner) and checks
// that PID 1 survives and the store stays as it was; its after-walk is the
// final integrity walk.
func (e *env) killSealerResult() result {
	before, berr := e.walk()
	how := "as uid 0"
	err := unix.Kill(e.cfg.sealerPID, unix.SIGKILL)
	if err != nil {
		r, oerr := e.callOwner(time.Minute, "_kill-sealer")
		switch {
		case oerr != nil:
			how = fmt.Sprintf("uid 0: %v; owner: %v", err, oerr)
		case r.Err != "":
			how = fmt.Sprintf("uid 0: %v; owner: %s", err, r.Err)
		default:
			how, err = "as the owner", nil
		}
	}
	time.Sleep(3 * time.Second)
	trouble := pid1Trouble()
	e.final, e.finalErr = e.walk()
	e.finalDone = true
	var changes []change
	if berr == nil && e.finalErr == nil {
		changes = diffStates(before, e.final)
	}
	killed := "sealer killed " + how
	if err != nil {
		killed = "sealer not killed (" + how + ")"
	}
	switch {
	case trouble != "":
		return succeededf("%s: %s", killed, trouble)
	case len(changes) > 0:
		return succeededf("%s: store changed: %s", killed, summarize(changes, 3))
	case berr != nil || e.finalErr != nil:
		return refusedf("%s: PID 1 alive (store not checked: %v)", killed, errors.Join(berr, e.finalErr))
	case err == nil:
		return refusedf("sealer killed: PID 1 alive, store unchanged (%s)", how)
	default:
		return refusedf("%s: PID 1 alive, store unchanged", killed)
	}
}
