package appliance

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/holdfast-appliance/holdfast/boards"
	"github.com/holdfast-appliance/holdfast/firmware/configpart"
	"github.com/holdfast-appliance/holdfast/firmware/console"
	"github.com/holdfast-appliance/holdfast/firmware/console/frame"
	"github.com/holdfast-appliance/holdfast/firmware/control"
	"github.com/holdfast-appliance/holdfast/firmware/disks"
	"github.com/holdfast-appliance/holdfast/firmware/reaper"
	"github.com/holdfast-appliance/holdfast/firmware/recoverykey"
	"github.com/holdfast-appliance/holdfast/firmware/tpm"
	"github.com/holdfast-appliance/holdfast/firmware/trustedtime"
	"github.com/holdfast-appliance/holdfast/services/alertkind"
	"github.com/holdfast-appliance/holdfast/services/config"
)

// Options are what PID 1 hands over.
type Options struct {
	Board   *boards.Board
	Conn    *frame.Conn
	Human   io.Writer     // lines for the person at the console
	Typed   <-chan string // lines the person typed
	Log     hclog.Logger
	Version string
	PCR11   string
	Start   time.Time // when init started
	// MkE2fs is the mke2fs binary; "" means /sbin/mke2fs.
	MkE2fs string
	// RunDir holds mount points; "" means /run/holdfast.
	RunDir string
	// TPMDevice is the TPM character device; "" means tpm.DefaultDevice.
	TPMDevice string
	// LogOutput receives the log lines of the child processes (worker,
	// sealer, DHCP); nil means Human.
	LogOutput io.Writer
	// Exe is the binary started for the child roles; "" means init's own
	// (/proc/self/exe). Tests point it at a built holdfast-init.
	Exe string
	// Children starts the processes PID 1 runs, so that its reaper leaves
	// their exit status to them; nil starts them directly.
	Children *reaper.Reaper
	// Reboot ends halt (poweroff, reboot) with how, a
	// unix.LINUX_REBOOT_CMD_*; nil means reboot(2). Tests record it.
	Reboot func(how int) error
}

// Console lines tests and operators look for.
const (
	SafeModeLine    = "SAFE MODE"
	ReadyLine       = "ready: services running"
	RecoveryKeyLine = "RECOVERY KEY"
	Prompt          = "holdfast> "
)

type appliance struct {
	o   Options
	log hclog.Logger
	// cfgMu serialises writes to the config partition
	// (withConfigWritable).
	cfgMu sync.Mutex

	mu       sync.Mutex // guards the fields below
	phase    string
	safe     string // why the box is in safe mode; "" when it is not
	tpm      *tpm.TPM
	part     *configpart.Partition
	cfgBlob  []byte
	cfgRaw   []byte
	cfg      *config.File
	master   []byte
	disks    []disks.Disk
	mounted  map[string]string // disk name -> mount point
	storeDir string            // the store on the primary data disk
	storeID  string
	// stores are the data disks holding the store, the primary (the
	// worker's writer) first; spare are holdfast-data disks with no store
	// yet (mirror_linux.go).
	stores []dataStore
	spare  []dataStore
	// mirror is the worker's latest word on the mirror, for status.
	mirror string
	// scrub is where the scheduled scrub stands, as the worker said
	// (quoted when shown).
	scrub    string
	newStore bool // the disk was just formatted: the worker creates the store
	worker   *control.Conn
	procs    []*exec.Cmd         // worker and sealer
	tt       *trustedtime.Keeper // trusted time T (time_linux.go)
	maint    *maintenancePlan    // the maintenance reboots (maintreboot_linux.go)
	pulls    map[string]*pullStatus
	alerts   []string
	// workerAlerts are what the worker reported (its alerts, failed
	// pulls): a ring of their own, so that no flood of the worker's
	// pushes PID 1's own alerts out of status.
	workerAlerts []string
	unsent       []*control.SendAlert // alerts raised before the worker ran (sendBootAlerts)
	measured     bool                 // PCR 15 holds this boot's config digest
	locked       bool                 // lockdown has begun: no more formatting
	// held are PID 1's read-only descriptors on the data disks, from
	// lockdown on, when /dev has no disk node (devfs_linux.go).
	held heldDisks
	// limited: PID 1 has given up what a role needs to start (its
	// bounding set is empty): no role starts any more.
	limited bool
	// stuckStep is set when a maintenance step outlived its deadline
	// (deadline_linux.go): safe mode then lasts until a reboot.
	stuckStep string
	// advSealers are a TEST image's extra sealer sockets by store
	// directory, for the worker adversary (attack_worker_linux.go).
	advSealers map[string]*os.File
}

