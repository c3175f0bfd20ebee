package qemu

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/holdfast-appliance/holdfast/boards"
	"github.com/holdfast-appliance/holdfast/firmware/console/frame"
)

// Defaults.
const (
	DefaultDataDiskSize = 8 << 30
	// KVMProgressTimeout is how long a KVM guest may stay silent on the
	// serial line before the runner restarts it under TCG.
	KVMProgressTimeout = 60 * time.Second
)

// ErrMissingTools means QEMU, its firmware or swtpm is not installed.
var ErrMissingTools = errors.New("missing tools for running the VM; run make setup")

// virtFlashSize is the size of each of the two flash banks of QEMU's arm
// "virt" machine; QEMU refuses a pflash image of any other size.
const virtFlashSize = 64 << 20

// flashSize is the size a machine requires of its pflash images, or 0 when
// an image is used at its own size (q35 takes OVMF's 4 MiB files as they
// are).
func flashSize(machine string) int64 {
	if machine == "virt" || strings.HasPrefix(machine, "virt-") {
		return virtFlashSize
	}
	return 0
}

// KVMArch reports whether KVM can run a guest of Debian architecture arch
// on this host: only the host's own architecture (GOARCH and the Debian
// name agree for amd64 and arm64).
func KVMArch(arch string) bool { return arch == runtime.GOARCH }

// Config describes a VM.
type Config struct {
	Board *boards.Board
	// Image is the boot disk (holdfast.img). It is used in place.
	Image string
	// StateDir holds the VM's files: OVMF variables, TPM state, data
	// disks, sockets and the serial log. Data disks and TPM state persist
	// across runs on the same StateDir.
	StateDir string
	// Accel is AccelAuto (the default), AccelKVM or AccelTCG.
	Accel string
	// KVMProbe says, for AccelAuto, whether to try KVM first: nil means
	// yes. Left nil, Start probes this host (hostKVMProbe). Tests set it
	// to try KVM whatever the host, to prove the fallback.
	KVMProbe func(ctx context.Context, c Config) error
	// KVMSilence is how long a guest tried under KVM by AccelAuto may stay
	// silent on the serial line before it is restarted under TCG
	// (default KVMProgressTimeout).
	KVMSilence   time.Duration
	DataDiskSize int64
	// RTCBase, when set, is QEMU's -rtc base= (a UTC time such as
	// "2036-11-22T10:00:00"): the guest's hardware clock starts there.
	// Tests use it to move the wall clock while the TPM clock runs on.
	RTCBase string
	// TapNIC, when set, is an open tap device (/dev/net/tun after
	// TUNSETIFF) that becomes the guest's second network card, with MAC
	// TapMAC. Tests create the tap inside a network namespace of their
	// own and scan the guest from there.
	TapNIC *os.File
	// HostForward are QEMU user-network hostfwd rules for the first card,
	// e.g. "tcp:127.0.0.1:18443-:9443" (the host's loopback only).
	HostForward []string
	// DataDiskFaults[i], when not empty, is the text of a QEMU blkdebug
	// rules file for data disk i (FailAllAfterFirstAlloc, FailWrites or
	// rules of one's own). The VM writes it to dataN.blkdebug in StateDir
	// and stacks the disk as qcow2 on blkdebug on the qcow2 file, so the
	// rules see the events the qcow2 driver raises on its file (read_aio,
	// write_aio, cluster_alloc, flush_to_disk...) and fail the requests
	// qcow2 then sends to the file. The guest gets the errors: QEMU's
	// defaults rerror=report and werror=enospc report EIO to the guest
	// rather than pausing the VM. The rules' state starts afresh at every
	// QEMU start; the qcow2 file keeps what was written before an error.
	DataDiskFaults [2]string
	// DetachDataDisk[i] leaves data disk i out of the VM, as a disk that
	// has gone missing (DataDiskFaults[i] is then ignored). Its qcow2 file
	// stays in StateDir, untouched, for a later run (it is still created
	// blank when absent).
	DetachDataDisk [2]bool
	// Console receives the serial console's text for a person; nil
	// discards it.
	Console io.Writer
	Log     hclog.Logger
}

