package appliance

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"

	"github.com/holdfast-appliance/holdfast/firmware/console"
	"github.com/holdfast-appliance/holdfast/firmware/disks"
	"github.com/holdfast-appliance/holdfast/firmware/roles"
	"github.com/holdfast-appliance/holdfast/services/alertkind"
	"github.com/holdfast-appliance/holdfast/services/store"
	"github.com/holdfast-appliance/holdfast/services/store/fsflag"
)

// scanDisks lists the board's data disks, without the boot medium.
func (a *appliance) scanDisks() ([]disks.Disk, error) {
	all, err := a.scanAll()
	if err != nil {
		return nil, err
	}
	var out []disks.Disk
	for _, d := range all {
		if d.State != disks.Boot {
			out = append(out, d)
		}
	}
	a.mu.Lock()
	a.disks = out
	a.mu.Unlock()
	return out, nil
}

// scanAll lists every disk of the board, the boot medium included; after
// lockdown through the descriptors PID 1 holds (/dev has no disk node).
func (a *appliance) scanAll() ([]disks.Disk, error) {
	a.mu.Lock()
	locked, held := a.locked, a.held
	a.mu.Unlock()
	if locked && held != nil {
		return disks.ScanWith(a.o.Board.DataDisks, held.open)
	}
	return disks.Scan(a.o.Board.DataDisks)
}

// disksPhase is phase 5: mount the Holdfast disks and open the store; with
// none, wait at the console for the operator to format a blank disk.
func (a *appliance) disksPhase(ctx context.Context) error {
	a.setPhase("disks")
	for {
		ds, err := a.scanDisks()
		if err != nil {
			a.alert(alertkind.Appliance, "cannot list disks", "error", err)
		}
		var blank []disks.Disk
		for _, d := range ds {
			a.log.Info("data disk", "disk", d.Name, "serial", d.Serial, "size", d.Size, "state", d.State, "detail", d.Detail)
			if d.State == disks.Blank {
				blank = append(blank, d)
			}
		}
		err = a.openStore(ctx, ds)
		if err == nil {
			return nil
		}
		a.log.Warn("phase 5/8 disks: no store open", "reason", err)
		a.say("\nNo Holdfast data disk is ready (%v).\n", err)
		if len(blank) == 0 {
			a.say("No blank disk either. Attach a blank disk; Holdfast never formats a disk that holds anything.\n")
		}
		for _, d := range blank {
			a.say("Disk %s (serial %s, %s) is blank. To make it a Holdfast data disk, type:  format %s\n",
				d.Name, d.Serial, humanBytes(d.Size), d.Serial)
		}
		if err := a.waitForDisk(ctx); err != nil {
			return err
		}
	}
}

// waitForDisk serves the console until a format succeeds or a minute passes
// (then the disks are scanned again, for a disk attached meanwhile).
func (a *appliance) waitForDisk(ctx context.Context) error {
	sctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	h := func(ctx context.Context, cmd console.Command, out io.Writer) error {
		if cmd.Name == "format" {
			if err := a.format(ctx, cmd.Args, out); err != nil {
				return err
			}
			cancel()
			return nil
		}
		return a.command(ctx, cmd, out)
	}
	err := console.Serve(sctx, a.o.Conn, console.ServeOptions{Handler: h, Typed: a.o.Typed, Human: a.o.Human, Prompt: Prompt, Log: a.log.Named("console")})
	if ctx.Err() != nil {
		return ctx.Err()
	}
	if err != nil && !errors.Is(err, context.Canceled) && !errors.Is(err, context.DeadlineExceeded) {
		return err
	}
	return nil
}

// format formats the blank disk whose serial the operator typed.
func (a *appliance) format(ctx context.Context, args []string, out io.Writer) error {
	if len(args) != 1 {
		return errors.New("usage: format SERIAL (the serial number of a blank disk, as 'status' shows it)")
	}
	a.mu.Lock()
	locked := a.locked
	a.mu.Unlock()
	if locked {
		// After lockdown nothing on the box can write a raw disk, PID 1
		// included: that is the point.
		return errors.New("disks are formatted only before lockdown, while the boot waits for a data disk: once the box runs, nothing on it can write a raw disk, PID 1 included")
	}
	ds, err := a.scanDisks()
	if err != nil {
		return err
	}
	for _, d := range ds {
		if !disks.SerialMatches(d, args[0]) {
			continue
		}
		if d.State != disks.Blank {
			return fmt.Errorf("disk %s (serial %s) is %s %s: Holdfast formats only blank disks", d.Name, d.Serial, d.State, d.Detail)
		}
		a.log.Warn("formatting data disk at the operator's request", "disk", d.Name, "serial", d.Serial)
		fmt.Fprintf(out, "formatting %s (serial %s) ...\r\n", d.Name, d.Serial)
		fd, err := disks.Format(ctx, d.Name, args[0], a.o.MkE2fs, a.runChild)
		if err != nil {
			return err
		}
		fmt.Fprintf(out, "formatted %s: ext4 %s, uuid %s\r\n", fd.Name, disks.Label, fd.UUID)
		return nil
	}
	return fmt.Errorf("no disk has serial %q (type 'status' to list the disks)", args[0])
}

