//go:build linux && holdfast_attack_suite

package appliance

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/holdfast-appliance/holdfast/firmware/console"
	"github.com/holdfast-appliance/holdfast/firmware/control"
	"github.com/holdfast-appliance/holdfast/firmware/roles"
	"github.com/holdfast-appliance/holdfast/services/alertkind"
	"github.com/holdfast-appliance/holdfast/services/store"
)

// The worker adversary (issue 15) is code running with the worker's exact
// credentials and keys: uid and gid 1000, no capabilities, an empty
// bounding set, no_new_privs (caps.BecomeAndExec, as the worker's own
// become- stage), the store subkeys the worker gets in its "init" message,
// the store directory of every data disk and one sealer socket per disk,
// as the worker has. It plants on every disk what issue 15 lists (a
// forged index cache, a sealed pack with a lying trailer, FIFOs, symlinks,
// sparse and hard-linked files, junk) and the next boots must shrug it
// off. Only a TEST image has it.

// testOnlySealers starts one more sealer per store at lockdown (the
// sealer needs CAP_LINUX_IMMUTABLE, which PID 1 gives up at the end of
// lockdown): the worker adversary's, serving the same root as the
// worker's. PID 1 keeps the client ends in a.advSealers.
func (a *appliance) testOnlySealers(stores []dataStore) {
	socks := map[string]*os.File{}
	for _, d := range stores {
		ours, sealerEnd, err := roles.Socketpair("adversary sealer")
		if err != nil {
			a.log.Error("TEST IMAGE: no sealer for the worker adversary", "disk", d.Name, "error", err)
			continue
		}
		if _, err := fmt.Fprintf(ours, "%s\n", d.Dir); err != nil {
			a.log.Error("TEST IMAGE: no sealer for the worker adversary", "disk", d.Name, "error", err)
			ours.Close()
			sealerEnd.Close()
			continue
		}
		_, err = a.spawnWith("sealer", unix.CLONE_NEWNS, []string{roles.SealerStoreEnv + "=" + d.Dir}, sealerEnd)
		sealerEnd.Close()
		if err != nil {
			a.log.Error("TEST IMAGE: no sealer for the worker adversary", "disk", d.Name, "error", err)
			ours.Close()
			continue
		}
		socks[d.Dir] = ours
	}
	a.mu.Lock()
	a.advSealers = socks
	a.mu.Unlock()
}

// attackWorker is the console command attack-worker: PID 1 starts the
// attack program's worker mode (firmware/cmd/holdfast-attack/worker_linux.go)
// with the worker's uid and gid (Credential: after lockdown nothing but a
// test image's PID 1 can still change ids, and every bounding set is
// empty, so the program holds no capability); it checks that it is
// exactly the worker before it reads the key or touches a disk.
// The worker's store keys arrive on its stdin, one line of JSON (never the
// master key, which the worker does not hold either); the sealer sockets
// are fds 3.. in the order of -stores.
func (a *appliance) attackWorker(ctx context.Context, _ console.Command, out io.Writer) error {
	a.mu.Lock()
	locked, master, storeID := a.locked, append([]byte(nil), a.master...), a.storeID
	stores := append([]dataStore(nil), a.stores...)
	socks := a.advSealers
	a.mu.Unlock()
	if !locked || len(stores) == 0 || len(master) == 0 {
		return errors.New("the worker adversary runs only after lockdown, with a store")
	}
	keys, err := roleKeys(master, storeID, false)
	if err != nil {
		return fmt.Errorf("worker adversary: %w", err)
	}
	keyLine, err := json.Marshal(keys)
	if err != nil {
		return fmt.Errorf("worker adversary: %w", err)
	}
	var dirs, names []string
	var files []*os.File
	for _, d := range stores {
		f := socks[d.Dir]
		if f == nil {
			return fmt.Errorf("worker adversary: no sealer socket for %s", d.Name)
		}
		dirs, names, files = append(dirs, d.Dir), append(names, d.Name), append(files, f)
	}
	// Two control channels (issue 16), PID 1's ends served by the worker's
	// own handler, a.fromWorker: one the adversary floods and fakes, one
	// on which PID 1's console hold and extend are carried out by the
	// adversary instead of the worker (fakeRetention).
	var ctlEnds []*os.File
	defer func() {
		for _, f := range ctlEnds {
			f.Close()
		}
	}()
	var conns []*control.Conn
	for _, name := range []string{"adversary control", "adversary lying worker"} {
		ours, theirs, err := roles.Socketpair(name)
		if err != nil {
			return fmt.Errorf("worker adversary: %w", err)
		}
		defer ours.Close()
		ctlEnds = append(ctlEnds, theirs)
		conns = append(conns, control.New(ours, control.Options{Side: control.PID1, Handler: a.fromWorker, Log: a.log.Named(strings.ReplaceAll(name, " ", "-"))}))
	}
	files = append(files, ctlEnds...)
	var sources []string
	a.mu.Lock()
	if a.cfg != nil {
		for _, s := range a.cfg.Sources {
			sources = append(sources, s.Name)
		}
	}
	a.mu.Unlock()
	before := a.advState()
	// PID 1's own alert, which no flood of the worker's may push out of
	// the console's status.
	a.alert(alertkind.Appliance, advMarker)
	args := []string{"worker-adversary", "-in-vm", "-uid", strconv.Itoa(roles.WorkerUID),
		"-stores", strings.Join(dirs, ","), "-disks", strings.Join(names, ","),
		"-control-fd", strconv.Itoa(3 + len(dirs)), "-lying-fd", strconv.Itoa(4 + len(dirs)),
		"-sources", strings.Join(sources, ",")}
	a.log.Warn("TEST IMAGE: starting the worker adversary (uid 1000, the worker's keys)", "args", strings.Join(args, " "))
	cctx, cancel := context.WithTimeout(ctx, 15*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(cctx, AttackBinary, args...)
	cmd.Env = []string{"PATH=/bin:/sbin"}
	cmd.Stdin = strings.NewReader(string(keyLine) + "\n")
	cmd.Stdout = crlfWriter{out}
	cmd.Stderr = crlfWriter{out}
	cmd.ExtraFiles = files
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: roles.WorkerUID, Gid: roles.WorkerUID, Groups: []uint32{}}}
	start, forget := cmd.Start, func() {}
	if a.o.Children != nil {
		start, forget = func() error { return a.o.Children.Start(cmd) }, func() { a.o.Children.Forget(cmd.Process.Pid) }
	}
	if err := start(); err != nil {
		return fmt.Errorf("worker adversary: %w", err)
	}
	for _, f := range ctlEnds {
		f.Close()
	}
	ctlEnds = nil
	fake := make(chan struct{})
	go func() {
		defer close(fake)
		a.fakeRetention(cctx, conns[1])
	}()
	werr := cmd.Wait()
	forget()
	<-fake
	a.advChecks(out, before, conns[0])
	if werr != nil {
		return fmt.Errorf("worker adversary: %w", werr)
	}
	return nil
}