// Blkdebug rule sets for Config.DataDiskFaults, verified with qemu-io 7.2
// (TestDataDiskFaultRules). blkdebug starts in state 1. When an event
// fires, every rule of that event whose state matches the current one
// acts (all of them see the state as it was before the event; a
// [set-state] takes effect after). An [inject-error] rule that acts
// becomes active: from then on every request that reaches blkdebug (from
// qcow2, for the file) of the rule's iotype (one type per rule; without
// iotype read, write, write-zeroes, discard and flush) fails with errno,
// until an event activates other [inject-error] rules in its place or,
// with once, after one error; the state is not looked at again. A guest
// read of a range qcow2 never allocated reads zeros without reading data
// from the file, so it fails only if qcow2 has to load one of its tables
// from the file then. qcow2 changes its tables in a cache first: a
// guest write-zeroes of whole clusters fails with EIO when the tables
// cannot be written back, yet the cached tables keep the change, so the
// range reads zeros until QEMU exits (the file never gets it).
const (
	// FailAllAfterFirstAlloc lets the guest read and write the clusters
	// the image already has without error. The first time qcow2 allocates
	// a cluster (event cluster_alloc: the guest writes where nothing was
	// ever written, e.g. a new pack; a fresh file system's journal also
	// takes new clusters the first time round) the error rule becomes
	// active, and the state moves to 2 for good so that it acts only
	// once: from then on every read, write, write-zeroes, discard and flush
	// qcow2 sends to the file fails with EIO (errno 5), for the rest of
	// the run. The allocating write fails itself, before anything of it
	// reaches the file, and so does every later guest write and every
	// guest read of an allocated range.
	FailAllAfterFirstAlloc = `[set-state]
event = "cluster_alloc"
state = "1"
new_state = "2"

[inject-error]
event = "cluster_alloc"
state = "1"
errno = "5"
`
	// FailWrites fails every write, write-zeroes and flush request with
	// EIO (errno 5) from the moment the disk is opened (event none, which
	// blkdebug raises once at open), qcow2's metadata writes included;
	// reads work, so the guest reads the data as it was. Discards are not
	// failed: the data disks are attached with QEMU's default
	// discard=ignore, so the guest's discards never reach the image.
	FailWrites = `[inject-error]
event = "none"
iotype = "write"
errno = "5"

[inject-error]
event = "none"
iotype = "write-zeroes"
errno = "5"

[inject-error]
event = "none"
iotype = "flush"
errno = "5"
`
)

// DataDiskPath is the qcow2 file of data disk i (0 or 1) in a VM's state
// directory.
func DataDiskPath(stateDir string, i int) string {
	return filepath.Join(stateDir, fmt.Sprintf("data%d.qcow2", i))
}

// dataDiskRules is where the VM writes data disk i's blkdebug rules.
func dataDiskRules(stateDir string, i int) string {
	return filepath.Join(stateDir, fmt.Sprintf("data%d.blkdebug", i))
}

// dataDriveOpts are the block options of data disk i's -drive: the qcow2
// file, or with faults qcow2 on blkdebug on the file.
func dataDriveOpts(c Config, i int) string {
	p := DataDiskPath(c.StateDir, i)
	if c.DataDiskFaults[i] == "" {
		return "format=qcow2,file=" + p
	}
	return "driver=qcow2,file.driver=blkdebug,file.config=" + dataDiskRules(c.StateDir, i) +
		",file.image.driver=file,file.image.filename=" + p
}

