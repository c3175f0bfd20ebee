package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/holdfast-appliance/holdfast/firmware/console"
	"github.com/holdfast-appliance/holdfast/firmware/console/frame"
)

// fakeCommandAppliance serves console commands on a unix socket like
// QEMU's serial chardev, one connection after another.
func fakeCommandAppliance(t *testing.T, ctx context.Context) string {
	t.Helper()
	sock := filepath.Join(t.TempDir(), "serial.sock")
	l, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(ctx)
	t.Cleanup(func() { cancel(); l.Close() })
	h := func(_ context.Context, cmd console.Command, out io.Writer) error {
		switch cmd.Name {
		case "status":
			fmt.Fprint(out, "phase running\r\ndisks:\r\n")
			return nil
		case "snapshots":
			fmt.Fprintf(out, "args %q\r\n", cmd.Args)
			return nil
		case "ls":
			// A key from a hostile source, printed as it came: it
			// clears the screen and fakes a clean line.
			fmt.Fprint(out, "\x1b[2J\x1b[Hinbox/1.eml\rverify OK\r\n")
			return nil
		}
		return errors.New("unknown command")
	}
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				conn := frame.NewConn(c, frame.Options{AckTimeout: 200 * time.Millisecond})
				go conn.Run(ctx)
				_, _ = conn.WriteText([]byte("07:00:00.000 [INFO]  holdfast: log noise\r\n"))
				_ = console.Serve(ctx, conn, console.ServeOptions{Handler: h})
			}()
		}
	}()
	return sock
}

func TestConsoleRun(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	sock := fakeCommandAppliance(t, ctx)
	for _, tc := range []struct {
		args []string
		code int
		out  string
		err  string
	}{
		{[]string{"status"}, exitOK, "phase running\ndisks:\n", ""},
		{[]string{"run", "snapshots", "a b", "c"}, exitOK, "args [\"a b\" \"c\"]\n", ""},
		{[]string{"run", "ls"}, exitOK, `\x1b[2J\x1b[Hinbox/1.eml\x0dverify OK` + "\n", ""},
		{[]string{"run", "nope"}, exitFailure, "", "unknown command"},
		{[]string{"run"}, exitUsage, "", "requires at least 1 arg"},
	} {
		t.Run(strings.Join(tc.args, " "), func(t *testing.T) {
			var out, errb strings.Builder
			code := run(ctx, append([]string{"console", "--port", sock}, tc.args...), &out, &errb)
			if code != tc.code || out.String() != tc.out || !strings.Contains(errb.String(), tc.err) {
				t.Fatalf("exit %d, stdout %q, stderr %q; want %d, %q, %q", code, out.String(), errb.String(), tc.code, tc.out, tc.err)
			}
		})
	}
}
