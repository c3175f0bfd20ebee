package appliance

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync"
	"time"

	"golang.org/x/sys/unix"

	"github.com/holdfast-appliance/holdfast/firmware/console"
	"github.com/holdfast-appliance/holdfast/firmware/control"
	"github.com/holdfast-appliance/holdfast/services/alertkind"
	"github.com/holdfast-appliance/holdfast/services/config"
)

// The maintenance reboot (invariant I5, boot phase 6). Prune clears inode
// flags, which needs CAP_LINUX_IMMUTABLE, which nothing holds after
// lockdown; so the box reboots itself into its maintenance window on the
// schedule of appliance { maintenance = ... } (config.Maintenance, UTC,
// default weekly sun 03:00), where phase 6 advances T and prunes with it,
// and comes back to "ready" by itself (the key unseals without a person).
//
//	| when                          | what PID 1 does                                |
//	|-------------------------------|------------------------------------------------|
//	| the scheduled time comes      | asks the worker to quiesce: idle, it starts    |
//	|                               | no new pull or restore and PID 1 reboots       |
//	|                               | through halt (advance T, unmount,              |
//	|                               | TPM2_Shutdown(STATE), reboot(2))               |
//	| a pull or restore is running  | waits, asks again every maintenanceRetry       |
//	| still busy after a day        | alert (the window waits)                       |
//	| still busy after              | alert and reboot anyway: a worker that is      |
//	| maxMaintenanceDeferral        | never idle is broken or compromised, and must  |
//	|                               | not freeze prune (I5); a cut pull is finished  |
//	|                               | or discarded by journal recovery, a cut        |
//	|                               | restore leaves what it wrote and is typed again|
//	| `maintenance` at the console  | shows the schedule and the next window         |
//	| `maintenance now`             | the same check, then the same reboot; refused  |
//	|                               | with the reason while a pull or restore runs   |
//	| schedule "off"                | no scheduled reboot; prune runs at boots an    |
//	|                               | operator makes                                 |
//
// The wall clock decides when: it can only make the reboot early or late,
// never make prune delete early (prune uses T only).
const (
	// maintenanceTick is how often PID 1 looks at the wall clock.
	maintenanceTick = time.Minute
	// maintenanceRetry is how long PID 1 waits after a busy answer.
	maintenanceRetry = 10 * time.Minute
	// maintenanceWarnAfter is how long a window may wait for a busy
	// worker before an alert says so.
	maintenanceWarnAfter = 24 * time.Hour
	// maxMaintenanceDeferral is how long a window may wait at most.
	maxMaintenanceDeferral = 7 * 24 * time.Hour
	// quiesceTimeout bounds the worker's answer to quiesce.
	quiesceTimeout = 30 * time.Second
)

// MaintenanceRebootLine is logged when PID 1 reboots into the
// maintenance window by itself.
const MaintenanceRebootLine = "maintenance: rebooting into the maintenance window"

// maintenancePlan is PID 1's schedule of maintenance reboots: the window
// waited for and when to look next. Its methods are safe for concurrent
// use (the loop decides, status reads).
type maintenancePlan struct {
	mu    sync.Mutex
	sched config.Maintenance
	due   time.Time // the window waited for; zero when off
	next  time.Time // when to look next: due, or a retry after busy
	busy  string    // why the last look waited; "" when it did not
	// warned: the alert that the window waits for more than
	// maintenanceWarnAfter was raised.
	warned bool
}

func newMaintenancePlan(s config.Maintenance, now time.Time) *maintenancePlan {
	due := s.Next(now)
	return &maintenancePlan{sched: s, due: due, next: due}
}

// maintenanceAction is what one look at the clock decided.
type maintenanceAction int

const (
	maintWait   maintenanceAction = iota // not time yet, or off
	maintBusy                            // time, but a pull or restore runs: look again later
	maintWarn                            // busy, and the window waited maintenanceWarnAfter: alert
	maintReboot                          // time, and the worker is quiesced
	maintForce                           // busy for maxMaintenanceDeferral: reboot anyway
)

// step looks at the clock at now. When the window is due it asks busy,
// which quiesces the worker when it is idle and otherwise says what
// runs, and decides.
func (p *maintenancePlan) step(now time.Time, busy func() string) (maintenanceAction, string) {
	p.mu.Lock()
	if p.due.IsZero() || now.Before(p.next) {
		p.mu.Unlock()
		return maintWait, ""
	}
	due := p.due
	p.mu.Unlock()
	why := busy()
	p.mu.Lock()
	defer p.mu.Unlock()
	p.busy = why
	switch {
	case why == "":
		return maintReboot, ""
	case now.Sub(due) >= maxMaintenanceDeferral:
		return maintForce, why
	}
	p.next = now.Add(maintenanceRetry)
	if now.Sub(due) >= maintenanceWarnAfter && !p.warned {
		p.warned = true
		return maintWarn, why
	}
	return maintBusy, why
}

