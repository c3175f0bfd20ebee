package config

import (
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"strings"
	"testing"
)

func TestParseScrubRate(t *testing.T) {
	tests := []struct {
		in   string
		want int64
		err  string
	}{
		{"50MiB/s", 50 << 20, ""},
		{" 1GB/s ", 1e9, ""},
		{"unlimited", 0, ""},
		{"1MiB/s", 1 << 20, ""},
		{"50MiB", 0, `want "<size>/s"`},
		{"fast/s", 0, "want a number"},
		{"100KiB/s", 0, "below the minimum"},
		{"0/s", 0, "below the minimum"},
		{"5 parsecs/s", 0, "unknown unit"},
	}
	for _, tt := range tests {
		got, err := ParseScrubRate(tt.in)
		if tt.err != "" {
			if err == nil || !strings.Contains(err.Error(), tt.err) || !strings.Contains(err.Error(), "scrub_rate") {
				t.Errorf("ParseScrubRate(%q) = %d, %v; want an error about scrub_rate mentioning %q", tt.in, got, err, tt.err)
			}
			continue
		}
		if err != nil || got != tt.want {
			t.Errorf("ParseScrubRate(%q) = %d, %v; want %d", tt.in, got, err, tt.want)
		}
	}
}

func TestParseScrubShare(t *testing.T) {
	tests := []struct {
		in    string
		want  ScrubShare
		bytes int64 // Of(1000)
		err   string
	}{
		{"5%", ScrubShare{Percent: 5}, 50, ""},
		{"0.1%", ScrubShare{Percent: 0.1}, 1, ""},
		{"33.3%", ScrubShare{Percent: 33.3}, 333, ""},
		{"100%", ScrubShare{Percent: 100}, 1000, ""},
		{"500GiB", ScrubShare{Bytes: 500 << 30}, 500 << 30, ""},
		{"0%", ScrubShare{}, 0, "above 0"},
		{"101%", ScrubShare{}, 0, "at most 100"},
		{"lots", ScrubShare{}, 0, "size per day"},
		{"10", ScrubShare{}, 0, "minimum"},
	}
	for _, tt := range tests {
		got, err := ParseScrubShare(tt.in)
		if tt.err != "" {
			if err == nil || !strings.Contains(err.Error(), tt.err) || !strings.Contains(err.Error(), "scrub_share") {
				t.Errorf("ParseScrubShare(%q) = %+v, %v; want an error about scrub_share mentioning %q", tt.in, got, err, tt.err)
			}
			continue
		}
		if err != nil || got != tt.want || got.Of(1000) != tt.bytes {
			t.Errorf("ParseScrubShare(%q) = %+v (%d of 1000), %v; want %+v (%d)", tt.in, got, got.Of(1000), err, tt.want, tt.bytes)
		}
	}
	if (ScrubShare{}).Of(1000) != 0 || !(ScrubShare{}).IsZero() {
		t.Error("the zero share is not the default")
	}
}

// TestScrubKnobs: the knobs parse in a file, default when left out (an
// existing config stays valid), and a bad value names its line.
func TestScrubKnobs(t *testing.T) {
	app := func(body string) []byte {
		return []byte(strings.Replace(issueExample, `appliance { name = "holdfast-01" }`, "appliance {\n  name = \"holdfast-01\"\n"+body+"}", 1))
	}
	f, err := Parse("cfg.hcl", []byte(issueExample))
	if err != nil {
		t.Fatal(err)
	}
	if f.Appliance.ScrubRate != DefaultScrubRate || !f.Appliance.ScrubShare.IsZero() {
		t.Errorf("defaults: rate %d share %+v", f.Appliance.ScrubRate, f.Appliance.ScrubShare)
	}
	f, err = Parse("cfg.hcl", app("  scrub = \"every 30d\"\n  scrub_rate = \"50MiB/s\"\n  scrub_share = \"5%\"\n"))
	if err != nil {
		t.Fatal(err)
	}
	if f.Appliance.Scrub.Every.Hours() != 30*24 || f.Appliance.ScrubRate != 50<<20 || f.Appliance.ScrubShare.Percent != 5 {
		t.Errorf("got %+v", f.Appliance)
	}
	f, err = Parse("cfg.hcl", app("  scrub_rate = \"unlimited\"\n"))
	if err != nil || f.Appliance.ScrubRate != 0 {
		t.Errorf("unlimited: %v %+v", err, f)
	}
	for _, tt := range []struct{ body, field string }{
		{"  scrub_rate = \"50MiB\"\n", "scrub_rate"},
		{"  scrub_share = \"half\"\n", "scrub_share"},
	} {
		_, err := Parse("cfg.hcl", app(tt.body))
		if err == nil || !strings.Contains(err.Error(), "cfg.hcl:3") || !strings.Contains(err.Error(), tt.field) {
			t.Errorf("%q: error %v; want one naming cfg.hcl:3 and %s", tt.body, err, tt.field)
		}
	}
}

// TestDocApplianceTable: the appliance table of docs/config.md names
// every attribute the appliance block accepts, and no other.
func TestDocApplianceTable(t *testing.T) {
	raw, err := os.ReadFile(filepath.Join("..", "..", "docs", "config.md"))
	if err != nil {
		t.Fatal(err)
	}
	_, sec, ok := strings.Cut(string(raw), "### `appliance { ... }`")
	if !ok {
		t.Fatal("docs/config.md has no appliance section")
	}
	i := strings.Index(sec, "\n|")
	if i < 0 {
		t.Fatal("the appliance section of docs/config.md has no table")
	}
	sec, _, _ = strings.Cut(sec[i+1:], "\n\n")
	var documented []string
	for _, m := range regexp.MustCompile("(?m)^\\| `([a-z_]+)` \\|").FindAllStringSubmatch(sec, -1) {
		documented = append(documented, m[1])
	}
	var accepted []string
	rt := reflect.TypeOf(applianceHCL{})
	for i := range rt.NumField() {
		name, _, _ := strings.Cut(rt.Field(i).Tag.Get("hcl"), ",")
		if name != "" {
			accepted = append(accepted, name)
		}
	}
	if !reflect.DeepEqual(documented, accepted) {
		t.Errorf("docs/config.md documents the appliance fields %q; the parser accepts %q (same order)", documented, accepted)
	}
}
