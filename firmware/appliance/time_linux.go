package appliance

import (
	"context"
	"errors"
	"fmt"
	"io"
	"path/filepath"
	"strings"
	"time"

	"github.com/holdfast-appliance/holdfast/firmware/console"
	"github.com/holdfast-appliance/holdfast/firmware/tpm"
	"github.com/holdfast-appliance/holdfast/firmware/trustedtime"
	"github.com/holdfast-appliance/holdfast/services/alertkind"
)

// Trusted time in PID 1 (invariant I5, firmware/trustedtime): T is loaded
// in phase 4, advanced in phase 6 before prune and hourly while running,
// and moved to the wall clock only by confirm-time at the console. Its
// records live on the config partition, which only PID 1 mounts and which
// is read-only after lockdown except for the instant PID 1 writes
// (withConfigWritable).
//
//	| when                      | what                                                 |
//	|---------------------------|------------------------------------------------------|
//	| phase 4 (haveKey)         | load the newest authentic record; none: adopt the    |
//	|                           | old clock anchor if it is authentic, else alert      |
//	| first boot (provisioning) | start T at the wall clock the operator set up        |
//	| phase 6 (maintenance)     | advance T, then prune with T (skipped without T)     |
//	| every hour (services)     | advance T                                            |
//	| confirm-time yes          | T := max(T, wall clock), a person at the console     |
//	| poweroff / reboot /       | advance T, then TPM2_Shutdown(STATE) last            |
//	| maintenance reboot        | (maintreboot_linux.go)                               |
const timeAdvanceEvery = time.Hour

// openTrustedTime makes PID 1's Keeper and loads its records.
func (a *appliance) openTrustedTime(ctx context.Context, master []byte) (*trustedtime.Keeper, error) {
	key, err := trustedtime.Key(master)
	if err != nil {
		return nil, err
	}
	id, err := a.tpm.Identity(ctx)
	if err != nil {
		return nil, err
	}
	k := trustedtime.NewKeeper(trustedtime.Options{
		Records:  trustedtime.Records{Dir: a.part.Dir, Key: key},
		TPM:      a.tpm,
		Identity: id,
		Writable: a.withConfigWritable,
		Logger:   a.log.Named("time"),
	})
	ignored, err := k.Load()
	for _, e := range ignored {
		a.alert(alertkind.ClockAnomaly, "clock-anomaly: a trusted time record on the config partition was ignored (forged, torn or not a file)", "error", e)
	}
	if err == nil {
		return k, nil
	}
	if !errors.Is(err, trustedtime.ErrNoRecord) {
		return nil, err
	}
	// Firmware before trusted time kept a clock anchor; its wall time is
	// a time an operator confirmed or the TPM vouched for.
	c, cerr := tpm.NewClock(a.tpm, tpm.ClockOptions{AnchorPath: filepath.Join(a.part.Dir, tpm.ClockAnchorFile), MasterKey: master})
	if cerr == nil {
		if an, aerr := c.ReadAnchor(); aerr == nil {
			s := trustedtime.State{T: an.Wall, Wall: an.Wall, Reading: trustedtime.Reading{TPM: id, Clock: an.Clock, ResetCount: an.ResetCount, RestartCount: an.RestartCount}}
			if err := k.Adopt(s); err != nil {
				a.alert(alertkind.ClockAnomaly, "clock-anomaly: cannot adopt the old clock anchor", "error", err)
			}
		}
	}
	return k, nil
}

// advanceTime advances T by the rule and alerts when it credited less
// than the wall clock saw. It returns T and whether there is one.
func (a *appliance) advanceTime(ctx context.Context) (time.Time, bool) {
	a.mu.Lock()
	k := a.tt
	a.mu.Unlock()
	if k == nil {
		return time.Time{}, false
	}
	if _, ok := k.T(); !ok {
		return time.Time{}, false // the caller says what waits
	}
	s, ev, err := k.Advance(ctx)
	if err != nil {
		// T in memory still stands (a failed save loses only this
		// credit at the next boot).
		a.alert(alertkind.ClockAnomaly, "clock-anomaly: trusted time advance failed", "error", err)
		t, ok := k.T()
		return t, ok
	}
	if ev.Alert() {
		a.alert(alertkind.ClockAnomaly, "clock-anomaly: trusted time runs late: retention is enforced late by the lag (nothing is deleted early)",
			"T", s.T.UTC().Format(time.RFC3339), "lag", ev.Lag.Round(time.Second), "why", ev.Reason)
	}
	return s.T, true
}