// dataDiskArgs are QEMU's arguments for the data disks that are attached.
func dataDiskArgs(c Config) []string {
	var args []string
	for i := range 2 {
		if c.DetachDataDisk[i] {
			continue
		}
		args = append(args,
			"-drive", fmt.Sprintf("if=none,id=data%d,%s", i, dataDriveOpts(c, i)),
			"-device", fmt.Sprintf("%s,drive=data%d,serial=HOLDFAST-DATA%d", c.Board.QEMU.DiskDevice, i, i))
	}
	return args
}

// userNetdev is the first card's user-mode network with its forwards.
func userNetdev(fwd []string) string {
	s := "user,id=net0"
	for _, f := range fwd {
		s += ",hostfwd=" + f
	}
	return s
}

// TapMAC is the MAC address of the guest's tap network card (Config.TapNIC).
// Its IPv6 link-local address is fe80::5054:ff:fe48:4601 (EUI-64).
const TapMAC = "52:54:00:48:46:01"

// VM is a running virtual machine.
type VM struct {
	cfg Config
	// SerialSocket is the console's unix socket; it exists once Start has
	// returned. serialStarting is where QEMU binds it until then.
	SerialSocket   string
	serialStarting string
	SerialLog      string
	Monitor        string
	Accel          string

	swtpm, qemu *exec.Cmd
	swtpmDone   chan struct{}
	qemuDone    chan struct{}
	qemuErr     error
	exited      *AccelError // how QEMU exited; set before qemuDone closes
	tailStop    chan struct{}
	tailDone    chan struct{}
	stopOnce    sync.Once
}

// CheckTools reports which of the programs and files the board's VM needs
// are missing, as an error wrapping ErrMissingTools.
func CheckTools(b *boards.Board) error {
	if b.QEMU == nil {
		return fmt.Errorf("board %s does not run under QEMU", b.Name)
	}
	var missing []string
	bins := []string{b.QEMU.Binary, "qemu-img"}
	if b.QEMU.TPMDevice != "" {
		bins = append(bins, "swtpm")
	}
	for _, bin := range bins {
		if _, err := exec.LookPath(bin); err != nil {
			missing = append(missing, bin)
		}
	}
	for _, f := range []string{b.QEMU.FirmwareCode, b.QEMU.FirmwareVars} {
		if _, err := os.Stat(f); err != nil {
			missing = append(missing, f)
		}
	}
	if len(missing) > 0 {
		return fmt.Errorf("%w: %s", ErrMissingTools, strings.Join(missing, ", "))
	}
	return nil
}

// KVMUsable reports whether /dev/kvm can be opened for reading and writing.
func KVMUsable() bool {
	f, err := os.OpenFile("/dev/kvm", os.O_RDWR, 0)
	if err != nil {
		return false
	}
	f.Close()
	return true
}

// Start prepares the state directory and boots the VM. Under AccelAuto it
// first asks Config.KVMProbe (by default a probe of this host, cached per
// boot) whether KVM can run the board's guest; if it says yes and QEMU
// still exits, or the guest prints nothing within KVMSilence, the KVM VM
// is torn down completely (QEMU, swtpm, sockets, log follower) and the VM
// is started afresh under TCG with a fresh swtpm on the same TPM state.
// The serial socket appears at VM.SerialSocket only once the accelerator
// is settled, so a client never connects to a VM that is about to go.
func Start(ctx context.Context, c Config) (*VM, error) {
	if err := CheckTools(c.Board); err != nil {
		return nil, err
	}
	if c.Log == nil {
		c.Log = hclog.NewNullLogger()
	}
	if c.Console == nil {
		c.Console = io.Discard
	}
	if c.DataDiskSize <= 0 {
		c.DataDiskSize = DefaultDataDiskSize
	}
	if c.KVMSilence <= 0 {
		c.KVMSilence = KVMProgressTimeout
	}
	if err := os.MkdirAll(c.StateDir, 0o755); err != nil {
		return nil, fmt.Errorf("vm state: %w", err)
	}
	if err := prepare(ctx, c); err != nil {
		return nil, err
	}
	accel, fallback, err := resolveAccel(ctx, c)
	if err != nil {
		return nil, err
	}
	v, err := boot(ctx, c, accel)
	if err == nil && fallback {
		// Some hosts offer /dev/kvm yet QEMU aborts, or the guest hangs
		// in early boot: no serial output at all means no progress.
		if err = v.waitOutput(ctx, c.KVMSilence); err != nil {
			_ = v.Stop(context.WithoutCancel(ctx))
		}
	}
	if err != nil && fallback && ctx.Err() == nil {
		c.Log.Warn("KVM cannot run this guest; restarting it under TCG", "reason", err)
		accel = AccelTCG
		v, err = boot(ctx, c, accel)
	}
	if err != nil {
		return nil, err
	}
	if err := os.Rename(v.serialStarting, v.SerialSocket); err != nil {
		_ = v.Stop(context.WithoutCancel(ctx))
		return nil, fmt.Errorf("vm serial socket: %w", err)
	}
	return v, nil
}