func (a *appliance) setPhase(p string) {
	a.mu.Lock()
	a.phase = p
	a.mu.Unlock()
}

// alert logs an alert of kind (services/alertkind), keeps it for status
// and has it sent by mail and webhook by the worker (PID 1 itself uses no
// network): at once when the worker runs, otherwise when it starts
// (sendBootAlerts), so that what the boot found (a missing disk, a frozen
// prune) leaves the box too.
func (a *appliance) alert(kind, msg string, args ...any) { a.alertIn(&a.alerts, kind, msg, args...) }

// alertIn is alert, kept in ring (a.alerts, or a.workerAlerts for what
// the worker reported).
func (a *appliance) alertIn(ring *[]string, kind, msg string, args ...any) {
	a.log.Error(msg, append([]any{"alert", true, "kind", kind}, args...)...)
	a.mu.Lock()
	line := msg
	for i := 0; i+1 < len(args); i += 2 {
		line += fmt.Sprintf(" %v=%v", args[i], args[i+1])
	}
	keepAlertLocked(ring, line)
	w := a.worker
	m := &control.SendAlert{Kind: kind, Text: control.Clip(line)}
	if w == nil && len(a.unsent) < maxAlerts {
		a.unsent = append(a.unsent, m)
	}
	a.mu.Unlock()
	if w != nil {
		_ = w.Notify(m)
	}
}

// sendBootAlerts hands the alerts raised before the worker ran to it.
func (a *appliance) sendBootAlerts() {
	a.mu.Lock()
	w, unsent := a.worker, a.unsent
	a.unsent = nil
	a.mu.Unlock()
	for _, m := range unsent {
		if w == nil || w.Notify(m) != nil {
			a.log.Warn("boot alert not handed to the worker", "alert", m.Text)
		}
	}
}

// maxAlerts is how many recent alerts status shows.
const maxAlerts = 50

// keepAlertLocked records an alert line for status in ring (a.alerts or
// a.workerAlerts), which keeps the last maxAlerts; a.mu is held.
func keepAlertLocked(ring *[]string, line string) {
	*ring = append(*ring, time.Now().UTC().Format(time.RFC3339)+" "+line)
	if len(*ring) > maxAlerts {
		*ring = (*ring)[len(*ring)-maxAlerts:]
	}
}

func (a *appliance) say(format string, args ...any) {
	fmt.Fprintf(a.o.Human, strings.ReplaceAll(format, "\n", "\r\n"), args...)
}

// Run runs boot phases 3 to 8 and then the services; it returns only when
// ctx ends or the console link fails.
func Run(ctx context.Context, o Options) error {
	if o.MkE2fs == "" {
		o.MkE2fs = "/sbin/mke2fs"
	}
	if o.RunDir == "" {
		o.RunDir = "/run/holdfast"
	}
	if o.TPMDevice == "" {
		o.TPMDevice = tpm.DefaultDevice
	}
	if o.Log == nil {
		o.Log = hclog.NewNullLogger()
	}
	if o.Human == nil {
		o.Human = io.Discard
	}
	if o.LogOutput == nil {
		o.LogOutput = o.Human
	}
	a := &appliance{o: o, log: o.Log, mounted: map[string]string{}, pulls: map[string]*pullStatus{}}
	err := a.keys(ctx)
	for err != nil {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		a.enterSafeMode(err)
		err = a.safeMode(ctx)
	}
	if err := a.disksPhase(ctx); err != nil {
		return err
	}
	if err := a.maintenance(ctx); err != nil {
		return a.stuck(ctx, err)
	}
	if err := a.lockdown(ctx); err != nil {
		// Without the worker nothing is pulled; the console still
		// answers. A retry could start a second worker, so none.
		a.alert(alertkind.Appliance, "lockdown or worker start failed; no pulls until the next boot", "error", err)
	}
	return a.services(ctx)
}

func (a *appliance) enterSafeMode(err error) {
	a.mu.Lock()
	a.safe = err.Error()
	a.phase = "safe mode"
	a.mu.Unlock()
	a.alert(alertkind.SafeMode, "safe mode: nothing on the data disks is mounted, formatted, written or deleted", "reason", err)
	a.say("\n==== %s ====\n%v\nNothing on the data disks is mounted, formatted, written or deleted.\n"+
		"Type 'status' to see the disks, or 'unlock' followed by the 48-digit paper recovery key\n"+
		"to reseal the key to this firmware and continue.\n", SafeModeLine, err)
}

