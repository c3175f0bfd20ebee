package appliance

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/holdfast-appliance/holdfast/firmware/console"
	"github.com/holdfast-appliance/holdfast/firmware/control"
	"github.com/holdfast-appliance/holdfast/firmware/disks"
	"github.com/holdfast-appliance/holdfast/firmware/roles"
	"github.com/holdfast-appliance/holdfast/services/alertkind"
	"github.com/holdfast-appliance/holdfast/services/ingest"
	"github.com/holdfast-appliance/holdfast/services/mirror"
	"github.com/holdfast-appliance/holdfast/services/store"
	"github.com/holdfast-appliance/holdfast/services/store/fsflag"
)

// The store on two data disks (services/mirror): each disk is a complete
// store with the same ID; the worker writes one (the primary) and copies
// every sealed file to the other after each pull. PID 1's part, all before
// lockdown, and the worker's part (firmware/worker disks_linux.go):
//
//	| when                 | who    | what                                              |
//	|----------------------|--------|---------------------------------------------------|
//	| phase 5 disks        | PID 1  | mounts every holdfast-data disk; the first whose  |
//	|                      |        | store opens is the primary, the others holding    |
//	|                      |        | the same store are mirrors; a disk named in       |
//	|                      |        | data-disks but absent raises a disk-error alert   |
//	| phase 6 maintenance  | PID 1  | opens every disk as its writer (a disk that fails |
//	|                      |        | is dropped, with an alert, and the next one leads);|
//	|                      |        | Sync both ways (each disk gets what the other     |
//	|                      |        | has); when a disk's state/scrub names damaged     |
//	|                      |        | files: Scrub + Repair, which                      |
//	|                      |        | replaces damaged files; prune on each disk;       |
//	|                      |        | mirror-disk.request: format, InitMirror, Sync;    |
//	|                      |        | files it made are given to the worker's uid       |
//	| phase 7 lockdown     | PID 1  | one sealer process per disk (a sealer serves one  |
//	|                      |        | store root)                                       |
//	| running              | worker | pulls to the primary; Sync to the others after    |
//	|                      |        | each pull; on EIO/EROFS the next disk becomes the |
//	|                      |        | primary; Scrub on the appliance's scrub schedule  |
//	|                      |        | and at the console (scrub): missing files copied  |
//	|                      |        | at once, damaged ones recorded for the next boot  |
//
// Files on the config partition (plain text, one item per line):
//
//	| file                | lines                   | written by                          |
//	|---------------------|-------------------------|-------------------------------------|
//	| data-disks          | "UUID SERIAL" per disk  | PID 1 when the set of disks changes |
//	|                     | holding the store       | (new store, new mirror)             |
//	| mirror-disk.request | SERIAL                  | console mirror-disk; removed at the |
//	|                     |                         | next boot before it is carried out  |
//
// Scrub results are not kept here: nothing the worker says makes PID 1
// write this partition. The worker records each scrub in every disk's
// store (STORE/state/scrub: when it ended, how many damaged files wait for
// the maintenance window), and PID 1 reads that there as hostile input
// (repairRequested).
//
// The data-disks list is not authenticated: whoever can write the USB
// stick offline can hide a missing disk from the alert, not touch a store.
const (
	membersFile       = "data-disks"
	mirrorRequestFile = "mirror-disk.request"
)

// dataStore is one data disk holding the store.
type dataStore struct {
	Name   string // kernel name (vdb)
	Serial string
	UUID   string // ext4 UUID
	Dir    string // the store directory
}

// requestMirror is the console command mirror-disk SERIAL.
func (a *appliance) requestMirror(args []string, out io.Writer) error {
	if len(args) != 1 {
		return errors.New("usage: mirror-disk SERIAL (a blank disk, as status shows it): it becomes a second copy of the store at the next boot")
	}
	a.mu.Lock()
	spare := append([]dataStore(nil), a.spare...)
	a.mu.Unlock()
	d, err := a.recordDiskRequest(args[0], mirrorRequestFile, func(d disks.Disk) error {
		if d.State == disks.Blank {
			return nil
		}
		for _, s := range spare {
			if s.Name == d.Name { // a holdfast-data disk with no store yet
				return nil
			}
		}
		return fmt.Errorf("disk %s (serial %s) is %s %s: a mirror is made only on a blank disk", d.Name, d.Serial, d.State, d.Detail)
	})
	if err != nil {
		return err
	}
	a.log.Warn("mirror disk requested at the console", "disk", d.Name, "serial", d.Serial)
	fmt.Fprintf(out, "disk %s (serial %s, %s) will be formatted and become a second copy of the store at the next boot,\r\n"+
		"before lockdown. Type poweroff, then power on, and watch the console.\r\n",
		d.Name, d.Serial, humanBytes(d.Size))
	return nil
}

