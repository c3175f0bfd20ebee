package main

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// findModule returns the first kernel module file under dir (uncompressed
// preferred) and whether it is compressed.
func findModule(dir string) (string, bool) {
	var compressed string
	var plain string
	n := 0
	_ = filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		n++
		if err != nil || n > 50000 {
			return fs.SkipAll
		}
		switch {
		case d.IsDir():
		case strings.HasSuffix(p, ".ko"):
			plain = p
			return fs.SkipAll
		case compressed == "" && (strings.HasSuffix(p, ".ko.xz") || strings.HasSuffix(p, ".ko.zst") || strings.HasSuffix(p, ".ko.gz")):
			compressed = p
		}
		return nil
	})
	if plain != "" {
		return plain, false
	}
	return compressed, compressed != ""
}

// fakeModule is the start of an ELF file: enough for the call, which must
// be refused before it parses anything.
var fakeModule = append([]byte("\x7fELF\x02\x01\x01"), make([]byte, 57)...)

func (e *env) initModuleResult() result {
	mod, compressed := findModule(e.cfg.modulesDir)
	img, what := fakeModule, "a fake ELF image (no uncompressed module found)"
	if mod != "" && !compressed {
		if b, err := os.ReadFile(mod); err == nil {
			img, what = b, filepath.Base(mod)
		}
	}
	return gate("init_module "+what, unix.InitModule(img, ""))
}

func (e *env) finitModuleResult() result {
	mod, compressed := findModule(e.cfg.modulesDir)
	flags := 0
	if mod == "" {
		mod = e.self
	} else if compressed {
		flags = unix.MODULE_INIT_COMPRESSED_FILE
	}
	fd, err := unix.Open(mod, unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return refusedf("open %s: %v", mod, err)
	}
	defer unix.Close(fd)
	return gate("finit_module "+filepath.Base(mod), unix.FinitModule(fd, "", flags))
}

func kexecLoadResult() result {
	const mem = 0x1000000
	buf := make([]byte, 4096)
	for i := range buf {
		buf[i] = 0xf4 // hlt on x86; garbage elsewhere
	}
	seg := kexecSegment{Buf: uintptr(unsafe.Pointer(&buf[0])), Bufsz: 4096, Mem: mem, Memsz: 4096}
	_, _, errno := unix.Syscall6(unix.SYS_KEXEC_LOAD, mem, 1, uintptr(unsafe.Pointer(&seg)), unix.KEXEC_ARCH_DEFAULT, 0, 0)
	runtime.KeepAlive(buf)
	if errno == 0 {
		_, _, uerr := unix.Syscall6(unix.SYS_KEXEC_LOAD, 0, 0, 0, 0, 0, 0)
		return succeededf("kexec_load of a one-segment image returned success (unloaded: %s)", errOr(errnoErr(uerr), "ok"))
	}
	return gate("kexec_load of a one-segment image", errno)
}

func errnoErr(e syscall.Errno) error {
	if e == 0 {
		return nil
	}
	return e
}

func (e *env) kexecFileLoadResult() result {
	kernel, _ := findModule(e.cfg.modulesDir)
	if kernel == "" {
		kernel = e.self
	}
	fd, err := unix.Open(kernel, unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return refusedf("open %s: %v", kernel, err)
	}
	defer unix.Close(fd)
	err = unix.KexecFileLoad(fd, -1, "", unix.KEXEC_FILE_NO_INITRAMFS)
	if err == nil {
		_ = unix.KexecFileLoad(-1, -1, "", 1) // KEXEC_FILE_UNLOAD
	}
	return gate("kexec_file_load of "+filepath.Base(kernel), err)
}

