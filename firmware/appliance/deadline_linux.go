package appliance

import (
	"context"
	"fmt"
	"time"

	"github.com/holdfast-appliance/holdfast/services/alertkind"
)

// Deadlines of the maintenance window (phase 6). The steps that read what
// the worker could have written each run under one: journal recovery (the
// writer's open of every disk) and prune with its cleaning of foreign
// entries. The store opens every such file as hostile input, so none
// should ever block; the deadline is the backstop for what no check
// foresaw (a disk that stops answering, a kernel that waits for ever).
// A step that outlives its deadline never hangs the boot: PID 1 raises an
// alert and waits in safe mode at the console, where status, poweroff and
// reboot work; nothing goes on to lockdown or the worker, and nothing more
// is deleted. The stuck step keeps its goroutine (a blocked system call
// cannot be taken back) and may still finish, alone. The copies the
// operator asked for (mirror-disk, copy-disk) and the syncs between the
// disks make steady progress for hours on a large store and have none.
//
//	| step                                   | deadline |
//	|----------------------------------------|----------|
//	| journal recovery (writer open, disks)  | 30 min   |
//	| clean foreign entries and prune, disks | 60 min   |
const (
	recoveryDeadline = 30 * time.Minute
	pruneDeadline    = time.Hour
	// deadlineGrace is how long a step whose context has ended may take
	// to notice and return before it counts as stuck.
	deadlineGrace = time.Minute
)

// StuckError says a maintenance step outlived its deadline.
type StuckError struct {
	Step     string
	Deadline time.Duration
}

func (e *StuckError) Error() string {
	return fmt.Sprintf("maintenance: %s did not finish within %s", e.Step, e.Deadline)
}

// bounded runs fn with a context that ends after d and waits for it up to
// d plus grace. It returns a *StuckError when fn has not returned by then;
// fn then runs on alone and must not touch what the caller uses next.
func bounded(ctx context.Context, step string, d, grace time.Duration, fn func(context.Context)) error {
	cctx, cancel := context.WithTimeout(ctx, d)
	done := make(chan struct{})
	go func() {
		defer close(done)
		defer cancel()
		fn(cctx)
	}()
	t := time.NewTimer(d + grace)
	defer t.Stop()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return &StuckError{Step: step, Deadline: d}
	}
}

// stuck ends the boot in safe mode after a maintenance step outlived its
// deadline: an alert, then the console until the operator powers off or
// reboots. unlock does not leave this safe mode (the keys are fine; a
// store step is stuck).
func (a *appliance) stuck(ctx context.Context, err error) error {
	a.alert(alertkind.SafeMode, "safe-mode: "+err.Error()+"; nothing more is deleted and the worker does not start; reboot at the console to try again", "error", err)
	a.mu.Lock()
	a.stuckStep = err.Error()
	a.mu.Unlock()
	a.enterSafeMode(err)
	for ctx.Err() == nil {
		_ = a.safeMode(ctx)
	}
	return ctx.Err()
}
