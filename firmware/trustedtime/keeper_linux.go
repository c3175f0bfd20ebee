package trustedtime

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/holdfast-appliance/holdfast/firmware/tpm"
)

// ClockReader reads a TPM's Clock; *tpm.TPM is one.
type ClockReader interface {
	ReadClock(ctx context.Context) (tpm.ClockInfo, error)
}

// Options configure a Keeper.
type Options struct {
	Records Records
	TPM     ClockReader
	// Identity names the TPM (SHA-256 of its SRK Name, tpm.Identity).
	Identity [32]byte
	// Wall reads the wall clock; nil means time.Now.
	Wall func() time.Time
	// Rule; the zero value means DefaultRule.
	Rule Rule
	// Writable runs fn with the records' directory writable (PID 1's
	// withConfigWritable after lockdown); nil runs fn as is.
	Writable func(fn func() error) error
	Logger   hclog.Logger
}

// Keeper is PID 1's trusted time: it loads the newest record, advances T
// by the rule and saves each step. Safe for concurrent use; T and State
// never wait for a save (which may wait for the config partition).
type Keeper struct {
	o   Options
	log hclog.Logger

	wmu sync.Mutex // serialises Start, Adopt, Advance and Confirm

	mu    sync.Mutex // guards the fields below; never held across I/O
	have  bool
	gen   uint64
	state State
}

func (k *Keeper) current() (bool, uint64, State) {
	k.mu.Lock()
	defer k.mu.Unlock()
	return k.have, k.gen, k.state
}

func (k *Keeper) set(gen uint64, s State) {
	k.mu.Lock()
	k.have, k.gen, k.state = true, gen, s
	k.mu.Unlock()
}

// NewKeeper returns a Keeper; call Load (or Start at provisioning) first.
func NewKeeper(o Options) *Keeper {
	if o.Wall == nil {
		o.Wall = time.Now
	}
	if o.Rule == (Rule{}) {
		o.Rule = DefaultRule()
	}
	if o.Writable == nil {
		o.Writable = func(fn func() error) error { return fn() }
	}
	if o.Logger == nil {
		o.Logger = hclog.NewNullLogger()
	}
	return &Keeper{o: o, log: o.Logger}
}

// Load reads the records. It returns ErrNoRecord (wrapped) when neither
// slot is authentic; slots it ignored are logged at error level and
// returned for an alert.
func (k *Keeper) Load() (ignored []error, err error) {
	gen, s, ignored, err := k.o.Records.Load()
	for _, e := range ignored {
		k.log.Error("ALERT: trusted time record ignored", "error", e)
	}
	if err != nil {
		return ignored, fmt.Errorf("load trusted time from %s: %w", k.o.Records.Dir, err)
	}
	k.set(gen, s)
	return ignored, nil
}

// T returns the trusted time and whether there is one.
func (k *Keeper) T() (time.Time, bool) {
	k.mu.Lock()
	defer k.mu.Unlock()
	return k.state.T, k.have
}

// State returns the last record.
func (k *Keeper) State() (State, bool) {
	k.mu.Lock()
	defer k.mu.Unlock()
	return k.state, k.have
}

func (k *Keeper) read(ctx context.Context) (Reading, time.Time, error) {
	ci, err := k.o.TPM.ReadClock(ctx)
	if err != nil {
		return Reading{}, time.Time{}, fmt.Errorf("trusted time: %w", err)
	}
	return Reading{TPM: k.o.Identity, Clock: ci.Clock, ResetCount: ci.ResetCount, RestartCount: ci.RestartCount}, k.o.Wall(), nil
}

// Start begins T at wall, the time the operator confirmed at provisioning
// (or at a confirm-time when no record exists). It starts only a box with
// no authentic record; otherwise use Confirm.
func (k *Keeper) Start(ctx context.Context, wall time.Time) (Event, error) {
	r, _, err := k.read(ctx)
	if err != nil {
		return Event{}, err
	}
	k.wmu.Lock()
	defer k.wmu.Unlock()
	if have, _, _ := k.current(); have {
		return Event{}, errors.New("trusted time already started: confirm the time instead")
	}
	s, ev := Start(r, wall)
	if err := k.save(0, s); err != nil {
		return Event{}, err
	}
	k.set(0, s)
	k.log.Info("trusted time started", "T", s.T.UTC().Format(time.RFC3339))
	return ev, nil
}

// Adopt starts T from s, a record kept in an older form (the clock anchor
// of firmware before trusted time: its wall time was confirmed by an
// operator or vouched for by the TPM). It starts only a box with no
// authentic record; the next Advance credits from s by the rule.
func (k *Keeper) Adopt(s State) error {
	k.wmu.Lock()
	defer k.wmu.Unlock()
	if have, _, _ := k.current(); have {
		return errors.New("trusted time already started")
	}
	if err := k.save(0, s); err != nil {
		return err
	}
	k.set(0, s)
	k.log.Warn("trusted time started from the old clock anchor", "T", s.T.UTC().Format(time.RFC3339))
	return nil
}

// Advance reads the TPM and the wall clock, credits T by the rule and saves
// the record. An event that Alert()s is logged at error level.
func (k *Keeper) Advance(ctx context.Context) (State, Event, error) {
	r, wall, err := k.read(ctx)
	if err != nil {
		return State{}, Event{}, err
	}
	k.wmu.Lock()
	defer k.wmu.Unlock()
	have, gen, prev := k.current()
	if !have {
		return State{}, Event{}, fmt.Errorf("advance trusted time: %w", ErrNoRecord)
	}
	s, ev := k.o.Rule.Advance(prev, r, wall)
	return k.commit(gen, s, ev)
}

// Confirm moves T forward to the wall clock: the operator's confirm-time
// at the console, the only way T ever jumps. With no record it starts T.
func (k *Keeper) Confirm(ctx context.Context) (State, Event, error) {
	r, wall, err := k.read(ctx)
	if err != nil {
		return State{}, Event{}, err
	}
	k.wmu.Lock()
	defer k.wmu.Unlock()
	have, gen, prev := k.current()
	if !have {
		s, ev := Start(r, wall)
		ev.Kind = KindConfirm
		if err := k.save(0, s); err != nil {
			return State{}, Event{}, err
		}
		k.set(0, s)
		k.log.Warn("trusted time started at the console", "T", s.T.UTC().Format(time.RFC3339))
		return s, ev, nil
	}
	s, ev := Confirm(prev, r, wall)
	return k.commit(gen, s, ev)
}

// commit records s (the successor of generation gen); the caller holds
// wmu.
func (k *Keeper) commit(gen uint64, s State, ev Event) (State, Event, error) {
	args := []any{"kind", ev.Kind.String(), "T", s.T.UTC().Format(time.RFC3339), "credit", ev.Credit.Round(time.Second), "tpm", ev.TPM.Round(time.Second), "wall", ev.Wall.Round(time.Second), "lag", ev.Lag.Round(time.Second)}
	if ev.Alert() && ev.Kind != KindConfirm {
		k.log.Error("ALERT: trusted time credited less than the wall clock saw; retention runs late by the lag", append(args, "reason", ev.Reason)...)
	} else {
		k.log.Info("trusted time advanced", args...)
	}
	// The credit stands in memory even if the save fails: it is what the
	// clocks saw; the next boot recomputes from the older record, which
	// can only make T later.
	err := k.save(gen+1, s)
	if err != nil {
		k.set(gen, s)
		return s, ev, err
	}
	k.set(gen+1, s)
	return s, ev, nil
}

func (k *Keeper) save(gen uint64, s State) error {
	return k.o.Writable(func() error { return k.o.Records.Save(gen, s) })
}