// keys is phases 3 and 4: the config partition, the config and the master
// key. An error sends the box to safe mode.
func (a *appliance) keys(ctx context.Context) error {
	a.setPhase("config")
	a.log.Info("phase 3/8 config: looking for the config partition")
	t, err := tpm.OpenDevice(a.o.TPMDevice, a.log.Named("tpm"))
	if err != nil {
		if a.o.Board.TPM.AllowNoTPMTestMode {
			return fmt.Errorf("no TPM (%v); TPM-less test mode is not implemented: a release image never runs without a TPM", err)
		}
		return fmt.Errorf("no TPM: %w", err)
	}
	a.tpm = t
	dev, err := disks.FindConfigPartition()
	if err != nil {
		return err
	}
	part, err := configpart.Mount(dev, filepath.Join(a.o.RunDir, "config"))
	if err != nil {
		return err
	}
	a.part = part
	hasKey := part.Has(tpm.SealedKeyFile)
	hasRecovery := part.Has(tpm.RecoveryFile)
	blob, cfgErr := part.ReadConfig()
	switch {
	case !hasKey && !hasRecovery:
		// No key: nothing can be encrypted under one yet (disks are
		// formatted only after this), so a config.sealed left by a cut
		// first boot is replaced.
		return a.firstBoot(ctx)
	case !hasKey || !hasRecovery:
		return fmt.Errorf("config partition %s holds %s but not %s: refusing to guess (restore the file, or unlock with the recovery key)",
			dev, map[bool]string{true: tpm.RecoveryFile, false: tpm.SealedKeyFile}[hasRecovery], map[bool]string{true: tpm.SealedKeyFile, false: tpm.RecoveryFile}[hasRecovery])
	case cfgErr != nil:
		return fmt.Errorf("the box has a key but no config: %w", cfgErr)
	}
	a.cfgBlob = blob
	a.setPhase("keys")
	a.log.Info("phase 4/8 keys: measuring the config into PCR 15 and unsealing the master key")
	if err := t.ExtendConfigPCR(ctx, configpart.Digest(blob)); err != nil {
		return fmt.Errorf("measure config: %w", err)
	}
	a.measured = true
	master, err := (&tpm.Unsealer{TPM: t, Dir: part.Dir, Policy: tpm.DefaultPolicy()}).MasterKey(ctx)
	if err != nil {
		return fmt.Errorf("unseal master key: %w", err)
	}
	return a.haveKey(ctx, master, blob)
}

// haveKey caps PCR 15 and opens the config with the master key.
func (a *appliance) haveKey(ctx context.Context, master, blob []byte) error {
	if err := a.tpm.CapConfigPCR(ctx); err != nil {
		return fmt.Errorf("cap config PCR: %w", err)
	}
	raw, err := configpart.OpenConfig(master, blob)
	if err != nil {
		return err
	}
	cfg, err := config.Parse("config.sealed", raw)
	if err != nil {
		return fmt.Errorf("sealed config no longer parses: %w", err)
	}
	a.takeOwnership(ctx, master)
	tt, err := a.openTrustedTime(ctx, master)
	if err != nil {
		return fmt.Errorf("trusted time: %w", err)
	}
	a.mu.Lock()
	a.master, a.cfg, a.cfgBlob, a.cfgRaw, a.tt = master, cfg, blob, raw, tt
	a.mu.Unlock()
	a.log.Info("master key unsealed, config PCR capped", "appliance", cfg.Appliance.Name, "sources", len(cfg.Sources))
	return nil
}

