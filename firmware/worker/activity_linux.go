package worker

import (
	"errors"
	"fmt"
	"sort"
	"strings"
	"sync"

	"github.com/holdfast-appliance/holdfast/firmware/control"
)

// errQuiesced refuses a pull or restore once PID 1 is rebooting into the
// maintenance window.
var errQuiesced = errors.New("the appliance is rebooting into its maintenance window: nothing new starts")

// activity is what the worker runs that a maintenance reboot must not cut:
// pulls (scheduled and from the console) and the console restore. The
// zero value is ready.
type activity struct {
	mu       sync.Mutex
	pulls    map[string]int // source -> pulls of it running
	quiesced bool
}

// startPull records a pull of source, or refuses it when quiesced.
func (s *activity) startPull(source string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.quiesced {
		return errQuiesced
	}
	if s.pulls == nil {
		s.pulls = map[string]int{}
	}
	s.pulls[source]++
	return nil
}

func (s *activity) endPull(source string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.pulls[source]--; s.pulls[source] <= 0 {
		delete(s.pulls, source)
	}
}

// startRestore begins a restore (restoreState.begin) unless quiesced, under
// the same lock quiesce holds, so that none slips in between.
func (s *activity) startRestore(rs *restoreState, r control.RestoreReport) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.quiesced {
		return errQuiesced
	}
	return rs.begin(r)
}

// quiesce says what runs; when nothing does, nothing new starts from now
// on and it returns "".
func (s *activity) quiesce(rs *restoreState) string {
	s.mu.Lock()
	defer s.mu.Unlock()
	var busy []string
	for src := range s.pulls {
		busy = append(busy, "pull of "+src)
	}
	if r, ok := rs.get(); ok {
		busy = append(busy, fmt.Sprintf("restore of %s to %s", r.Snapshot, r.Target))
	}
	if len(busy) > 0 {
		sort.Strings(busy)
		return strings.Join(busy, ", ") + " running"
	}
	s.quiesced = true
	return ""
}
