package config

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
)

// issueExample is the example from the issue; it must stay valid.
const issueExample = `appliance { name = "holdfast-01" }
source "mail-archive" {
  s3 {
    endpoint   = "s3.example.internal:9000"
    bucket     = "mail"
    prefix     = ""
    access_key = "READONLY"
    secret_key = "..."
    tls        = true
  }
  schedule = "every 6h"
  retention {
    all_for     = "14d"
    daily_for   = "90d"
    monthly_for = "2y"
  }
}
`

func TestParseIssueExample(t *testing.T) {
	f, err := Parse("cfg.hcl", []byte(issueExample))
	if err != nil {
		t.Fatalf("parse: %v", err)
	}
	if f.Appliance.Name != "holdfast-01" || len(f.Sources) != 1 {
		t.Fatalf("got %+v", f)
	}
	if f.Appliance.Scrub.Every != DefaultScrubEvery {
		t.Errorf("scrub every %s, want the default %s", f.Appliance.Scrub.Every, DefaultScrubEvery)
	}
	g, err := Parse("cfg.hcl", []byte(strings.Replace(issueExample, `appliance { name = "holdfast-01" }`, "appliance {\n  name = \"holdfast-01\"\n  scrub = \"every 1d\"\n}", 1)))
	if err != nil || g.Appliance.Scrub.Every != 24*time.Hour {
		t.Fatalf("scrub = \"every 1d\": %v, %+v", err, g)
	}
	if f.Appliance.Maintenance != DefaultMaintenance || f.Appliance.Maintenance.String() != "weekly sun 03:00" {
		t.Errorf("maintenance %q, want the default weekly sun 03:00", f.Appliance.Maintenance)
	}
	g, err = Parse("cfg.hcl", []byte(strings.Replace(issueExample, `appliance { name = "holdfast-01" }`, "appliance {\n  name = \"holdfast-01\"\n  maintenance = \"daily 04:30\"\n}", 1)))
	if err != nil || g.Appliance.Maintenance != (Maintenance{Daily: true, Hour: 4, Minute: 30}) {
		t.Fatalf("maintenance = \"daily 04:30\": %v, %+v", err, g)
	}
	s := f.Sources[0]
	want := Source{
		Name: "mail-archive",
		S3: S3{Endpoint: "s3.example.internal:9000", Bucket: "mail", AccessKey: "READONLY", SecretKey: "...",
			TLS: true, CheckETagMD5: true},
		Schedule:  Schedule{Every: 6 * time.Hour},
		Retention: Retention{AllFor: Period{Days: 14}, DailyFor: Period{Days: 90}, MonthlyFor: Period{Years: 2}},
		Parallel:  DefaultParallel, Retries: DefaultRetries,
		Limits:              Limits{MaxObjectSize: DefaultMaxObjectSize, MaxObjectsPerPull: DefaultMaxObjectsPerPull, Quota: DefaultQuota},
		MassChangeThreshold: 0.30, LegalHoldOnMassChange: true,
	}
	if fmt.Sprintf("%#v", s) != fmt.Sprintf("%#v", want) || s.S3.SecretKey.Reveal() != "..." {
		t.Fatalf("source:\n got %#v\nwant %#v", s, want)
	}
	if _, ok := f.Source("mail-archive"); !ok {
		t.Fatal("Source(mail-archive) not found")
	}
}

func TestParseFullExample(t *testing.T) {
	dir := t.TempDir()
	writeCA(t, filepath.Join(dir, "ca.pem"))
	src := fullExample
	f, err := Parse(filepath.Join(dir, "cfg.hcl"), []byte(src))
	if err != nil {
		t.Fatalf("parse: %v", err)
	}
	s := f.Sources[0]
	checks := []struct {
		name      string
		got, want any
	}{
		{"prefix", s.S3.Prefix, "2024/"},
		{"region", s.S3.Region, "eu-west-1"},
		{"ca bundle", s.S3.CABundle, filepath.Join(dir, "ca.pem")},
		{"ca pem", len(s.S3.CAPEM) > 0, true},
		{"check etag", s.S3.CheckETagMD5, false},
		{"schedule", s.Schedule.Every, 36 * time.Hour},
		{"parallel", s.Parallel, 8},
		{"retries", s.Retries, 3},
		{"weekly", s.Retention.WeeklyFor, Period{Months: 6}},
		{"yearly", s.Retention.YearlyFor, Period{Years: 10}},
		{"max object", s.Limits.MaxObjectSize, int64(5 << 30)},
		{"max objects", s.Limits.MaxObjectsPerPull, int64(1000000)},
		{"quota", s.Limits.Quota, int64(2e12)},
		{"threshold", s.MassChangeThreshold, 0.5},
		{"hold", s.LegalHoldOnMassChange, false},
		{"other tls", f.Sources[1].S3.TLS, false},
		{"other retention", f.Sources[1].Retention, Retention{Forever: true}},
		{"other schedule", f.Sources[1].Schedule.Every, 30 * time.Minute},
	}
	for _, c := range checks {
		if c.got != c.want {
			t.Errorf("%s = %v, want %v", c.name, c.got, c.want)
		}
	}
}

