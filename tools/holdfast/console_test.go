package main

import (
	"bufio"
	"context"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/holdfast-appliance/holdfast/firmware/console"
	"github.com/holdfast-appliance/holdfast/firmware/console/frame"
)

const consoleTestConfig = `appliance { name = "cli-test" }
source "mail" {
  s3 {
    endpoint   = "10.0.2.2:9000"
    bucket     = "mail"
    access_key = "READONLY"
    secret_key = "secret"
  }
  schedule = "every 6h"
}
`

// fakeAppliance listens on a unix socket like QEMU's serial chardev and
// runs the appliance side of the console on the first connection.
func fakeAppliance(t *testing.T, ctx context.Context) (sock string, got <-chan []byte) {
	t.Helper()
	sock = filepath.Join(t.TempDir(), "serial.sock")
	l, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	t.Cleanup(func() {
		cancel()
		l.Close()
		<-done
	})
	ch := make(chan []byte, 1)
	go func() {
		defer close(done)
		c, err := l.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		pr, pw := io.Pipe()
		typed := make(chan string, 4)
		go func() {
			s := bufio.NewScanner(pr)
			for s.Scan() {
				typed <- s.Text()
			}
		}()
		conn := frame.NewConn(c, frame.Options{Text: pw, AckTimeout: 200 * time.Millisecond})
		go conn.Run(ctx)
		// Kernel noise on the line before the appliance speaks.
		_, _ = conn.WriteText([]byte("[    1.234567] Run /init as init process\r\n"))
		cfg, err := console.WaitForConfig(ctx, conn, console.ApplianceOptions{
			Board: "fake", HelloInterval: 100 * time.Millisecond, Human: connText{conn}, Typed: typed,
		})
		if err != nil {
			return // the rejected case: the test sees no config
		}
		ch <- cfg
		_ = conn.Drain(ctx)
	}()
	return sock, ch
}

type connText struct{ c *frame.Conn }

func (w connText) Write(p []byte) (int, error) { return w.c.WriteText(p) }

func TestConsolePush(t *testing.T) {
	cfgFile := filepath.Join(t.TempDir(), "cfg.hcl")
	if err := os.WriteFile(cfgFile, []byte(consoleTestConfig), 0o644); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name     string
		args     []string
		stdin    string
		code     int
		wantOut  string
		accepted bool
	}{
		{"yes flag", []string{"--yes"}, "", exitOK, "config accepted", true},
		{"typed yes", nil, "yes\n", exitOK, "config accepted", true},
		{"typed no", nil, "no\n", exitFailure, "type yes", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			sock, got := fakeAppliance(t, ctx)
			args := append([]string{"console", "push", "--port", sock, "--timeout", "20s"}, tt.args...)
			args = append(args, cfgFile)
			var out, errb strings.Builder
			root := (&app{stdout: &out, stderr: &errb}).rootCmd()
			root.SetArgs(args)
			root.SetIn(strings.NewReader(tt.stdin))
			_, err := root.ExecuteContextC(ctx)
			if code := exitCode(err); code != tt.code {
				t.Fatalf("exit %d (%v), want %d; stdout %q", code, err, tt.code, out.String())
			}
			if !strings.Contains(out.String(), tt.wantOut) || !strings.Contains(out.String(), `appliance "cli-test"`) {
				t.Errorf("stdout %q, want %q and the summary", out.String(), tt.wantOut)
			}
			if tt.accepted {
				select {
				case cfg := <-got:
					if string(cfg) != consoleTestConfig {
						t.Errorf("appliance got %q", cfg)
					}
				case <-ctx.Done():
					t.Fatal("appliance did not accept the config")
				}
			}
		})
	}
}

func TestConsoleUsage(t *testing.T) {
	tests := []struct {
		name    string
		args    []string
		code    int
		wantErr string
	}{
		{"no port", []string{"console", "push", "cfg.hcl"}, exitUsage, "port"},
		{"no file", []string{"console", "push", "--port", "/nonexistent"}, exitUsage, "arg"},
		{"missing port path", []string{"console", "attach", "--port", "/nonexistent/sock"}, exitFailure, "no such file"},
		{"attach takes no args", []string{"console", "attach", "--port", "x", "y"}, exitUsage, "unknown command"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, _, stderr := runCLI(t, tt.args...)
			if code != tt.code || !strings.Contains(stderr, tt.wantErr) {
				t.Errorf("exit %d stderr %q, want %d and %q", code, stderr, tt.code, tt.wantErr)
			}
		})
	}
}
