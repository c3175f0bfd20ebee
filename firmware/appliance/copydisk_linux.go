package appliance

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"github.com/holdfast-appliance/holdfast/firmware/disks"
	"github.com/holdfast-appliance/holdfast/services/alertkind"
	"github.com/holdfast-appliance/holdfast/services/mirror"
	"github.com/holdfast-appliance/holdfast/services/store"
)

// An offline copy is a removable disk holding a complete copy of the store
// (every sealed pack, manifest, retention record, receipt and the recovery
// blob; services/mirror), for a shelf or another site: the only data
// VFEmail got back was on an offline drive. It takes two steps, both at the
// console, so it needs the operator's physical presence:
//
//	| step | when                  | what                                            |
//	|------|-----------------------|-------------------------------------------------|
//	| 1    | running: copy-disk    | checks that the disk with SERIAL is blank and   |
//	|      | SERIAL                | records the request in the config partition     |
//	|      |                       | (copy-disk.request); nothing is written to disk |
//	| 2    | next boot, maintenance| the request is removed first (it runs once),    |
//	|      | window (PID 1, before | the disk must still be blank and have SERIAL;   |
//	|      | lockdown)             | ext4 labelled holdfast-copy, store.InitMirror,  |
//	|      |                       | mirror.Sync (each file checked, flags set),     |
//	|      |                       | unmounted; the console shows the result         |
//
// Why at boot: after lockdown nothing on the box can write a raw disk,
// PID 1 included (device nodes are mode 0000 and no process holds the
// capabilities), and that is worth the reboot. The copy is a Holdfast store
// on its own: `holdfast restore --disk DEVICE --recovery-key K` reads it on
// any Linux PC. The appliance never mounts a holdfast-copy disk again (it
// is foreign to it); to refresh a copy, wipe the disk elsewhere and ask
// again.

// copyRequestFile is the request's name in the config partition.
const copyRequestFile = "copy-disk.request"

// requestCopy is the console command copy-disk SERIAL.
func (a *appliance) requestCopy(args []string, out io.Writer) error {
	if len(args) != 1 {
		return errors.New("usage: copy-disk SERIAL (a blank removable disk, as status shows it): a full copy of the store is written to it at the next boot")
	}
	d, err := a.recordDiskRequest(args[0], copyRequestFile, func(d disks.Disk) error {
		if d.State != disks.Blank {
			return fmt.Errorf("disk %s (serial %s) is %s %s: Holdfast writes a copy only to a blank disk", d.Name, d.Serial, d.State, d.Detail)
		}
		return nil
	})
	if err != nil {
		return err
	}
	a.log.Warn("offline copy requested at the console", "disk", d.Name, "serial", d.Serial)
	fmt.Fprintf(out, "disk %s (serial %s, %s) will be formatted and get a full copy of the store at the next boot,\r\n"+
		"before lockdown. Type poweroff, then power on with the disk attached, and watch the console.\r\n",
		d.Name, d.Serial, humanBytes(d.Size))
	return nil
}

// recordDiskRequest is the common part of copy-disk and mirror-disk: a
// store is open, the disk with the typed serial exists and check accepts
// it; its serial is written to file on the config partition, for the
// maintenance window of the next boot (takeDiskRequest).
func (a *appliance) recordDiskRequest(typed, file string, check func(disks.Disk) error) (disks.Disk, error) {
	a.mu.Lock()
	part, dir := a.part, a.storeDir
	a.mu.Unlock()
	if part == nil || dir == "" {
		return disks.Disk{}, errors.New("no store is open: nothing to copy")
	}
	d, err := a.findDisk(typed)
	if err != nil {
		return d, err
	}
	if err := check(d); err != nil {
		return d, err
	}
	err = a.withConfigWritable(func() error {
		return os.WriteFile(filepath.Join(part.Dir, file), []byte(d.Serial+"\n"), 0o600)
	})
	if err != nil {
		return d, fmt.Errorf("record the request: %w", err)
	}
	return d, nil
}

// findDisk is the data disk whose serial matches what the operator typed.
func (a *appliance) findDisk(typed string) (disks.Disk, error) {
	ds, err := a.scanAll()
	if err != nil {
		return disks.Disk{}, err
	}
	for _, d := range ds {
		if disks.SerialMatches(d, typed) {
			return d, nil
		}
	}
	return disks.Disk{}, fmt.Errorf("no disk has serial %q (type 'status' to list the disks)", typed)
}

// takeDiskRequest returns the serial a console request recorded in file,
// and removes the request first: one that fails or is cut is asked for
// again at the console, never retried by itself at every boot. ok is
// false when there is none (or it cannot be removed: then it is not
// carried out, with an alert).
func (a *appliance) takeDiskRequest(file, what string) (serial string, ok bool) {
	if a.part == nil {
		return "", false
	}
	req := filepath.Join(a.part.Dir, file)
	b, err := os.ReadFile(req)
	if errors.Is(err, os.ErrNotExist) {
		return "", false
	}
	if rerr := os.Remove(req); rerr != nil {
		a.alert(alertkind.Appliance, what+" request cannot be removed; not carried out", "error", rerr)
		return "", false
	}
	if err != nil {
		a.alert(alertkind.Appliance, what+" request unreadable; not carried out", "error", err)
		return "", false
	}
	return strings.TrimSpace(string(b)), true
}

// offlineCopy runs in the maintenance window with the store open as its
// writer: it carries out a copy request, once.
func (a *appliance) offlineCopy(ctx context.Context, primary *store.Store) {
	serial, ok := a.takeDiskRequest(copyRequestFile, "offline copy")
	if !ok {
		return
	}
	start := time.Now()
	res, err := a.copyTo(ctx, primary, serial)
	if err != nil {
		a.alert(alertkind.Appliance, "offline copy failed; the store is untouched", "serial", serial, "error", err)
		a.say("\nOffline copy to the disk with serial %s FAILED: %v\nAsk again with copy-disk once the cause is fixed.\n", serial, err)
		return
	}
	a.log.Info("offline copy done: unplug the disk", "serial", serial, "files", len(res.Copied), "bytes", res.Bytes, "took", time.Since(start).Round(time.Millisecond))
	a.say("\nOffline copy done: %d files, %s on the disk with serial %s. It is unmounted: unplug it and keep it somewhere else.\n"+
		"Read it on any Linux PC with: holdfast restore --disk DEVICE --recovery-key KEY ...\n", len(res.Copied), humanBytes(res.Bytes), serial)
}

// copyTo formats the blank disk with serial as an offline copy, fills it
// from primary and unmounts it.
func (a *appliance) copyTo(ctx context.Context, primary *store.Store, serial string) (*mirror.SyncResult, error) {
	d, res, err := a.newCopy(ctx, primary, serial, disks.CopyLabel, "copy-")
	if d.Dir != "" {
		mnt := filepath.Dir(d.Dir)
		unix.Sync()
		if uerr := unix.Unmount(mnt, 0); uerr != nil {
			a.alert(alertkind.Appliance, "offline copy disk not unmounted; power off before unplugging it", "disk", d.Name, "error", uerr)
		}
	}
	if err != nil {
		return res, fmt.Errorf("offline copy: %w", err)
	}
	return res, nil
}