// TestParseErrors checks that each bad value is refused with an error that
// names the file, the line and the field.
func TestParseErrors(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "junk.pem"), []byte("not a cert"), 0o600); err != nil {
		t.Fatal(err)
	}
	// base has the field under test on line 4 (after substitution).
	base := func(s3extra, srcextra string) string {
		return "appliance { name = \"hf\" }\n" +
			"source \"src\" {\n" +
			"  s3 {\n" +
			s3extra +
			"  }\n" +
			srcextra +
			"}\n"
	}
	good3 := "    endpoint = \"h:9000\"\n    bucket = \"bkt\"\n    access_key = \"a\"\n    secret_key = \"TOPSECRET\"\n"
	sched := "  schedule = \"every 6h\"\n"
	tests := []struct {
		name string
		src  string
		want []string // substrings of the error
	}{
		{"syntax", "appliance {", []string{"cfg.hcl:1"}},
		{"no appliance", "source \"s\" {\n  s3 {\n" + good3 + "  }\n" + sched + "}\n", []string{"cfg.hcl", "appliance"}},
		{"no source", "appliance { name = \"hf\" }\n", []string{"cfg.hcl", "source"}},
		{"unknown field", base(good3+"    colour = \"red\"\n", sched), []string{"cfg.hcl:8", "colour"}},
		{"missing bucket", base("    endpoint = \"h:9000\"\n    access_key = \"a\"\n    secret_key = \"x\"\n", sched), []string{"cfg.hcl", "bucket"}},
		{"scheme in endpoint", base("    endpoint = \"https://h:9000\"\n    bucket = \"bkt\"\n    access_key = \"a\"\n    secret_key = \"x\"\n", sched), []string{"cfg.hcl:4", "endpoint", "scheme"}},
		{"bad port", base("    endpoint = \"h:99999\"\n    bucket = \"bkt\"\n    access_key = \"a\"\n    secret_key = \"x\"\n", sched), []string{"cfg.hcl:4", "endpoint", "port"}},
		{"bad bucket", base("    endpoint = \"h\"\n    bucket = \"Bad_Bucket\"\n    access_key = \"a\"\n    secret_key = \"x\"\n", sched), []string{"cfg.hcl:5", "bucket"}},
		{"empty secret", base("    endpoint = \"h\"\n    bucket = \"bkt\"\n    access_key = \"a\"\n    secret_key = \"\"\n", sched), []string{"cfg.hcl:7", "secret_key"}},
		{"ca missing", base(good3+"    ca_bundle = \"nope.pem\"\n", sched), []string{"cfg.hcl:8", "ca_bundle", "nope.pem"}},
		{"ca junk", base(good3+"    ca_bundle = \"junk.pem\"\n", sched), []string{"cfg.hcl:8", "ca_bundle", "no PEM"}},
		{"schedule word", base(good3, "  schedule = \"hourly\"\n"), []string{"cfg.hcl:9", "schedule"}},
		{"schedule too short", base(good3, "  schedule = \"every 1m\"\n"), []string{"cfg.hcl:9", "schedule", "minimum"}},
		{"schedule missing", base(good3, ""), []string{"cfg.hcl", "schedule"}},
		{"bad period", base(good3, sched+"  retention {\n    all_for = \"14 days\"\n  }\n"), []string{"cfg.hcl:11", "all_for"}},
		{"minutes are not a unit", base(good3, sched+"  retention {\n    daily_for = \"90x\"\n  }\n"), []string{"cfg.hcl:11", "daily_for", "unit"}},
		{"empty retention", base(good3, sched+"  retention {\n  }\n"), []string{"cfg.hcl", "retention period"}},
		{"forever and periods", base(good3, sched+"  retention {\n    forever = true\n    all_for = \"1d\"\n  }\n"), []string{"cfg.hcl:11", "forever"}},
		{"parallel zero", base(good3, sched+"  parallel = 0\n"), []string{"cfg.hcl:10", "parallel"}},
		{"parallel huge", base(good3, sched+"  parallel = 1000\n"), []string{"cfg.hcl:10", "parallel"}},
		{"threshold", base(good3, sched+"  mass_change_threshold = 1.5\n"), []string{"cfg.hcl:10", "mass_change_threshold"}},
		{"threshold zero", base(good3, sched+"  mass_change_threshold = 0\n"), []string{"cfg.hcl:10", "mass_change_threshold"}},
		{"max object size", base(good3, sched+"  limits {\n    max_object_size = \"lots\"\n  }\n"), []string{"cfg.hcl:11", "max_object_size"}},
		{"quota unit", base(good3, sched+"  limits {\n    quota = \"5 parsecs\"\n  }\n"), []string{"cfg.hcl:11", "quota"}},
		{"objects per pull", base(good3, sched+"  limits {\n    max_objects_per_pull = 0\n  }\n"), []string{"cfg.hcl:11", "max_objects_per_pull"}},
		{"wrong type", base(good3, sched+"  parallel = \"many\"\n"), []string{"cfg.hcl:10", "parallel"}},
		{"duplicate source", "appliance { name = \"hf\" }\n" +
			"source \"a\" {\n  s3 {\n" + good3 + "  }\n" + sched + "}\n" +
			"source \"a\" {\n  s3 {\n" + good3 + "  }\n" + sched + "}\n", []string{"cfg.hcl:11", "Duplicate source"}},
		{"scrub word", "appliance {\n  name = \"hf\"\n  scrub = \"weekly\"\n}\nsource \"s\" {\n  s3 {\n" + good3 + "  }\n" + sched + "}\n", []string{"cfg.hcl:3", "scrub"}},
		{"scrub too often", "appliance {\n  name = \"hf\"\n  scrub = \"every 1m\"\n}\nsource \"s\" {\n  s3 {\n" + good3 + "  }\n" + sched + "}\n", []string{"cfg.hcl:3", "scrub", "minimum"}},
		{"maintenance word", "appliance {\n  name = \"hf\"\n  maintenance = \"sundays\"\n}\nsource \"s\" {\n  s3 {\n" + good3 + "  }\n" + sched + "}\n", []string{"cfg.hcl:3", "maintenance", "weekly DAY HH:MM"}},
		{"maintenance hour", "appliance {\n  name = \"hf\"\n  maintenance = \"daily 24:00\"\n}\nsource \"s\" {\n  s3 {\n" + good3 + "  }\n" + sched + "}\n", []string{"cfg.hcl:3", "maintenance", "00:00 to 23:59"}},
		{"bad source name", "appliance { name = \"hf\" }\nsource \"../x\" {\n  s3 {\n" + good3 + "  }\n" + sched + "}\n", []string{"cfg.hcl:2", "source name"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Parse(filepath.Join(dir, "cfg.hcl"), []byte(tt.src))
			if err == nil {
				t.Fatalf("parse succeeded; want an error mentioning %q", tt.want)
			}
			msg := err.Error()
			for _, w := range tt.want {
				if !strings.Contains(msg, w) {
					t.Errorf("error %q does not mention %q", msg, w)
				}
			}
			if strings.Contains(msg, "TOPSECRET") {
				t.Errorf("error leaks the secret: %q", msg)
			}
		})
	}
}

