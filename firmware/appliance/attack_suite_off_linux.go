//go:build linux && !holdfast_attack_suite

package appliance

import (
	"context"
	"io"

	"github.com/holdfast-appliance/holdfast/firmware/console"
)

// testOnlyCommand: a release init has no test-only console commands (see
// attack_suite_linux.go for the test image's).
func (a *appliance) testOnlyCommand(string) func(context.Context, console.Command, io.Writer) error {
	return nil
}

// testOnlyPermitted is nothing in a release init: PID 1 keeps no
// capability to change uids after lockdown.
func testOnlyPermitted() []int { return nil }

// testOnlySealers: a release init starts no sealer but the worker's.
func (a *appliance) testOnlySealers([]dataStore) {}
