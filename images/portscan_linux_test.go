package images

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"runtime"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// scanNet is a network namespace the test creates, holding one tap device
// that QEMU makes the guest's second network card. Nothing else is in it:
// the host scans the guest's link-local IPv6 address from there, so the
// scan reaches every port of the guest and no other machine.
type scanNet struct {
	name, tap string
	tapFile   *os.File
}

// guestLinkLocal is the guest's EUI-64 address on the tap (qemu.TapMAC).
const guestLinkLocal = "fe80::5054:ff:fe48:4601"

func newScanNet(t *testing.T) *scanNet {
	t.Helper()
	s := &scanNet{name: fmt.Sprintf("hf-scan-%d", os.Getpid()), tap: "hfscan0"}
	if out, err := exec.Command("ip", "netns", "add", s.name).CombinedOutput(); err != nil {
		t.Fatalf("ip netns add: %v: %s", err, out)
	}
	t.Cleanup(func() { _ = exec.Command("ip", "netns", "del", s.name).Run() })
	err := inNetns(s.name, func() error {
		f, err := os.OpenFile("/dev/net/tun", os.O_RDWR, 0)
		if err != nil {
			return err
		}
		ifr, err := unix.NewIfreq(s.tap)
		if err != nil {
			f.Close()
			return err
		}
		ifr.SetUint16(unix.IFF_TAP | unix.IFF_NO_PI)
		if err := unix.IoctlIfreq(int(f.Fd()), unix.TUNSETIFF, ifr); err != nil {
			f.Close()
			return fmt.Errorf("TUNSETIFF: %w", err)
		}
		s.tapFile = f
		return nil
	})
	if err != nil {
		t.Fatalf("tap in %s: %v", s.name, err)
	}
	t.Cleanup(func() { s.tapFile.Close() })
	for _, args := range [][]string{{"link", "set", "lo", "up"}, {"link", "set", s.tap, "up"}} {
		if out, err := exec.Command("ip", append([]string{"-n", s.name}, args...)...).CombinedOutput(); err != nil {
			t.Fatalf("ip %v: %v: %s", args, err, out)
		}
	}
	return s
}

// inNetns runs fn on an OS thread that has joined the namespace, then
// moves the thread back. The thread must not die: MinIO and QEMU are
// started with Pdeathsig, which fires when the THREAD that forked them
// exits, and a goroutine that ends while locked to its thread ends the
// thread. Only if the way back fails does the thread stay locked and die.
func inNetns(name string, fn func() error) error {
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		home, err := os.Open("/proc/thread-self/ns/net")
		if err != nil {
			runtime.UnlockOSThread()
			errc <- err
			return
		}
		defer home.Close()
		ns, err := os.Open("/var/run/netns/" + name)
		if err != nil {
			runtime.UnlockOSThread()
			errc <- err
			return
		}
		defer ns.Close()
		if err := unix.Setns(int(ns.Fd()), unix.CLONE_NEWNET); err != nil {
			runtime.UnlockOSThread()
			errc <- fmt.Errorf("setns: %w", err)
			return
		}
		ferr := fn()
		if err := unix.Setns(int(home.Fd()), unix.CLONE_NEWNET); err == nil {
			runtime.UnlockOSThread()
		}
		errc <- ferr
	}()
	return <-errc
}

// scanResult counts the answers to a TCP connect on every port.
type scanResult struct {
	open, refused, silent []int
}

// scanTCP tries every TCP port 1-65535 of the guest's link-local address
// from the namespace, batch by batch with non-blocking connects, until ctx
// ends. A port answers with SYN-ACK (open) or RST (refused); one that does
// not answer within the batch's wait is silent.
func (s *scanNet) scanTCP(ctx context.Context) (scanResult, error) {
	var res scanResult
	err := inNetns(s.name, func() error {
		ifi, err := net.InterfaceByName(s.tap)
		if err != nil {
			return err
		}
		var addr [16]byte
		copy(addr[:], net.ParseIP(guestLinkLocal).To16())
		const batch = 512
		for first := 1; first <= 65535; first += batch {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			last := min(first+batch-1, 65535)
			if err := scanBatch(first, last, addr, uint32(ifi.Index), &res); err != nil {
				return err
			}
		}
		return nil
	})
	return res, err
}

func scanBatch(first, last int, addr [16]byte, zone uint32, res *scanResult) error {
	type probe struct {
		fd, port int
	}
	var probes []probe
	defer func() {
		for _, p := range probes {
			unix.Close(p.fd)
		}
	}()
	for port := first; port <= last; port++ {
		fd, err := unix.Socket(unix.AF_INET6, unix.SOCK_STREAM|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, 0)
		if err != nil {
			return fmt.Errorf("socket: %w", err)
		}
		probes = append(probes, probe{fd, port})
		err = unix.Connect(fd, &unix.SockaddrInet6{Port: port, Addr: addr, ZoneId: zone})
		switch {
		case err == nil:
			res.open = append(res.open, port)
			probes[len(probes)-1].port = -1
		case errors.Is(err, unix.EINPROGRESS):
		case errors.Is(err, unix.ECONNREFUSED):
			res.refused = append(res.refused, port)
			probes[len(probes)-1].port = -1
		default:
			return fmt.Errorf("connect [%s%%%d]:%d: %w", guestLinkLocal, zone, port, err)
		}
	}
	deadline := time.Now().Add(10 * time.Second)
	pending := 0
	for _, p := range probes {
		if p.port > 0 {
			pending++
		}
	}
	for pending > 0 && time.Now().Before(deadline) {
		var fds []unix.PollFd
		var idx []int
		for i, p := range probes {
			if p.port > 0 {
				fds = append(fds, unix.PollFd{Fd: int32(p.fd), Events: unix.POLLOUT})
				idx = append(idx, i)
			}
		}
		n, err := unix.Poll(fds, 500)
		if err != nil && !errors.Is(err, unix.EINTR) {
			return fmt.Errorf("poll: %w", err)
		}
		if n <= 0 {
			continue
		}
		for j, f := range fds {
			if f.Revents == 0 {
				continue
			}
			p := &probes[idx[j]]
			soErr, err := unix.GetsockoptInt(p.fd, unix.SOL_SOCKET, unix.SO_ERROR)
			switch {
			case err != nil:
				return fmt.Errorf("SO_ERROR: %w", err)
			case soErr == 0:
				res.open = append(res.open, p.port)
			case unix.Errno(soErr) == unix.ECONNREFUSED:
				res.refused = append(res.refused, p.port)
			default:
				res.silent = append(res.silent, p.port)
			}
			p.port = -1
			pending--
		}
	}
	for _, p := range probes {
		if p.port > 0 {
			res.silent = append(res.silent, p.port)
		}
	}
	return nil
}
