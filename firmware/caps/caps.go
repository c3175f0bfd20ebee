// Package caps reads and drops Linux capabilities and confines a role to
// read-only mounts. It is what lockdown and
// the store's attack tests use to make a process that, even as root, can
// never regain a capability: the capability is removed from the bounding
// set of the calling thread and the thread then execs, so the new program
// and everything it starts are born without it.
//
// Limits: Linux only. A Go program is multi-threaded and the bounding set is
// per thread, so dropping is done only on a locked thread immediately before
// exec (this works with and without cgo).
package caps

import (
	"bufio"
	"fmt"
	"os"
	"strconv"
	"strings"
)

// Set is a capability bit set, as in /proc/PID/status.
type Set uint64

// Has reports whether capability c (a unix.CAP_* number) is in the set.
func (s Set) Has(c int) bool { return s&(1<<uint(c)) != 0 }

// Sets are the capability sets of a process.
type Sets struct {
	Inheritable, Permitted, Effective, Bounding, Ambient Set
}

// Read returns the capability sets of pid (0 means this process) from
// /proc/PID/status.
func Read(pid int) (Sets, error) {
	p := "/proc/self/status"
	if pid != 0 {
		p = "/proc/" + strconv.Itoa(pid) + "/status"
	}
	f, err := os.Open(p)
	if err != nil {
		return Sets{}, fmt.Errorf("read capabilities: %w", err)
	}
	defer f.Close()
	var s Sets
	fields := map[string]*Set{"CapInh": &s.Inheritable, "CapPrm": &s.Permitted, "CapEff": &s.Effective, "CapBnd": &s.Bounding, "CapAmb": &s.Ambient}
	sc := bufio.NewScanner(f)
	seen := 0
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), ":")
		dst, want := fields[k]
		if !ok || !want {
			continue
		}
		n, err := strconv.ParseUint(strings.TrimSpace(v), 16, 64)
		if err != nil {
			return Sets{}, fmt.Errorf("parse %s: %w", k, err)
		}
		*dst = Set(n)
		seen++
	}
	if err := sc.Err(); err != nil {
		return Sets{}, fmt.Errorf("read capabilities: %w", err)
	}
	if seen != len(fields) {
		return Sets{}, fmt.Errorf("read capabilities: %s lacks capability lines", p)
	}
	return s, nil
}