// advMarker is the alert PID 1 raises before the worker adversary runs.
const advMarker = "TEST IMAGE: the worker adversary starts; this alert of PID 1's must stay in status"

// advSnapshot is PID 1's state that no message of the worker's may change.
type advSnapshot struct {
	config     map[string]string // config partition file -> SHA-256
	configMnt  string            // its mount options
	storeDir   string
	rss, hwm   int64 // PID 1's VmRSS and VmHWM, KiB
	goroutines int
}

func (a *appliance) advState() advSnapshot {
	a.mu.Lock()
	part, dir := a.part, a.storeDir
	a.mu.Unlock()
	s := advSnapshot{config: map[string]string{}, storeDir: dir, goroutines: runtime.NumGoroutine()}
	s.rss, s.hwm = procMemKiB("/proc/self/status")
	if part == nil {
		return s
	}
	ents, _ := os.ReadDir(part.Dir)
	for _, e := range ents {
		b, err := os.ReadFile(filepath.Join(part.Dir, e.Name()))
		sum := sha256.Sum256(b)
		s.config[e.Name()] = fmt.Sprintf("%s %x %v", e.Type(), sum[:8], err)
	}
	// The options of the mount holding part.Dir (the longest mount point
	// above it).
	if mi, err := os.ReadFile("/proc/self/mountinfo"); err == nil {
		best := ""
		for _, l := range strings.Split(string(mi), "\n") {
			f := strings.Fields(l)
			if len(f) > 5 && len(f[4]) >= len(best) && (f[4] == part.Dir || f[4] == "/" || strings.HasPrefix(part.Dir, f[4]+"/")) {
				best, s.configMnt = f[4], f[4]+" "+f[5]
			}
		}
	}
	return s
}

// procMemKiB reads VmRSS and VmHWM from a /proc status file.
func procMemKiB(path string) (rss, hwm int64) {
	b, _ := os.ReadFile(path)
	for _, l := range strings.Split(string(b), "\n") {
		k, v, _ := strings.Cut(l, ":")
		n, _ := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
		switch k {
		case "VmRSS":
			rss = n
		case "VmHWM":
			hwm = n
		}
	}
	return rss, hwm
}

