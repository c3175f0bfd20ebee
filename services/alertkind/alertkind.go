// Package alertkind is the alert vocabulary: the kinds of alert every part
// of the appliance raises (ingest, mirror, alert's senders, PID 1 and the
// worker). It is a leaf: it imports nothing of Holdfast, so that PID 1 and
// the control protocol can name a kind without words matched in a text.
//
// Limits: a kind is a short lowercase word; senders deliver an alert of an
// unknown kind as it is, and PID 1 records one the worker names that is
// not Known as Appliance.
package alertkind

// The kinds.
const (
	// PullFailed: a pull could not run, or committed an incomplete
	// snapshot.
	PullFailed = "pull-failed"
	// MassChange: a pull found its source emptied or largely rewritten.
	MassChange = "mass-change"
	// DiskError: a data disk reported an I/O error or went missing.
	DiskError = "disk-error"
	// ScrubDamage: a scrub found a chunk, pack or manifest that does not
	// read back, or a repair could not be made.
	ScrubDamage = "scrub-damage"
	// ClockAnomaly: the clock jumped or went back; prune is frozen.
	ClockAnomaly = "clock-anomaly"
	// SafeMode: the appliance entered safe mode (I6).
	SafeMode = "safe-mode"
	// DiskFull: the store's filesystem is nearly or entirely full.
	DiskFull = "disk-full"
	// Attack: the kernel refused a write to the store, or foreign entries
	// were found in it.
	Attack = "attack"
	// Appliance: anything else the firmware reports (lockdown, export,
	// offline copy).
	Appliance = "appliance"
	// Test is sent by "holdfast alert test" to check the senders.
	Test = "test"
)

// All lists every kind.
func All() []string {
	return []string{PullFailed, MassChange, DiskError, ScrubDamage, ClockAnomaly, SafeMode, DiskFull, Attack, Appliance, Test}
}

// Known tells whether k is one of All.
func Known(k string) bool {
	for _, x := range All() {
		if x == k {
			return true
		}
	}
	return false
}
