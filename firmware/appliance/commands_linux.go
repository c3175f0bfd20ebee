package appliance

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"github.com/holdfast-appliance/holdfast/firmware/console"
	"github.com/holdfast-appliance/holdfast/firmware/control"
	"github.com/holdfast-appliance/holdfast/services/alertkind"
	"github.com/holdfast-appliance/holdfast/services/config"
	"github.com/holdfast-appliance/holdfast/services/store"
)

// Console commands, typed at the console or sent by `holdfast console`:
//
//	| command               | what it does                                              |
//	|-----------------------|-----------------------------------------------------------|
//	| help                  | this list                                                 |
//	| status                | phase, safe mode, disks, store, last and next pulls, alerts|
//	| snapshots             | every snapshot: id, source, time, objects, bytes, retention|
//	| ls SNAPSHOT [PREFIX]  | objects read back through the store: sha256, size, key    |
//	| verify                | reads every pack and manifest back, checks every tag      |
//	| format SERIAL         | formats the blank disk with that serial number            |
//	| extend SNAPSHOT 90d   | lengthens a snapshot's retention (never shortens)         |
//	| hold SNAPSHOT         | puts a snapshot under legal hold                          |
//	| pull [SOURCE...]      | pulls now (every source, or those named), then reports   |
//	| restore SNAPSHOT      | restores to a target of the config, with progress (see    |
//	|   TARGET [PREFIX]     | restore_linux.go); --object KEY restores one object       |
//	| copy-disk SERIAL      | a full copy of the store to a blank removable disk at the |
//	|                       | next boot (copydisk_linux.go)                             |
//	| mirror-disk SERIAL    | a blank disk becomes a second copy of the store at the    |
//	|                       | next boot; every pull is then kept on both (mirror_linux.go)|
//	| scrub                 | reads and checks every file on every data disk now;       |
//	|                       | missing copies are made, damaged ones at the next boot    |
//	| sockets               | listening TCP/UDP/raw/unix sockets (none is expected)     |
//	| processes             | every process with its uid and capabilities               |
//	| confirm-time [yes]    | shows the wall clock, the trusted time T and the lag; with|
//	|                       | yes moves T to the wall clock (time_linux.go)             |
//	| maintenance [now]     | shows the maintenance schedule and the next window; with  |
//	|                       | now, unless a pull or restore runs, reboots into it       |
//	|                       | (maintreboot_linux.go)                                    |
//	| poweroff, reboot      | stops the worker, advances T, unmounts, TPM2_Shutdown     |
//	|                       | (STATE) last, then powers off or restarts                 |
//	| unlock KEY, unlock yes| safe mode only: the paper recovery key is checked and the |
//	|                       | config it would reseal to is shown; yes reseals, goes on  |
const helpText = `commands:
  status                 phase, disks, store, last and next pulls, alerts
  snapshots              list snapshots
  ls SNAPSHOT [PREFIX]   list objects, read back through the store (sha256 size key)
  verify                 check every pack and manifest
  format SERIAL          format the blank disk with this serial number
  extend SNAPSHOT PERIOD lengthen a snapshot's retention (e.g. 90d)
  hold SNAPSHOT          put a snapshot under legal hold
  pull [SOURCE...]       pull now and report the snapshots
  restore SNAPSHOT TARGET [PREFIX]
                         restore a snapshot (or the objects under PREFIX) to a
                         target of the config; the receipt is checked first
  restore SNAPSHOT TARGET --object KEY
                         restore one object ("quoted" keys as ls prints them)
  copy-disk SERIAL       write a full copy of the store to a blank removable
                         disk (an offline copy) at the next boot
  mirror-disk SERIAL     make a blank disk a second copy of the store at the
                         next boot; every pull is then kept on both disks
  scrub                  read and check every file on every data disk now
  sockets                listening sockets (none is expected)
  processes              processes with their uid and capabilities
  confirm-time [yes]     show the wall clock and the trusted time; with yes,
                         move the trusted time to the wall clock
  maintenance [now]      show the next maintenance window; with now, reboot
                         into it (prune) unless a pull or restore runs
  poweroff               stop everything and power off
  reboot                 stop everything and restart
  unlock KEY             (safe mode) check the paper recovery key and show the
                         config the key would be resealed to
  unlock yes             (safe mode) then reseal and continue the boot
`

