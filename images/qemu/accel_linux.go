package qemu

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"time"

	"github.com/holdfast-appliance/holdfast/boards"
)

// Accelerators a VM can run under (Config.Accel).
const (
	// AccelAuto uses KVM when the host's KVM can run the board's guest
	// (the probe below says so) and falls back to TCG otherwise, or when
	// the guest still exits or stays silent under KVM.
	AccelAuto = "auto"
	AccelKVM  = "kvm"
	AccelTCG  = "tcg"
)

// AccelEnv is the environment variable that overrides the accelerator of
// `make demo`, `make test`, `make qemu` and `make faults`: auto, kvm or tcg.
const AccelEnv = "HOLDFAST_ACCEL"

// AccelFromEnv returns HOLDFAST_ACCEL, or AccelAuto when it is unset or
// empty; any other value than auto, kvm or tcg is an error.
func AccelFromEnv() (string, error) {
	v := strings.TrimSpace(os.Getenv(AccelEnv))
	switch v {
	case "":
		return AccelAuto, nil
	case AccelAuto, AccelKVM, AccelTCG:
		return v, nil
	}
	return "", fmt.Errorf("%s=%q: want auto, kvm or tcg", AccelEnv, v)
}

// ProbeName is the -name of a probe's QEMU, to find it in a process list.
const ProbeName = "holdfast-kvm-probe"

// ProbeTimeout is how long the KVM probe waits for the kernel's banner.
// A working KVM prints it in well under a second; TCG in a few seconds.
const ProbeTimeout = 15 * time.Second

// probeBanner is the first line a Linux kernel prints on its console.
var probeBanner = []byte("Linux version")

// AccelError says why a guest did not come up under an accelerator: QEMU
// exited, or the guest stayed silent. Under AccelAuto the runner falls
// back from KVM to TCG on it.
type AccelError struct {
	Accel string // AccelKVM or AccelTCG
	// Exited is true when QEMU exited; false when the guest was silent.
	Exited bool
	// After is how long QEMU ran (Exited) or how long the runner waited.
	After time.Duration
	// Detail is QEMU's exit status and stderr, or what was waited for.
	Detail string
}

func (e *AccelError) Error() string {
	accel := strings.ToUpper(e.Accel)
	if e.Exited {
		return fmt.Sprintf("QEMU exited under %s after %.1f s: %s", accel, e.After.Seconds(), e.Detail)
	}
	return fmt.Sprintf("no %s under %s for %s", e.Detail, accel, e.After.Round(time.Second))
}

