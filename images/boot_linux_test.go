package images

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/tls"
	"encoding/hex"
	"fmt"
	"io"
	"maps"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/credentials"

	"github.com/holdfast-appliance/holdfast/boards"
	"github.com/holdfast-appliance/holdfast/firmware/appliance"
	"github.com/holdfast-appliance/holdfast/firmware/console"
	"github.com/holdfast-appliance/holdfast/firmware/console/frame"
	"github.com/holdfast-appliance/holdfast/firmware/console/port"
	"github.com/holdfast-appliance/holdfast/images/qemu"
	"github.com/holdfast-appliance/holdfast/services/export"
	"github.com/holdfast-appliance/holdfast/tools/testminio"
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
target "restored" {
  s3 {
    endpoint   = "10.0.2.2:9000"
    bucket     = "restored"
    access_key = "WRITER"
    secret_key = "secret"
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

// vmTest is what every QEMU test starts from: the board with its tools
// checked, a context bounded by the test's budget, a logger, an output
// directory and the image built in it.
type vmTest struct {
	start time.Time // before the build
	ctx   context.Context
	b     *boards.Board
	log   hclog.Logger
	out   string
	r     *Result
}

// startVMTest loads board, checks its tools (check, if set, checks more),
// and builds the image with o (Board, OutDir, ModuleDir and Log are
// filled in) within budget, which also bounds the rest of the test.
func startVMTest(t *testing.T, board, name string, budget time.Duration, o Options, check func(*boards.Board)) *vmTest {
	t.Helper()
	b, err := boards.Load(board)
	if err != nil {
		t.Fatal(err)
	}
	needTools(t, b)
	if check != nil {
		check(b)
	}
	ctx, cancel := context.WithTimeout(context.Background(), budget)
	t.Cleanup(cancel)
	// It ends a minute before go test's own deadline, so that what a
	// test writes at the end (logs, a summary) still gets written.
	if dl, ok := t.Deadline(); ok {
		var c2 context.CancelFunc
		ctx, c2 = context.WithDeadline(ctx, dl.Add(-time.Minute))
		t.Cleanup(c2)
	}
	v := &vmTest{ctx: ctx, b: b, out: t.TempDir(),
		log: hclog.New(&hclog.LoggerOptions{Name: name, Level: hclog.Info, Output: testWriter{t}})}
	o.Board, o.OutDir, o.ModuleDir, o.Log = b, v.out, moduleRoot(t), v.log
	v.start = time.Now()
	if v.r, err = Build(ctx, o); err != nil {
		t.Fatalf("build image: %v", err)
	}
	t.Logf("image built in %s: image %d bytes, UKI %d bytes, kernel %s, initramfs %d bytes (cached %v), PCR 11 %s",
		time.Since(v.start).Round(time.Second), v.r.ImageBytes, v.r.UKIBytes, v.r.KernelPackage, v.r.InitrdBytes, v.r.InitrdCached, v.r.PCR11)
	return v
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

// guest is a booted appliance VM and the test's end of its serial console.
type guest struct {
	t        *testing.T
	vm       *qemu.VM
	port     io.Closer
	c        *frame.Conn
	text     *syncBuffer
	linkDone chan error
	started  time.Time
}

// bootGuest starts the VM with the image and the state directory (OVMF
// variables, swtpm state and data disks persist there between boots) and
// connects to its serial socket at once, so the stream carries everything
// from OVMF on. (QEMU's serial logfile can duplicate bytes when a socket
// write is partial, so checks use the socket stream, not the log.)
func bootGuest(ctx context.Context, t *testing.T, b *boards.Board, image, state string, log hclog.Logger) *guest {
	t.Helper()
	return bootGuestWith(ctx, t, b, image, state, qemu.Config{}, log)
}

// bootGuestWith is bootGuest with more of the VM's configuration (data disk
// size, hardware clock) from c.
func bootGuestWith(ctx context.Context, t *testing.T, b *boards.Board, image, state string, c qemu.Config, log hclog.Logger) *guest {
	t.Helper()
	g := &guest{t: t, text: &syncBuffer{}, linkDone: make(chan error, 1), started: time.Now()}
	accel, err := qemu.AccelFromEnv()
	if err != nil {
		t.Fatal(err)
	}
	if c.Accel == "" {
		c.Accel = accel
	}
	c.Board, c.Image, c.StateDir, c.Console, c.Log = b, image, state, io.Discard, log
	vm, err := qemu.Start(ctx, c)
	if err != nil {
		t.Fatalf("start VM: %v", err)
	}
	g.vm = vm
	p, err := port.Open(ctx, vm.SerialSocket, 0)
	if err != nil {
		_ = vm.Stop(context.Background())
		t.Fatalf("open serial socket: %v", err)
	}
	g.port = p
	g.c = frame.NewConn(p, frame.Options{Text: g.text, Log: log.Named("link")})
	go func() { g.linkDone <- g.c.Run(ctx) }()
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("serial console of the boot started %s:\n%s", g.started.Format(time.TimeOnly), g.text.String())
		}
		g.stop(context.Background())
	})
	return g
}