// line is the schedule for status and the console.
func (p *maintenancePlan) line() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.due.IsZero() {
		return fmt.Sprintf("maintenance %s: no scheduled reboot; prune runs at the next boot\n", p.sched)
	}
	s := fmt.Sprintf("maintenance %s (UTC): next window %s", p.sched, p.due.Format(time.RFC3339))
	if p.busy != "" {
		s += fmt.Sprintf(", waiting (%s; next try %s)", p.busy, p.next.Format(time.RFC3339))
	}
	return s + "\n"
}

// quiesce asks the worker to start no new pull or restore and says what
// still runs; "" means the worker is idle and quiesced (or not running:
// nothing can be pulling then).
func (a *appliance) quiesce(ctx context.Context) string {
	a.mu.Lock()
	w := a.worker
	a.mu.Unlock()
	if w == nil {
		return ""
	}
	select {
	case <-w.Done():
		return ""
	default:
	}
	ctx, cancel := context.WithTimeout(ctx, quiesceTimeout)
	defer cancel()
	r, err := control.Do[*control.QuiesceReply](ctx, w, &control.QuiesceRequest{})
	switch {
	case err != nil:
		select {
		case <-w.Done():
			return "" // the worker is gone
		default:
		}
		return fmt.Sprintf("the worker did not answer: %v", err)
	case r.Busy != "":
		// What the worker says is data: quoted if odd.
		return sanitizeLine(r.Busy)
	}
	return ""
}

// sanitizeLine keeps printable ASCII of what another process said and
// bounds its length.
func sanitizeLine(s string) string {
	var b strings.Builder
	for _, r := range s {
		if b.Len() >= 200 {
			b.WriteString("...")
			break
		}
		if r < 0x20 || r > 0x7e {
			b.WriteRune('?')
			continue
		}
		b.WriteRune(r)
	}
	return b.String()
}

// maintenanceLoop reboots into the maintenance window on the schedule
// until ctx ends (or the reboot).
func (a *appliance) maintenanceLoop(ctx context.Context, p *maintenancePlan) {
	tick := time.NewTicker(maintenanceTick)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
			if a.maintenanceStep(ctx, p, time.Now()) {
				return
			}
		}
	}
}

// maintenanceStep is one look at the clock; true when it rebooted (or
// tried to).
func (a *appliance) maintenanceStep(ctx context.Context, p *maintenancePlan, now time.Time) bool {
	act, why := p.step(now, func() string { return a.quiesce(ctx) })
	switch act {
	case maintWait:
		return false
	case maintBusy:
		a.log.Info("maintenance window waits: not rebooting while a pull or restore runs", "busy", why, "retry_in", maintenanceRetry)
		return false
	case maintWarn:
		a.alert(alertkind.Appliance, "maintenance window waits for more than a day: prune is late by as much", "busy", why)
		return false
	case maintForce:
		a.alert(alertkind.Appliance, "maintenance window waited too long: rebooting anyway so that prune is not frozen (a cut pull is finished or discarded at boot; a cut restore must be typed again)",
			"busy", why, "waited", maxMaintenanceDeferral)
	}
	a.log.Warn(MaintenanceRebootLine, "schedule", p.sched.String(), "wall", now.UTC().Format(time.RFC3339))
	if err := a.halt(unix.LINUX_REBOOT_CMD_RESTART); err != nil {
		a.alert(alertkind.Appliance, "maintenance reboot failed", "error", err)
	}
	return true
}

// maintenanceCommand is the console's maintenance: without "now" it shows
// the schedule; with it, when no pull or restore runs, the box reboots
// into the maintenance window at once.
func (a *appliance) maintenanceCommand(ctx context.Context, cmd console.Command, out io.Writer) error {
	a.mu.Lock()
	p := a.maint
	a.mu.Unlock()
	if p != nil {
		fmt.Fprint(out, nl(p.line()))
	}
	if len(cmd.Args) != 1 || !strings.EqualFold(cmd.Args[0], "now") {
		if len(cmd.Args) > 0 {
			return errors.New("usage: maintenance [now]")
		}
		fmt.Fprint(out, "The maintenance window (phase 6) advances the trusted time and prunes what\r\n"+
			"has expired. Type 'maintenance now' to reboot into it now.\r\n")
		return nil
	}
	if why := a.quiesce(ctx); why != "" {
		return fmt.Errorf("not rebooting while a pull or restore runs (%s); try again when it is done", why)
	}
	fmt.Fprintf(out, "%s\r\n", MaintenanceRebootLine)
	a.log.Warn(MaintenanceRebootLine, "asked", "console")
	go func() {
		time.Sleep(time.Second) // let DONE reach the host
		if err := a.halt(unix.LINUX_REBOOT_CMD_RESTART); err != nil {
			a.log.Error("maintenance reboot failed", "error", err)
		}
	}()
	return nil
}