// ProbeKVM boots the board's kernel directly (no firmware, no disks, no
// initramfs) under KVM and reports whether it printed its banner on the
// serial line within timeout: nil if so, else an *AccelError (or an error
// starting QEMU). It kills QEMU before it returns, in every case. This is
// the check that a guest hanging in the decompressor, or QEMU aborting on
// an MSR the host's KVM refuses, fails, while a working KVM passes in
// about a second.
func ProbeKVM(ctx context.Context, b *boards.Board, kernel string, timeout time.Duration) error {
	if b.QEMU == nil {
		return fmt.Errorf("board %s does not run under QEMU", b.Name)
	}
	args := []string{
		"-name", ProbeName,
		"-machine", b.QEMU.Machine, "-accel", AccelKVM, "-cpu", cpuModel(b, AccelKVM),
		"-m", "256", "-smp", "1", "-no-user-config", "-nodefaults", "-display", "none",
		"-no-reboot", "-serial", "stdio", "-kernel", kernel,
		"-append", probeCmdline(b),
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	seen := make(chan struct{})
	out := &bannerWriter{want: probeBanner, seen: seen}
	var stderr bytes.Buffer
	cmd := exec.Command(b.QEMU.Binary, args...)
	cmd.Stdout, cmd.Stderr = out, &stderr
	// Its own process group: a wrapper script and its QEMU die together.
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL, Setpgid: true}
	start := time.Now()
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("kvm probe: start %s: %w", b.QEMU.Binary, err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	kill := func() {
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		<-done
	}
	select {
	case <-seen:
		kill()
		return nil
	case err := <-done:
		// The kernel may print its banner and QEMU exit at once (panic
		// with -no-reboot): the banner counts.
		if out.found() {
			return nil
		}
		return &AccelError{Accel: AccelKVM, Exited: true, After: time.Since(start), Detail: exitDetail(err, stderr.String())}
	case <-ctx.Done():
		kill()
		if out.found() {
			return nil
		}
		if errors.Is(ctx.Err(), context.DeadlineExceeded) {
			return &AccelError{Accel: AccelKVM, After: timeout, Detail: "kernel banner on the serial line"}
		}
		return fmt.Errorf("kvm probe: %w", ctx.Err())
	}
}

// probeCmdline sends the kernel's messages to the board's serial console
// from the earliest moment the architecture allows.
func probeCmdline(b *boards.Board) string {
	early := "earlyprintk=serial," + b.Console.Device
	if b.Arch == "arm64" {
		early = "earlycon"
	}
	return fmt.Sprintf("console=%s,%d %s panic=-1", b.Console.Device, b.Console.Baud, early)
}

// exitDetail is QEMU's exit status and the end of its stderr in one line.
func exitDetail(err error, stderr string) string {
	status := "exit status 0"
	if err != nil {
		status = err.Error()
	}
	s := strings.Join(strings.Fields(strings.TrimSpace(stderr)), " ")
	if len(s) > 600 {
		s = "..." + s[len(s)-600:]
	}
	if s == "" {
		return status
	}
	return status + ": " + s
}

// bannerWriter closes seen the first time want has passed through it.
type bannerWriter struct {
	want []byte
	seen chan struct{}
	tail []byte
	hit  bool
}

// Write is called from exec's copying goroutine only; found is read after
// seen is closed or the process is gone, both of which order it after.
func (w *bannerWriter) Write(p []byte) (int, error) {
	if w.hit {
		return len(p), nil
	}
	w.tail = append(w.tail, p...)
	if bytes.Contains(w.tail, w.want) {
		w.hit = true
		close(w.seen)
		return len(p), nil
	}
	if keep := len(w.want) - 1; len(w.tail) > keep {
		w.tail = append(w.tail[:0], w.tail[len(w.tail)-keep:]...)
	}
	return len(p), nil
}

func (w *bannerWriter) found() bool {
	select {
	case <-w.seen:
		return true
	default:
		return false
	}
}

// hostKVMProbe is Config.KVMProbe's default: /dev/kvm must open and the
// board's kernel must pass ProbeKVM. The answer is cached per host boot,
// QEMU binary and kernel in the user's cache directory, so a run of many
// VMs (make test) probes once. When the kernel cannot be had the probe is
// skipped (nil): Start's fallback still covers a KVM that fails.
func hostKVMProbe(ctx context.Context, c Config) error {
	if !KVMUsable() {
		return errors.New("/dev/kvm cannot be opened for reading and writing")
	}
	cache, err := boards.DefaultCacheDir()
	if err != nil {
		c.Log.Warn("kvm probe skipped", "error", err)
		return nil
	}
	kf, err := boards.FetchKernel(ctx, c.Log, c.Board, cache)
	if err != nil {
		c.Log.Warn("kvm probe skipped: no kernel", "error", err)
		return nil
	}
	key, err := probeKey(c.Board, kf.Image)
	if err != nil {
		c.Log.Warn("kvm probe skipped", "error", err)
		return nil
	}
	file := filepath.Join(filepath.Dir(cache), "kvm-probe", c.Board.Name)
	if verdict, ok := readProbeCache(file, key); ok {
		c.Log.Debug("kvm probe cached", "file", file, "verdict", verdict)
		if verdict == "ok" {
			return nil
		}
		return errors.New(verdict)
	}
	perr := ProbeKVM(ctx, c.Board, kf.Image, ProbeTimeout)
	if ctx.Err() != nil {
		return perr // not an answer about the host: do not cache it
	}
	verdict := "ok"
	if perr != nil {
		verdict = perr.Error()
	}
	c.Log.Info("kvm probe", "board", c.Board.Name, "kvm", perr == nil, "verdict", verdict)
	if err := writeProbeCache(file, key, verdict); err != nil {
		c.Log.Warn("kvm probe not cached", "error", err)
	}
	return perr
}

// writeProbeCache replaces file with key and verdict through a temporary
// file of its own, so that two probes at once each leave a whole file.
func writeProbeCache(file, key, verdict string) error {
	if err := os.MkdirAll(filepath.Dir(file), 0o755); err != nil {
		return err
	}
	f, err := os.CreateTemp(filepath.Dir(file), ".probe-*")
	if err != nil {
		return err
	}
	_, err = f.WriteString(key + "\n" + verdict + "\n")
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(f.Name(), file)
	}
	if err != nil {
		_ = os.Remove(f.Name())
	}
	return err
}

