package config

import "time"

// RetainUntil is the retain-until of a snapshot started at now, given the
// start times of the source's earlier complete snapshots. Each snapshot gets
// one retain-until, fixed at creation (it can only be extended later):
//
//   - every snapshot is kept for all_for;
//   - the first snapshot of a UTC day (no earlier complete snapshot of the
//     source started that day) is kept for daily_for;
//   - likewise the first of an ISO week for weekly_for, of a month for
//     monthly_for and of a year for yearly_for;
//   - the longest of the periods that apply wins.
//
// A snapshot that is the first of its month is usually also the first of its
// day, so it gets max(all_for, daily_for, monthly_for). Zero means keep
// forever (Forever).
func (r Retention) RetainUntil(now time.Time, earlier []time.Time) time.Time {
	if r.Forever {
		return time.Time{}
	}
	now = now.UTC()
	firstDay, firstWeek, firstMonth, firstYear := true, true, true, true
	y, m, d := now.Date()
	wy, ww := now.ISOWeek()
	for _, t := range earlier {
		t = t.UTC()
		if t.After(now) {
			continue
		}
		ty, tm, td := t.Date()
		twy, tww := t.ISOWeek()
		if ty == y {
			firstYear = false
			if tm == m {
				firstMonth = false
				if td == d {
					firstDay = false
				}
			}
		}
		if twy == wy && tww == ww {
			firstWeek = false
		}
	}
	until := now
	apply := func(p Period, first bool) {
		if first && !p.IsZero() {
			if t := p.AddTo(now); t.After(until) {
				until = t
			}
		}
	}
	apply(r.AllFor, true)
	apply(r.DailyFor, firstDay)
	apply(r.WeeklyFor, firstWeek)
	apply(r.MonthlyFor, firstMonth)
	apply(r.YearlyFor, firstYear)
	return until
}
