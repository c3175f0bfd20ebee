package mirror

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/holdfast-appliance/holdfast/services/store"
)

// The scrub state file: where a Scrubber stands in its period, written by
// the Scrubber (the worker) after every batch, atomically (a temporary
// file in the same directory, fsync, rename, fsync of the directory), and
// read back as hostile input: opened with O_NOFOLLOW|O_NONBLOCK, a regular
// file, at most maxScrubState bytes, a JSON object with exactly these
// fields (docs/mirror.md, "The scrub state file", holds the same table;
// TestDocScrubStateTable checks both against ScrubState):
//
//	| field         | type          | meaning                                                 |
//	|---------------|---------------|---------------------------------------------------------|
//	| version       | int           | 1                                                       |
//	| period_start  | RFC 3339 time | when this period began; after a complete pass, when the |
//	|               |               | next begins (at most one period ahead)                  |
//	| cursor        | string        | the last file checked this period, a store path of the  |
//	|               |               | sealed layout; "" none yet                              |
//	| files         | int >= 0      | files checked this period                               |
//	| bytes         | int >= 0      | bytes checked this period                               |
//	| total_files   | int >= 0      | files in the store at the last slice (progress only)    |
//	| total_bytes   | int >= 0      | their bytes (progress only)                             |
//	| slice_left    | int >= 0      | bytes the current slice has still to read; > 0 only     |
//	|               |               | while a slice runs or was cut short                     |
//	| last_run      | RFC 3339 time | when the last slice began (zero: never)                 |
//	| passes        | int >= 0      | complete passes so far                                  |
//	| last_pass_end | RFC 3339 time | when the last complete pass ended (zero: none)          |
//
// What a forged or damaged file can do: a file that does not decode, has
// another version, a negative count or a cursor that is not a sealed
// file's path restarts the period (files are checked again, never
// skipped). Times in the future are pulled back to now (keeping the
// cursor), so a clock set back, or a forged time, cannot stop the scrub.
// A well-formed cursor far ahead (say "recovery/wrapped-key") ends this
// period's pass early: the files it jumps are skipped for this period only,
// and the next period, at most one period later, checks them all. Whoever
// can write the file runs the scrub anyway (the worker's uid), so nothing
// is lost beyond what that process could already do by not scrubbing; the
// file is never read by PID 1, the sealer or prune.

// scrubStateVersion is the version of the state file.
const scrubStateVersion = 1

// maxScrubState bounds the state file: a cursor is a store path of at most
// a few hundred bytes.
const maxScrubState = 4096

// ScrubState is the content of the scrub state file.
type ScrubState struct {
	Version     int       `json:"version"`
	PeriodStart time.Time `json:"period_start"`
	Cursor      string    `json:"cursor"`
	Files       int64     `json:"files"`
	Bytes       int64     `json:"bytes"`
	TotalFiles  int64     `json:"total_files"`
	TotalBytes  int64     `json:"total_bytes"`
	SliceLeft   int64     `json:"slice_left"`
	LastRun     time.Time `json:"last_run"`
	Passes      int64     `json:"passes"`
	LastPassEnd time.Time `json:"last_pass_end"`
}

// ErrBadScrubState marks a scrub state file that is not what a Scrubber
// writes; the Scrubber starts its period again.
var ErrBadScrubState = errors.New("scrub state file is damaged or forged")

// parseScrubState decodes and checks a state file's bytes.
func parseScrubState(raw []byte) (ScrubState, error) {
	var st ScrubState
	d := json.NewDecoder(bytes.NewReader(raw))
	d.DisallowUnknownFields()
	if err := d.Decode(&st); err != nil {
		return ScrubState{}, fmt.Errorf("%w: %v", ErrBadScrubState, err)
	}
	if d.More() {
		return ScrubState{}, fmt.Errorf("%w: data after the object", ErrBadScrubState)
	}
	switch {
	case st.Version != scrubStateVersion:
		return ScrubState{}, fmt.Errorf("%w: version %d, want %d", ErrBadScrubState, st.Version, scrubStateVersion)
	case st.PeriodStart.IsZero():
		return ScrubState{}, fmt.Errorf("%w: no period start", ErrBadScrubState)
	case st.Files < 0 || st.Bytes < 0 || st.TotalFiles < 0 || st.TotalBytes < 0 || st.SliceLeft < 0 || st.Passes < 0:
		return ScrubState{}, fmt.Errorf("%w: a negative count", ErrBadScrubState)
	case st.Cursor != "":
		if _, ok := store.KindOf(st.Cursor); !ok {
			return ScrubState{}, fmt.Errorf("%w: cursor %q is not a sealed file's path", ErrBadScrubState, st.Cursor)
		}
	}
	return st, nil
}

func (st ScrubState) encode() ([]byte, error) {
	b, err := json.Marshal(st)
	if err != nil {
		return nil, err
	}
	if len(b) > maxScrubState {
		return nil, fmt.Errorf("scrub state of %d bytes is over the bound %d", len(b), maxScrubState)
	}
	return append(b, '\n'), nil
}