// prepare creates what persists across runs: UEFI variables and data
// disks; and, for a machine with fixed flash banks whose firmware file is
// smaller, a padded copy of the firmware code.
func prepare(ctx context.Context, c Config) error {
	q := c.Board.QEMU
	size := flashSize(q.Machine)
	vars := filepath.Join(c.StateDir, "efivars.fd")
	if _, err := os.Stat(vars); err != nil {
		if err := copyPadded(q.FirmwareVars, vars, size); err != nil {
			return fmt.Errorf("firmware variables: %w", err)
		}
	} else if err := pad(vars, size); err != nil {
		return fmt.Errorf("firmware variables: %w", err)
	}
	if code := firmwareCode(c); code != q.FirmwareCode {
		if err := copyPadded(q.FirmwareCode, code, size); err != nil {
			return fmt.Errorf("firmware code: %w", err)
		}
	}
	for i := range 2 {
		rules := dataDiskRules(c.StateDir, i)
		if c.DataDiskFaults[i] != "" {
			if err := os.WriteFile(rules, []byte(c.DataDiskFaults[i]), 0o644); err != nil {
				return fmt.Errorf("data disk faults: %w", err)
			}
		} else if err := os.Remove(rules); err != nil && !os.IsNotExist(err) {
			return fmt.Errorf("data disk faults: %w", err)
		}
		p := DataDiskPath(c.StateDir, i)
		if _, err := os.Stat(p); err == nil {
			continue
		}
		out, err := exec.CommandContext(ctx, "qemu-img", "create", "-q", "-f", "qcow2", p, fmt.Sprint(c.DataDiskSize)).CombinedOutput()
		if err != nil {
			return fmt.Errorf("qemu-img create %s: %w: %s", p, err, out)
		}
		c.Log.Info("created blank data disk", "path", p)
	}
	return os.MkdirAll(filepath.Join(c.StateDir, "tpm"), 0o700)
}

// firmwareCode is the firmware image QEMU runs: the board's file, or a copy
// padded to the machine's flash size in the state directory when the file
// is smaller (Debian's AAVMF_CODE.fd is already 64 MiB; QEMU_EFI.fd is not).
func firmwareCode(c Config) string {
	q := c.Board.QEMU
	if size := flashSize(q.Machine); size > 0 {
		if fi, err := os.Stat(q.FirmwareCode); err == nil && fi.Size() < size {
			return filepath.Join(c.StateDir, "firmware-code.fd")
		}
	}
	return q.FirmwareCode
}

// copyPadded copies src to dst and pads dst with zeros to size (0: no
// padding).
func copyPadded(src, dst string, size int64) error {
	b, err := os.ReadFile(src)
	if err != nil {
		return err
	}
	if err := os.WriteFile(dst, b, 0o644); err != nil {
		return err
	}
	return pad(dst, size)
}

