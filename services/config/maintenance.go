package config

import (
	"fmt"
	"strconv"
	"strings"
	"time"
)

// Maintenance says when the appliance reboots itself into its maintenance
// window (boot phase 6, where prune runs: nothing after lockdown may clear
// an inode flag). Times are UTC: the appliance keeps its hardware clock in
// UTC and has no time zone database, and UTC has no daylight saving gaps
// or repeats, so a window is never skipped or run twice.
//
//	| setting              | when                                   |
//	|----------------------|----------------------------------------|
//	| "weekly sun 03:00"   | every Sunday at 03:00 UTC (the default) |
//	| "weekly DAY HH:MM"   | DAY is mon..sun or monday..sunday      |
//	| "daily HH:MM"        | every day at HH:MM UTC                 |
//	| "off"                | never: prune runs only at boots an     |
//	|                      | operator makes (reboot, maintenance)   |
type Maintenance struct {
	// Off turns the scheduled reboot off.
	Off bool
	// Daily is every day; otherwise once a week on Weekday.
	Daily   bool
	Weekday time.Weekday
	// Hour and Minute are the time of day, UTC.
	Hour, Minute int
}

// DefaultMaintenance is the schedule when the appliance block sets none:
// weekly, Sunday 03:00 UTC, when backups are least likely to be pulled or
// restored.
var DefaultMaintenance = Maintenance{Weekday: time.Sunday, Hour: 3}

var weekdays = map[string]time.Weekday{
	"sun": time.Sunday, "mon": time.Monday, "tue": time.Tuesday, "wed": time.Wednesday,
	"thu": time.Thursday, "fri": time.Friday, "sat": time.Saturday,
	"sunday": time.Sunday, "monday": time.Monday, "tuesday": time.Tuesday, "wednesday": time.Wednesday,
	"thursday": time.Thursday, "friday": time.Friday, "saturday": time.Saturday,
}

// ParseMaintenance parses a maintenance schedule: "weekly DAY HH:MM",
// "daily HH:MM" or "off" (case does not matter; times are UTC, HH 00 to 23,
// MM 00 to 59; a trailing "UTC" is accepted).
func ParseMaintenance(s string) (Maintenance, error) {
	f := strings.Fields(strings.ToLower(s))
	if n := len(f); n > 1 && f[n-1] == "utc" {
		f = f[:n-1]
	}
	usage := `want "weekly DAY HH:MM" (e.g. "weekly sun 03:00"), "daily HH:MM" or "off"; times are UTC`
	var m Maintenance
	var clock string
	switch {
	case len(f) == 1 && f[0] == "off":
		return Maintenance{Off: true}, nil
	case len(f) == 2 && f[0] == "daily":
		m.Daily, clock = true, f[1]
	case len(f) == 3 && f[0] == "weekly":
		d, ok := weekdays[f[1]]
		if !ok {
			return Maintenance{}, fmt.Errorf("maintenance %q: day %q: want mon, tue, wed, thu, fri, sat or sun", s, f[1])
		}
		m.Weekday, clock = d, f[2]
	default:
		return Maintenance{}, fmt.Errorf("maintenance %q: %s", s, usage)
	}
	hh, mm, ok := strings.Cut(clock, ":")
	h, herr := strconv.Atoi(hh)
	mi, merr := strconv.Atoi(mm)
	if !ok || len(hh) < 1 || len(hh) > 2 || len(mm) != 2 || herr != nil || merr != nil || h < 0 || h > 23 || mi < 0 || mi > 59 {
		return Maintenance{}, fmt.Errorf("maintenance %q: time %q: want HH:MM in UTC, 00:00 to 23:59", s, clock)
	}
	m.Hour, m.Minute = h, mi
	return m, nil
}

// String gives the schedule back in config syntax.
func (m Maintenance) String() string {
	switch {
	case m.Off:
		return "off"
	case m.Daily:
		return fmt.Sprintf("daily %02d:%02d", m.Hour, m.Minute)
	}
	return fmt.Sprintf("weekly %s %02d:%02d", strings.ToLower(m.Weekday.String()[:3]), m.Hour, m.Minute)
}

// Next is the first scheduled time strictly after t, in UTC; the zero time
// when the schedule is off.
func (m Maintenance) Next(t time.Time) time.Time {
	if m.Off {
		return time.Time{}
	}
	t = t.UTC()
	n := time.Date(t.Year(), t.Month(), t.Day(), m.Hour, m.Minute, 0, 0, time.UTC)
	if !m.Daily {
		n = n.AddDate(0, 0, (int(m.Weekday)-int(n.Weekday())+7)%7)
	}
	for !n.After(t) {
		if m.Daily {
			n = n.AddDate(0, 0, 1)
		} else {
			n = n.AddDate(0, 0, 7)
		}
	}
	return n
}