// firstBoot asks for a config, makes and seals the master key, and shows
// the recovery key once.
func (a *appliance) firstBoot(ctx context.Context) error {
	a.log.Info("phase 3/8 config: this box has no key and no config yet; asking on the serial console")
	raw, err := console.WaitForConfig(ctx, a.o.Conn, console.ApplianceOptions{
		Board: a.o.Board.Name, Version: a.o.Version, PCR11: a.o.PCR11,
		Log: a.log.Named("console"), Human: a.o.Human, Typed: a.o.Typed,
	})
	if err != nil {
		return fmt.Errorf("console: %w", err)
	}
	a.setPhase("keys")
	a.log.Info("phase 4/8 keys: making the master key and sealing it to this firmware and config")
	t := a.tpm
	master, err := t.NewMasterKey(ctx)
	if err != nil {
		return err
	}
	blob, err := configpart.SealConfig(master, raw)
	if err != nil {
		return err
	}
	if err := a.part.WriteConfig(blob); err != nil {
		return err
	}
	if err := t.ExtendConfigPCR(ctx, configpart.Digest(blob)); err != nil {
		return fmt.Errorf("measure config: %w", err)
	}
	prov, err := t.ProvisionKey(ctx, a.part.Dir, master, tpm.DefaultPolicy(), nil)
	if err != nil {
		return err
	}
	if err := a.haveKey(ctx, master, blob); err != nil {
		return err
	}
	if _, err := a.tt.Start(ctx, time.Now()); err != nil {
		a.alert(alertkind.Appliance, "could not start the trusted time: prune waits for confirm-time at the console", "error", err)
	}
	a.showRecoveryKey(ctx, prov.RecoveryKey)
	return nil
}

// showRecoveryKey prints the paper recovery key on the console only (never
// in a log) and waits until the operator confirms it is written down.
func (a *appliance) showRecoveryKey(ctx context.Context, rk recoverykey.Key) {
	a.say("\n==== %s: write it on paper and keep it away from this box ====\n\n    %s\n\n"+
		"It opens the data disks on any Linux PC (holdfast restore --disk) and unlocks\n"+
		"this box after a firmware change. It is shown only now.\n"+
		"Type 'written' when you have written it down.\n", RecoveryKeyLine, rk.String())
	for {
		select {
		case <-ctx.Done():
			return
		case line := <-a.o.Typed:
			// Contains, not equals: bytes of a frame cut short when a
			// host tool let go of the line can prefix what is typed.
			if strings.Contains(strings.ToLower(line), "written") {
				a.log.Info("operator confirmed the recovery key is written down")
				return
			}
			a.say("Type 'written' when you have written the recovery key down.\n")
		}
	}
}

// safeMode serves the console until the operator unlocks the box.
func (a *appliance) safeMode(ctx context.Context) error {
	sctx, cancel := context.WithCancel(ctx)
	defer cancel()
	st := &safeState{}
	h := func(ctx context.Context, cmd console.Command, out io.Writer) error {
		done, err := a.safeCommand(ctx, st, cmd, out)
		if done {
			cancel()
		}
		return err
	}
	err := console.Serve(sctx, a.o.Conn, console.ServeOptions{Handler: h, Typed: a.o.Typed, Human: a.o.Human, Prompt: Prompt, Log: a.log.Named("console")})
	if st.unlocked {
		a.mu.Lock()
		a.safe = ""
		a.mu.Unlock()
		return nil
	}
	if ctx.Err() == nil && err != nil {
		a.log.Error("console failed in safe mode; retrying", "error", err)
		time.Sleep(time.Second)
	}
	return errors.New("still in safe mode")
}

// unlockConfirmWithin is how long a checked recovery key waits for the
// operator's "unlock yes".
const unlockConfirmWithin = 10 * time.Minute

// safeState is what the safe-mode console remembers between commands.
type safeState struct {
	// pending is a recovery key that opened the master key, with the
	// config it would reseal to, waiting for "unlock yes".
	pending  *unlockPlan
	unlocked bool
}

// unlockPlan is what "unlock yes" reseals: the master key the paper key
// opened and the config on the stick it was checked against.
type unlockPlan struct {
	rk      recoverykey.Key
	master  []byte
	blob    []byte
	expires time.Time
}