func bpfResult() result {
	// r0 = 0; exit (BPF_ALU64|BPF_MOV|BPF_K, BPF_JMP|BPF_EXIT).
	insns := []byte{0xb7, 0, 0, 0, 0, 0, 0, 0, 0x95, 0, 0, 0, 0, 0, 0, 0}
	license := []byte("GPL\x00")
	var attr [128]byte
	binary.NativeEndian.PutUint32(attr[0:], unix.BPF_PROG_TYPE_SOCKET_FILTER)
	binary.NativeEndian.PutUint32(attr[4:], 2)
	binary.NativeEndian.PutUint64(attr[8:], uint64(uintptr(unsafe.Pointer(&insns[0]))))
	binary.NativeEndian.PutUint64(attr[16:], uint64(uintptr(unsafe.Pointer(&license[0]))))
	fd, _, errno := unix.Syscall(unix.SYS_BPF, unix.BPF_PROG_LOAD, uintptr(unsafe.Pointer(&attr[0])), uintptr(len(attr)))
	runtime.KeepAlive(insns)
	runtime.KeepAlive(license)
	if errno == 0 {
		unix.Close(int(fd))
	}
	return gate("bpf(BPF_PROG_LOAD) of a socket filter", errnoErr(errno))
}

func perfResult() result {
	var rs []result
	for _, t := range []struct {
		pid, cpu int
		what     string
	}{{1, -1, "PID 1"}, {-1, 0, "all of CPU 0"}} {
		attr := unix.PerfEventAttr{Type: unix.PERF_TYPE_SOFTWARE, Config: unix.PERF_COUNT_SW_CPU_CLOCK, Bits: unix.PerfBitDisabled}
		attr.Size = uint32(unsafe.Sizeof(attr))
		fd, err := unix.PerfEventOpen(&attr, t.pid, t.cpu, -1, unix.PERF_FLAG_FD_CLOEXEC)
		if err == nil {
			unix.Close(fd)
		}
		if errors.Is(err, unix.ENOSYS) || errors.Is(err, unix.ENODEV) {
			rs = append(rs, naf("perf_event_open: %v", err))
			continue
		}
		rs = append(rs, gate("perf_event_open on "+t.what, err))
	}
	return combine(rs...)
}

// usernsResult starts a child in a new user and mount namespace (uid 0
// mapped to 0) that mounts tmpfs over the store there.
func (e *env) usernsResult() result {
	return e.storeAttempt(func() (string, error) {
		cmd := exec.Command(e.self, append([]string{"-userns-mount"}, e.cfg.childArgs()...)...)
		cmd.Args[0] = "holdfast-attack"
		cmd.Env = []string{"PATH=/bin:/sbin:/usr/bin:/usr/sbin"}
		cmd.Dir = "/"
		cmd.SysProcAttr = &syscall.SysProcAttr{
			Cloneflags:  unix.CLONE_NEWUSER | unix.CLONE_NEWNS,
			UidMappings: []syscall.SysProcIDMap{{ContainerID: 0, HostID: os.Getuid(), Size: 1}},
			GidMappings: []syscall.SysProcIDMap{{ContainerID: 0, HostID: os.Getgid(), Size: 1}},
		}
		out, err := cmd.Output()
		var ee *exec.ExitError
		if err != nil && !errors.As(err, &ee) {
			return "", fmt.Errorf("clone(CLONE_NEWUSER|CLONE_NEWNS): %w", err)
		}
		var r reply
		inside := fmt.Sprintf("no reply from inside (%v)", err)
		if json.Unmarshal(out, &r) == nil {
			inside = "tmpfs over the store: mounted (in that namespace only)"
			if r.Err != "" {
				inside = "tmpfs over the store: " + r.Err
			}
		}
		return "a user namespace was created (uid 0 has every capability inside it); " + inside, nil
	})
}

// usernsChild is the -userns-mount mode, run inside the new namespaces.
func usernsChild(cfg *config, stdout io.Writer) int {
	err := unix.Mount("tmpfs", cfg.store, "tmpfs", unix.MS_NOSUID|unix.MS_NODEV, "size=1m")
	_ = json.NewEncoder(stdout).Encode(reply{Err: errOr(err, "")})
	return 0
}