// readMembers reads the data-disks list: UUID -> serial.
func (a *appliance) readMembers() (map[string]string, error) {
	b, err := os.ReadFile(filepath.Join(a.part.Dir, membersFile))
	if errors.Is(err, fs.ErrNotExist) {
		return map[string]string{}, nil
	}
	if err != nil {
		return nil, fmt.Errorf("%s: %w", membersFile, err)
	}
	m := map[string]string{}
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		uuid, serial, _ := strings.Cut(strings.TrimSpace(sc.Text()), " ")
		if uuid != "" {
			m[uuid] = serial
		}
	}
	return m, nil
}

// writeMembers records the disks now holding the store; the config
// partition must be writable (before lockdown).
func (a *appliance) writeMembers(stores []dataStore) error {
	var b strings.Builder
	for _, s := range stores {
		fmt.Fprintf(&b, "%s %s\n", s.UUID, s.Serial)
	}
	p := filepath.Join(a.part.Dir, membersFile)
	tmp := p + ".tmp"
	if err := os.WriteFile(tmp, []byte(b.String()), 0o600); err != nil {
		return fmt.Errorf("%s: %w", membersFile, err)
	}
	if err := os.Rename(tmp, p); err != nil {
		return fmt.Errorf("%s: %w", membersFile, err)
	}
	return nil
}

// checkMembers raises a disk-error alert for each disk the data-disks list
// names that is not among the disks holding the store now, and adds disks
// holding the store that it lacks. It runs in maintenance.
func (a *appliance) checkMembers(replace bool) {
	if a.part == nil {
		return
	}
	a.mu.Lock()
	stores := append([]dataStore(nil), a.stores...)
	a.mu.Unlock()
	if len(stores) == 0 {
		return
	}
	members, err := a.readMembers()
	if err != nil {
		a.alert(alertkind.DiskError, "disk-error: the list of data disks is unreadable; a missing disk cannot be told", "error", err)
		return
	}
	present := map[string]bool{}
	changed := false
	for _, s := range stores {
		present[s.UUID] = true
		if _, ok := members[s.UUID]; !ok {
			changed = true
		}
	}
	keep := append([]dataStore(nil), stores...)
	for uuid, serial := range members {
		if present[uuid] {
			continue
		}
		if replace {
			// A new mirror replaces the disks that are gone.
			a.log.Warn("data disk dropped from the list: a new mirror replaced it", "uuid", uuid, "serial", serial)
			changed = true
			continue
		}
		a.alert(alertkind.DiskError, "disk-error: mirror degraded: data disk missing or unreadable; backups go on on the other disk",
			"serial", serial, "uuid", uuid, "fix", "attach it again, or give a blank disk with mirror-disk SERIAL")
		keep = append(keep, dataStore{UUID: uuid, Serial: serial})
	}
	if changed {
		if err := a.writeMembers(keep); err != nil {
			a.alert(alertkind.DiskError, "disk-error: the list of data disks not updated", "error", err)
		}
	}
}