// pad extends p with zeros to size bytes; a larger file is an error, since
// QEMU would refuse it.
func pad(p string, size int64) error {
	if size == 0 {
		return nil
	}
	fi, err := os.Stat(p)
	if err != nil {
		return err
	}
	switch {
	case fi.Size() > size:
		return fmt.Errorf("%s is %d bytes, more than the machine's %d-byte flash", p, fi.Size(), size)
	case fi.Size() < size:
		return os.Truncate(p, size)
	}
	return nil
}

// cpuModel is the -cpu argument. Under TCG an arm64 "max" CPU gets the
// implementation-defined pointer-authentication algorithm: the
// architected QARMA5 is slow to emulate and Debian's kernel and Go's
// binaries use pointer authentication throughout.
func cpuModel(b *boards.Board, accel string) string {
	cpu := b.QEMU.CPU
	if accel == "tcg" && b.Arch == "arm64" && cpu == "max" {
		cpu += ",pauth-impdef=on"
	}
	return cpu
}

func boot(ctx context.Context, c Config, accel string) (*VM, error) {
	q := c.Board.QEMU
	v := &VM{
		cfg:            c,
		SerialSocket:   filepath.Join(c.StateDir, "serial.sock"),
		serialStarting: filepath.Join(c.StateDir, "serial.starting.sock"),
		SerialLog:      filepath.Join(c.StateDir, "serial.log"),
		Monitor:        filepath.Join(c.StateDir, "monitor.sock"),
		Accel:          accel,
		qemuDone:       make(chan struct{}),
		tailStop:       make(chan struct{}),
		tailDone:       make(chan struct{}),
	}
	for _, p := range []string{v.SerialSocket, v.serialStarting, v.Monitor, v.SerialLog} {
		if err := os.Remove(p); err != nil && !os.IsNotExist(err) {
			return nil, fmt.Errorf("vm: %w", err)
		}
	}
	if strings.ContainsAny(c.StateDir+c.Image+q.FirmwareCode, ",") {
		return nil, fmt.Errorf("vm: QEMU cannot take paths with commas: %s, %s, %s", c.StateDir, c.Image, q.FirmwareCode)
	}
	// One vCPU under TCG: with two, a guest starved by a busy host
	// stalled for good in early boot (RCU "timer wakeup didn't happen").
	smp := "2"
	if accel == "tcg" {
		smp = "1"
	}
	args := []string{
		"-name", "holdfast-" + c.Board.Name,
		"-machine", q.Machine, "-accel", accel, "-cpu", cpuModel(c.Board, accel),
		"-m", fmt.Sprint(q.MemoryMiB), "-smp", smp,
		"-no-user-config", "-nodefaults", "-display", "none", "-vga", "none",
		"-drive", "if=pflash,format=raw,unit=0,readonly=on,file=" + firmwareCode(c),
		"-drive", "if=pflash,format=raw,unit=1,file=" + filepath.Join(c.StateDir, "efivars.fd"),
		"-drive", "if=none,id=boot,format=raw,file=" + c.Image,
		"-device", q.DiskDevice + ",drive=boot,bootindex=0",
		"-netdev", userNetdev(c.HostForward),
		"-device", q.NetDevice + ",netdev=net0,romfile=",
		"-device", "virtio-rng-pci",
		"-chardev", "socket,id=ser0,path=" + v.serialStarting + ",server=on,wait=off,logfile=" + v.SerialLog,
		"-serial", "chardev:ser0",
		"-monitor", "unix:" + v.Monitor + ",server=on,wait=off",
	}
	if c.RTCBase != "" {
		args = append(args, "-rtc", "base="+c.RTCBase)
	}
	var extra []*os.File
	if c.TapNIC != nil {
		extra = append(extra, c.TapNIC) // fd 3 in QEMU
		args = append(args, "-netdev", "tap,id=net1,fd=3", "-device", q.NetDevice+",netdev=net1,romfile=,mac="+TapMAC)
	}
	args = append(args, dataDiskArgs(c)...)
	if q.TPMDevice != "" {
		sock, err := v.startSWTPM(ctx)
		if err != nil {
			return nil, err
		}
		args = append(args,
			"-chardev", "socket,id=chrtpm,path="+sock,
			"-tpmdev", "emulator,id=tpm0,chardev=chrtpm",
			"-device", q.TPMDevice+",tpmdev=tpm0")
	}
	c.Log.Info("starting QEMU", "accel", accel, "image", c.Image)
	c.Log.Debug("qemu command", "args", strings.Join(args, " "))
	cmd := exec.Command(q.Binary, args...)
	cmd.ExtraFiles = extra
	var stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stderr, &stderr
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		v.stopSWTPM()
		return nil, fmt.Errorf("start %s: %w", q.Binary, err)
	}
	v.qemu = cmd
	started := time.Now()
	go func() {
		err := cmd.Wait()
		v.exited = &AccelError{Accel: accel, Exited: true, After: time.Since(started), Detail: exitDetail(err, stderr.String())}
		if err != nil {
			err = fmt.Errorf("%s: %w: %s", q.Binary, err, strings.TrimSpace(stderr.String()))
		}
		v.qemuErr = err
		close(v.qemuDone)
	}()
	go v.tail()
	if err := waitPath(ctx, v.serialStarting, v.qemuDone, 30*time.Second); err != nil {
		_ = v.Stop(context.WithoutCancel(ctx))
		select {
		case <-v.qemuDone:
			if ctx.Err() == nil {
				return nil, v.exited
			}
		default:
		}
		return nil, fmt.Errorf("qemu serial socket: %w", err)
	}
	return v, nil
}

