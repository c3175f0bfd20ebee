package tpm

import (
	"context"
	"crypto/hkdf"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/google/go-tpm/tpm2"
	"github.com/google/go-tpm/tpm2/transport"
	"github.com/hashicorp/go-hclog"
)

// ClockInfo is what TPM2_ReadClock reports.
type ClockInfo struct {
	Clock        uint64 // ms the TPM has been powered, persisted on orderly shutdown
	ResetCount   uint32 // TPM Resets (Startup(CLEAR) not after Shutdown(STATE)) since TPM2_Clear
	RestartCount uint32 // TPM Restarts/Resumes since the last Reset
	Safe         bool   // no larger Clock value was ever reported (no rollback)
}

// ReadClock runs TPM2_ReadClock.
func (t *TPM) ReadClock(ctx context.Context) (ClockInfo, error) {
	var ci ClockInfo
	err := t.do(ctx, func(tr transport.TPM) error {
		r, err := (tpm2.ReadClock{}).Execute(tr)
		if err != nil {
			return fmt.Errorf("tpm2_readclock: %w", err)
		}
		c := r.CurrentTime.ClockInfo
		ci = ClockInfo{Clock: c.Clock, ResetCount: c.ResetCount, RestartCount: c.RestartCount, Safe: bool(c.Safe)}
		return nil
	})
	return ci, err
}

// ClockOptions configure a Clock.
type ClockOptions struct {
	// AnchorPath is the anchor file (normally DIR/clock.anchor on the
	// config partition).
	AnchorPath string
	// MasterKey keys the anchor's MAC (through HKDF), so only a holder of
	// the master key can write an anchor the Clock accepts.
	MasterKey []byte
	// Wall reads the wall clock; nil means time.Now.
	Wall func() time.Time
	// Tolerance is how far the wall clock may stray from what the TPM
	// clock allows, either way; 0 means DefaultTolerance.
	Tolerance time.Duration
	// MaxDrift is the largest rate error assumed of the TPM's oscillator
	// (0.01 = 1%); 0 means DefaultMaxDrift.
	MaxDrift float64
	// Timeout bounds the TPM commands of Now, which has no context; 0
	// means 30 s.
	Timeout time.Duration
	Logger  hclog.Logger
}

// Defaults of ClockOptions.
const (
	DefaultTolerance = 5 * time.Minute
	DefaultMaxDrift  = 0.01
)

// Clock is the store.Clock that prune trusts (invariant I5). Its time is the
// wall clock, returned only when the TPM's clock vouches for it:
//
//	| check (in order)                                  | result            |
//	|---------------------------------------------------|-------------------|
//	| no anchor file, or its MAC fails                  | ErrNoAnchor       |
//	| resetCount below the anchor's (TPM cleared/replaced)| ErrClockRollback |
//	| same resetCount and restartCount below the anchor's | ErrClockRollback |
//	| Clock below the anchor's                          | ErrClockRollback  |
//	| TPM reports safe = NO, anchor was taken safe      | ErrClockUnsafe    |
//	| wall > anchor.wall + E·(1+MaxDrift) + Tolerance   | ErrClockAhead     |
//	| wall < anchor.wall + E·(1−MaxDrift) − Tolerance   | ErrClockBehind    |
//	| otherwise                                         | the wall clock    |
//
// where E is the TPM Clock advance since the anchor. Every error is logged
// at error level (the alert) and freezes prune; the store wraps it in
// store.ErrClockUntrusted. The TPM Clock does not advance while the box is
// off, so a power-off longer than Tolerance also freezes prune until the
// operator re-anchors at the console (Anchor).
type Clock struct {
	t      *TPM
	o      ClockOptions
	macKey []byte
	log    hclog.Logger
}

// NewClock returns the TPM-backed clock.
func NewClock(t *TPM, o ClockOptions) (*Clock, error) {
	if o.AnchorPath == "" {
		return nil, errors.New("clock: no anchor path")
	}
	if len(o.MasterKey) != MasterKeySize {
		return nil, fmt.Errorf("clock: master key is %d bytes, want %d", len(o.MasterKey), MasterKeySize)
	}
	if o.Wall == nil {
		o.Wall = time.Now
	}
	if o.Tolerance == 0 {
		o.Tolerance = DefaultTolerance
	}
	if o.MaxDrift == 0 {
		o.MaxDrift = DefaultMaxDrift
	}
	if o.Timeout == 0 {
		o.Timeout = 30 * time.Second
	}
	if o.Logger == nil {
		o.Logger = hclog.NewNullLogger()
	}
	k, err := hkdf.Key(sha256.New, o.MasterKey, nil, "holdfast tpm clock anchor v1", 32)
	if err != nil {
		return nil, fmt.Errorf("clock: anchor key: %w", err)
	}
	return &Clock{t: t, o: o, macKey: k, log: o.Logger}, nil
}

