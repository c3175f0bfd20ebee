package port

import (
	"context"
	"io"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"testing"

	"golang.org/x/sys/unix"
)

func TestOpenSocket(t *testing.T) {
	sock := filepath.Join(t.TempDir(), "serial.sock")
	l, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	go func() {
		c, err := l.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		_, _ = io.Copy(c, c) // echo
	}()
	p, err := Open(context.Background(), sock, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	if _, err := p.Write([]byte("ping\x00\n\xF1")); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 7)
	if _, err := io.ReadFull(p, buf); err != nil || string(buf) != "ping\x00\n\xF1" {
		t.Fatalf("echo = %q, %v", buf, err)
	}
}

// TestRawPTY checks that raw mode passes every byte value unchanged
// through a pseudo-terminal, as it must for frames on a real serial line.
func TestRawPTY(t *testing.T) {
	ptmx, err := os.OpenFile("/dev/ptmx", os.O_RDWR|unix.O_NOCTTY, 0)
	if err != nil {
		t.Fatalf("no pty support: %v", err)
	}
	defer ptmx.Close()
	if err := unix.IoctlSetPointerInt(int(ptmx.Fd()), unix.TIOCSPTLCK, 0); err != nil {
		t.Fatal(err)
	}
	n, err := unix.IoctlGetInt(int(ptmx.Fd()), unix.TIOCGPTN)
	if err != nil {
		t.Fatal(err)
	}
	if err := MakeRaw(int(ptmx.Fd()), 115200); err != nil {
		t.Fatal(err)
	}
	tty, err := Open(context.Background(), filepath.Join("/dev/pts", strconv.Itoa(n)), 115200)
	if err != nil {
		t.Fatal(err)
	}
	defer tty.Close()
	all := make([]byte, 256)
	for i := range all {
		all[i] = byte(i)
	}
	if _, err := ptmx.Write(all); err != nil {
		t.Fatal(err)
	}
	got := make([]byte, len(all))
	if _, err := io.ReadFull(tty, got); err != nil {
		t.Fatal(err)
	}
	for i := range all {
		if got[i] != all[i] {
			t.Fatalf("byte %#x arrived as %#x", all[i], got[i])
		}
	}
	if err := MakeRaw(int(ptmx.Fd()), 12345); err == nil {
		t.Error("odd baud rate accepted")
	}
}