// consoleSilence is the most a VM test waits for its guest's next console
// byte: a guest that prints nothing for this long is stuck, and the test
// fails there rather than at its budget or go test's deadline. (The
// slowest silent stretch, a TCG boot from OVMF to the kernel, takes
// about a minute.)
const consoleSilence = 10 * time.Minute

// wait waits until the console has shown want. It fails the test at once
// when QEMU exits, and when no console byte arrives for consoleSilence,
// with QEMU's exit status and stderr and the last console lines.
func (g *guest) wait(ctx context.Context, want string) {
	g.t.Helper()
	seen, quiet := 0, time.Now()
	for {
		text := g.text.String()
		if strings.Contains(text, want) {
			return
		}
		if len(text) != seen {
			seen, quiet = len(text), time.Now()
		}
		select {
		case <-ctx.Done():
			g.t.Fatalf("serial console never showed %q (%v); it shows:\n%s", want, ctx.Err(), text)
		case <-g.vm.Done():
			// The last bytes QEMU wrote may still be on their way.
			time.Sleep(200 * time.Millisecond)
			if strings.Contains(g.text.String(), want) {
				return
			}
			g.t.Fatalf("QEMU exited while the test waited for %q: %s\nlast console lines:\n%s", want, g.exitStatus(), lastLines(g.text.String(), 40))
		case <-time.After(250 * time.Millisecond):
			if time.Since(quiet) > consoleSilence {
				g.t.Fatalf("no console output for %s while the test waited for %q (QEMU is still running, accel %s)\nlast console lines:\n%s", consoleSilence, want, g.vm.Accel, lastLines(text, 40))
			}
		}
	}
}

// exitStatus says how QEMU exited: its status and stderr.
func (g *guest) exitStatus() string {
	if err := g.vm.Err(); err != nil {
		return err.Error()
	}
	return "exit status 0 (the guest powered off or QEMU was told to quit)"
}

// live is ctx, canceled with QEMU's exit status as its cause when the VM
// exits: a console exchange on a dead VM fails at once.
func (g *guest) live(ctx context.Context) (context.Context, context.CancelFunc) {
	ctx, cancel := context.WithCancelCause(ctx)
	go func() {
		select {
		case <-g.vm.Done():
			cancel(fmt.Errorf("QEMU exited: %s", g.exitStatus()))
		case <-ctx.Done():
		}
	}()
	return ctx, func() { cancel(nil) }
}

// lastLines is the last n lines of s.
func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// typeLine types a line on the console as a person would (Enter is CR).
func (g *guest) typeLine(s string) {
	g.t.Helper()
	if _, err := g.c.WriteText([]byte(s + "\r")); err != nil {
		g.t.Fatalf("type %q: %v", s, err)
	}
}

// run runs a console command and returns its output.
func (g *guest) run(ctx context.Context, name string, args ...string) string {
	g.t.Helper()
	var out bytes.Buffer
	ctx, cancel := g.live(ctx)
	defer cancel()
	if _, err := console.RunCommand(ctx, g.c, console.Command{Name: name, Args: args}, &out); err != nil {
		g.t.Fatalf("console %s %v: %v (%v)\n%s\nlast console lines:\n%s", name, args, err, context.Cause(ctx), out.String(), lastLines(g.text.String(), 40))
	}
	return out.String()
}

// powerOff types poweroff and waits for the VM to exit (an orderly
// power-off: the disks are unmounted and the kernel's TPM2_Shutdown saves
// the TPM clock, so the next boot's prune trusts the time), then stops it.
func (g *guest) powerOff(ctx context.Context) {
	g.t.Helper()
	g.run(ctx, "poweroff")
	select {
	case <-g.vm.Done():
	case <-time.After(2 * time.Minute):
		g.t.Error("the VM did not power off")
	}
	g.stop(ctx)
}

