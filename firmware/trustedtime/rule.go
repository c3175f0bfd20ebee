// Package trustedtime keeps the trusted time T that prune compares
// retention with (invariant I5). T is monotone and can only run late: PID 1
// advances it at every boot and hourly while running, by what both the
// TPM's Clock and the wall clock saw pass since the last record, less the
// TPM oscillator's worst drift:
//
//	credit = max(0, min(ΔTPM·(1 − drift), Δwall))
//
//	| event since the last record                         | ΔTPM used  | T credits                | event kind  |
//	|-----------------------------------------------------|------------|--------------------------|-------------|
//	| uptime, same TPM, counters and Clock not back       | Clock diff | min(ΔTPM·(1−d), Δwall)   | KindCredit  |
//	| power-off (TPM unpowered, wall/RTC ran on)          | Clock diff | the powered time only    | KindShort   |
//	| power cut (Clock back to its last NV save)          | 0 if below | nothing, re-based        | KindRebase  |
//	| TPM cleared or replaced (other identity, resetCount |            |                          |             |
//	| or restartCount or Clock went back)                 | 0          | nothing, re-based        | KindRebase  |
//	| wall clock set back                                 | —          | nothing                  | KindWallBack|
//	| wall clock set ahead (e.g. 10 years)                | Clock diff | ΔTPM·(1−d) at most       | KindShort   |
//	| operator's confirm-time at the console              | —          | T := max(T, wall)        | KindConfirm |
//
// Every kind but KindCredit says how far T lags the wall clock, for an
// alert. Nothing but Confirm ever moves T by more than the TPM measured, so
// a wrong wall clock or a reset TPM can only delay expiry, never advance
// it, and nothing freezes: the next advance credits again from the new base.
//
// The TPM's Clock counts milliseconds while the TPM is powered and only goes
// back (to its last NV save) after a power cut or a TPM2_Clear; whatever it
// reads above our last record of the same TPM is powered time that really
// passed since then. A TPM Reset (resetCount up, every cold boot) therefore
// keeps the base when the Clock did not go back.
//
// This file is the pure rule; log.go keeps the records, keeper.go ties the
// rule to a TPM and the records.
package trustedtime

import (
	"fmt"
	"math"
	"time"
)

// Reading is one TPM2_ReadClock of one TPM.
type Reading struct {
	// TPM identifies the TPM (SHA-256 of its SRK Name: another TPM, or
	// the same after TPM2_Clear, has another owner seed and so another
	// SRK).
	TPM          [32]byte
	Clock        uint64 // ms the TPM has been powered
	ResetCount   uint32
	RestartCount uint32
}

// State is the last record: T, and the wall clock and TPM reading when it
// was taken.
type State struct {
	T       time.Time
	Wall    time.Time
	Reading Reading
}

// Kind says what an advance found.
type Kind int

// Kinds of Event; see the package table.
const (
	KindCredit   Kind = iota // T advanced with the wall clock
	KindShort                // the wall clock saw more than T credited (power-off, wall ahead)
	KindRebase               // the TPM's Clock or counters went back, or another TPM: nothing credited
	KindWallBack             // the wall clock went back: nothing credited
	KindConfirm              // the operator moved T to the wall clock
	KindStart                // the first record
)

func (k Kind) String() string {
	switch k {
	case KindCredit:
		return "credit"
	case KindShort:
		return "short"
	case KindRebase:
		return "rebase"
	case KindWallBack:
		return "wall-back"
	case KindConfirm:
		return "confirm"
	case KindStart:
		return "start"
	}
	return fmt.Sprintf("kind(%d)", int(k))
}

// Event is what one advance did.
type Event struct {
	Kind   Kind
	Credit time.Duration // how far T moved
	TPM    time.Duration // ΔTPM (0 when re-based)
	Wall   time.Duration // Δwall (negative when the wall clock went back)
	Lag    time.Duration // wall − T after the advance
	Reason string        // for the log and the alert
}

// Alert reports whether the operator should hear of it: anything but an
// ordinary credit.
func (e Event) Alert() bool { return e.Kind != KindCredit }

// Rule holds the rule's two constants.
type Rule struct {
	// DriftPPM is the largest rate error assumed of the TPM's oscillator,
	// in parts per million; ΔTPM is reduced by it so a fast oscillator
	// cannot make T run early.
	DriftPPM int64
	// Slack is how much less than Δwall a credit may be before the
	// advance counts as KindShort (beyond DriftPPM of Δwall).
	Slack time.Duration
}