func TestLoadMissingFile(t *testing.T) {
	_, err := Load(filepath.Join(t.TempDir(), "absent.hcl"))
	if err == nil || !strings.Contains(err.Error(), "absent.hcl") {
		t.Fatalf("Load of a missing file: %v", err)
	}
}

// TestSecretNeverPrinted formats a source every way a log line might.
func TestSecretNeverPrinted(t *testing.T) {
	f, err := Parse("cfg.hcl", []byte(strings.Replace(issueExample, `"..."`, `"TOPSECRET"`, 1)))
	if err != nil {
		t.Fatal(err)
	}
	s := f.Sources[0]
	var logs bytes.Buffer
	log := hclog.New(&hclog.LoggerOptions{Output: &logs, JSONFormat: true})
	log.Info("source", "source", s, "s3", s.S3, "secret", s.S3.SecretKey)
	plain := hclog.New(&hclog.LoggerOptions{Output: &logs})
	plain.Info("source", "source", s, "secret", s.S3.SecretKey)
	outs := map[string]string{
		"%v": fmt.Sprintf("%v", s), "%+v": fmt.Sprintf("%+v", s), "%#v": fmt.Sprintf("%#v", s),
		"%s": fmt.Sprintf("%s", s.S3.SecretKey), "hclog": logs.String(),
	}
	for how, out := range outs {
		if strings.Contains(out, "TOPSECRET") {
			t.Errorf("%s prints the secret: %s", how, out)
		}
		if !strings.Contains(out, "REDACTED") {
			t.Errorf("%s does not say REDACTED: %s", how, out)
		}
	}
	if s.S3.SecretKey.Reveal() != "TOPSECRET" {
		t.Errorf("Reveal = %q", s.S3.SecretKey.Reveal())
	}
}