// mirrorMaintenance runs in the maintenance window with primary open as
// the store's writer: it opens the other disks as writers, makes every
// disk hold every sealed file the others hold, repairs damage a scrub
// recorded, and returns the mirrors' stores (the caller prunes and closes
// them). A disk that cannot be opened or written is dropped from a.stores
// with an alert: the worker then neither writes nor syncs it this boot.
func (a *appliance) mirrorMaintenance(ctx context.Context, primary *store.Store, unwritable []dataStore) []*store.Store {
	a.mu.Lock()
	stores := append([]dataStore(nil), a.stores...)
	a.mu.Unlock()
	keys := store.StaticKey(a.master)
	opts := mirror.Options{Keys: keys, Logger: a.log, Alerter: pid1Alerter{a}, Maintenance: true}
	open := []*store.Store{primary}
	keep := []dataStore{stores[0]}
	for _, d := range stores[1:] {
		st, err := store.Open(ctx, d.Dir, keys, store.Options{Logger: a.log.Named("store-" + d.Name), PruneClock: trustedClock{a}})
		if err != nil {
			a.alert(alertkind.DiskError, "disk-error: mirror disk cannot be opened as a writer; it is left out this boot", "disk", d.Name, "serial", d.Serial, "error", err)
			unwritable = append(unwritable, d)
			continue
		}
		open = append(open, st)
		keep = append(keep, d)
	}
	mdisks := make([]mirror.Disk, len(open))
	for i, st := range open {
		mdisks[i] = mirror.Disk{Name: keep[i].Name, Dir: keep[i].Dir, Store: st}
	}
	// Each disk gets what any other has: after a boot in which one disk
	// was missing or failed, the other took the pulls.
	failed := map[int]bool{}
	for i := range open {
		for j := range open {
			if i == j || failed[i] || failed[j] {
				continue
			}
			res, err := mirror.Sync(ctx, open[i], mdisks[j], opts)
			if err != nil {
				a.log.Error("maintenance sync failed", "from", keep[i].Name, "to", keep[j].Name, "error", err)
				failed[j] = true
				continue
			}
			if len(res.Copied) > 0 {
				a.log.Info("maintenance sync", "from", keep[i].Name, "to", keep[j].Name, "copied", len(res.Copied), "bytes", res.Bytes)
			}
		}
	}
	// A disk that cannot be written may still be read: what only it
	// holds (the pulls it took while the other disk was out) is copied to
	// the others, each file checked, before it is left out.
	for _, d := range unwritable {
		src, err := store.Open(ctx, d.Dir, keys, store.Options{ReadOnly: true, Logger: a.log.Named("store-" + d.Name)})
		if err != nil {
			a.log.Error("unwritable disk cannot be read either; nothing copied from it", "disk", d.Name, "error", err)
			continue
		}
		for j := range open {
			if failed[j] {
				continue
			}
			opts := opts
			opts.Alerter = nil // its damage is reported by the disk-error alert and the next scrub
			res, err := mirror.Sync(ctx, src, mdisks[j], opts)
			if err != nil {
				a.log.Error("maintenance sync from an unwritable disk failed", "from", d.Name, "to", keep[j].Name, "error", err)
				continue
			}
			a.log.Info("maintenance sync", "from", d.Name, "to", keep[j].Name, "copied", len(res.Copied), "bytes", res.Bytes, "source", "read-only")
		}
		src.Close()
	}
	if damaged := a.repairRequested(keep); damaged > 0 {
		a.log.Warn("scrub found damage last boot; scrubbing every disk and repairing", "damaged", damaged)
		a.scrubAndRepair(ctx, mdisks, opts)
	}
	var mirrors []*store.Store
	var final []dataStore
	for i, st := range open {
		if failed[i] {
			a.alert(alertkind.DiskError, "disk-error: disk failed while being brought up to date; it is left out this boot", "disk", keep[i].Name, "serial", keep[i].Serial)
			if i > 0 {
				st.Close()
			}
			continue
		}
		final = append(final, keep[i])
		if i > 0 {
			mirrors = append(mirrors, st)
		}
	}
	if failed[0] {
		// The primary's own store stays open for the caller; another disk
		// leads from now on.
		a.log.Warn("primary disk failed in maintenance; the next disk leads")
	}
	if len(final) == 0 {
		final = keep[:1] // nothing else: keep trying the first
	}
	a.mu.Lock()
	a.stores, a.storeDir = final, final[0].Dir
	a.mu.Unlock()
	return mirrors
}

