package images

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/holdfast-appliance/holdfast/boards"
	"github.com/holdfast-appliance/holdfast/firmware/console"
	"github.com/holdfast-appliance/holdfast/firmware/console/frame"
	"github.com/holdfast-appliance/holdfast/firmware/console/port"
	"github.com/holdfast-appliance/holdfast/images/qemu"
)

const bootTestConfig = `appliance { name = "holdfast-boot-test" }
source "mail" {
  s3 {
    endpoint   = "10.0.2.2:9000"
    bucket     = "mail"
    access_key = "READONLY"
    secret_key = "secret"
  }
  schedule = "every 6h"
  retention {
    all_for = "14d"
  }
}
`

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// needTools fails (never skips) when what building and booting needs is
// missing.
func needTools(t *testing.T, b *boards.Board) {
	t.Helper()
	if err := qemu.CheckTools(b); err != nil {
		t.Fatalf("%v", err)
	}
	for _, bin := range []string{"objcopy", "depmod", "apt-get", "dpkg-deb", "go"} {
		if _, err := exec.LookPath(bin); err != nil {
			t.Fatalf("%s is not installed: run make setup", bin)
		}
	}
	if _, err := os.Stat(b.EFIStub); err != nil {
		t.Fatalf("systemd-stub missing (%v): run make setup", err)
	}
}

func moduleRoot(t *testing.T) string {
	t.Helper()
	wd, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	for d := wd; d != "/"; d = filepath.Dir(d) {
		if _, err := os.Stat(filepath.Join(d, "go.mod")); err == nil {
			return d
		}
	}
	t.Fatal("go.mod not found")
	return ""
}

func waitText(ctx context.Context, t *testing.T, text *syncBuffer, want string) {
	t.Helper()
	for !strings.Contains(text.String(), want) {
		select {
		case <-ctx.Done():
			t.Fatalf("serial console never showed %q (%v); it shows:\n%s", want, ctx.Err(), text.String())
		case <-time.After(250 * time.Millisecond):
		}
	}
}

// TestBootQEMU builds the qemu-x86_64 image, boots it under OVMF with
// swtpm and two blank data disks (TCG where there is no KVM), waits for
// the banner and the config prompt, pushes a config over the serial
// socket, checks the appliance accepted it and that the PCR 11 the guest
// reads equals the one the build predicted, and powers off.
func TestBootQEMU(t *testing.T) {
	b, err := boards.Load("qemu-x86_64")
	if err != nil {
		t.Fatal(err)
	}
	needTools(t, b)
	ctx, cancel := context.WithTimeout(context.Background(), 8*time.Minute)
	defer cancel()
	log := hclog.New(&hclog.LoggerOptions{Name: "boot-test", Level: hclog.Info, Output: testWriter{t}})
	out := t.TempDir()

	start := time.Now()
	r, err := Build(ctx, Options{Board: b, OutDir: out, ModuleDir: moduleRoot(t), Log: log})
	if err != nil {
		t.Fatalf("build image: %v", err)
	}
	t.Logf("image built in %s: image %d bytes, UKI %d bytes, initramfs %d bytes (cached %v), PCR 11 %s",
		time.Since(start).Round(time.Second), r.ImageBytes, r.UKIBytes, r.InitrdBytes, r.InitrdCached, r.PCR11)

	screen := &syncBuffer{}
	bootStart := time.Now()
	vm, err := qemu.Start(ctx, qemu.Config{
		Board: b, Image: r.Image, StateDir: filepath.Join(out, "vm"), Accel: "auto", Console: screen, Log: log,
	})
	if err != nil {
		t.Fatalf("start VM: %v", err)
	}
	defer func() {
		if t.Failed() {
			t.Logf("console:\n%s", screen.String())
		}
	}()
	defer vm.Stop(context.Background())
	for _, p := range []string{"data0.qcow2", "data1.qcow2", "efivars.fd"} {
		if _, err := os.Stat(filepath.Join(out, "vm", p)); err != nil {
			t.Errorf("VM state: %v", err)
		}
	}

	// Connect at once: the socket then carries everything from OVMF on.
	// (QEMU's serial logfile can duplicate bytes when a socket write is
	// partial, so the checks below use the socket stream, not the log.)
	p, err := port.Open(ctx, vm.SerialSocket, 0)
	if err != nil {
		t.Fatalf("open serial socket: %v", err)
	}
	text := &syncBuffer{}
	c := frame.NewConn(p, frame.Options{Text: text, Log: log.Named("link")})
	linkDone := make(chan error, 1)
	go func() { linkDone <- c.Run(ctx) }()

	waitText(ctx, t, text, "==== Holdfast appliance")
	waitText(ctx, t, text, console.WaitingLine)
	t.Logf("QEMU start to %q: %s (accel %s)", console.WaitingLine, time.Since(bootStart).Round(time.Millisecond), vm.Accel)

	pushStart := time.Now()
	var hello console.Hello
	res, err := console.Push(ctx, c, []byte(bootTestConfig), console.HostOptions{
		OnHello: func(h console.Hello) { hello = h },
		Confirm: func(summary, prompt string) (string, error) {
			if !strings.Contains(summary, `appliance "holdfast-boot-test"`) || !strings.Contains(prompt, "type yes") {
				t.Errorf("summary %q, prompt %q", summary, prompt)
			}
			return "yes", nil
		},
	})
	if err != nil {
		t.Fatalf("push config: %v", err)
	}
	if err := c.Drain(ctx); err != nil {
		t.Fatal(err)
	}
	t.Logf("config pushed and confirmed in %s: %s", time.Since(pushStart).Round(time.Millisecond), res.Message)
	if hello.Board != b.Name || hello.PCR11 != r.PCR11 {
		t.Errorf("HELLO %+v: want board %s and the predicted PCR 11 %s", hello, b.Name, r.PCR11)
	}
	waitText(ctx, t, text, "ready: idle in safe mode")
	for _, want := range []string{
		"phase 1/8 boot", "phase 2/8 board", "module loaded: module=virtio_blk",
		"phase 3/8 config", "TPM present: pcr11=" + r.PCR11, console.AcceptedLine,
		// Three virtio disks: the boot image and two data disks.
		`devices="vda vdb vdc"`,
	} {
		if !strings.Contains(text.String(), want) {
			t.Errorf("serial console lacks %q", want)
		}
	}
	if t.Failed() {
		t.Logf("serial console:\n%s", text.String())
	}

	p.Close()
	<-linkDone
	stopStart := time.Now()
	if err := vm.Stop(ctx); err != nil {
		t.Fatalf("stop VM: %v", err)
	}
	select {
	case <-vm.Done():
	default:
		t.Fatal("QEMU still running after Stop")
	}
	t.Logf("powered off in %s; total %s", time.Since(stopStart).Round(time.Millisecond), time.Since(start).Round(time.Second))
}

type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}