// probeKey names what a probe's answer depends on: this boot of the host,
// the QEMU binary and the kernel.
func probeKey(b *boards.Board, kernel string) (string, error) {
	bootID, err := os.ReadFile("/proc/sys/kernel/random/boot_id")
	if err != nil {
		return "", fmt.Errorf("boot id: %w", err)
	}
	bin, err := exec.LookPath(b.QEMU.Binary)
	if err != nil {
		return "", err
	}
	h := sha256.New()
	fmt.Fprintf(h, "%s\n", bytes.TrimSpace(bootID))
	for _, p := range []string{bin, kernel} {
		fi, err := os.Stat(p)
		if err != nil {
			return "", err
		}
		fmt.Fprintf(h, "%s %d %d\n", p, fi.Size(), fi.ModTime().UnixNano())
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

// readProbeCache returns the verdict cached in file under key.
func readProbeCache(file, key string) (string, bool) {
	b, err := os.ReadFile(file)
	if err != nil || len(b) > 4096 {
		return "", false
	}
	k, verdict, ok := strings.Cut(strings.TrimSuffix(string(b), "\n"), "\n")
	if !ok || k != key || verdict == "" {
		return "", false
	}
	return verdict, true
}

// resolveAccel turns Config.Accel into the accelerator to boot with first,
// and whether a KVM boot may still fall back to TCG.
func resolveAccel(ctx context.Context, c Config) (accel string, fallback bool, err error) {
	switch c.Accel {
	case "", AccelAuto:
		if !KVMArch(c.Board.Arch) {
			return AccelTCG, false, nil
		}
		probe := c.KVMProbe
		if probe == nil {
			probe = hostKVMProbe
		}
		if perr := probe(ctx, c); perr != nil {
			if ctx.Err() != nil {
				return "", false, ctx.Err()
			}
			c.Log.Info("KVM cannot run this board's guest on this host; using TCG", "reason", perr)
			return AccelTCG, false, nil
		}
		return AccelKVM, true, nil
	case AccelKVM:
		if !KVMArch(c.Board.Arch) {
			return "", false, fmt.Errorf("accel kvm: board %s is %s and this host is %s; only TCG emulates another architecture", c.Board.Name, c.Board.Arch, runtime.GOARCH)
		}
		return AccelKVM, false, nil
	case AccelTCG:
		return AccelTCG, false, nil
	}
	return "", false, fmt.Errorf("accel %q: want auto, kvm or tcg", c.Accel)
}

// Running lists the processes (pid and command line) whose command line
// contains marker, such as a VM's state directory: what a stopped VM or a
// finished probe must not leave behind.
func Running(marker string) []string {
	ents, err := os.ReadDir("/proc")
	if err != nil {
		return nil
	}
	var found []string
	for _, e := range ents {
		pid := e.Name()
		if pid[0] < '0' || pid[0] > '9' {
			continue
		}
		b, err := os.ReadFile(filepath.Join("/proc", pid, "cmdline"))
		if err != nil || !bytes.Contains(b, []byte(marker)) {
			continue
		}
		found = append(found, pid+": "+strings.ReplaceAll(strings.TrimRight(string(b), "\x00"), "\x00", " "))
	}
	return found
}