// scrubAndRepair reads every file on every disk and replaces what is
// damaged or missing from a good copy; it clears the repair request
// only when nothing is left to repair.
func (a *appliance) scrubAndRepair(ctx context.Context, ds []mirror.Disk, opts mirror.Options) {
	start := time.Now()
	rep, err := mirror.Scrub(ctx, ds, opts)
	if err != nil {
		a.alert(alertkind.ScrubDamage, "scrub-damage: maintenance scrub failed; repair left for the next boot", "error", err)
		return
	}
	a.log.Info("maintenance scrub", "summary", rep.Summary(), "took", time.Since(start).Round(time.Millisecond))
	done := 0
	if len(rep.Fixes) > 0 {
		res, err := mirror.Repair(ctx, rep.Fixes, ds, opts)
		if err != nil {
			a.alert(alertkind.ScrubDamage, "scrub-damage: repair failed; left for the next boot", "error", err)
			return
		}
		done = len(res.Repaired)
		a.log.Info("maintenance repair", "fixes", len(rep.Fixes), "repaired", done)
		a.say("\nRepaired %d of %d damaged or missing files from the other disk.\n", done, len(rep.Fixes))
	}
	if len(rep.Unrepairable) > 0 {
		// No boot can do better; the scheduled scrubs keep reporting them.
		a.alert(alertkind.ScrubDamage, "scrub-damage: files with no good copy on any disk", "unrepairable", len(rep.Unrepairable))
	}
	if done < len(rep.Fixes) {
		a.alert(alertkind.ScrubDamage, "scrub-damage: not every fix could be made; tried again at the next boot", "fixes", len(rep.Fixes), "repaired", done)
		return
	}
	for _, d := range ds {
		if err := store.WriteScrubState(d.Dir, store.ScrubState{Last: time.Now(), Damaged: 0}); err != nil {
			a.log.Warn("repair request not cleared; the next boot scrubs again", "disk", d.Name, "error", err)
		}
	}
}

// repairRequested reads what the worker's last scrub left for the
// maintenance window in each disk's store (state/scrub): the most damaged
// files any disk's record names. The worker wrote these files, so they are
// read as hostile input (services/store.ReadScrubState: no symlink,
// regular file, 4 KiB); what they say can only make PID 1 scrub and
// repair, which never deletes. One that does not read is reported and
// asks for nothing.
func (a *appliance) repairRequested(ds []dataStore) int {
	most := 0
	for _, d := range ds {
		st, err := store.ReadScrubState(d.Dir)
		if err != nil {
			a.alert(alertkind.Attack, "attack: a scrub state in the store does not read; ignored", "disk", d.Name, "error", err)
			continue
		}
		most = max(most, st.Damaged)
	}
	return most
}

// makeMirror runs in the maintenance window: it carries out a mirror
// request, once (the request is removed first, like copy-disk's).
func (a *appliance) makeMirror(ctx context.Context, primary *store.Store) {
	serial, ok := a.takeDiskRequest(mirrorRequestFile, "mirror")
	if !ok {
		return
	}
	start := time.Now()
	d, res, err := a.newCopy(ctx, primary, serial, disks.Label, "disk-")
	if err != nil {
		a.alert(alertkind.DiskError, "disk-error: mirror disk not made; the store is untouched", "serial", serial, "error", err)
		a.say("\nMirror disk with serial %s NOT made: %v\nAsk again with mirror-disk once the cause is fixed.\n", serial, err)
		return
	}
	a.mu.Lock()
	a.stores = append(a.stores, d)
	a.mu.Unlock()
	a.checkMembers(true)
	a.log.Info("mirror disk made", "disk", d.Name, "serial", serial, "files", len(res.Copied), "bytes", res.Bytes, "took", time.Since(start).Round(time.Millisecond))
	a.say("\nMirror disk made: %d files, %s copied to the disk with serial %s. Every pull is now kept on both disks.\n",
		len(res.Copied), humanBytes(res.Bytes), serial)
}