// Anchor records "the TPM Clock read c at wall time w". It is written at
// provisioning and by the operator at the console after confirming the
// time (the way out of a frozen prune); Advance moves it forward. An anchor
// taken while the TPM reports safe = NO (right after a power cut) records
// that: the rollback happened before the anchor, so later readings in the
// same TPM reset epoch measure elapsed time correctly.
type Anchor struct {
	Wall time.Time
	ClockInfo
}

// Clock anchor file (ClockAnchorFile):
//
//	| offset | size | field                                                |
//	|--------|------|------------------------------------------------------|
//	| 0      | 8    | magic "HOLDCLKA"                                     |
//	| 8      | 2    | version, big endian (1)                              |
//	| 10     | 8    | wall time, Unix nanoseconds, big endian              |
//	| 18     | 8    | TPM Clock, ms, big endian                            |
//	| 26     | 4    | TPM resetCount, big endian                           |
//	| 30     | 4    | TPM restartCount, big endian                         |
//	| 34     | 1    | TPM safe flag at anchoring (1 = YES, 0 = NO)         |
//	| 35     | 32   | HMAC-SHA256(HKDF(master key, "holdfast tpm clock     |
//	|        |      | anchor v1"), bytes 0..35)                            |
const (
	anchorMagic   = "HOLDCLKA"
	anchorVersion = 1
	anchorLen     = 67
)

func (c *Clock) encodeAnchor(a Anchor) []byte {
	b := append([]byte(anchorMagic), 0, anchorVersion)
	b = binary.BigEndian.AppendUint64(b, uint64(a.Wall.UnixNano()))
	b = binary.BigEndian.AppendUint64(b, a.Clock)
	b = binary.BigEndian.AppendUint32(b, a.ResetCount)
	b = binary.BigEndian.AppendUint32(b, a.RestartCount)
	safe := byte(0)
	if a.Safe {
		safe = 1
	}
	b = append(b, safe)
	m := hmac.New(sha256.New, c.macKey)
	m.Write(b)
	return m.Sum(b)
}

// ReadAnchor reads and authenticates the anchor.
func (c *Clock) ReadAnchor() (Anchor, error) {
	b, err := os.ReadFile(c.o.AnchorPath)
	if err != nil {
		return Anchor{}, fmt.Errorf("%w: %v", ErrNoAnchor, err)
	}
	if len(b) != anchorLen || string(b[:8]) != anchorMagic || binary.BigEndian.Uint16(b[8:]) != anchorVersion {
		return Anchor{}, fmt.Errorf("%w: %s is not a version %d anchor", ErrNoAnchor, c.o.AnchorPath, anchorVersion)
	}
	m := hmac.New(sha256.New, c.macKey)
	m.Write(b[:35])
	if !hmac.Equal(m.Sum(nil), b[35:]) || b[34] > 1 {
		return Anchor{}, fmt.Errorf("%w: %s fails its MAC (tampered, or another box's)", ErrNoAnchor, c.o.AnchorPath)
	}
	return Anchor{
		Wall: time.Unix(0, int64(binary.BigEndian.Uint64(b[10:]))),
		ClockInfo: ClockInfo{
			Clock:        binary.BigEndian.Uint64(b[18:]),
			ResetCount:   binary.BigEndian.Uint32(b[26:]),
			RestartCount: binary.BigEndian.Uint32(b[30:]),
			Safe:         b[34] == 1,
		},
	}, nil
}

