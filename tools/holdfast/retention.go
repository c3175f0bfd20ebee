package main

import (
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"
)

// retentionPeriod is a parsed --retain value: calendar years, months and
// days plus whole hours.
type retentionPeriod struct {
	Years, Months, Days, Hours int
}

// maxRetainUntil is the latest retain-until the store can record: it keeps
// times as int64 Unix nanoseconds (year 2262).
var maxRetainUntil = time.Unix(0, math.MaxInt64).UTC()

// maxRetentionNumber bounds each number in a period, far beyond any real
// retention, so that arithmetic cannot overflow.
const maxRetentionNumber = 1_000_000

const retentionHelp = `a period of one or more <number><unit> terms: y years, m months, w weeks,
d days, h hours (e.g. 30d, 12h, 2w, 6m, 2y, 1y6m, 1d12h). Years and months are
calendar periods (Jan 31 + 1m is Mar 3, as Go's time.AddDate); "m" is months,
never minutes. Zero and "forever" are refused: use --legal-hold to keep a
snapshot until a hold is lifted`

// parseRetention parses a retention period such as "30d", "2w", "6m" (six
// months), "2y" or "1y6m". Each unit may appear once; units are y, m, w,
// d and h; the period must be positive.
func parseRetention(s string) (retentionPeriod, error) {
	var p retentionPeriod
	in := s
	if in == "" {
		return p, errors.New("empty retention period")
	}
	if in == "forever" || in == "0" || in == "inf" || in == "infinite" {
		return p, fmt.Errorf("retention %q: an unbounded period is not accepted; give a period such as 30d, and use --legal-hold to keep a snapshot indefinitely", s)
	}
	seen := map[string]bool{}
	for len(in) > 0 {
		i := 0
		for i < len(in) && in[i] >= '0' && in[i] <= '9' {
			i++
		}
		if i == 0 {
			return p, fmt.Errorf("retention %q: expected a number at %q", s, in)
		}
		if i == len(in) {
			return p, fmt.Errorf("retention %q: number %s has no unit (y, m, w, d or h)", s, in)
		}
		n, err := strconv.Atoi(in[:i])
		if err != nil || n > maxRetentionNumber {
			return p, fmt.Errorf("retention %q: number %s is too large", s, in[:i])
		}
		j := i
		for j < len(in) && (in[j] >= 'a' && in[j] <= 'z' || in[j] >= 'A' && in[j] <= 'Z') {
			j++
		}
		unit := in[i:j]
		if j == i {
			return p, fmt.Errorf("retention %q: unknown unit at %q (want y, m, w, d or h)", s, in[i:])
		}
		if seen[unit] {
			return p, fmt.Errorf("retention %q: unit %q given twice", s, unit)
		}
		seen[unit] = true
		switch unit {
		case "y":
			p.Years = n
		case "m":
			p.Months = n
		case "w":
			p.Days += 7 * n
		case "d":
			p.Days += n
		case "h":
			p.Hours = n
		default:
			return p, fmt.Errorf("retention %q: unknown unit %q (want y, m, w, d or h; m is months)", s, unit)
		}
		in = in[j:]
	}
	if p == (retentionPeriod{}) {
		return p, fmt.Errorf("retention %q: the period must be longer than zero", s)
	}
	return p, nil
}

// until returns the end of the period starting at now, in UTC. Calendar
// arithmetic is done in UTC so the result does not depend on the host's
// time zone.
func (p retentionPeriod) until(now time.Time) (time.Time, error) {
	if p.Years > maxRetentionNumber || p.Months > maxRetentionNumber || p.Days > 8*maxRetentionNumber || p.Hours > maxRetentionNumber {
		return time.Time{}, errors.New("retention period is too long")
	}
	t := now.UTC().AddDate(p.Years, p.Months, p.Days).Add(time.Duration(p.Hours) * time.Hour)
	if t.After(maxRetainUntil) {
		return time.Time{}, fmt.Errorf("retain-until %s is past the latest time the store can record (%s)", t.Format("2006-01-02"), maxRetainUntil.Format(time.RFC3339))
	}
	if !t.After(now) {
		return time.Time{}, errors.New("retain-until is not in the future")
	}
	return t, nil
}

// String renders the period in canonical form, e.g. "1y6m2d12h".
func (p retentionPeriod) String() string {
	var b strings.Builder
	for _, t := range []struct {
		n    int
		unit string
	}{{p.Years, "y"}, {p.Months, "m"}, {p.Days, "d"}, {p.Hours, "h"}} {
		if t.n != 0 {
			fmt.Fprintf(&b, "%d%s", t.n, t.unit)
		}
	}
	return b.String()
}
