package appliance

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"github.com/holdfast-appliance/holdfast/firmware/console"
	"github.com/holdfast-appliance/holdfast/firmware/control"
	"github.com/holdfast-appliance/holdfast/firmware/roles"
	"github.com/holdfast-appliance/holdfast/firmware/tpm"
	"github.com/holdfast-appliance/holdfast/services/alertkind"
	"github.com/holdfast-appliance/holdfast/services/store"
)

// maintenance is phase 6: journal recovery (opening the store as its
// writer on every data disk), bringing the disks level and repairing them
// (mirror_linux.go), advancing the trusted time T and pruning with it, and
// the disk requests made at the console. Only here, before lockdown, does anything
// clear an inode flag.
//
// The steps that read what the worker could have written run under the
// deadlines of deadline_linux.go; one that outlives its deadline returns
// a *StuckError, and Run then waits in safe mode instead of going on.
func (a *appliance) maintenance(ctx context.Context) error {
	a.setPhase("maintenance")
	if a.newStore {
		a.log.Info("phase 6/8 maintenance: new store, nothing to do")
		return nil
	}
	a.log.Info("phase 6/8 maintenance: journal recovery, mirror, advance the trusted time, prune with it")
	start := time.Now() // what PID 1 makes from here on is given to the worker at the end
	var st *store.Store
	var unwritable []dataStore
	if err := bounded(ctx, "journal recovery (opening the store as its writer)", recoveryDeadline, deadlineGrace, func(ctx context.Context) {
		st, unwritable = a.openWriter(ctx)
	}); err != nil {
		return err
	}
	if st == nil {
		return nil
	}
	mirrors := a.mirrorMaintenance(ctx, st, unwritable)
	a.checkMembers(false)
	if err := bounded(ctx, "prune (and cleaning foreign entries)", pruneDeadline, deadlineGrace, func(ctx context.Context) {
		a.prune(ctx, append([]*store.Store{st}, mirrors...))
	}); err != nil {
		return err
	}
	// What the operator asked for runs whatever prune decided.
	a.makeMirror(ctx, st)
	a.offlineCopy(ctx, st)
	for _, m := range mirrors {
		m.Close()
	}
	st.Close()
	a.mu.Lock()
	stores := append([]dataStore(nil), a.stores...)
	a.mu.Unlock()
	for _, d := range stores {
		n, err := giveToWorker(d.Dir, start)
		if err != nil {
			a.alert(alertkind.DiskError, "disk-error: files made at boot not given to the worker; it may fail to read them", "disk", d.Name, "error", err)
		} else if n > 0 {
			a.log.Info("files made at boot given to the worker", "disk", d.Name, "files", n)
		}
	}
	return nil
}

// openWriter opens the store as its writer on the first data disk where
// that works (journal recovery runs here). A disk before it where that
// failed is left out this boot, with an alert, and returned: what only it
// holds is copied from it read-only (mirrorMaintenance).
func (a *appliance) openWriter(ctx context.Context) (*store.Store, []dataStore) {
	a.mu.Lock()
	stores := append([]dataStore(nil), a.stores...)
	a.mu.Unlock()
	var failed []dataStore
	for i, d := range stores {
		st, err := store.Open(ctx, d.Dir, store.StaticKey(a.master), store.Options{Logger: a.log.Named("store"), PruneClock: trustedClock{a}})
		if err != nil {
			a.alert(alertkind.DiskError, "disk-error: cannot open the store as its writer; this disk is left out this boot", "disk", d.Name, "serial", d.Serial, "error", err)
			failed = append(failed, d)
			continue
		}
		a.mu.Lock()
		a.stores, a.storeDir = stores[i:], d.Dir
		a.mu.Unlock()
		return st, failed
	}
	a.alert(alertkind.Appliance, "maintenance: cannot open the store as its writer on any disk; prune skipped")
	return nil, nil
}

// prune advances the trusted time T and prunes the store on every disk
// with it (and nothing else); the disks hold the same manifests and
// records, so each removes the same files. Without T (no authentic record
// and no confirm-time yet) nothing is pruned.
func (a *appliance) prune(ctx context.Context, stores []*store.Store) {
	now, ok := a.advanceTime(ctx)
	if !ok {
		a.alert(alertkind.ClockAnomaly, "clock-anomaly: prune skipped: no trusted time; type confirm-time at the console")
		return
	}
	for _, st := range stores {
		if !a.cleanAndPrune(ctx, st, now) {
			return
		}
	}
}

