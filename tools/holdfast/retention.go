package main

import (
	"errors"
	"fmt"
	"math"
	"time"

	"github.com/holdfast-appliance/holdfast/services/config"
)

// maxRetainUntil is the latest retain-until the store can record: it keeps
// times as int64 Unix nanoseconds (year 2262).
var maxRetainUntil = time.Unix(0, math.MaxInt64).UTC()

const retentionHelp = `a period of one or more <number><unit> terms: y years, m months, w weeks,
d days, h hours (e.g. 30d, 12h, 2w, 6m, 2y, 1y6m, 1d12h). Years and months are
calendar periods (Jan 31 + 1m is Mar 3, as Go's time.AddDate); "m" is months,
never minutes. Zero and "forever" are refused: use --legal-hold to keep a
snapshot until a hold is lifted`

// parseRetention parses --retain with the configuration's period syntax
// (config.ParsePeriod), refusing an unbounded period with advice.
func parseRetention(s string) (config.Period, error) {
	switch s {
	case "forever", "0", "inf", "infinite":
		return config.Period{}, fmt.Errorf("retention %q: an unbounded period is not accepted; give a period such as 30d, and use --legal-hold to keep a snapshot indefinitely", s)
	}
	p, err := config.ParsePeriod(s)
	if errors.Is(err, config.ErrZeroPeriod) {
		return config.Period{}, fmt.Errorf("retention: %w; use --legal-hold to keep a snapshot indefinitely", err)
	}
	if err != nil {
		return config.Period{}, fmt.Errorf("retention: %w", err)
	}
	return p, nil
}

// retainUntil returns the end of period p starting at now, in UTC, refusing
// what the store cannot record.
func retainUntil(p config.Period, now time.Time) (time.Time, error) {
	t := p.AddTo(now)
	if t.Year() > maxRetainUntil.Year() || t.After(maxRetainUntil) || t.Before(now) {
		return time.Time{}, fmt.Errorf("retain-until %s is past the latest time the store can record (%s)", t.Format("2006-01-02"), maxRetainUntil.Format(time.RFC3339))
	}
	if !t.After(now) {
		return time.Time{}, errors.New("retain-until is not in the future")
	}
	return t, nil
}