// DefaultRule is 1 % drift (crystal oscillators are far better; a TPM that
// ran faster than that would let T run early by the excess) and 5 minutes'
// slack.
func DefaultRule() Rule { return Rule{DriftPPM: 10_000, Slack: 5 * time.Minute} }

// Start is the first record: T starts at the time the operator confirmed.
func Start(r Reading, wall time.Time) (State, Event) {
	return State{T: wall, Wall: wall, Reading: r}, Event{Kind: KindStart, Reason: "trusted time started from the confirmed wall clock"}
}

// Advance applies the rule to the record prev and a new reading r taken at
// wall time wall. It never moves T back and never by more than both clocks
// saw.
func (ru Rule) Advance(prev State, r Reading, wall time.Time) (State, Event) {
	next := State{T: prev.T, Wall: wall, Reading: r}
	ev := Event{Wall: wall.Sub(prev.Wall)}
	switch {
	case r.TPM != prev.Reading.TPM:
		ev.Kind, ev.Reason = KindRebase, "another TPM (or the TPM was cleared): nothing credited"
	case r.ResetCount < prev.Reading.ResetCount:
		ev.Kind, ev.Reason = KindRebase, fmt.Sprintf("TPM resetCount went back (%d < %d): cleared; nothing credited", r.ResetCount, prev.Reading.ResetCount)
	case r.ResetCount == prev.Reading.ResetCount && r.RestartCount < prev.Reading.RestartCount:
		ev.Kind, ev.Reason = KindRebase, fmt.Sprintf("TPM restartCount went back (%d < %d); nothing credited", r.RestartCount, prev.Reading.RestartCount)
	case r.Clock < prev.Reading.Clock:
		ev.Kind, ev.Reason = KindRebase, fmt.Sprintf("TPM Clock went back %s (power cut): nothing credited", msDuration(prev.Reading.Clock-r.Clock))
	case ev.Wall < 0:
		ev.TPM = msDuration(r.Clock - prev.Reading.Clock)
		ev.Kind, ev.Reason = KindWallBack, fmt.Sprintf("wall clock went back %s: nothing credited", (-ev.Wall).Round(time.Second))
	default:
		ev.TPM = msDuration(r.Clock - prev.Reading.Clock)
		c := ev.TPM - time.Duration(int64(ev.TPM)/1_000_000*ru.DriftPPM)
		if c > ev.Wall {
			c = ev.Wall
		}
		ev.Credit = max(c, 0)
		next.T = prev.T.Add(ev.Credit)
		ev.Kind = KindCredit
		if ev.Wall-ev.Credit > ru.Slack+time.Duration(int64(ev.Wall)/1_000_000*ru.DriftPPM) {
			ev.Kind = KindShort
			ev.Reason = fmt.Sprintf("the wall clock advanced %s but the TPM only %s: powered off, or the wall clock is ahead", ev.Wall.Round(time.Second), ev.TPM.Round(time.Second))
		}
	}
	ev.Lag = wall.Sub(next.T)
	return next, ev
}

// Confirm is the operator's confirm-time: T moves forward to the wall clock
// (never back), and the record re-bases on r.
func Confirm(prev State, r Reading, wall time.Time) (State, Event) {
	next := State{T: prev.T, Wall: wall, Reading: r}
	if wall.After(prev.T) {
		next.T = wall
	}
	return next, Event{Kind: KindConfirm, Credit: next.T.Sub(prev.T), Wall: wall.Sub(prev.Wall), Lag: wall.Sub(next.T), Reason: "the operator confirmed the wall clock at the console"}
}

// RetainFrom is the time a new snapshot's retention counts from: the later
// of the wall clock and T, so a wall clock set back cannot shorten it.
func RetainFrom(wall, t time.Time) time.Time {
	if t.After(wall) {
		return t
	}
	return wall
}

// msDuration converts TPM milliseconds, saturating.
func msDuration(ms uint64) time.Duration {
	if ms > uint64(math.MaxInt64/int64(time.Millisecond)) {
		return time.Duration(math.MaxInt64)
	}
	return time.Duration(ms) * time.Millisecond
}