func nl(s string) string { return strings.ReplaceAll(s, "\n", "\r\n") }

// command answers one console command in any phase.
func (a *appliance) command(ctx context.Context, cmd console.Command, out io.Writer) error {
	if h := a.testOnlyCommand(cmd.Name); h != nil {
		return h(ctx, cmd, out)
	}
	switch cmd.Name {
	case "help":
		fmt.Fprint(out, nl(helpText))
		return nil
	case "status":
		fmt.Fprint(out, nl(a.status()))
		return nil
	case "snapshots":
		return a.withReader(ctx, func(s *store.Store) error { return listSnapshots(s, out) })
	case "ls":
		if len(cmd.Args) < 1 || len(cmd.Args) > 2 {
			return errors.New("usage: ls SNAPSHOT [PREFIX]")
		}
		prefix := ""
		if len(cmd.Args) == 2 {
			prefix = cmd.Args[1]
		}
		return a.withReader(ctx, func(s *store.Store) error { return listObjects(ctx, s, cmd.Args[0], prefix, out) })
	case "verify":
		return a.withReader(ctx, func(s *store.Store) error { return verify(ctx, s, out) })
	case "format":
		return a.format(ctx, cmd.Args, out)
	case "extend", "hold":
		return a.extend(ctx, cmd, out)
	case "unlock":
		return errors.New("the box is not in safe mode: nothing to unlock")
	case "pull":
		return a.pullNow(ctx, cmd.Args, out)
	case "restore":
		return a.restore(ctx, cmd.Args, out)
	case "copy-disk":
		return a.requestCopy(cmd.Args, out)
	case "mirror-disk":
		return a.requestMirror(cmd.Args, out)
	case "scrub":
		return a.scrubNow(ctx, out)
	case "poweroff", "reboot":
		how, verb := unix.LINUX_REBOOT_CMD_POWER_OFF, "powering off"
		if cmd.Name == "reboot" {
			how, verb = unix.LINUX_REBOOT_CMD_RESTART, "rebooting"
		}
		fmt.Fprintf(out, "%s\r\n", verb)
		go func() {
			time.Sleep(time.Second) // let DONE reach the host
			if err := a.halt(how); err != nil {
				a.log.Error(verb+" failed", "error", err)
			}
		}()
		return nil
	case "confirm-time":
		return a.confirmTime(ctx, cmd, out)
	case "maintenance":
		return a.maintenanceCommand(ctx, cmd, out)
	case "sockets":
		socks, err := listeningSockets()
		if err != nil {
			return err
		}
		for _, l := range socks {
			fmt.Fprintf(out, "%s\r\n", l)
		}
		fmt.Fprintf(out, "%d listening socket(s)\r\n", len(socks))
		return nil
	case "processes":
		return processes(out)
	}
	return fmt.Errorf("unknown command %q (type help)", cmd.Name)
}