// safeCommand runs one console command in safe mode; done means the box is
// unlocked and the boot goes on. Unlocking takes two steps: "unlock KEY"
// checks the paper key and shows the summary of the config the key would be
// resealed to (a config.sealed planted on the stick must be seen before a
// person vouches for it), and "unlock yes" reseals.
func (a *appliance) safeCommand(ctx context.Context, st *safeState, cmd console.Command, out io.Writer) (done bool, err error) {
	switch cmd.Name {
	case "unlock":
		a.mu.Lock()
		stuck := a.stuckStep
		a.mu.Unlock()
		if stuck != "" {
			return false, fmt.Errorf("unlock does not apply: the keys are open, but %s; type reboot to try again", stuck)
		}
		switch {
		case len(cmd.Args) == 1 && strings.EqualFold(cmd.Args[0], "no"):
			st.pending = nil
			fmt.Fprint(out, "unlock cancelled: nothing was resealed\r\n")
			return false, nil
		case len(cmd.Args) == 1 && strings.EqualFold(cmd.Args[0], "yes"):
			p := st.pending
			st.pending = nil
			if p == nil || time.Now().After(p.expires) {
				return false, errors.New("no recovery key is waiting for confirmation: type unlock followed by the paper recovery key first")
			}
			if err := a.unlock(ctx, p); err != nil {
				return false, err
			}
			fmt.Fprint(out, "unlocked: the key is sealed to this firmware and this config again; continuing the boot\r\n")
			st.unlocked = true
			return true, nil
		}
		st.pending = nil
		p, summary, err := a.prepareUnlock(strings.Join(cmd.Args, ""))
		if err != nil {
			return false, err
		}
		p.expires = time.Now().Add(unlockConfirmWithin)
		st.pending = p
		fmt.Fprintf(out, "The recovery key is right. Unlocking reseals the key to this firmware and to this config:\r\n%s"+
			"Type 'unlock yes' within %s to reseal and continue, or 'unlock no'.\r\n",
			strings.ReplaceAll(string(console.Quote([]byte(summary))), "\n", "\r\n"), unlockConfirmWithin)
		return false, nil
	case "format", "extend", "hold":
		return false, fmt.Errorf("%s is not available in safe mode", cmd.Name)
	case "status":
		// Safe mode comes before phase 5 lists the disks; listing
		// them only reads each disk's first and last MiB.
		if _, err := a.scanDisks(); err != nil {
			a.log.Warn("cannot list disks", "error", err)
		}
	}
	return false, a.command(ctx, cmd, out)
}

// prepareUnlock opens the master key with the paper recovery key typed and
// checks that the config on the stick was sealed with it; it returns what
// unlock would reseal and the config's summary, and changes nothing.
func (a *appliance) prepareUnlock(typed string) (*unlockPlan, string, error) {
	if a.tpm == nil || a.part == nil {
		return nil, "", errors.New("unlock needs the TPM and the config partition, and this box has not got both")
	}
	rk, err := recoverykey.Parse(typed)
	if err != nil {
		return nil, "", fmt.Errorf("recovery key: %w", err)
	}
	wrapped, err := os.ReadFile(filepath.Join(a.part.Dir, tpm.RecoveryFile))
	if err != nil {
		return nil, "", fmt.Errorf("recovery file: %w", err)
	}
	master, err := recoverykey.Unwrap(wrapped, rk)
	if err != nil {
		return nil, "", fmt.Errorf("recovery key: %w", err)
	}
	blob, err := a.part.ReadConfig()
	if err != nil {
		return nil, "", err
	}
	raw, err := configpart.OpenConfig(master, blob)
	if err != nil {
		return nil, "", fmt.Errorf("the config on the stick was not sealed with this box's key: %w", err)
	}
	summary, err := console.Validate(raw)
	if err != nil {
		return nil, "", fmt.Errorf("the config on the stick opens with this box's key but does not parse, refusing to reseal to it: %w", err)
	}
	return &unlockPlan{rk: rk, master: master, blob: blob}, summary, nil
}

// unlock reseals the master key of p to this boot and continues.
func (a *appliance) unlock(ctx context.Context, p *unlockPlan) error {
	// PCR 15 must hold this boot's config digest (keys extended it and,
	// having failed, did not cap it), so that sealing to the current
	// values binds the key to this firmware and this config.
	if !a.measured {
		if err := a.tpm.ExtendConfigPCR(ctx, configpart.Digest(p.blob)); err != nil {
			return fmt.Errorf("measure config: %w", err)
		}
		a.measured = true
	}
	if err := a.tpm.Reseal(ctx, a.part.Dir, p.master, p.rk, tpm.DefaultPolicy(), nil); err != nil {
		return err
	}
	a.log.Warn("master key resealed to this boot with the recovery key")
	return a.haveKey(ctx, p.master, p.blob)
}

// start starts a child PID 1 keeps or waits for itself.
func (a *appliance) start(cmd *exec.Cmd) error {
	if a.o.Children != nil {
		return a.o.Children.Start(cmd)
	}
	return cmd.Start()
}

// runChild runs a child to its end.
func (a *appliance) runChild(cmd *exec.Cmd) error {
	if a.o.Children != nil {
		return a.o.Children.Run(cmd)
	}
	return cmd.Run()
}