// openByHandleResult gets a pack's handle (as uid 0, else from the owner,
// who may ask for it) and opens it for writing with open_by_handle_at.
func (e *env) openByHandleResult() result {
	rel := e.t.pack
	return e.storeAttempt(func() (string, error) {
		h, _, err := unix.NameToHandleAt(unix.AT_FDCWD, e.abs(rel), 0)
		how := "name_to_handle_at as uid 0"
		if err != nil {
			r, oerr := e.callOwner(time.Minute, "_handle", rel)
			switch {
			case oerr != nil:
				return "", fmt.Errorf("name_to_handle_at %s: %v; owner: %v", short(rel), err, oerr)
			case r.Err != "":
				return "", fmt.Errorf("name_to_handle_at %s: %v; owner: %s", short(rel), err, r.Err)
			}
			h, how = unix.NewFileHandle(r.HandleType, r.Handle), "handle from the owner"
		}
		root := e.mnt.Target
		if root == "" {
			root = filepath.Dir(e.cfg.store)
		}
		mfd, err := unix.Open(root, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
		if err != nil {
			return "", fmt.Errorf("open mount root %s: %w", root, err)
		}
		defer unix.Close(mfd)
		fd, werr := unix.OpenByHandleAt(mfd, h, unix.O_RDWR|unix.O_CLOEXEC)
		if werr == nil {
			_, perr := unix.Pwrite(fd, make([]byte, 4096), 0)
			unix.Close(fd)
			return fmt.Sprintf("%s; open_by_handle_at O_RDWR returned success; pwrite: %s", how, errOr(perr, "ok")), nil
		}
		rfd, rerr := unix.OpenByHandleAt(mfd, h, unix.O_RDONLY|unix.O_CLOEXEC)
		if rerr == nil {
			unix.Close(rfd)
		}
		return "", fmt.Errorf("%s; open_by_handle_at O_RDWR: %w (O_RDONLY: %s)", how, werr, errOr(rerr, "opened, so CAP_DAC_READ_SEARCH is held"))
	})
}

// writeKnob writes a sysctl or sysfs file in one write.
func writeKnob(path, value string) error {
	f, err := os.OpenFile(path, os.O_WRONLY, 0)
	if err != nil {
		return unwrapPath(err)
	}
	_, werr := f.Write([]byte(value))
	cerr := f.Close()
	if werr != nil {
		return unwrapPath(werr)
	}
	return unwrapPath(cerr)
}

func (e *env) sysctlDoorsResult() result {
	full := "4294967295\t4294967295"
	var rs []result
	for _, k := range []struct{ path, value string }{
		{"/proc/sys/kernel/modules_disabled", "0"},
		{"/proc/sys/kernel/yama/ptrace_scope", "0"},
		{"/proc/sys/kernel/kexec_load_disabled", "0"},
		{"/proc/sys/kernel/usermodehelper/bset", full},
		{"/proc/sys/kernel/usermodehelper/inheritable", full},
	} {
		name := strings.TrimPrefix(k.path, "/proc/sys/")
		old, err := os.ReadFile(k.path)
		if errors.Is(err, fs.ErrNotExist) {
			rs = append(rs, naf("%s absent", name))
			continue
		}
		werr := writeKnob(k.path, k.value)
		now, _ := os.ReadFile(k.path)
		changed := err == nil && strings.TrimSpace(string(now)) != strings.TrimSpace(string(old))
		if werr == nil || changed {
			back := "unchanged"
			if changed {
				back = "restored: " + errOr(writeKnob(k.path, string(old)), "ok")
			}
			rs = append(rs, succeededf("%s: write %q returned %s (now %q, %s)", name, k.value, errOr(werr, "success"), strings.TrimSpace(string(now)), back))
			continue
		}
		rs = append(rs, refusedf("%s: %v", name, werr))
	}
	return combine(rs...)
}

func sysrqResult() result {
	const p = "/proc/sysrq-trigger"
	if _, err := os.Lstat(p); errors.Is(err, fs.ErrNotExist) {
		return naf("%s absent (kernel without magic SysRq)", p)
	}
	if err := writeKnob(p, "u"); err != nil {
		return refusedf("write 'u' to %s: %v", p, err)
	}
	return succeededf("write 'u' to %s returned success: emergency remount read-only triggered", p)
}

func rebootResult() result {
	arg, _ := unix.BytePtrFromString("init=/bin/sh")
	_, _, errno := unix.Syscall6(unix.SYS_REBOOT, unix.LINUX_REBOOT_MAGIC1, unix.LINUX_REBOOT_MAGIC2, unix.LINUX_REBOOT_CMD_RESTART2, uintptr(unsafe.Pointer(arg)), 0, 0)
	r1 := gate(`reboot(RESTART2, "init=/bin/sh")`, errnoErr(errno))
	r2 := gate("reboot(KEXEC)", unix.Reboot(unix.LINUX_REBOOT_CMD_KEXEC))
	return combine(r1, r2)
}

// tenYears is how far the clock techniques move the clock.
const tenYears = time.Duration(3653) * 24 * time.Hour

func setRealtimeResult() result {
	start := time.Now()
	back := func() error {
		ts := unix.NsecToTimespec(start.Add(time.Since(start)).UnixNano())
		return unix.ClockSettime(unix.CLOCK_REALTIME, &ts)
	}
	ts := unix.NsecToTimespec(start.Add(tenYears).UnixNano())
	err1 := unix.ClockSettime(unix.CLOCK_REALTIME, &ts)
	r1 := gate("clock_settime(CLOCK_REALTIME, +10 years)", err1)
	if err1 == nil {
		r1.detail += " (set back: " + errOr(back(), "ok") + ")"
	}
	tv := unix.NsecToTimeval(start.Add(time.Since(start) + tenYears).UnixNano())
	err2 := unix.Settimeofday(&tv)
	r2 := gate("settimeofday(+10 years)", err2)
	if err2 == nil {
		r2.detail += " (set back: " + errOr(back(), "ok") + ")"
	}
	return combine(r1, r2)
}

func adjtimexResult() result {
	tx := unix.Timex{Modes: unix.ADJ_SETOFFSET | unix.ADJ_NANO}
	tx.Time = unix.NsecToTimeval(int64(tenYears)) // whole seconds: the (nanosecond) fraction is 0
	_, err := unix.Adjtimex(&tx)
	r := gate("adjtimex(ADJ_SETOFFSET, +10 years)", err)
	if err == nil {
		undo := unix.Timex{Modes: unix.ADJ_SETOFFSET | unix.ADJ_NANO}
		undo.Time = unix.NsecToTimeval(-int64(tenYears))
		_, uerr := unix.Adjtimex(&undo)
		r.detail += " (set back: " + errOr(uerr, "ok") + ")"
	}
	return r
}

func rtcResult() result {
	const dev = "/dev/rtc0"
	if _, err := os.Lstat(dev); errors.Is(err, fs.ErrNotExist) {
		return absentNode(dev, "rtc")
	}
	fd, err := unix.Open(dev, unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return refusedf("open %s: %v", dev, err)
	}
	defer unix.Close(fd)
	old, rerr := unix.IoctlGetRTCTime(fd)
	next := unix.RTCTime{Mday: 1, Year: 136} // 2036-01-01 when the RTC cannot be read
	if rerr == nil {
		next = *old
		next.Year += 10
	}
	err = unix.IoctlSetRTCTime(fd, &next)
	r := gate("RTC_SET_TIME +10 years on "+dev, err)
	if err == nil && rerr == nil {
		r.detail += " (set back: " + errOr(unix.IoctlSetRTCTime(fd, old), "ok") + ")"
	}
	return r
}