func (a *appliance) status() string {
	a.mu.Lock()
	defer a.mu.Unlock()
	var b strings.Builder
	fmt.Fprintf(&b, "holdfast %s on %s, phase %s, wall clock %s\n", a.o.Version, a.o.Board.Name, a.phase, time.Now().UTC().Format(time.RFC3339))
	if a.safe != "" {
		fmt.Fprintf(&b, "%s: %s\n", SafeModeLine, a.safe)
	}
	if a.cfg != nil {
		fmt.Fprintf(&b, "appliance %q, %d source(s)\n", a.cfg.Appliance.Name, len(a.cfg.Sources))
	}
	b.WriteString(timeStatus(a.tt, time.Now()))
	if a.maint != nil {
		b.WriteString(a.maint.line())
	}
	fmt.Fprintf(&b, "disks:\n")
	for _, d := range a.disks {
		m := ""
		if mnt, ok := a.mounted[d.Name]; ok {
			m = " mounted at " + mnt
		}
		fmt.Fprintf(&b, "  %s%s\n", d, m)
	}
	if a.storeDir != "" {
		fmt.Fprintf(&b, "store %s at %s\n", a.storeID, a.storeDir)
	}
	if len(a.stores) > 1 || a.mirror != "" {
		names := make([]string, len(a.stores))
		for i, d := range a.stores {
			names[i] = d.Name
		}
		fmt.Fprintf(&b, "mirror: disks %s (pulls go to the first)", strings.Join(names, ", "))
		if a.mirror != "" {
			fmt.Fprintf(&b, "; %s", a.mirror)
		}
		b.WriteString("\n")
	}
	if a.scrub != "" {
		fmt.Fprintf(&b, "%s\n", a.scrub)
	}
	if a.cfg != nil {
		for _, s := range a.cfg.Sources {
			p := a.pulls[s.Name]
			if p == nil {
				fmt.Fprintf(&b, "source %s: no pull yet this boot\n", s.Name)
				continue
			}
			fmt.Fprintf(&b, "source %s: last pull %s (took %s) snapshot %s: %s", s.Name, p.Last.UTC().Format(time.RFC3339), p.Took.Round(time.Millisecond), p.Snapshot, p.Summary)
			if p.Err != "" {
				fmt.Fprintf(&b, " error: %s", p.Err)
			}
			fmt.Fprintf(&b, "; next %s\n", p.Next.UTC().Format(time.RFC3339))
		}
	}
	fmt.Fprintf(&b, "alerts: %d\n", len(a.alerts))
	for _, al := range a.alerts {
		fmt.Fprintf(&b, "  %s\n", al)
	}
	// Kept apart: no flood of the worker's pushes PID 1's alerts out.
	fmt.Fprintf(&b, "worker alerts: %d\n", len(a.workerAlerts))
	for _, al := range a.workerAlerts {
		fmt.Fprintf(&b, "  %s\n", al)
	}
	// Sources, summaries, errors, alerts and the mirror and scrub lines
	// carry words the worker chose: nothing in them may act on a terminal.
	return string(console.Quote([]byte(b.String())))
}

// withReader runs fn on a read-only handle of the store, which never
// blocks a pull in progress.
func (a *appliance) withReader(ctx context.Context, fn func(*store.Store) error) error {
	a.mu.Lock()
	dir, master, isNew := a.storeDir, a.master, a.newStore
	a.mu.Unlock()
	if dir == "" || isNew {
		return errors.New("no store is open")
	}
	r, err := store.Open(ctx, dir, store.StaticKey(master), store.Options{ReadOnly: true, Logger: a.log.Named("reader")})
	if err != nil {
		return err
	}
	defer r.Close()
	return fn(r)
}

func listSnapshots(s *store.Store, out io.Writer) error {
	snaps, err := s.Snapshots()
	if err != nil {
		return err
	}
	for _, sn := range snaps {
		hold := ""
		if sn.Retention.LegalHold {
			hold = " HOLD"
		}
		until := "forever"
		if !sn.Retention.RetainUntil.IsZero() {
			until = sn.Retention.RetainUntil.UTC().Format(time.RFC3339)
		}
		fmt.Fprintf(out, "%s %s %s objects=%d bytes=%d complete=%v until=%s%s\r\n", sn.ID, sn.Source,
			sn.Started.UTC().Format(time.RFC3339), sn.Count, sn.Bytes, sn.Complete, until, hold)
	}
	fmt.Fprintf(out, "%d snapshot(s)\r\n", len(snaps))
	return nil
}

// listObjects reads every object of a snapshot back through the store
// (every chunk authenticated) and prints its SHA-256, size and key (Go
// quoted, so hostile keys cannot move the cursor), in the order the
// snapshot recorded them (a pull records them in the source's listing
// order). It streams the manifest (WalkObjects): PID 1's memory does not
// grow with the snapshot's object count.
func listObjects(ctx context.Context, s *store.Store, id, prefix string, out io.Writer) error {
	n := 0
	_, err := s.WalkObjects(id, func(o store.Object) error {
		if err := ctx.Err(); err != nil {
			return err
		}
		if o.DeleteMarker || !strings.HasPrefix(string(o.Key), prefix) {
			return nil
		}
		h := sha256.New()
		if err := s.WriteObject(ctx, o, h); err != nil {
			return fmt.Errorf("read %q: %w", o.Key, err)
		}
		fmt.Fprintf(out, "%x %d %s\r\n", h.Sum(nil), o.Size, strconv.Quote(string(o.Key)))
		n++
		return nil
	})
	if err != nil {
		return err
	}
	fmt.Fprintf(out, "%d object(s) read back\r\n", n)
	return nil
}

