package main

import (
	"github.com/holdfast-appliance/holdfast/services/config"

	"strings"
	"testing"
	"time"
)

func TestParseRetention(t *testing.T) {
	tests := []struct {
		in   string
		want config.Period
	}{
		{"30d", config.Period{Days: 30}},
		{"12h", config.Period{Hours: 12}},
		{"2w", config.Period{Days: 14}},
		{"6m", config.Period{Months: 6}},
		{"2y", config.Period{Years: 2}},
		{"1y6m", config.Period{Years: 1, Months: 6}},
		{"1d12h", config.Period{Days: 1, Hours: 12}},
		{"2w3d", config.Period{Days: 17}},
		{"12h1d", config.Period{Days: 1, Hours: 12}}, // order is free
		{"0y1d", config.Period{Days: 1}},
		{"007d", config.Period{Days: 7}},
		{"1y2m3w4d5h", config.Period{Years: 1, Months: 2, Days: 25, Hours: 5}},
	}
	for _, tt := range tests {
		got, err := parseRetention(tt.in)
		if err != nil {
			t.Errorf("parseRetention(%q): %v", tt.in, err)
			continue
		}
		if got != tt.want {
			t.Errorf("parseRetention(%q) = %+v, want %+v", tt.in, got, tt.want)
		}
	}
}

func TestParseRetentionRejects(t *testing.T) {
	tests := []struct {
		in      string
		wantErr string
	}{
		{"", "empty"},
		{"forever", "legal-hold"},
		{"0", "unbounded"},
		{"0d", "is zero"},
		{"0y0m", "is zero"},
		{"30", "want <number><unit>"},
		{"d", "want <number><unit>"},
		{"30x", "unknown unit"},
		{"30D", "unknown unit"},
		{"30s", "unknown unit"},
		{"10min", "want <number><unit>"},
		{"-5d", "want <number><unit>"},
		{"+5d", "want <number><unit>"},
		{"5 d", "unknown unit"},
		{" 5d", "want <number><unit>"},
		{"1d1d", "twice"},
		{"1.5d", "unknown unit"},
		{"99999999999999999999d", "too large"},
		{"100001y", "too large"},
		{"30d ", "want <number><unit>"},
		{"3é", "unknown unit"},
	}
	for _, tt := range tests {
		_, err := parseRetention(tt.in)
		if err == nil {
			t.Errorf("parseRetention(%q) succeeded, want an error containing %q", tt.in, tt.wantErr)
			continue
		}
		if !strings.Contains(err.Error(), tt.wantErr) {
			t.Errorf("parseRetention(%q) = %v, want an error containing %q", tt.in, err, tt.wantErr)
		}
	}
}

func TestRetentionUntil(t *testing.T) {
	base := time.Date(2025, time.January, 31, 10, 0, 0, 0, time.UTC)
	leap := time.Date(2024, time.February, 29, 0, 0, 0, 0, time.UTC)
	tests := []struct {
		in   string
		now  time.Time
		want time.Time
	}{
		{"30d", base, time.Date(2025, time.March, 2, 10, 0, 0, 0, time.UTC)},
		{"12h", base, time.Date(2025, time.January, 31, 22, 0, 0, 0, time.UTC)},
		{"2w", base, time.Date(2025, time.February, 14, 10, 0, 0, 0, time.UTC)},
		// Calendar months as time.AddDate: Jan 31 + 1 month = Feb 31 = Mar 3.
		{"1m", base, time.Date(2025, time.March, 3, 10, 0, 0, 0, time.UTC)},
		{"6m", base, time.Date(2025, time.July, 31, 10, 0, 0, 0, time.UTC)},
		{"2y", base, time.Date(2027, time.January, 31, 10, 0, 0, 0, time.UTC)},
		{"1y", leap, time.Date(2025, time.March, 1, 0, 0, 0, 0, time.UTC)},
		{"4y", leap, time.Date(2028, time.February, 29, 0, 0, 0, 0, time.UTC)},
		{"1y6m", base, time.Date(2026, time.July, 31, 10, 0, 0, 0, time.UTC)},
		{"1d12h", base, time.Date(2025, time.February, 1, 22, 0, 0, 0, time.UTC)},
		// A local time is converted to UTC first.
		{"1d", time.Date(2025, time.March, 29, 12, 0, 0, 0, time.FixedZone("CET", 3600)), time.Date(2025, time.March, 30, 11, 0, 0, 0, time.UTC)},
	}
	for _, tt := range tests {
		p, err := parseRetention(tt.in)
		if err != nil {
			t.Fatalf("parseRetention(%q): %v", tt.in, err)
		}
		got, err := retainUntil(p, tt.now)
		if err != nil {
			t.Errorf("%q from %s: %v", tt.in, tt.now, err)
			continue
		}
		if !got.Equal(tt.want) || got.Location() != time.UTC {
			t.Errorf("%q from %s = %s, want %s", tt.in, tt.now, got, tt.want)
		}
	}
}

func TestRetentionUntilBeyondStoreRange(t *testing.T) {
	now := time.Date(2025, time.January, 1, 0, 0, 0, 0, time.UTC)
	for _, in := range []string{"300y", "99999y", "99999m", "3000w99999d"} {
		p, err := parseRetention(in)
		if err != nil {
			t.Fatalf("parseRetention(%q): %v", in, err)
		}
		if got, err := retainUntil(p, now); err == nil {
			t.Errorf("%q: until = %s, want an error (past year 2262)", in, got)
		}
	}
	p, _ := parseRetention("200y")
	if _, err := retainUntil(p, now); err != nil {
		t.Errorf("200y from 2025: %v, want ok (2225 is before 2262)", err)
	}
}

func TestRetentionString(t *testing.T) {
	for in, want := range map[string]string{"30d": "30d", "2w": "14d", "1y6m": "1y6m", "12h1d": "1d12h"} {
		p, err := parseRetention(in)
		if err != nil {
			t.Fatal(err)
		}
		if got := p.String(); got != want {
			t.Errorf("%q: String() = %q, want %q", in, got, want)
		}
	}
}
