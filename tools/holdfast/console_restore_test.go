package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/holdfast-appliance/holdfast/firmware/console"
	"github.com/holdfast-appliance/holdfast/firmware/console/frame"
)

// fakeRestoreAppliance answers restore commands frame by frame on a unix
// socket like QEMU's serial chardev: it echoes the arguments, sends a
// progress line in its own OUTPUT frame, and sends the rest only once
// release is closed, so a host tool that waited for DONE before printing
// would never see the first line in time.
func fakeRestoreAppliance(t *testing.T, ctx context.Context, release <-chan struct{}) string {
	t.Helper()
	sock := filepath.Join(t.TempDir(), "serial.sock")
	l, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(ctx)
	t.Cleanup(func() { cancel(); l.Close() })
	output := func(c *frame.Conn, id, text string) error {
		return c.Send(ctx, frame.TypeOutput, append(append([]byte(id), 0), text...))
	}
	serve := func(c *frame.Conn) error {
		for {
			f, err := c.Recv(ctx)
			if err != nil {
				return err
			}
			if f.Type != frame.TypeCommand {
				continue
			}
			var cmd console.Command
			if err := json.Unmarshal(f.Payload, &cmd); err != nil {
				return err
			}
			d := console.Done{ID: cmd.ID, OK: true}
			if err := output(c, cmd.ID, fmt.Sprintf("%s %q\r\n", cmd.Name, cmd.Args)); err != nil {
				return err
			}
			switch {
			case cmd.Name != "restore":
				d = console.Done{ID: cmd.ID, Message: "unknown command"}
			case len(cmd.Args) > 1 && cmd.Args[1] == "broken":
				d = console.Done{ID: cmd.ID, Message: `no target "broken" in the config (targets: offsite)`}
			case len(cmd.Args) > 1 && cmd.Args[1] == "slow":
				if err := output(c, cmd.ID, "restore: 1/2 objects, 0.5/1.0 MiB\r\n"); err != nil {
					return err
				}
				select {
				case <-release:
				case <-ctx.Done():
					return ctx.Err()
				}
				if err := output(c, cmd.ID, "restore: done: 2 objects\r\n"); err != nil {
					return err
				}
			}
			b, _ := json.Marshal(d)
			if err := c.Send(ctx, frame.TypeDone, b); err != nil {
				return err
			}
		}
	}
	go func() {
		for {
			nc, err := l.Accept()
			if err != nil {
				return
			}
			go func() {
				defer nc.Close()
				c := frame.NewConn(nc, frame.Options{AckTimeout: 200 * time.Millisecond})
				go c.Run(ctx)
				_ = serve(c)
			}()
		}
	}()
	return sock
}

func TestConsoleRestore(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	sock := fakeRestoreAppliance(t, ctx, nil)
	const snap = "20261122T074938Z-2256721f"
	tests := []struct {
		name string
		args []string
		code int
		out  string // what the appliance received, as it echoes it
		err  string
	}{
		{"whole snapshot", []string{snap, "offsite"}, exitOK, `restore ["` + snap + `" "offsite"]`, ""},
		{"prefix", []string{snap, "offsite", "mail/"}, exitOK, `restore ["` + snap + `" "offsite" "\"mail/\""]`, ""},
		{"empty prefix", []string{snap, "offsite", ""}, exitOK, `restore ["` + snap + `" "offsite"]`, ""},
		{"object with spaces", []string{snap, "offsite", "--object", "inbox/a  b\n.eml"}, exitOK,
			`restore ["` + snap + `" "offsite" "--object" "\"inbox/a  b\\n.eml\""]`, ""},
		{"object not UTF-8, Go-quoted", []string{snap, "offsite", "--object", `"k\xff"`}, exitOK,
			`restore ["` + snap + `" "offsite" "--object" "\"k\\xff\""]`, ""},
		{"flag first", []string{"--object", "k", snap, "offsite"}, exitOK, `restore ["` + snap + `" "offsite" "--object" "\"k\""]`, ""},
		{"prefix and object", []string{snap, "offsite", "mail/", "--object", "k"}, exitUsage, "", "not both"},
		{"empty object", []string{snap, "offsite", "--object", ""}, exitUsage, "", "non-empty KEY"},
		{"bad quoting", []string{snap, "offsite", `"a\q"`}, exitUsage, "", "not a Go-quoted string"},
		{"no target", []string{snap}, exitUsage, "", "accepts between 2 and 3 arg(s)"},
		{"appliance refuses", []string{snap, "broken"}, exitFailure, `restore ["` + snap + `" "broken"]`, `no target "broken"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var out, errb strings.Builder
			code := run(ctx, append([]string{"console", "--port", sock, "restore"}, tt.args...), &out, &errb)
			want := ""
			if tt.out != "" {
				want = tt.out + "\n"
			}
			if code != tt.code || out.String() != want || !strings.Contains(errb.String(), tt.err) {
				t.Fatalf("exit %d, stdout %q, stderr %q; want %d, %q, %q", code, out.String(), errb.String(), tt.code, want, tt.err)
			}
		})
	}
}

// lineWatcher is a stdout that says when a line has been printed.
type lineWatcher struct {
	mu   sync.Mutex
	b    bytes.Buffer
	want string
	seen chan struct{}
}

func (w *lineWatcher) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	had := strings.Contains(w.b.String(), w.want)
	w.b.Write(p)
	if !had && strings.Contains(w.b.String(), w.want) {
		close(w.seen)
	}
	return len(p), nil
}

func (w *lineWatcher) String() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.b.String()
}

// TestConsoleRestoreStreams: a progress line is printed while the
// appliance is still restoring, not when the command is done.
func TestConsoleRestoreStreams(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	release := make(chan struct{})
	sock := fakeRestoreAppliance(t, ctx, release)
	out := &lineWatcher{want: "restore: 1/2 objects, 0.5/1.0 MiB\n", seen: make(chan struct{})}
	var errb strings.Builder
	done := make(chan int, 1)
	go func() {
		done <- run(ctx, []string{"console", "--port", sock, "restore", "S", "slow"}, out, &errb)
	}()
	select {
	case <-out.seen:
		close(release)
	case code := <-done:
		t.Fatalf("exit %d before the appliance finished; stdout %q, stderr %q", code, out.String(), errb.String())
	case <-time.After(15 * time.Second):
		close(release)
		t.Fatalf("the progress line was not printed while the restore ran; stdout %q", out.String())
	}
	if code := <-done; code != exitOK {
		t.Fatalf("exit %d, stderr %q", code, errb.String())
	}
	if want := "restore [\"S\" \"slow\"]\nrestore: 1/2 objects, 0.5/1.0 MiB\nrestore: done: 2 objects\n"; out.String() != want {
		t.Errorf("stdout %q, want %q", out.String(), want)
	}
}