// newCopy formats the blank (or holdfast-data but storeless) disk with
// serial with label, mounts it under RunDir/prefixNAME, makes it a second
// disk of primary's store and copies every sealed file to it. The disk
// stays mounted; for a mirror it is recorded in a.mounted.
func (a *appliance) newCopy(ctx context.Context, primary *store.Store, serial, label, prefix string) (dataStore, *mirror.SyncResult, error) {
	d, err := a.findDisk(serial)
	if err != nil {
		return dataStore{}, nil, err
	}
	a.mu.Lock()
	mnt, mounted := a.mounted[d.Name]
	a.mu.Unlock()
	// A spare (a holdfast-data disk already mounted, with no store) is
	// used as it is; anything else mounted is refused; the rest must be
	// blank, which FormatAs checks.
	spare := mounted && label == disks.Label && d.State == disks.Holdfast
	if mounted && !spare {
		return dataStore{}, nil, fmt.Errorf("disk %s is mounted as a data disk", d.Name)
	}
	if !spare {
		a.log.Warn("formatting the disk requested at the console", "disk", d.Name, "serial", serial, "label", label)
		if d, err = disks.FormatAs(ctx, d.Name, serial, label, a.o.MkE2fs, a.runChild); err != nil {
			return dataStore{}, nil, err
		}
		mnt = filepath.Join(a.o.RunDir, prefix+d.Name)
		if err := mountDisk(d, mnt); err != nil {
			return dataStore{}, nil, err
		}
		if label == disks.Label {
			a.mu.Lock()
			a.mounted[d.Name] = mnt
			a.mu.Unlock()
		}
	}
	dir := filepath.Join(mnt, disks.StoreDir)
	out := dataStore{Name: d.Name, Serial: d.Serial, UUID: d.UUID, Dir: dir}
	if err := newStoreDir(dir); err != nil {
		return out, nil, err
	}
	keys := store.StaticKey(a.master)
	sec, err := store.InitMirror(ctx, dir, primary, keys, store.Options{Logger: a.log.Named("store-" + d.Name)})
	if err != nil {
		return out, nil, err
	}
	res, err := mirror.Sync(ctx, primary, mirror.Disk{Name: d.Name, Dir: dir, Store: sec}, mirror.Options{Keys: keys, Logger: a.log, Alerter: pid1Alerter{a}})
	if cerr := sec.Close(); err == nil && cerr != nil {
		err = cerr
	}
	if err != nil {
		return out, nil, err
	}
	if len(res.Unsealed) > 0 || len(res.SourceDamaged) > 0 {
		return out, res, fmt.Errorf("copy incomplete: %d files not sealed yet, %d damaged on the data disk", len(res.Unsealed), len(res.SourceDamaged))
	}
	return out, res, nil
}

// giveToWorker makes every file and directory under dir that PID 1 made
// in the maintenance window (journal recovery, a mirror's copies, the
// clock log) owned by the worker, which must read them after lockdown,
// and readable by the worker's group, through which the sealer and the
// export read the store (a store written before the roles had uids of
// their own holds 0600 files: this is where they become 0640). An
// append-only or immutable inode refuses chown, so its flags are cleared
// and set again: this runs only before lockdown, in PID 1.
//
// Boot work must not grow with the store (issue 18): PID 1 only creates,
// renames and removes entries, and each of those changes the ctime of the
// directory it happens in (not of the directories above it), so the
// entries of a directory whose ctime is before since (the start of this
// maintenance window) are not examined, and such a directory below the
// first level (a pack shard) is not even listed: only the first level
// (STORE/packs, STORE/snapshots, ...) is always listed, for the
// directories in it. The whole tree is walked only while the
// store's directory itself is not yet the worker's with mode 0750: for a
// store written before that, and whenever since is zero. The store's
// directory is given last, so a walk cut short is done again whole at the
// next boot. A file that cannot be given is counted in the error and the
// walk goes on.
func giveToWorker(dir string, since time.Time) (int, error) {
	// storeMode: the owner's bits as they are, the group reads (and
	// searches a directory), others nothing (services/store's modes). The
	// writer's lock stays the owner's alone: a reader who could open it
	// could flock it and stop every pull.
	lock := filepath.Join(dir, "lock")
	storeMode := func(p string, m fs.FileMode) fs.FileMode {
		switch {
		case p == lock:
			return m.Perm() & 0o700
		case m.IsDir():
			return m.Perm()&0o700 | 0o050
		}
		return m.Perm()&0o700 | 0o040
	}
	given := func(fi fs.FileInfo, mode fs.FileMode) bool {
		st, ok := fi.Sys().(*syscall.Stat_t)
		return ok && st.Uid == roles.WorkerUID && st.Gid == roles.WorkerUID && fi.Mode().Perm() == mode
	}
	root, err := os.Lstat(dir)
	if err != nil {
		return 0, fmt.Errorf("give %s to the worker: %w", dir, err)
	}
	// A second of slack: a file system's clock may round.
	whole := since.IsZero() || !given(root, storeMode(dir, root.Mode()))
	since = since.Add(-time.Second)
	n := 0
	var failed []error
	give := func(p string, fi fs.FileInfo) error {
		mode := storeMode(p, fi.Mode())
		if given(fi, mode) {
			return nil
		}
		flags, err := fsflag.Get(p)
		if err != nil {
			return err
		}
		held := flags & (fsflag.Immutable | fsflag.Append)
		if held != 0 {
			if err := fsflag.Clear(p, held); err != nil {
				return err
			}
		}
		cerr := os.Lchown(p, roles.WorkerUID, roles.WorkerUID)
		if cerr == nil {
			cerr = os.Chmod(p, mode)
		}
		if held != 0 {
			if err := fsflag.Set(p, held); err != nil {
				return fmt.Errorf("%s: flags not set again: %w", p, err)
			}
		}
		if cerr != nil {
			return cerr
		}
		n++
		return nil
	}
	// changed: the directories whose entries are examined (made or
	// touched this boot: their ctime is after since).
	changed := map[string]bool{}
	recent := func(fi fs.FileInfo) bool {
		st, ok := fi.Sys().(*syscall.Stat_t)
		return whole || !ok || !time.Unix(st.Ctim.Unix()).Before(since)
	}
	err = filepath.WalkDir(dir, func(p string, e fs.DirEntry, err error) error {
		if err != nil {
			failed = append(failed, err)
			return nil
		}
		if e.Type()&fs.ModeSymlink != 0 {
			return nil
		}
		if p == dir {
			changed[p] = recent(root)
			return nil // given last, below
		}
		parentChanged := changed[filepath.Dir(p)]
		if !e.IsDir() && !parentChanged {
			return nil // in a directory untouched this boot: not even stat
		}
		fi, err := e.Info()
		if err != nil {
			failed = append(failed, err)
			return nil
		}
		if e.IsDir() {
			changed[p] = recent(fi)
			// The store is two levels deep (STORE/packs/XX/pack): a
			// directory below the first level that was not touched this
			// boot holds nothing PID 1 made; one at the first level is
			// listed for its subdirectories.
			if !changed[p] && strings.Count(strings.TrimPrefix(p, dir+"/"), "/") >= 1 {
				return fs.SkipDir
			}
			if !changed[p] && !parentChanged {
				return nil // neither made nor touched this boot
			}
		}
		if err := give(p, fi); err != nil {
			failed = append(failed, err)
		}
		return nil
	})
	if err == nil && len(failed) == 0 {
		err = give(dir, root)
	}
	if err == nil && len(failed) > 0 {
		err = fmt.Errorf("%d entries not given (first: %w)", len(failed), failed[0])
	}
	if err != nil {
		return n, fmt.Errorf("give %s to the worker: %w", dir, err)
	}
	return n, nil
}