// Anchor binds wall time w to the TPM's current Clock reading and writes the
// anchor. The operator confirms w at the console.
func (c *Clock) Anchor(ctx context.Context, w time.Time) error {
	ci, err := c.t.ReadClock(ctx)
	if err != nil {
		return fmt.Errorf("anchor clock: %w", err)
	}
	if !ci.Safe {
		c.log.Warn("anchoring the clock while the TPM reports safe=NO: the rollback is before this anchor", "tpm_clock_ms", ci.Clock)
	}
	if err := writeFileAtomic(c.o.AnchorPath, c.encodeAnchor(Anchor{Wall: w, ClockInfo: ci}), false); err != nil {
		return fmt.Errorf("anchor clock: %w", err)
	}
	c.log.Info("TPM clock anchored", "wall", w.UTC().Format(time.RFC3339), "tpm_clock_ms", ci.Clock, "reset_count", ci.ResetCount, "restart_count", ci.RestartCount)
	return nil
}

// Check returns the wall time if the TPM clock vouches for it (see Clock).
func (c *Clock) Check(ctx context.Context) (time.Time, error) {
	now, err := c.check(ctx)
	if err != nil {
		c.log.Error("ALERT: time is not trusted; prune is frozen", "error", err)
		return time.Time{}, err
	}
	return now, nil
}

func (c *Clock) check(ctx context.Context) (time.Time, error) {
	a, err := c.ReadAnchor()
	if err != nil {
		return time.Time{}, err
	}
	ci, err := c.t.ReadClock(ctx)
	if err != nil {
		return time.Time{}, err
	}
	wall := c.o.Wall()
	// A TPM Reset (resetCount up: every cold boot, since firmware sends
	// Startup(CLEAR) and the kernel Shutdown(CLEAR)) is fine as long as
	// the Clock did not go back below the anchor: the Clock only counts
	// powered time, so E below is then a lower bound of the time that
	// passed, which can only make the wall clock look ahead (a freeze),
	// never let it run ahead unnoticed.
	switch {
	case ci.ResetCount < a.ResetCount:
		return time.Time{}, fmt.Errorf("%w: TPM resetCount %d below the anchor's %d: the TPM was cleared or replaced", ErrClockRollback, ci.ResetCount, a.ResetCount)
	case ci.ResetCount == a.ResetCount && ci.RestartCount < a.RestartCount:
		return time.Time{}, fmt.Errorf("%w: TPM restartCount %d below the anchor's %d", ErrClockRollback, ci.RestartCount, a.RestartCount)
	case ci.Clock < a.Clock:
		return time.Time{}, fmt.Errorf("%w: TPM Clock %d ms below the anchor's %d ms", ErrClockRollback, ci.Clock, a.Clock)
	case !ci.Safe && a.Safe:
		return time.Time{}, fmt.Errorf("%w: the TPM lost power without TPM2_Shutdown and its Clock (%d ms) may have gone back", ErrClockUnsafe, ci.Clock)
	}
	e := time.Duration(ci.Clock-a.Clock) * time.Millisecond
	slack := time.Duration(float64(e) * c.o.MaxDrift)
	hi := a.Wall.Add(e + slack + c.o.Tolerance)
	lo := a.Wall.Add(e - slack - c.o.Tolerance)
	if wall.After(hi) {
		return time.Time{}, fmt.Errorf("%w: wall clock %s, but the TPM clock advanced only %s since the anchor at %s (latest allowed %s)", ErrClockAhead, wall.UTC().Format(time.RFC3339), e.Round(time.Second), a.Wall.UTC().Format(time.RFC3339), hi.UTC().Format(time.RFC3339))
	}
	if wall.Before(lo) {
		return time.Time{}, fmt.Errorf("%w: wall clock %s, but the TPM clock advanced %s since the anchor at %s (earliest allowed %s)", ErrClockBehind, wall.UTC().Format(time.RFC3339), e.Round(time.Second), a.Wall.UTC().Format(time.RFC3339), lo.UTC().Format(time.RFC3339))
	}
	return wall, nil
}

// Now implements store.Clock: Check with the configured timeout.
func (c *Clock) Now() (time.Time, error) {
	ctx, cancel := context.WithTimeout(context.Background(), c.o.Timeout)
	defer cancel()
	return c.Check(ctx)
}

// Advance re-anchors at the current reading after it passes Check, so the
// drift allowance does not grow without bound. The boot flow calls it after
// a successful prune. Each call can move the anchor by at most Tolerance
// plus MaxDrift of the elapsed time beyond the TPM's own measure.
func (c *Clock) Advance(ctx context.Context) error {
	now, err := c.Check(ctx)
	if err != nil {
		return fmt.Errorf("advance clock anchor: %w", err)
	}
	return c.Anchor(ctx, now)
}