func (g *guest) stop(ctx context.Context) {
	if g.vm == nil {
		return
	}
	g.port.Close()
	<-g.linkDone
	if err := g.vm.Stop(ctx); err != nil {
		g.t.Errorf("stop VM: %v", err)
	}
	g.vm = nil
}

// randomMails returns n objects inbox/000.eml, inbox/001.eml, ... of least
// to least+spread-1 pseudo-random bytes drawn from rnd.
func randomMails(rnd *rand.Rand, n, least, spread int) map[string][]byte {
	objs := make(map[string][]byte, n)
	for i := range n {
		objs[fmt.Sprintf("inbox/%03d.eml", i)] = randomBytes(rnd, least+rnd.IntN(spread))
	}
	return objs
}

// randomBytes returns n pseudo-random bytes drawn from rnd.
func randomBytes(rnd *rand.Rand, n int) []byte {
	b := make([]byte, n)
	for j := range b {
		b[j] = byte(rnd.Uint32())
	}
	return b
}

// mailConfig is the config of a test appliance called name that pulls
// bucket "mail" of the host's MinIO (the guest reaches the host's loopback
// at 10.0.2.2) every 6 hours and keeps each snapshot 14 days; extra (more
// blocks) is appended.
func mailConfig(name, minioPort, extra string) string {
	return fmt.Sprintf(`appliance { name = %q }
source "mail" {
  s3 {
    endpoint   = "10.0.2.2:%s"
    bucket     = "mail"
    access_key = %q
    secret_key = %q
    tls        = false
  }
  schedule = "every 6h"
  retention {
    all_for = "14d"
  }
}
`, name, minioPort, testminio.AccessKey, testminio.SecretKey) + extra
}

// restoredTarget is the config block of target "restored": bucket
// "restored" of the host's MinIO on port minioPort, where console restores
// go.
func restoredTarget(minioPort string) string {
	return fmt.Sprintf(`target "restored" {
  s3 {
    endpoint   = "10.0.2.2:%s"
    bucket     = "restored"
    access_key = %q
    secret_key = %q
    tls        = false
  }
}
`, minioPort, testminio.AccessKey, testminio.SecretKey)
}

// provision does what an operator does at a new box's console: push the
// config (checking the HELLO and the summary), note the recovery key and
// type written, type a wrong serial (nothing is formatted) and then the
// first data disk's, and wait for the first pull. It returns the recovery
// key.
func provision(ctx context.Context, t *testing.T, g *guest, r *Result, name, cfg string) string {
	t.Helper()
	g.wait(ctx, console.WaitingLine)
	t.Logf("boot 1: QEMU start to %q: %s (accel %s)", console.WaitingLine, time.Since(g.started).Round(time.Millisecond), g.vm.Accel)
	var hello console.Hello
	pctx, cancel := g.live(ctx)
	defer cancel()
	if _, err := console.Push(pctx, g.c, []byte(cfg), console.HostOptions{
		OnHello: func(h console.Hello) { hello = h },
		Confirm: func(summary, prompt string) (string, error) {
			if !strings.Contains(summary, fmt.Sprintf("appliance %q", name)) || !strings.Contains(prompt, "type yes") {
				t.Errorf("summary %q, prompt %q", summary, prompt)
			}
			return "yes", nil
		},
	}); err != nil {
		t.Fatalf("push config: %v (%v)", err, context.Cause(pctx))
	}
	if hello.Board != r.Board || hello.PCR11 != r.PCR11 {
		t.Errorf("HELLO %+v: want board %s and the predicted PCR 11 %s", hello, r.Board, r.PCR11)
	}
	g.wait(ctx, appliance.RecoveryKeyLine)
	g.wait(ctx, "Type 'written'")
	rk := recoveryKeyRE.FindString(g.text.String())
	if rk == "" {
		t.Fatal("no recovery key on the console")
	}
	g.typeLine("written")
	g.wait(ctx, "format HOLDFAST-DATA0")
	// A wrong serial formats nothing.
	g.typeLine("format HOLDFAST-DATA9")
	g.wait(ctx, `no disk has serial "HOLDFAST-DATA9"`)
	g.typeLine("format HOLDFAST-DATA0")
	g.wait(ctx, appliance.ReadyLine)
	t.Logf("boot 1: ready %s after QEMU start", time.Since(g.started).Round(time.Millisecond))
	g.wait(ctx, "snapshot committed")
	return rk
}