// pid1Alerter hands the mirror's alerts to PID 1's alert (log, status and,
// through the worker, mail).
type pid1Alerter struct{ a *appliance }

func (p pid1Alerter) Alert(_ context.Context, al ingest.Alert) error {
	p.a.alert(al.Kind, al.Kind+": "+al.Message, "disk", al.Source)
	return nil
}

// mountDisk mounts a freshly formatted disk (a mirror or an offline copy)
// at mnt.
func mountDisk(d disks.Disk, mnt string) error {
	if err := os.MkdirAll(mnt, 0o700); err != nil {
		return fmt.Errorf("mount %s: %w", d.Dev, err)
	}
	if err := unix.Mount(d.Dev, mnt, "ext4", disks.MountFlags, "errors=remount-ro"); err != nil {
		return fmt.Errorf("mount %s: %w", d.Dev, err)
	}
	return nil
}

// scrubNow is the console command scrub: the worker reads every file on
// every data disk now.
func (a *appliance) scrubNow(ctx context.Context, out io.Writer) error {
	a.mu.Lock()
	w := a.worker
	a.mu.Unlock()
	if w == nil {
		return errors.New("scrub needs the running worker")
	}
	fmt.Fprint(out, "scrubbing every data disk (reads every file) ...\r\n")
	flush(out)
	type result struct {
		r   *control.ScrubReply
		err error
	}
	done := make(chan result, 1)
	go func() {
		r, err := control.Do[*control.ScrubReply](ctx, w, &control.ScrubRequest{})
		done <- result{r, err}
	}()
	// A scrub of a large store takes hours: say it is still at work.
	start := time.Now()
	tick := time.NewTicker(scrubHeartbeat)
	defer tick.Stop()
	for {
		select {
		case res := <-done:
			if res.err != nil {
				return res.err
			}
			fmt.Fprintf(out, "scrub: %s\r\n", console.Quote([]byte(res.r.Summary)))
			return nil
		case <-tick.C:
			fmt.Fprintf(out, "still scrubbing, %s so far\r\n", time.Since(start).Round(time.Second))
			flush(out)
		}
	}
}

// scrubHeartbeat is how often the console's scrub says it is still at work.
const scrubHeartbeat = 30 * time.Second