func TestParseSchedule(t *testing.T) {
	tests := []struct {
		in   string
		want time.Duration
		ok   bool
	}{
		{"every 6h", 6 * time.Hour, true},
		{"every 1d", 24 * time.Hour, true},
		{"every 1d6h", 30 * time.Hour, true},
		{"every 90m", 90 * time.Minute, true},
		{" every 2h30m ", 150 * time.Minute, true},
		{"every 4m", 0, false},
		{"every 400d", 0, false},
		{"every", 0, false},
		{"6h", 0, false},
		{"every six hours", 0, false},
		{"every -6h", 0, false},
		{"every 1dd", 0, false},
	}
	for _, tt := range tests {
		got, err := ParseSchedule(tt.in)
		if (err == nil) != tt.ok || got != tt.want {
			t.Errorf("ParseSchedule(%q) = %v, %v; want %v, ok=%v", tt.in, got, err, tt.want, tt.ok)
		}
	}
}

func TestParsePeriod(t *testing.T) {
	tests := []struct {
		in   string
		want Period
		ok   bool
	}{
		{"14d", Period{Days: 14}, true},
		{"90d", Period{Days: 90}, true},
		{"2y", Period{Years: 2}, true},
		{"6m", Period{Months: 6}, true},
		{"2w", Period{Days: 14}, true},
		{"1y6m", Period{Years: 1, Months: 6}, true},
		{"1d12h", Period{Days: 1, Hours: 12}, true},
		{"", Period{}, false},
		{"0d", Period{}, false},
		{"14", Period{}, false},
		{"d", Period{}, false},
		{"1d1d", Period{}, false},
		{"5x", Period{}, false},
		{"-1d", Period{}, false},
		{"99999999999d", Period{}, false},
	}
	for _, tt := range tests {
		got, err := ParsePeriod(tt.in)
		if (err == nil) != tt.ok || got != tt.want {
			t.Errorf("ParsePeriod(%q) = %v, %v; want %v, ok=%v", tt.in, got, err, tt.want, tt.ok)
		}
	}
}

func TestParseSize(t *testing.T) {
	tests := []struct {
		in   string
		want int64
		ok   bool
	}{
		{"1024", 1024, true},
		{"64MiB", 64 << 20, true},
		{"5 GiB", 5 << 30, true},
		{"1.5KiB", 1536, true},
		{"2TB", 2e12, true},
		{"10B", 10, true},
		{"1.5B", 0, false},
		{"", 0, false},
		{"MiB", 0, false},
		{"3 mb", 0, false},
		{"1e30", 0, false},
		{"99999999TiB", 0, false},
	}
	for _, tt := range tests {
		got, err := ParseSize(tt.in)
		if (err == nil) != tt.ok || got != tt.want {
			t.Errorf("ParseSize(%q) = %v, %v; want %v, ok=%v", tt.in, got, err, tt.want, tt.ok)
		}
	}
}

func TestRetainUntil(t *testing.T) {
	pol := Retention{AllFor: Period{Days: 14}, DailyFor: Period{Days: 90}, MonthlyFor: Period{Years: 2}}
	at := func(s string) time.Time {
		v, err := time.Parse(time.RFC3339, s)
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
	now := at("2025-03-10T12:00:00Z")
	tests := []struct {
		name    string
		pol     Retention
		earlier []time.Time
		want    time.Time
	}{
		{"first ever: monthly", pol, nil, at("2027-03-10T12:00:00Z")},
		{"first of month", pol, []time.Time{at("2025-02-28T23:00:00Z")}, at("2027-03-10T12:00:00Z")},
		{"first of day", pol, []time.Time{at("2025-03-09T23:59:59Z")}, at("2025-06-08T12:00:00Z")},
		{"not first of day", pol, []time.Time{at("2025-03-10T06:00:00Z")}, at("2025-03-24T12:00:00Z")},
		{"later snapshots ignored", pol, []time.Time{at("2025-03-10T18:00:00Z")}, at("2027-03-10T12:00:00Z")},
		{"forever", Retention{Forever: true}, nil, time.Time{}},
		{"daily only, second of day", Retention{DailyFor: Period{Days: 7}}, []time.Time{at("2025-03-10T01:00:00Z")}, now},
		{"weekly", Retention{AllFor: Period{Days: 1}, WeeklyFor: Period{Days: 60}},
			[]time.Time{at("2025-03-09T12:00:00Z")}, at("2025-05-09T12:00:00Z")}, // Mar 9 is a Sunday, the week before
		{"yearly", Retention{AllFor: Period{Days: 1}, YearlyFor: Period{Years: 10}},
			[]time.Time{at("2024-12-31T12:00:00Z")}, at("2035-03-10T12:00:00Z")},
	}
	for _, tt := range tests {
		if got := tt.pol.RetainUntil(now, tt.earlier); !got.Equal(tt.want) {
			t.Errorf("%s: RetainUntil = %v, want %v", tt.name, got, tt.want)
		}
	}
}

// writeCA writes a self-signed CA certificate in PEM to path.
func writeCA(t testing.TB, path string) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "test CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
}