// openStore mounts every Holdfast disk and finds the store: the first disk
// whose store this key opens is the primary, later disks holding the same
// store are its mirrors (mirror_linux.go). With no store anywhere, the
// first Holdfast disk with an empty store directory gets one, made by the
// worker. A disk holding another store, or one this key cannot open, is
// left as it is, with an alert.
func (a *appliance) openStore(ctx context.Context, ds []disks.Disk) error {
	var errs []error
	var found, empty []dataStore
	id := ""
	for _, d := range ds {
		if d.State != disks.Holdfast {
			continue
		}
		mnt, ok := a.mounted[d.Name]
		if !ok {
			mnt = filepath.Join(a.o.RunDir, "disk-"+d.Name)
			if err := disks.Mount(d, mnt); err != nil {
				// A disk that fails writes cannot load its journal; read
				// only, its files can still be copied to the other disk.
				opts, rerr := disks.MountReadOnly(d, mnt)
				if rerr != nil {
					errs = append(errs, err)
					a.alert(alertkind.DiskError, "disk-error: data disk cannot be mounted; it is left as it is", "disk", d.Name, "serial", d.Serial, "error", err, "read_only", rerr)
					continue
				}
				a.alert(alertkind.DiskError, "disk-error: data disk cannot be mounted for writing; mounted read-only, so that what only it holds is copied to the other disk", "disk", d.Name, "serial", d.Serial, "error", err, "options", opts)
			}
			a.mu.Lock()
			a.mounted[d.Name] = mnt
			a.mu.Unlock()
			a.log.Info("mounted data disk", "disk", d.Name, "at", mnt)
		}
		ds := dataStore{Name: d.Name, Serial: d.Serial, UUID: d.UUID, Dir: filepath.Join(mnt, disks.StoreDir)}
		if _, err := os.Stat(filepath.Join(ds.Dir, "holdfast-store")); os.IsNotExist(err) {
			empty = append(empty, ds)
			continue
		}
		st, err := store.Open(ctx, ds.Dir, store.StaticKey(a.master), store.Options{ReadOnly: true, Logger: a.log.Named("store")})
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", d.Name, err))
			a.alert(alertkind.Appliance, "data disk holds no store this box can open; it is left as it is", "disk", d.Name, "error", err)
			continue
		}
		sid := st.ID()
		st.Close()
		if id != "" && sid != id {
			a.alert(alertkind.Appliance, "data disk holds another store than the first disk; it is left as it is", "disk", d.Name, "store", sid, "first", id)
			continue
		}
		id = sid
		found = append(found, ds)
	}
	if len(found) > 0 {
		a.mu.Lock()
		a.stores, a.spare = found, empty
		a.storeDir, a.storeID = found[0].Dir, id
		a.mu.Unlock()
		a.log.Info("phase 5/8 disks: store open", "disk", found[0].Name, "store", id, "mirrors", len(found)-1)
		return nil
	}
	for i, ds := range empty {
		if err := newStoreDir(ds.Dir); err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", ds.Name, err))
			continue
		}
		a.mu.Lock()
		a.stores = []dataStore{ds}
		a.spare = append(append([]dataStore(nil), empty[:i]...), empty[i+1:]...)
		a.storeDir, a.storeID, a.newStore = ds.Dir, "(new)", true
		a.mu.Unlock()
		a.log.Info("phase 5/8 disks: new data disk; the worker creates the store", "disk", ds.Name)
		return nil
	}
	if len(errs) == 0 {
		return errors.New("no Holdfast data disk")
	}
	return errors.Join(errs...)
}

// newStoreDir makes an empty store directory owned by the worker (uid and
// gid 1000), mode 0750: the sealer and the export search it through the
// worker's group. An existing directory must be empty (a store whose
// creation was cut).
func newStoreDir(dir string) error {
	// An earlier lockdown made the disk's root immutable (sealDiskRoots);
	// this runs before lockdown, which sets the flag again.
	if err := fsflag.Clear(filepath.Dir(dir), fsflag.Immutable); err != nil {
		return fmt.Errorf("store dir: %w", err)
	}
	if err := os.Mkdir(dir, 0o750); err != nil && !os.IsExist(err) {
		return fmt.Errorf("store dir: %w", err)
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		return fmt.Errorf("store dir: %w", err)
	}
	if len(entries) > 0 {
		return fmt.Errorf("%s holds files but no store: left as it is", dir)
	}
	// The worker cannot probe inode flags itself (it has no
	// CAP_LINUX_IMMUTABLE): prove here that the file system keeps them.
	probe := filepath.Join(dir, ".flag-probe")
	if err := os.Mkdir(probe, 0o700); err != nil {
		return fmt.Errorf("flag probe: %w", err)
	}
	err = fsflag.Set(probe, fsflag.Append)
	if err == nil {
		err = fsflag.Clear(probe, fsflag.Append)
	}
	if rerr := os.Remove(probe); err == nil {
		err = rerr
	}
	if err != nil {
		return fmt.Errorf("the data disk does not keep inode flags: %w", err)
	}
	if err := os.Chown(dir, roles.WorkerUID, roles.WorkerUID); err != nil {
		return fmt.Errorf("store dir: %w", err)
	}
	if err := os.Chmod(dir, 0o750); err != nil {
		return fmt.Errorf("store dir: %w", err)
	}
	return nil
}

func humanBytes(n int64) string {
	return disks.Disk{Size: n}.SizeString()
}
