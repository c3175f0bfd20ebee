package config

import (
	"fmt"
	"strconv"
	"strings"
)

// The scrub knobs of the appliance block (docs/config.md, docs/mirror.md):
//
//	| field         | value                         | default                              |
//	|---------------|-------------------------------|--------------------------------------|
//	| scrub         | "every <interval>"            | "every 7d": the scrub period; every  |
//	|               |                               | sealed file is checked once in it    |
//	| scrub_rate    | "<size>/s" or "unlimited"     | "100MiB/s" per data disk             |
//	| scrub_share   | "<size>" or "<n>%" per day    | the store's size / the period's days |
//	|               |                               | (rounded up): one pass per period    |
//
// The share is the least a day's slice reads; a slice reads more when the
// period would otherwise end before every file was checked (after days the
// box was off, or a share too small for the store).

// DefaultScrubRate bounds the scrub's reads of each data disk when the
// appliance block sets no scrub_rate: about half of what a spinning disk
// streams, so pulls keep the rest.
const DefaultScrubRate = 100 << 20

// ScrubShare is how much of the store a day's scrub slice reads at least:
// Bytes, or Percent of the store's size. Zero means the default: the
// store's size divided by the scrub period in days, rounded up.
type ScrubShare struct {
	Bytes   int64
	Percent float64 // 0 < Percent <= 100
}

// IsZero reports whether the share is the default.
func (s ScrubShare) IsZero() bool { return s.Bytes == 0 && s.Percent == 0 }

// Of returns the share in bytes of a store of total bytes, rounded up.
func (s ScrubShare) Of(total int64) int64 {
	if s.Bytes > 0 {
		return s.Bytes
	}
	if s.Percent > 0 {
		f := float64(total) * s.Percent / 100
		n := int64(f)
		if float64(n) < f {
			n++
		}
		return n
	}
	return 0
}

func (s ScrubShare) String() string {
	switch {
	case s.Bytes > 0:
		return strconv.FormatInt(s.Bytes, 10) + " bytes per day"
	case s.Percent > 0:
		return strconv.FormatFloat(s.Percent, 'g', -1, 64) + "% of the store per day"
	}
	return "the store's size / the scrub period in days"
}

// ParseScrubRate parses a scrub_rate: "<size>/s" (ParseSize's units, e.g.
// "50MiB/s") or "unlimited". It returns bytes per second; 0 means no limit.
func ParseScrubRate(s string) (int64, error) {
	t := strings.TrimSpace(s)
	if t == "unlimited" {
		return 0, nil
	}
	size, ok := strings.CutSuffix(t, "/s")
	if !ok {
		return 0, fmt.Errorf("scrub_rate %q: want \"<size>/s\", e.g. \"50MiB/s\", or \"unlimited\"", s)
	}
	n, err := ParseSize(size)
	if err != nil {
		return 0, fmt.Errorf("scrub_rate %q: %v", s, err)
	}
	if n < minScrubRate {
		return 0, fmt.Errorf("scrub_rate %q: %d bytes/s is below the minimum 1MiB/s (a scrub that slow never ends; say \"unlimited\" for no limit)", s, n)
	}
	return n, nil
}

// minScrubRate is the slowest scrub_rate accepted: 1 MiB/s reads 86 GB a
// day; anything slower is a typo.
const minScrubRate = 1 << 20

// ParseScrubShare parses a scrub_share: "<size>" read per day (ParseSize's
// units, e.g. "500GiB") or "<n>%" of the store per day (e.g. "5%").
func ParseScrubShare(s string) (ScrubShare, error) {
	t := strings.TrimSpace(s)
	if p, ok := strings.CutSuffix(t, "%"); ok {
		f, err := strconv.ParseFloat(strings.TrimSpace(p), 64)
		if err != nil || !(f > 0 && f <= 100) {
			return ScrubShare{}, fmt.Errorf("scrub_share %q: want a percentage above 0 and at most 100, e.g. \"5%%\"", s)
		}
		return ScrubShare{Percent: f}, nil
	}
	n, err := ParseSize(t)
	if err != nil {
		return ScrubShare{}, fmt.Errorf("scrub_share %q: want a size per day such as \"500GiB\" or a share such as \"5%%\": %v", s, err)
	}
	if n < minScrubRate {
		return ScrubShare{}, fmt.Errorf("scrub_share %q: %d bytes per day is below the minimum 1MiB", s, n)
	}
	return ScrubShare{Bytes: n}, nil
}
