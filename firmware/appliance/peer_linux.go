package appliance

import (
	"github.com/holdfast-appliance/holdfast/firmware/control"
)

// The control channel between PID 1 and the worker is firmware/control
// (its table of operations is in that package's doc and docs/control.md).
// These are its types under the names this package used before.
type (
	pullStatus    = control.PullStatus
	diskRef       = control.Disk
	restoreReport = control.RestoreReport
)