// advChecks prints PID 1's verdicts after the worker adversary, one line
// each:
//
//	ATTACK CHECK worker-control NAME: refused|SUCCEEDED: detail
//
// | name                       | SUCCEEDED when                                               |
// |----------------------------|--------------------------------------------------------------|
// | config-partition-unchanged | a file of the config partition was added, removed or changed,|
// |                            | or its mount options changed                                 |
// | status-only-configured     | PID 1 keeps a pull status for a source not in the config     |
// | primary-unchanged          | the store PID 1's console reads is another                   |
// | own-alert-kept             | PID 1's own alert fell out of the console's status           |
// | goroutines-back            | 10 s after the channel closed, PID 1 runs 16 goroutines more |
// | pid1-memory                | PID 1's VmHWM grew 64 MiB or more, or VmRSS 32 MiB or more   |
func (a *appliance) advChecks(out io.Writer, before advSnapshot, ctl *control.Conn) {
	select {
	case <-ctl.Done():
	case <-time.After(10 * time.Second):
	}
	row := func(name string, bad bool, format string, args ...any) {
		res := "refused"
		if bad {
			res = "SUCCEEDED"
		}
		fmt.Fprintf(out, "ATTACK CHECK worker-control %s: %s: %s\r\n", name, res, fmt.Sprintf(format, args...))
	}
	after := a.advState()
	var diff []string
	for n, h := range before.config {
		if after.config[n] != h {
			diff = append(diff, n)
		}
	}
	for n := range after.config {
		if _, ok := before.config[n]; !ok {
			diff = append(diff, n+" (new)")
		}
	}
	sort.Strings(diff)
	ro := func(m string) bool {
		_, opts, _ := strings.Cut(m, " ")
		return slices.Contains(strings.Split(opts, ","), "ro")
	}
	row("config-partition-unchanged", len(diff) > 0 || before.configMnt != after.configMnt || len(before.config) == 0 || !ro(after.configMnt),
		"%d files byte-identical (SHA-256); changed: %v; mounted %q before, %q after", len(before.config), diff, before.configMnt, after.configMnt)
	a.mu.Lock()
	var foreign []string
	for src := range a.pulls {
		if a.cfg == nil {
			foreign = append(foreign, src)
		} else if _, ok := a.cfg.Source(src); !ok {
			foreign = append(foreign, src)
		}
	}
	npulls := len(a.pulls)
	kept := slices.ContainsFunc(a.alerts, func(l string) bool { return strings.Contains(l, advMarker) })
	nalerts := len(a.alerts)
	a.mu.Unlock()
	row("status-only-configured", len(foreign) > 0, "PID 1 keeps %d pull status(es), of sources not in the config: %v", npulls, foreign)
	row("primary-unchanged", after.storeDir != before.storeDir, "console reads %s (before: %s)", after.storeDir, before.storeDir)
	row("own-alert-kept", !kept, "PID 1's alert raised before the adversary is in status: %v (%d alerts kept)", kept, nalerts)
	deadline := time.Now().Add(10 * time.Second)
	for after.goroutines > before.goroutines+16 && time.Now().Before(deadline) {
		time.Sleep(500 * time.Millisecond)
		after.goroutines = runtime.NumGoroutine()
	}
	row("goroutines-back", after.goroutines > before.goroutines+16, "PID 1 runs %d goroutines, %d before the adversary", after.goroutines, before.goroutines)
	row("pid1-memory", after.hwm-before.hwm >= 64<<10 || after.rss-before.rss >= 32<<10,
		"PID 1 VmRSS %d -> %d KiB, VmHWM %d -> %d KiB", before.rss, after.rss, before.hwm, after.hwm)
}

// fakeRetention has the console's hold and extend of a real snapshot
// carried out by the adversary (which answers {} and records nothing):
// PID 1's console code is run as it is, with a.worker pointing at the
// adversary's channel for the length of each command. Each command's
// console output goes back to the adversary as a send-alert notice,
// "CONSOLE: <command> => <output>", which judges it: "done" is a success.
func (a *appliance) fakeRetention(ctx context.Context, lying *control.Conn) {
	var id string
	err := a.withReader(ctx, func(s *store.Store) error {
		snaps, err := s.Snapshots()
		for _, sn := range snaps {
			if !sn.Retention.LegalHold && !sn.Retention.RetainUntil.IsZero() {
				id = sn.ID
			}
		}
		return err
	})
	if id == "" {
		_ = lying.Notify(&control.SendAlert{Kind: "attack-verdict", Text: control.Clip(fmt.Sprintf("CONSOLE: no snapshot to hold (%v)", err))})
		return
	}
	for _, cmd := range []console.Command{{Name: "hold", Args: []string{id}}, {Name: "extend", Args: []string{id, "30y"}}} {
		a.mu.Lock()
		real := a.worker
		a.worker = lying
		a.mu.Unlock()
		var buf bytes.Buffer
		cctx, cancel := context.WithTimeout(ctx, 5*time.Minute)
		err := a.extend(cctx, cmd, &buf)
		cancel()
		a.mu.Lock()
		a.worker = real
		a.mu.Unlock()
		text := fmt.Sprintf("CONSOLE: %s => %s", cmd.String(), strings.TrimSpace(buf.String()))
		if err != nil {
			text += " error: " + err.Error()
		}
		a.log.Warn("TEST IMAGE: a console command carried out by the worker adversary", "command", cmd.String(), "output", text)
		if nerr := lying.Notify(&control.SendAlert{Kind: "attack-verdict", Text: control.Clip(text)}); nerr != nil {
			a.log.Error("TEST IMAGE: verdict not sent to the worker adversary", "error", nerr)
		}
	}
}