// halt stops the worker and the sealer, advances the trusted time, syncs,
// unmounts the data disks, sends TPM2_Shutdown(STATE) as the last TPM
// command (the TPM saves its Clock only on an orderly shutdown; without
// one the next boot's T credits nothing for the uptime since its last
// save) and powers off or restarts (how: unix.LINUX_REBOOT_CMD_*). The
// kernel's TPM driver may still send its own TPM2_Shutdown(CLEAR) during
// reboot(2): the Clock is saved either way, and the trusted time credits a
// TPM Reset whose Clock did not go back.
func (a *appliance) halt(how int) error {
	a.log.Warn("halting", "restart", how == unix.LINUX_REBOOT_CMD_RESTART)
	for _, c := range a.children() {
		_ = c.Process.Kill()
		_, _ = c.Process.Wait()
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	a.advanceTime(ctx)
	unix.Sync()
	a.mu.Lock()
	mounts := make([]string, 0, len(a.mounted))
	for _, m := range a.mounted {
		mounts = append(mounts, m)
	}
	a.mu.Unlock()
	for _, m := range mounts {
		if err := unix.Unmount(m, 0); err != nil {
			a.log.Warn("unmount", "at", m, "error", err)
		}
	}
	if err := unix.Unmount(filepath.Join(a.o.RunDir, "config"), 0); err != nil {
		a.log.Warn("unmount config partition", "error", err)
	}
	unix.Sync()
	if a.tpm != nil {
		if err := a.tpm.Shutdown(ctx); err != nil {
			a.log.Error("TPM2_Shutdown(STATE) failed: the next boot may credit the trusted time less", "error", err)
		}
	}
	if a.o.Reboot != nil {
		return a.o.Reboot(how)
	}
	return unix.Reboot(how)
}

// lockdown is phase 7 (see the table in lockdown_linux.go and the process
// table in firmware/roles): close the kernel's doors, make every disk and
// the TPM unopenable by anyone but PID 1's open descriptors, start the
// sealer, the DHCP client and the worker with their capabilities dropped,
// make the mounts read-only and give up what PID 1 no longer needs.
func (a *appliance) lockdown(ctx context.Context) error {
	a.setPhase("lockdown")
	closeKernelDoors(a.log)
	// The worker and the sealer (uid 1000) must reach their binary and
	// the store: the initramfs root is 0700 and RunDir was made 0700.
	// They may pass through RunDir, not list it; the config partition
	// stays 0700 root.
	for _, d := range []struct {
		path string
		mode os.FileMode
	}{{"/", 0o755}, {filepath.Dir(a.o.RunDir), 0o755}, {a.o.RunDir, 0o711}} {
		if err := os.Chmod(d.path, d.mode); err != nil {
			a.log.Warn("chmod", "path", d.path, "error", err)
		}
	}
	// PID 1 keeps a read-only descriptor on each data disk (the console
	// and TPM descriptors it already holds), then /dev is replaced by a
	// read-only one without a single disk, TPM, serial or RTC node
	// (devfs_linux.go). Before any role starts: the export's mount
	// namespace is a copy of this one.
	held, herr := holdDisks(a.o.Board.DataDisks)
	if herr != nil {
		a.log.Warn("not every data disk is held open; copy-disk and mirror-disk cannot read it until the next boot", "error", herr)
	}
	locked, derr := a.removeDevices()
	a.mu.Lock()
	a.locked = true
	a.held = held
	mounts := make([]string, 0, len(a.mounted))
	for _, m := range a.mounted {
		mounts = append(mounts, m)
	}
	a.mu.Unlock()
	if derr != nil {
		a.alert(alertkind.Appliance, "lockdown: /dev not fully replaced", "error", derr)
	}
	sealDiskRoots(mounts, a.log)
	a.log.Info("phase 7/8 lockdown: kexec, modules, ptrace, usermode helpers, user namespaces closed; device nodes removed from a read-only /dev", "devices", strings.Join(locked, " "))
	// However the rest goes, PID 1 leaves lockdown with read-only mounts
	// and its own powers cut down.
	defer func() {
		if err := hardenMounts(filepath.Join(a.o.RunDir, "config"), a.log); err != nil {
			a.alert(alertkind.Appliance, "lockdown: not every mount is read-only", "error", err)
		}
		// The opt-in export needs root for an instant to set up its mount
		// namespace (firmware/roles export_linux.go): before PID 1 limits itself.
		if err := a.startExport(); err != nil {
			a.alert(alertkind.Appliance, "export not started", "error", err)
		}
		a.mu.Lock()
		a.limited = true // no role starts from now on (spawnWith)
		a.mu.Unlock()
		if err := limitPID1(); err != nil {
			a.alert(alertkind.Appliance, "lockdown: PID 1 keeps capabilities it should have dropped", "error", err)
		}
		// A role just started may still be in its become- stage (as
		// root, dropping its bounding set): give it a few seconds.
		var bad []string
		var berr error
		for i := 0; i < 20; i++ {
			if bad, berr = setidBounding("/proc"); berr == nil && len(bad) == 0 {
				break
			}
			time.Sleep(500 * time.Millisecond)
		}
		if berr != nil || len(bad) > 0 {
			a.alert(alertkind.Appliance, "lockdown: PID 1 keeps capabilities it should have dropped: a process can still change its uid", "processes", strings.Join(bad, " "), "error", berr)
		}
		a.log.Info("lockdown done: mounts read-only, PID 1 limited", "bounding", capMask(pid1Bounding), "permitted", capMask(pid1Permitted()))
	}()
	// One sealer per data disk: a sealer serves one store root, which is
	// its first line, written into the worker's end so that it arrives at
	// the sealer's.
	a.mu.Lock()
	stores := append([]dataStore(nil), a.stores...)
	a.mu.Unlock()
	var workerSealerEnds []*os.File
	defer func() {
		for _, f := range workerSealerEnds {
			f.Close()
		}
	}()
	var refs []diskRef
	for _, d := range stores {
		sealerEnd, workerSealerEnd, err := roles.Socketpair("sealer")
		if err != nil {
			return err
		}
		workerSealerEnds = append(workerSealerEnds, workerSealerEnd)
		if _, err := fmt.Fprintf(workerSealerEnd, "%s\n", d.Dir); err != nil {
			return fmt.Errorf("sealer: %w", err)
		}
		// In its own mount namespace, where only d.Dir is writable.
		_, err = a.spawnWith("sealer", unix.CLONE_NEWNS, []string{roles.SealerStoreEnv + "=" + d.Dir}, sealerEnd)
		sealerEnd.Close()
		if err != nil {
			return err
		}
		refs = append(refs, diskRef{Name: d.Name, Serial: d.Serial, Dir: d.Dir})
	}
	a.testOnlySealers(stores) // a TEST image's worker adversary (attack_suite_linux.go)
	dhcp, err := a.spawn("dhcp")
	if err != nil {
		return err
	}
	err = dhcp.Wait()
	if a.o.Children != nil {
		a.o.Children.Forget(dhcp.Process.Pid)
	}
	if err != nil {
		a.alert(alertkind.Appliance, "network not configured; pulls will fail until it is", "error", err)
	}
	ctlPID1, ctlWorker, err := roles.Socketpair("control")
	if err != nil {
		return err
	}
	if _, err := a.spawn("worker", append([]*os.File{ctlWorker}, workerSealerEnds...)...); err != nil {
		return err
	}
	ctlWorker.Close()
	w := control.New(ctlPID1, control.Options{Side: control.PID1, Handler: a.fromWorker, Log: a.log.Named("control")})
	wrapped, err := os.ReadFile(filepath.Join(a.part.Dir, tpm.RecoveryFile))
	if err != nil {
		return fmt.Errorf("recovery file: %w", err)
	}
	var floor time.Time
	if a.tt != nil {
		floor, _ = a.tt.T()
	}
	init, err := a.workerInit(refs, floor, wrapped)
	if err != nil {
		return fmt.Errorf("worker keys: %w", err)
	}
	_, err = w.Call(ctx, init)
	if err != nil {
		return fmt.Errorf("worker: %w", err)
	}
	a.mu.Lock()
	a.worker = w
	a.mu.Unlock()
	a.sendBootAlerts()
	if a.newStore {
		if st, err := store.Open(ctx, a.storeDir, store.StaticKey(a.master), store.Options{ReadOnly: true}); err == nil {
			a.mu.Lock()
			a.storeID, a.newStore = st.ID(), false
			a.mu.Unlock()
			st.Close()
			if id := hex.EncodeToString(init.Keys.ID[:]); st.ID() != id {
				a.alert(alertkind.DiskError, "disk-error: the worker created a store of another ID than PID 1 chose", "store", st.ID(), "chosen", id)
			}
		}
		// The config partition is still writable (hardenMounts runs
		// last): record the disk, so that its absence is noticed.
		a.checkMembers(false)
	}
	return nil
}

// services is phase 8: the worker pulls on its schedule; PID 1 serves the
// console.
func (a *appliance) services(ctx context.Context) error {
	a.setPhase("running")
	go a.timeLoop(ctx)
	p := newMaintenancePlan(a.cfg.Appliance.Maintenance, time.Now())
	a.mu.Lock()
	a.maint = p
	a.mu.Unlock()
	a.log.Info("maintenance reboots scheduled", "schedule", p.sched.String(), "next", strings.TrimSpace(p.line()))
	go a.maintenanceLoop(ctx, p)
	a.log.Info(ReadyLine, "since_init", time.Since(a.o.Start).Round(time.Millisecond), "sources", len(a.cfg.Sources))
	err := console.Serve(ctx, a.o.Conn, console.ServeOptions{Handler: a.command, Typed: a.o.Typed, Human: a.o.Human, Prompt: Prompt, Log: a.log.Named("console")})
	if ctx.Err() != nil {
		return ctx.Err()
	}
	return fmt.Errorf("console: %w", err)
}

// fromWorker answers the worker (see the table in firmware/control): it
// acts only on requests it expects, and what the worker says is data,
// checked against what PID 1 knows (the config's sources, the disks it gave
// the worker, the sealed manifests in the store).
func (a *appliance) fromWorker(ctx context.Context, req control.Request) (control.Reply, error) {
	switch m := req.(type) {
	case *control.SignRequest:
		return a.sign(ctx, m.Snapshot)
	case *control.StatusNotice:
		return nil, a.recordPull(m.Source, m.Status)
	case *control.AlertNotice:
		kind := m.Kind
		if !alertkind.Known(kind) {
			kind = alertkind.Appliance
		}
		line := fmt.Sprintf("%s: %s", kind, m.Text)
		if m.Source != "" {
			line += " source=" + m.Source
		}
		if m.Snapshot != "" {
			line += " snapshot=" + m.Snapshot
		}
		a.mu.Lock()
		keepAlertLocked(&a.workerAlerts, line)
		a.mu.Unlock()
		return nil, nil
	case *control.PrimaryNotice:
		// The worker left a failed disk out: console reads follow it,
		// when it names a disk PID 1 gave it.
		a.mu.Lock()
		found := false
		for _, d := range a.stores {
			if d.Dir == m.Disk.Dir && d.Name == m.Disk.Name {
				a.storeDir, found = d.Dir, true
			}
		}
		a.mu.Unlock()
		if !found {
			return nil, control.Errorf(control.NotFound, "no data disk %q", m.Disk.Name)
		}
		a.log.Warn("the worker writes to another data disk now", "disk", m.Disk.Name)
		return nil, nil
	case *control.MirrorNotice:
		a.mu.Lock()
		a.mirror = m.Text
		a.mu.Unlock()
		return nil, nil
	case *control.ScrubProgressNotice:
		a.mu.Lock()
		a.scrub = m.Text
		a.mu.Unlock()
		return nil, nil
	}
	return nil, control.Errorf(control.Refused, "%s is not an op PID 1 answers", req.Op())
}

// sign answers the worker's sign: PID 1 digests the sealed manifest of the
// named snapshot in the store itself and has the TPM sign that digest,
// never one the worker names.
func (a *appliance) sign(ctx context.Context, id string) (*control.SignReply, error) {
	if !store.ValidSnapshotID(id) {
		return nil, control.Errorf(control.Invalid, "%q is not a snapshot ID", id)
	}
	a.mu.Lock()
	dir, t := a.storeDir, a.tpm
	a.mu.Unlock()
	if t == nil || dir == "" {
		return nil, control.Errorf(control.Refused, "no TPM or no store to sign for")
	}
	d, err := store.SealedManifestDigest(ctx, dir, id)
	if errors.Is(err, store.ErrNotFound) {
		return nil, control.Errorf(control.NotFound, "no manifest %s", id)
	}
	if err != nil {
		return nil, control.Errorf(control.Refused, "%v", err)
	}
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	r, err := (&tpm.Signer{TPM: t}).SignManifest(ctx, id, d)
	if err != nil {
		return nil, fmt.Errorf("sign %s: %w", id, err)
	}
	return &control.SignReply{Receipt: r}, nil
}

// recordPull keeps the status of a pull of a configured source; one of
// any other name is refused and kept nowhere.
func (a *appliance) recordPull(source string, ps *pullStatus) error {
	a.mu.Lock()
	cfg := a.cfg
	a.mu.Unlock()
	if cfg == nil || ps == nil {
		return control.Errorf(control.Refused, "no config")
	}
	if _, ok := cfg.Source(source); !ok {
		return control.Errorf(control.NotFound, "no source %q in the config", source)
	}
	if ps.Err != "" {
		a.alertIn(&a.workerAlerts, alertkind.PullFailed, "pull failed", "source", source, "error", ps.Err)
	}
	a.mu.Lock()
	a.pulls[source] = ps
	a.mu.Unlock()
	return nil
}

// cleanAndPrune removes what the worker planted where it writes freely
// (CleanForeign), then prunes one disk's store, alerting on every foreign
// entry and everything prune skipped. It reports whether prune ran.
func (a *appliance) cleanAndPrune(ctx context.Context, st *store.Store, now time.Time) bool {
	// Entries the worker planted (a FIFO, a symlink, junk) go first where
	// it writes freely; in the append-only directories they are reported
	// and every reader skips them.
	if rep, err := st.CleanForeign(ctx); err != nil {
		a.alert(alertkind.DiskError, "disk-error: foreign entries not cleaned; every reader still skips them", "disk", st.Dir(), "error", err)
	} else if rep.Count > 0 {
		a.alert(alertkind.Attack, "attack: foreign entries in the store (removed from wip/, index/, tmp/, state/; skipped, never removed, in the append-only directories)",
			"disk", st.Dir(), "count", rep.Count, "removed", rep.Removed, "first", foreignNames(rep.Entries))
	}
	res, err := st.Prune(ctx, store.PruneOptions{Now: now})
	if err != nil {
		a.alert(alertkind.ClockAnomaly, "prune frozen: nothing was deleted", "error", err)
		return false
	}
	if len(res.Skipped) > 0 {
		a.alert(alertkind.Attack, "attack: prune skipped store entries it cannot use", "disk", st.Dir(), "count", len(res.Skipped), "kept_all_packs", res.KeptAllPacks, "first", problemPaths(res.Skipped))
	}
	a.log.Info("prune done", "expired", len(res.Expired), "kept", len(res.Kept), "packs_removed", len(res.Packs), "freed", res.FreedBytes, "disk", st.Dir(), "trusted_time", now.UTC().Format(time.RFC3339))
	return true
}

// foreignNames names the first few foreign entries, for an alert.
func foreignNames(es []store.ForeignEntry) string {
	var b strings.Builder
	for i, e := range es {
		if i == 8 {
			fmt.Fprintf(&b, " (+%d more)", len(es)-i)
			break
		}
		if i > 0 {
			b.WriteString(", ")
		}
		fmt.Fprintf(&b, "%q", e.Path)
	}
	return b.String()
}

// problemPaths names the first few entries prune skipped, for an alert.
func problemPaths(ps []store.Problem) string {
	es := make([]store.ForeignEntry, 0, len(ps))
	for _, p := range ps {
		es = append(es, store.ForeignEntry{Path: p.Path})
	}
	return foreignNames(es)
}
