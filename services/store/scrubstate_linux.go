package store

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// The scrub state: what the worker's last scrub of this disk found, kept in
// the store itself so that no process has to write the config partition
// for it. The worker writes it after each scrub; PID 1 reads it in the
// maintenance window as hostile input (no symlink, regular file, at most
// maxScrubState bytes), and what it says can only make PID 1 scrub and
// repair (replace damaged copies from good ones), never delete or skip.
//
//	| line                 | meaning                                       |
//	|----------------------|-----------------------------------------------|
//	| holdfast-scrub 1     | magic and version                             |
//	| last <RFC 3339 time> | when the scrub ended                          |
//	| damaged <n>          | damaged files left for the maintenance window |
const (
	// ScrubPassName is the worker's scheduled-scrub cursor
	// (services/mirror.Scrubber) in the primary disk's state directory:
	// read by the worker alone, as hostile input; PID 1 and prune never
	// read it.
	ScrubPassName  = "scrub-pass"
	scrubStateName = "scrub"
	scrubMagic     = "holdfast-scrub 1"
	maxScrubState  = 4096
)

// ScrubState is the scrub state of one disk's store.
type ScrubState struct {
	Last    time.Time // when the last scrub ended; zero: never
	Damaged int       // damaged files left for the maintenance window
}

// ReadScrubState reads the scrub state of the store in dir. A store with
// none returns the zero state; one that is not a regular file within its
// bound, or does not parse, an error wrapping ErrForeign.
func ReadScrubState(dir string) (ScrubState, error) {
	b, err := readStoreFile(pathIn(dir, stateDir, scrubStateName), maxScrubState)
	if errors.Is(err, os.ErrNotExist) {
		return ScrubState{}, nil
	}
	if err != nil {
		return ScrubState{}, fmt.Errorf("scrub state: %w", err)
	}
	var st ScrubState
	sc := bufio.NewScanner(bytes.NewReader(b))
	if !sc.Scan() || sc.Text() != scrubMagic {
		return ScrubState{}, fmt.Errorf("scrub state: no %q line: %w", scrubMagic, ErrForeign)
	}
	for sc.Scan() {
		k, v, _ := strings.Cut(sc.Text(), " ")
		switch k {
		case "last":
			if st.Last, err = time.Parse(time.RFC3339, v); err != nil {
				return ScrubState{}, fmt.Errorf("scrub state: last %q: %w", v, ErrForeign)
			}
		case "damaged":
			if st.Damaged, err = strconv.Atoi(v); err != nil || st.Damaged < 0 {
				return ScrubState{}, fmt.Errorf("scrub state: damaged %q: %w", v, ErrForeign)
			}
		default:
			return ScrubState{}, fmt.Errorf("scrub state: line %q: %w", k, ErrForeign)
		}
	}
	return st, nil
}

// WriteScrubState replaces the scrub state of the store in dir (written in
// tmp/, synced, renamed into state/).
func WriteScrubState(dir string, st ScrubState) error {
	if st.Damaged < 0 {
		return errors.New("scrub state: negative damaged count")
	}
	b := fmt.Appendf(nil, "%s\nlast %s\ndamaged %d\n", scrubMagic, st.Last.UTC().Format(time.RFC3339), st.Damaged)
	tmp := pathIn(dir, tmpDir, fmt.Sprintf("%s.%d", scrubStateName, os.Getpid()))
	_ = os.Remove(tmp)
	if err := writeFileSync(tmp, b); err != nil {
		return fmt.Errorf("scrub state: %w", err)
	}
	if err := os.Rename(tmp, pathIn(dir, stateDir, scrubStateName)); err != nil {
		_ = os.Remove(tmp)
		return fmt.Errorf("scrub state: %w", err)
	}
	return nil
}

// ScrubPassPath is where the worker keeps the scheduled scrub's cursor in
// the store at dir.
func ScrubPassPath(dir string) string { return pathIn(dir, stateDir, ScrubPassName) }

func pathIn(dir string, elem ...string) string {
	return filepath.Join(append([]string{dir}, elem...)...)
}