// timeLoop advances T every timeAdvanceEvery until ctx ends.
func (a *appliance) timeLoop(ctx context.Context) {
	tick := time.NewTicker(timeAdvanceEvery)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
			a.advanceTime(ctx)
		}
	}
}

// trustedClock is the prune clock of PID 1's stores: T, or an error when
// there is none. Phase 6 passes T to prune itself; this keeps any other
// prune from falling back to the wall clock.
type trustedClock struct{ a *appliance }

func (c trustedClock) Now() (time.Time, error) {
	c.a.mu.Lock()
	k := c.a.tt
	c.a.mu.Unlock()
	if k != nil {
		if t, ok := k.T(); ok {
			return t, nil
		}
	}
	return time.Time{}, errors.New("no trusted time: an operator must type confirm-time at the console")
}

// confirmTime is the console's confirm-time: without "yes" it shows the
// wall clock, T and the difference; with it T moves forward to the wall
// clock. It is the only way T ever jumps.
func (a *appliance) confirmTime(ctx context.Context, cmd console.Command, out io.Writer) error {
	a.mu.Lock()
	k := a.tt
	a.mu.Unlock()
	if k == nil {
		return errors.New("no trusted time (no key unsealed yet)")
	}
	wall := time.Now()
	t, ok := k.T()
	if !ok {
		fmt.Fprintf(out, "wall clock   %s\r\ntrusted time none (prune waits)\r\n", wall.UTC().Format(time.RFC3339))
	} else {
		fmt.Fprintf(out, "wall clock   %s\r\ntrusted time %s\r\nT lags the wall clock by %s\r\n", wall.UTC().Format(time.RFC3339), t.UTC().Format(time.RFC3339), wall.Sub(t).Round(time.Second))
	}
	if len(cmd.Args) != 1 || !strings.EqualFold(cmd.Args[0], "yes") {
		fmt.Fprint(out, "Check the wall clock against a clock you trust. Snapshots whose retention\r\n"+
			"ended before it may then be pruned at the next maintenance window.\r\n"+
			"Type 'confirm-time yes' to move the trusted time to the wall clock.\r\n")
		return nil
	}
	s, ev, err := k.Confirm(ctx)
	if err != nil {
		return fmt.Errorf("confirm time: %w", err)
	}
	a.log.Warn("trusted time confirmed at the console", "T", s.T.UTC().Format(time.RFC3339), "moved", ev.Credit.Round(time.Second))
	fmt.Fprintf(out, "trusted time is now %s (moved %s)\r\n", s.T.UTC().Format(time.RFC3339), ev.Credit.Round(time.Second))
	return nil
}

// timeStatus is status's trusted-time line.
func timeStatus(k *trustedtime.Keeper, wall time.Time) string {
	if k == nil {
		return ""
	}
	t, ok := k.T()
	if !ok {
		return "trusted time: none; prune waits for confirm-time at the console\n"
	}
	return fmt.Sprintf("trusted time %s (lags the wall clock by %s)\n", t.UTC().Format(time.RFC3339), wall.Sub(t).Round(time.Second))
}

// takeOwnership sets the TPM's owner and lockout auth (tpm.TakeOwnership:
// a no-op once done), so TPM2_ClockSet, TPM2_ClockRateAdjust and TPM2_Clear
// need the auth only PID 1 derives. It runs after the master key is
// unsealed (the SRK is persisted first, so the next boot unseals without
// the owner auth). A failure is an alert, never a reason to stop: T still
// credits at most what the wall clock saw.
func (a *appliance) takeOwnership(ctx context.Context, master []byte) {
	auth, err := tpm.OwnerAuth(master)
	if err == nil {
		var changed []string
		changed, err = a.tpm.TakeOwnership(ctx, auth)
		if len(changed) > 0 {
			a.log.Info("TPM ownership taken: owner and lockout auth set, SRK persisted", "changed", strings.Join(changed, ","))
		}
	}
	if err != nil {
		a.alert(alertkind.ClockAnomaly, "clock-anomaly: TPM owner authorization not set: anything reaching the TPM could move its clock", "error", err)
	}
}