func verify(ctx context.Context, s *store.Store, out io.Writer) error {
	r, err := s.Verify(ctx)
	if err != nil {
		return err
	}
	fmt.Fprintf(out, "packs=%d chunks=%d snapshots=%d objects=%d bytes=%d problems=%d\r\n", r.Packs, r.Chunks, r.Snapshots, r.Objects, r.Bytes, len(r.Problems))
	for _, p := range r.Problems {
		fmt.Fprintf(out, "  problem: %v\r\n", p)
	}
	if !r.OK() {
		return fmt.Errorf("verify found %d problem(s)", len(r.Problems))
	}
	fmt.Fprint(out, "verify OK\r\n")
	return nil
}

func (a *appliance) extend(ctx context.Context, cmd console.Command, out io.Writer) error {
	a.mu.Lock()
	w := a.worker
	a.mu.Unlock()
	if w == nil {
		return errors.New("the store's writer (the worker) is not running")
	}
	m := &control.ExtendRequest{Hold: cmd.Name == "hold", Reason: "console: " + cmd.String()}
	switch {
	case m.Hold && len(cmd.Args) == 1:
	case !m.Hold && len(cmd.Args) == 2:
		p, err := config.ParsePeriod(cmd.Args[1])
		if err != nil {
			return err
		}
		// The start time is in the snapshot's head: no need to read its
		// object list, which grows with the bucket.
		var started time.Time
		err = a.withReader(ctx, func(s *store.Store) error {
			infos, err := s.Snapshots()
			if err != nil {
				return err
			}
			for _, si := range infos {
				if si.ID == cmd.Args[0] {
					started = si.Started
					return nil
				}
			}
			return fmt.Errorf("snapshot %q: %w", cmd.Args[0], store.ErrNotFound)
		})
		if err != nil {
			return err
		}
		m.Until = p.AddTo(started)
	default:
		return errors.New("usage: extend SNAPSHOT PERIOD | hold SNAPSHOT")
	}
	m.Snapshot = cmd.Args[0]
	if _, err := w.Call(ctx, m); err != nil {
		return err
	}
	// The worker's "done" is not proof (I10): PID 1 reads the sealed
	// manifest and retention records itself before it says done.
	err := a.withReader(ctx, func(s *store.Store) error { return s.ConfirmRetention(m.Snapshot, m.Until, m.Hold) })
	if err != nil {
		a.alert(alertkind.Appliance, "the worker reported a retention change that the store's sealed data does not show", "command", cmd.String(), "error", err)
		return fmt.Errorf("%s failed: the worker said done, but %w", cmd.String(), err)
	}
	a.log.Info("retention changed at the console", "command", cmd.String())
	fmt.Fprintf(out, "%s: done (sealed record confirmed)\r\n", cmd.String())
	return nil
}

// pullNow has the worker pull the named sources (all when none is named).
func (a *appliance) pullNow(ctx context.Context, names []string, out io.Writer) error {
	a.mu.Lock()
	cfg, w := a.cfg, a.worker
	a.mu.Unlock()
	if cfg == nil || w == nil {
		return errors.New("pull needs a config and a running worker")
	}
	if len(names) == 0 {
		for _, s := range cfg.Sources {
			names = append(names, s.Name)
		}
	}
	var failed []string
	for _, n := range names {
		r, err := control.Do[*control.PullReply](ctx, w, &control.PullRequest{Source: n})
		if r != nil && r.Status != nil {
			a.recordPull(n, r.Status)
			fmt.Fprintf(out, "%s: snapshot %s: %s\r\n", n, r.Status.Snapshot, r.Status.Summary)
		}
		if err != nil {
			fmt.Fprintf(out, "%s: %v\r\n", n, err)
			failed = append(failed, n)
		}
	}
	if len(failed) > 0 {
		return fmt.Errorf("pull failed for %s", strings.Join(failed, ", "))
	}
	return nil
}