// snapshotIDs parses the output of the snapshots command.
func snapshotIDs(out string) []string {
	var ids []string
	for _, l := range strings.Split(out, "\n") {
		f := strings.Fields(l)
		if len(f) > 3 && strings.HasPrefix(f[3], "objects=") {
			ids = append(ids, f[0])
		}
	}
	return ids
}

// objectSums parses the output of ls: key -> sha256.
func objectSums(t *testing.T, out string) map[string]string {
	t.Helper()
	m := map[string]string{}
	for _, l := range strings.Split(strings.ReplaceAll(out, "\r", ""), "\n") {
		f := strings.SplitN(l, " ", 3)
		if len(f) != 3 || len(f[0]) != 64 {
			continue
		}
		k, err := strconv.Unquote(f[2])
		if err != nil {
			t.Fatalf("ls line %q: %v", l, err)
		}
		m[k] = f[0]
	}
	return m
}

func sums(objs map[string][]byte) map[string]string {
	m := map[string]string{}
	for k, v := range objs {
		s := sha256.Sum256(v)
		m[k] = hex.EncodeToString(s[:])
	}
	return m
}

func fileSum(t *testing.T, p string) string {
	t.Helper()
	s, err := fileSHA256(p)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func equalSums(t *testing.T, what string, got, want map[string]string) {
	t.Helper()
	if len(got) != len(want) {
		t.Errorf("%s: %d objects read back, want %d", what, len(got), len(want))
	}
	for k, w := range want {
		if got[k] != w {
			t.Errorf("%s: object %q reads back as %q, want %s", what, k, got[k], w)
		}
	}
}

// tamper writes a copy of the image whose UKI holds an initramfs with one
// byte changed (the gzip header's MTIME, which the kernel ignores, so the
// box still boots) into the ESP of image, keeping its config partition:
// what an attacker who rewrites the boot stick would leave.
func tamper(ctx context.Context, t *testing.T, b *boards.Board, r *Result, out string) {
	t.Helper()
	dir := filepath.Join(out, "tampered")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	initrd, err := os.ReadFile(r.Initramfs)
	if err != nil {
		t.Fatal(err)
	}
	initrd[4] ^= 0x01
	in := UKIInputs{Stub: b.EFIStub, OSRel: filepath.Join(out, "os-release"), Cmdline: filepath.Join(out, "cmdline"),
		Linux: r.Kernel, Initrd: filepath.Join(dir, "initramfs.cpio.gz")}
	if err := os.WriteFile(in.Initrd, initrd, 0o644); err != nil {
		t.Fatal(err)
	}
	uki := filepath.Join(dir, "holdfast.efi")
	if err := BuildUKI(ctx, in, uki); err != nil {
		t.Fatal(err)
	}
	img := filepath.Join(dir, "holdfast.img")
	if err := WriteImage(img, uki, b.EFIBootFile); err != nil {
		t.Fatal(err)
	}
	esp := Layout[0]
	src, err := os.Open(img)
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	dst, err := os.OpenFile(r.Image, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer dst.Close()
	off := int64(esp.StartMiB * mib)
	if _, err := io.Copy(io.NewOffsetWriter(dst, off), io.NewSectionReader(src, off, int64(esp.SizeMiB*mib))); err != nil {
		t.Fatal(err)
	}
	if err := dst.Sync(); err != nil {
		t.Fatal(err)
	}
}

var lockedRE = regexp.MustCompile(`removed from a read-only /dev: devices="([^"]*)"`)

var recoveryKeyRE = regexp.MustCompile(`\b\d{6}(-\d{6}){7}\b`)

// TestApplianceEndToEnd is the appliance's life in one test, under TCG
// where there is no KVM: build the qemu-x86_64 image; boot it with swtpm
// and two blank data disks; push a config over the serial socket pointing
// at a MinIO on the host's loopback (10.0.2.2 from the guest); write down
// the recovery key; format a data disk by typing its serial; wait for the
// first pull; change the bucket and pull again; power off. Boot again:
// the key unseals with no question asked and both snapshots verify and
// read back byte-identical. Then change one byte of the initramfs: the
// key does not unseal, the console shows safe mode, and both data disks
// are byte-identical after that boot. Last, the paper recovery key
// unlocks the box at the console and it runs again.
func TestApplianceEndToEnd(t *testing.T) {
	v := startVMTest(t, "qemu-x86_64", "e2e", 25*time.Minute, Options{}, nil)
	ctx, b, r, log, out := v.ctx, v.b, v.r, v.log, v.out

	// The source: a bucket on a real MinIO, hostile keys included.
	mc := testminio.Start(t)
	mc.MakeBucket(t, "mail", false)
	mc.MakeBucket(t, "restored", false) // the console restore's target
	_, port, _ := strings.Cut(mc.Endpoint, ":")
	rnd := rand.New(rand.NewPCG(1, 2))
	objs := randomMails(rnd, 20, 1000, 20000)
	objs["archive/big.mbox"] = randomBytes(rnd, 3<<20)
	objs["weird/ünïcode \t tab"] = []byte("hostile key 1")
	objs["weird/spa ce & ?query=1%20"] = []byte("hostile key 2")
	objs["weird/\x1b[2Jescape"] = []byte("hostile key 3")
	for k, v := range objs {
		mc.Put(t, "mail", k, v, minio.PutObjectOptions{ContentType: "message/rfc822"})
	}
	first := maps.Clone(objs)
	cfg := mailConfig("holdfast-e2e", port, restoredTarget(port)+fmt.Sprintf(`export {
  access_key = %q
  secret_key = %q
}
`, exportAccess, exportSecret))
	state := filepath.Join(out, "vm")
	// The opt-in export (port 9443 in the guest) reaches the host's
	// loopback through QEMU's user network, and nothing else does.
	exportPort := freePort(t)

	// Boot 1: first boot.
	g := bootGuestWith(ctx, t, b, r.Image, state, qemu.Config{HostForward: []string{fmt.Sprintf("tcp:127.0.0.1:%d-:9443", exportPort)}}, log)
	rk := provision(ctx, t, g, r, "holdfast-e2e", cfg)
	for _, want := range []string{
		"phase 1/8 boot", "phase 2/8 board", "module loaded: module=ext4", "phase 4/8 keys",
		"phase 5/8 disks: new data disk; the worker creates the store", "phase 6/8 maintenance", "phase 7/8 lockdown", "network up",
		"lockdown done: mounts read-only, PID 1 limited",
	} {
		if !strings.Contains(g.text.String(), want) {
			t.Errorf("boot 1: serial console lacks %q", want)
		}
	}
	// Every disk node, the TPM and the console's serial line were closed.
	if m := lockedRE.FindStringSubmatch(g.text.String()); m == nil {
		t.Error("boot 1: no list of device nodes removed from /dev on the console")
	} else {
		locked := strings.Fields(m[1])
		for _, d := range []string{"vda", "vda1", "vdb", "vdc", "tpm0", "tpmrm0", "ttyS0", "mem", "port"} {
			if !slices.Contains(locked, d) {
				t.Errorf("boot 1: /dev/%s was not removed: %v", d, locked)
			}
		}
	}
	if strings.Contains(g.text.String(), rk) && strings.Count(g.text.String(), rk) != 1 {
		t.Errorf("the recovery key appears %d times on the console, want once", strings.Count(g.text.String(), rk))
	}

	// Lockdown: nothing listens but the opt-in export; the worker, the
	// sealer and the export run each under its own uid and gid (the
	// sealer and the export in the worker's group, the store's) with no
	// capability but the sealer's CAP_LINUX_IMMUTABLE and CAP_FOWNER, in
	// their bounding sets too, and no_new_privs. (TestAttackSuite,
	// without an export, wants 0.)
	if socks := g.run(ctx, "sockets"); !strings.Contains(socks, "1 listening socket(s)") || !strings.Contains(socks, ":24E3 state 0A") { // 9443, LISTEN
		t.Errorf("listening sockets in the guest, want the export's only:\n%s", socks)
	}
	procs := g.run(ctx, "processes")
	for _, want := range []string{
		`name="holdfast-worker" uid=1000 gid=1000 groups=- cap_eff=0000000000000000 cap_bnd=0000000000000000 no_new_privs=1`,
		`name="holdfast-sealer" uid=1001 gid=1001 groups=1000 cap_eff=0000000000000208 cap_bnd=0000000000000208 no_new_privs=1`,
		`name="holdfast-export" uid=1002 gid=1002 groups=1000 cap_eff=0000000000000000 cap_bnd=0000000000000000 no_new_privs=1`,
	} {
		if !strings.Contains(procs, want) {
			t.Errorf("processes lack %q:\n%s", want, procs)
		}
	}
	t.Logf("guest processes:\n%s", procs)

	// Change the bucket: add, change, delete; then pull again.
	for i := range 3 {
		k := fmt.Sprintf("inbox/new-%d.eml", i)
		objs[k] = []byte(fmt.Sprintf("new mail %d", i))
		mc.Put(t, "mail", k, objs[k], minio.PutObjectOptions{})
	}
	for _, k := range []string{"inbox/001.eml", "inbox/002.eml"} {
		objs[k] = append([]byte("changed "), objs[k]...)
		mc.Put(t, "mail", k, objs[k], minio.PutObjectOptions{})
	}
	for _, k := range []string{"inbox/003.eml", "weird/spa ce & ?query=1%20"} {
		delete(objs, k)
		if err := mc.Client.RemoveObject(ctx, "mail", k, minio.RemoveObjectOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	second := maps.Clone(objs)
	t.Logf("pull: %s", g.run(ctx, "pull", "mail"))
	ids := snapshotIDs(g.run(ctx, "snapshots"))
	if len(ids) != 2 {
		t.Fatalf("%d snapshots after two pulls, want 2: %v", len(ids), ids)
	}
	equalSums(t, "boot 1, snapshot 1", objectSums(t, g.run(ctx, "ls", ids[0])), sums(first))
	equalSums(t, "boot 1, snapshot 2", objectSums(t, g.run(ctx, "ls", ids[1])), sums(second))
	// Extend and hold at the console: PID 1 prints done only once it has
	// read the sealed record itself.
	for _, args := range [][]string{{"extend", ids[0], "90d"}, {"hold", ids[0]}} {
		if out := g.run(ctx, args[0], args[1:]...); !strings.Contains(out, "done (sealed record confirmed)") {
			t.Errorf("%v: %s", args, out)
		}
	}
	if out := g.run(ctx, "snapshots"); !regexp.MustCompile(regexp.QuoteMeta(ids[0]) + `[^\n]* HOLD`).MatchString(out) {
		t.Errorf("snapshot %s is not shown under hold:\n%s", ids[0], out)
	}
	// Restore the second snapshot at the console to another bucket of the
	// host's MinIO: PID 1 and then the worker check the receipt, the
	// worker every chunk, and every object (hostile keys too) comes back
	// byte-identical.
	restored := g.run(ctx, "restore", ids[1], "restored")
	t.Logf("restore: %s", restored)
	if !strings.Contains(restored, fmt.Sprintf("restore: done: %d objects", len(second))) || !strings.Contains(restored, "receipt verified") ||
		!strings.Contains(restored, "receipt checked by PID 1 (manifest sha256 ") {
		t.Errorf("restore output lacks the summary:\n%s", restored)
	}
	equalSums(t, "boot 1, snapshot 2 restored to S3", bucketSums(ctx, t, mc, "restored"), sums(second))
	// The export, from the host: every object of the newest snapshot reads
	// back byte-identical under latest/, and every write is refused.
	checkExport(ctx, t, g, exportPort, second)
	// An offline copy to the blank second disk: asked for now, made at
	// the next boot, before lockdown.
	if out := g.run(ctx, "copy-disk", "HOLDFAST-DATA1"); !strings.Contains(out, "at the next boot") {
		t.Errorf("copy-disk: %s", out)
	}
	g.powerOff(ctx)

	// Boot 2: the key unseals by itself; both snapshots verify and read back.
	g = bootGuest(ctx, t, b, r.Image, state, log)
	g.wait(ctx, appliance.ReadyLine)
	t.Logf("boot 2: ready %s after QEMU start", time.Since(g.started).Round(time.Millisecond))
	for _, bad := range []string{console.WaitingLine, appliance.SafeModeLine, "format HOLDFAST"} {
		if strings.Contains(g.text.String(), bad) {
			t.Errorf("boot 2 shows %q", bad)
		}
	}
	for _, want := range []string{"phase 5/8 disks: store open", "prune done: expired=0 kept=2", "Offline copy done"} {
		if !strings.Contains(g.text.String(), want) {
			t.Errorf("boot 2: the console lacks %q", want)
		}
	}
	if v := g.run(ctx, "verify"); !strings.Contains(v, "verify OK") {
		t.Errorf("verify: %s", v)
	}
	equalSums(t, "boot 2, snapshot 1", objectSums(t, g.run(ctx, "ls", ids[0])), sums(first))
	equalSums(t, "boot 2, snapshot 2", objectSums(t, g.run(ctx, "ls", ids[1])), sums(second))
	g.stop(ctx)
	// The offline copy, on the host, as after a disaster: holdfast
	// restore --disk with the paper key, to a bucket; byte-identical.
	checkOfflineCopy(ctx, t, mc, filepath.Join(state, "data1.qcow2"), rk, ids[1], second)

	// Boot 3: one byte of the initramfs changed: safe mode, disks untouched.
	tamper(ctx, t, b, r, out)
	disksBefore := []string{fileSum(t, filepath.Join(state, "data0.qcow2")), fileSum(t, filepath.Join(state, "data1.qcow2"))}
	g = bootGuest(ctx, t, b, r.Image, state, log)
	g.wait(ctx, appliance.SafeModeLine)
	t.Logf("boot 3 (tampered initramfs): safe mode %s after QEMU start", time.Since(g.started).Round(time.Millisecond))
	if st := g.run(ctx, "status"); !strings.Contains(st, appliance.SafeModeLine) {
		t.Errorf("status in safe mode: %s", st)
	}
	if strings.Contains(g.text.String(), "mounted data disk") {
		t.Error("a data disk was mounted in safe mode")
	}
	g.stop(ctx)
	disksAfter := []string{fileSum(t, filepath.Join(state, "data0.qcow2")), fileSum(t, filepath.Join(state, "data1.qcow2"))}
	if !slices.Equal(disksBefore, disksAfter) {
		t.Errorf("data disks changed during the safe-mode boot: %v -> %v", disksBefore, disksAfter)
	}

	// Boot 4: the operator accepts the new firmware with the paper key.
	g = bootGuest(ctx, t, b, r.Image, state, log)
	g.wait(ctx, appliance.SafeModeLine)
	g.typeLine("unlock 000000-000000")
	g.wait(ctx, "error: recovery key")
	g.typeLine("unlock " + rk)
	// unlock shows the config it would reseal to and waits for yes.
	g.wait(ctx, "Type 'unlock yes'")
	if !strings.Contains(g.text.String(), `appliance "`) {
		t.Error("unlock did not show the config summary before resealing")
	}
	g.typeLine("unlock yes")
	g.wait(ctx, appliance.ReadyLine)
	if v := g.run(ctx, "verify"); !strings.Contains(v, "verify OK") {
		t.Errorf("verify after unlock: %s", v)
	}
	equalSums(t, "boot 4, snapshot 2", objectSums(t, g.run(ctx, "ls", ids[1])), sums(second))
	g.stop(ctx)
	t.Logf("end to end in %s", time.Since(v.start).Round(time.Second))
}

type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

// bucketSums reads every object of a bucket of the host's MinIO back:
// key -> sha256.
// Credentials of the test's export block.
const (
	exportAccess = "e2e-reader"
	exportSecret = "e2e-export-secret-0123456789"
)

// freePort is a TCP port free on the host's loopback.
func freePort(t *testing.T) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

// checkExport reads the appliance's export through the forwarded port with
// minio-go: the certificate must be the one the export logged, latest/ of
// bucket mail must hold want byte for byte, and a PUT and a DELETE must be
// refused. The export's own tests (services/export) cover rclone, the
// second-store chain and every refused verb.
func checkExport(ctx context.Context, t *testing.T, g *guest, port int, want map[string][]byte) {
	t.Helper()
	m := regexp.MustCompile(`export listening: .*sha256_fingerprint=([0-9A-F:]+)`).FindStringSubmatch(g.text.String())
	if m == nil {
		t.Fatal("the console does not show the export's certificate fingerprint")
	}
	tr := &http.Transport{TLSClientConfig: &tls.Config{
		InsecureSkipVerify: true, // self-signed: pinned to the logged fingerprint below
		VerifyConnection: func(cs tls.ConnectionState) error {
			if got := export.Fingerprint(cs.PeerCertificates[0].Raw); got != m[1] {
				return fmt.Errorf("export certificate %s, the console showed %s", got, m[1])
			}
			return nil
		},
	}}
	c, err := minio.New(fmt.Sprintf("127.0.0.1:%d", port), &minio.Options{
		Creds: credentials.NewStaticV4(exportAccess, exportSecret, ""), Secure: true, Transport: tr, Region: "us-east-1",
	})
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]string{}
	for o := range c.ListObjects(ctx, "mail", minio.ListObjectsOptions{Prefix: "latest/", Recursive: true}) {
		if o.Err != nil {
			t.Fatalf("export: list: %v", o.Err)
		}
		r, err := c.GetObject(ctx, "mail", o.Key, minio.GetObjectOptions{})
		if err != nil {
			t.Fatalf("export: get %q: %v", o.Key, err)
		}
		h := sha256.New()
		_, err = io.Copy(h, r)
		r.Close()
		if err != nil {
			t.Fatalf("export: get %q: %v", o.Key, err)
		}
		got[strings.TrimPrefix(o.Key, "latest/")] = hex.EncodeToString(h.Sum(nil))
	}
	equalSums(t, "export latest/", got, sums(want))
	if _, err := c.PutObject(ctx, "mail", "latest/inbox/000.eml", strings.NewReader("overwritten"), 11, minio.PutObjectOptions{}); err == nil {
		t.Error("export: a PUT was accepted")
	}
	if err := c.RemoveObject(ctx, "mail", "latest/inbox/000.eml", minio.RemoveObjectOptions{}); err == nil {
		t.Error("export: a DELETE was accepted")
	}
	t.Logf("export: %d objects read back through the forwarded port; PUT and DELETE refused", len(got))
}

// checkOfflineCopy restores snapshot id from the offline copy disk image
// with the holdfast command, as a user would on any Linux PC, and compares
// every object with want.
func checkOfflineCopy(ctx context.Context, t *testing.T, mc *testminio.Server, qcow, rk, id string, want map[string][]byte) {
	t.Helper()
	dir := t.TempDir()
	raw := filepath.Join(dir, "copy.img")
	if out, err := exec.CommandContext(ctx, "qemu-img", "convert", "-O", "raw", qcow, raw).CombinedOutput(); err != nil {
		t.Fatalf("qemu-img convert: %v: %s", err, out)
	}
	bin := filepath.Join(dir, "holdfast")
	build := exec.CommandContext(ctx, "go", "build", "-o", bin, "./tools/holdfast")
	build.Dir = moduleRoot(t)
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("build holdfast: %v: %s", err, out)
	}
	cfg := filepath.Join(dir, "target.hcl")
	if err := os.WriteFile(cfg, []byte(fmt.Sprintf("target {\n  endpoint = %q\n  access_key = %q\n  secret_key = %q\n  tls = false\n}\n",
		mc.Endpoint, testminio.AccessKey, testminio.SecretKey)), 0o600); err != nil {
		t.Fatal(err)
	}
	mc.MakeBucket(t, "from-copy", false)
	cmd := exec.CommandContext(ctx, bin, "restore", "--disk", raw, "--recovery-key", "-", "--snapshot", id, "--to", "s3://from-copy/", "--config", cfg)
	cmd.Stdin = strings.NewReader(rk + "\n")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("holdfast restore --disk (the offline copy): %v\n%s", err, out)
	}
	equalSums(t, "offline copy, restored with the paper key", bucketSums(ctx, t, mc, "from-copy"), sums(want))
	t.Logf("offline copy: snapshot %s restored from the copy disk with the paper key: %d objects", id, len(want))
}

func bucketSums(ctx context.Context, t *testing.T, mc *testminio.Server, bucket string) map[string]string {
	t.Helper()
	m := map[string]string{}
	for o := range mc.Client.ListObjects(ctx, bucket, minio.ListObjectsOptions{Recursive: true}) {
		if o.Err != nil {
			t.Fatalf("list bucket %s: %v", bucket, o.Err)
		}
		r, err := mc.Client.GetObject(ctx, bucket, o.Key, minio.GetObjectOptions{})
		if err != nil {
			t.Fatalf("get %q: %v", o.Key, err)
		}
		h := sha256.New()
		_, err = io.Copy(h, r)
		r.Close()
		if err != nil {
			t.Fatalf("get %q: %v", o.Key, err)
		}
		m[o.Key] = hex.EncodeToString(h.Sum(nil))
	}
	return m
}
