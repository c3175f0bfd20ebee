package config

import (
	"strings"
	"testing"
	"time"
)

func TestParseMaintenance(t *testing.T) {
	for _, tt := range []struct {
		in   string
		want Maintenance
		err  string // substring of the error; "" when it parses
	}{
		{"weekly sun 03:00", Maintenance{Weekday: time.Sunday, Hour: 3}, ""},
		{"Weekly Sunday 3:00", Maintenance{Weekday: time.Sunday, Hour: 3}, ""},
		{"weekly wed 23:59 UTC", Maintenance{Weekday: time.Wednesday, Hour: 23, Minute: 59}, ""},
		{"  weekly   sat   00:00 ", Maintenance{Weekday: time.Saturday}, ""},
		{"daily 04:30", Maintenance{Daily: true, Hour: 4, Minute: 30}, ""},
		{"DAILY 00:05", Maintenance{Daily: true, Minute: 5}, ""},
		{"off", Maintenance{Off: true}, ""},
		{"OFF", Maintenance{Off: true}, ""},
		{"", Maintenance{}, "want \"weekly DAY HH:MM\""},
		{"weekly", Maintenance{}, "want \"weekly DAY HH:MM\""},
		{"weekly sun", Maintenance{}, "want \"weekly DAY HH:MM\""},
		{"weekly 03:00", Maintenance{}, "want \"weekly DAY HH:MM\""},
		{"daily", Maintenance{}, "want \"weekly DAY HH:MM\""},
		{"monthly 1 03:00", Maintenance{}, "want \"weekly DAY HH:MM\""},
		{"every 7d", Maintenance{}, "want \"weekly DAY HH:MM\""},
		{"off 03:00", Maintenance{}, "want \"weekly DAY HH:MM\""},
		{"weekly sonntag 03:00", Maintenance{}, "day \"sonntag\""},
		{"weekly sun 24:00", Maintenance{}, "00:00 to 23:59"},
		{"daily 03:60", Maintenance{}, "00:00 to 23:59"},
		{"daily 3", Maintenance{}, "HH:MM"},
		{"daily 03:0", Maintenance{}, "HH:MM"},
		{"daily -1:00", Maintenance{}, "HH:MM"},
		{"daily 003:00", Maintenance{}, "HH:MM"},
		{"daily 3pm", Maintenance{}, "HH:MM"},
		{"daily 03:00 CET", Maintenance{}, "want \"weekly DAY HH:MM\""},
	} {
		got, err := ParseMaintenance(tt.in)
		switch {
		case tt.err == "" && (err != nil || got != tt.want):
			t.Errorf("ParseMaintenance(%q) = %+v, %v; want %+v", tt.in, got, err, tt.want)
		case tt.err != "" && (err == nil || !strings.Contains(err.Error(), tt.err)):
			t.Errorf("ParseMaintenance(%q) = %+v, %v; want an error with %q", tt.in, got, err, tt.err)
		}
		if err == nil {
			// The config syntax it gives back parses to the same.
			if again, err := ParseMaintenance(got.String()); err != nil || again != got {
				t.Errorf("ParseMaintenance(%q).String() = %q parses to %+v, %v", tt.in, got.String(), again, err)
			}
		}
	}
}

// TestMaintenanceNext: the next window is strictly after the given time,
// in UTC whatever zone the time is in, never skipped or repeated at a
// daylight saving change elsewhere.
func TestMaintenanceNext(t *testing.T) {
	utc := func(s string) time.Time {
		v, err := time.Parse(time.RFC3339, s)
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
	weekly := DefaultMaintenance // Sunday 03:00
	daily := Maintenance{Daily: true, Hour: 23, Minute: 30}
	berlin := time.FixedZone("CEST", 2*3600)
	for _, tt := range []struct {
		name  string
		m     Maintenance
		after time.Time
		want  string // RFC 3339, UTC; "" for none
	}{
		{"weekly, mid-week", weekly, utc("2026-12-09T12:00:00Z"), "2026-12-13T03:00:00Z"},
		{"weekly, Sunday before the time", weekly, utc("2026-12-13T02:59:59Z"), "2026-12-13T03:00:00Z"},
		{"weekly, exactly at the time: the next week", weekly, utc("2026-12-13T03:00:00Z"), "2026-12-20T03:00:00Z"},
		{"weekly, just after the reboot it made", weekly, utc("2026-12-13T03:01:30Z"), "2026-12-20T03:00:00Z"},
		{"weekly, Saturday late", weekly, utc("2026-12-19T23:59:00Z"), "2026-12-20T03:00:00Z"},
		{"weekly, across the year", weekly, utc("2026-12-28T00:00:00Z"), "2027-01-03T03:00:00Z"},
		{"weekly, in another zone the same instant", weekly, utc("2026-12-13T02:30:00Z").In(berlin), "2026-12-13T03:00:00Z"},
		{"weekly, Europe's DST change night (no skip)", weekly, utc("2027-03-28T00:30:00Z"), "2027-03-28T03:00:00Z"},
		{"daily, before", daily, utc("2026-12-09T12:00:00Z"), "2026-12-09T23:30:00Z"},
		{"daily, after", daily, utc("2026-12-09T23:30:01Z"), "2026-12-10T23:30:00Z"},
		{"daily, end of February", daily, utc("2028-02-28T23:45:00Z"), "2028-02-29T23:30:00Z"},
		{"off", Maintenance{Off: true}, utc("2026-12-09T12:00:00Z"), ""},
	} {
		got := tt.m.Next(tt.after)
		gs := ""
		if !got.IsZero() {
			gs = got.Format(time.RFC3339)
		}
		if gs != tt.want {
			t.Errorf("%s: Next(%s) = %q, want %q", tt.name, tt.after, gs, tt.want)
		}
		if !got.IsZero() && (!got.After(tt.after) || got.Location() != time.UTC) {
			t.Errorf("%s: Next(%s) = %s: not after it or not UTC", tt.name, tt.after, got)
		}
	}
}