func (v *VM) startSWTPM(ctx context.Context) (string, error) {
	sock := filepath.Join(v.cfg.StateDir, "swtpm.sock")
	_ = os.Remove(sock)
	cmd := exec.Command("swtpm", "socket", "--tpm2",
		"--tpmstate", "dir="+filepath.Join(v.cfg.StateDir, "tpm"),
		"--ctrl", "type=unixio,path="+sock,
		"--terminate")
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		return "", fmt.Errorf("start swtpm: %w", err)
	}
	v.swtpm = cmd
	done := make(chan struct{})
	v.swtpmDone = done
	go func() { _ = cmd.Wait(); close(done) }()
	if err := waitPath(ctx, sock, done, 10*time.Second); err != nil {
		v.stopSWTPM()
		return "", fmt.Errorf("swtpm control socket: %w: %s", err, out.String())
	}
	v.cfg.Log.Debug("swtpm started", "pid", cmd.Process.Pid)
	return sock, nil
}

func (v *VM) stopSWTPM() {
	if v.swtpm != nil && v.swtpm.Process != nil {
		_ = v.swtpm.Process.Kill()
		<-v.swtpmDone
	}
}

func waitPath(ctx context.Context, p string, died <-chan struct{}, timeout time.Duration) error {
	deadline := time.After(timeout)
	for {
		if _, err := os.Stat(p); err == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-died:
			return errors.New("process exited")
		case <-deadline:
			return fmt.Errorf("%s did not appear within %s", p, timeout)
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// tail follows the serial log and copies its text to the Console writer,
// with frames shown as markers.
func (v *VM) tail() {
	defer close(v.tailDone)
	var f *os.File
	var dec frame.Decoder
	buf := make([]byte, 8192)
	for {
		if f == nil {
			if g, err := os.Open(v.SerialLog); err == nil {
				f = g
				defer f.Close()
			}
		}
		n := 0
		if f != nil {
			n, _ = f.Read(buf)
		}
		if n > 0 {
			dec.Feed(buf[:n])
			for {
				ev, ok := dec.Next()
				if !ok {
					break
				}
				switch ev.Kind {
				case frame.EventText:
					_, _ = v.cfg.Console.Write(bytes.ReplaceAll(ev.Text, []byte("\r"), nil))
				case frame.EventFrame:
					if t := ev.Frame.Type; t != frame.TypeAck && t != frame.TypeNack {
						fmt.Fprintf(v.cfg.Console, "<frame %s seq %d, %d bytes>\n", t, ev.Frame.Seq, len(ev.Frame.Payload))
					}
				}
			}
			continue
		}
		select {
		case <-v.tailStop:
			return
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// waitOutput waits until the serial log is not empty; an *AccelError
// says QEMU exited or the guest stayed silent for timeout.
func (v *VM) waitOutput(ctx context.Context, timeout time.Duration) error {
	deadline := time.After(timeout)
	for {
		if fi, err := os.Stat(v.SerialLog); err == nil && fi.Size() > 0 {
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-v.qemuDone:
			return v.exited
		case <-deadline:
			return &AccelError{Accel: v.Accel, After: timeout, Detail: "serial output"}
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// Done is closed when QEMU exits.
func (v *VM) Done() <-chan struct{} { return v.qemuDone }

// Err is why QEMU exited; valid after Done is closed.
func (v *VM) Err() error { return v.qemuErr }

// Stop powers the VM off: "quit" on the monitor, then SIGKILL if QEMU has
// not exited within 10 s; then it stops swtpm and the serial log follower.
func (v *VM) Stop(ctx context.Context) error {
	var err error
	v.stopOnce.Do(func() {
		if c, derr := net.DialTimeout("unix", v.Monitor, 2*time.Second); derr == nil {
			// Wait for the HMP prompt so that QEMU reads the command,
			// and keep the connection open until QEMU is gone.
			_ = c.SetDeadline(time.Now().Add(3 * time.Second))
			buf := make([]byte, 512)
			var seen []byte
			for !bytes.Contains(seen, []byte("(qemu)")) {
				n, rerr := c.Read(buf)
				seen = append(seen, buf[:n]...)
				if rerr != nil {
					break
				}
			}
			_, _ = c.Write([]byte("quit\n"))
			defer c.Close()
		}
		select {
		case <-v.qemuDone:
		case <-time.After(10 * time.Second):
			_ = v.qemu.Process.Kill()
			<-v.qemuDone
		case <-ctx.Done():
			_ = v.qemu.Process.Kill()
			<-v.qemuDone
			err = ctx.Err()
		}
		v.stopSWTPM()
		v.removeSockets()
		close(v.tailStop)
		<-v.tailDone
	})
	return err
}

// removeSockets removes the serial socket once QEMU is gone: QEMU
// unlinks only the path it bound, and Start renamed that.
func (v *VM) removeSockets() {
	for _, p := range []string{v.SerialSocket, v.serialStarting} {
		if err := os.Remove(p); err != nil && !os.IsNotExist(err) {
			v.cfg.Log.Warn("vm: remove serial socket", "error", err)
		}
	}
}

// ErrStopped is returned by Kill when the VM was already stopped or killed.
var ErrStopped = errors.New("vm already stopped")

// Kill cuts the VM's power: SIGKILL to QEMU at once, with no monitor
// command, no ACPI event and no flush, so the guest loses whatever it had
// not fsynced, as in a power cut (what QEMU itself had written to the disk
// images stays: the host keeps running). It waits for QEMU to exit, then
// stops swtpm and the serial log follower as Stop does. The TPM gets no
// TPM2_Shutdown, so at the next boot it reports an unorderly shutdown.
// Stop after Kill does nothing.
func (v *VM) Kill() error {
	err := ErrStopped
	v.stopOnce.Do(func() {
		err = nil
		if kerr := v.qemu.Process.Signal(syscall.SIGKILL); kerr != nil && !errors.Is(kerr, os.ErrProcessDone) {
			err = fmt.Errorf("kill %s: %w", v.cfg.Board.QEMU.Binary, kerr)
		}
		<-v.qemuDone
		v.stopSWTPM()
		v.removeSockets()
		close(v.tailStop)
		<-v.tailDone
	})
	return err
}
