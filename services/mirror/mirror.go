package mirror

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"strings"

	"github.com/hashicorp/go-hclog"

	"github.com/holdfast-appliance/holdfast/services/alertkind"
	"github.com/holdfast-appliance/holdfast/services/ingest"
	"github.com/holdfast-appliance/holdfast/services/store"
)

// Alert kinds this package raises (services/alertkind).
const (
	// AlertDiskError: a disk is missing, holds another store, or failed
	// while being written; the mirror is degraded.
	AlertDiskError = alertkind.DiskError
	// AlertScrubDamage: a sealed file is damaged or missing on a disk, or
	// a repair could not be made.
	AlertScrubDamage = alertkind.ScrubDamage
)

// ErrDegraded marks a Sync that could not bring the secondary disk up to
// date: the primary is not affected, an alert was raised, and the next
// Sync catches up.
var ErrDegraded = errors.New("mirror degraded")

// Disk is one data disk holding a copy of the store.
type Disk struct {
	// Name names the disk in reports and alerts ("A", "B", a serial).
	Name string
	// Dir is the store directory on the disk.
	Dir string
	// Store, if set, is the store already open on Dir and is used as it
	// is (read-write where the call writes: Sync's secondary, Repair's
	// target). Otherwise the call opens and closes the store itself.
	Store *store.Store
	// Sealer seals files on this disk when the call opens it read-write
	// (after lockdown: the sealer process serving this disk's root); nil
	// means store.LocalSealer.
	Sealer store.Sealer
}

// Options configure Sync, Scrub and Repair.
type Options struct {
	// Keys supplies the master key (the TPM on the appliance). Needed
	// whenever a call opens a disk itself.
	Keys store.KeySource
	// Logger; nil discards.
	Logger hclog.Logger
	// Alerter receives disk-error and scrub-damage alerts; nil logs them
	// (ingest.LogAlerter).
	Alerter ingest.Alerter
	// Maintenance is set only by PID 1 in the boot maintenance window,
	// while it holds CAP_LINUX_IMMUTABLE: Repair may then replace damaged
	// sealed files. Otherwise Repair only restores missing files and
	// leaves damaged ones for the next boot.
	Maintenance bool
	// Hook is passed to the stores a call opens read-write (store.Options
	// .Hook): crash tests stop the process at named points of a copy.
	Hook func(point string)
}

func (o Options) logger() hclog.Logger {
	if o.Logger == nil {
		return hclog.NewNullLogger()
	}
	return o.Logger.Named("mirror")
}

// alert raises an alert; a failure to deliver it is logged, never hidden.
func (o Options) alert(ctx context.Context, kind, disk, msg string) {
	log := o.logger()
	al := o.Alerter
	if al == nil {
		al = ingest.LogAlerter{Log: log}
	}
	if err := al.Alert(context.WithoutCancel(ctx), ingest.Alert{Kind: kind, Source: disk, Message: msg}); err != nil {
		log.Error("alert not delivered", "kind", kind, "disk", disk, "message", msg, "error", err)
	}
}

// open returns the store on d: d.Store when set, or a store it opens
// (read-only, or read-write with d's sealer) and the function closing it.
func (o Options) open(ctx context.Context, d Disk, readOnly bool) (*store.Store, func(), error) {
	if d.Store != nil {
		return d.Store, func() {}, nil
	}
	if _, err := os.Stat(d.Dir); errors.Is(err, fs.ErrNotExist) {
		return nil, nil, fmt.Errorf("disk %s: %s is missing", d.Name, d.Dir)
	}
	if o.Keys == nil {
		return nil, nil, fmt.Errorf("disk %s: no key source to open it", d.Name)
	}
	s, err := store.Open(ctx, d.Dir, o.Keys, store.Options{
		Logger: o.Logger, ReadOnly: readOnly, Sealer: d.Sealer, Hook: o.Hook,
	})
	if errors.Is(err, store.ErrNotStore) {
		return nil, nil, fmt.Errorf("disk %s: %s holds no store (not mounted?): %w", d.Name, d.Dir, err)
	}
	if err != nil {
		return nil, nil, fmt.Errorf("disk %s: %w", d.Name, err)
	}
	return s, func() { s.Close() }, nil
}

// list shortens a list of paths for a message.
func list(paths []string) string {
	const max = 5
	if len(paths) <= max {
		return strings.Join(paths, ", ")
	}
	return strings.Join(paths[:max], ", ") + fmt.Sprintf(" and %d more", len(paths)-max)
}
