package config

import (
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"
)

// FuzzParse feeds arbitrary text to Parse, in the native HCL syntax or (json
// set) the JSON syntax. Properties: Parse never panics, and a file it
// accepts holds every invariant the validator promises (checkInvariants).
//
// ca_bundle reads a file; relative names resolve in a scratch directory
// holding a valid and a junk PEM file, so the fuzzer can reach both
// outcomes.
func FuzzParse(f *testing.F) {
	dir := f.TempDir()
	writeCA(f, filepath.Join(dir, "ca.pem"))
	if err := os.WriteFile(filepath.Join(dir, "junk.pem"), []byte("not a cert"), 0o600); err != nil {
		f.Fatal(err)
	}
	seeds := []string{
		issueExample,
		fullExample,
		"appliance { name = \"hf\" }\n",
		"appliance {",
		"",
		`source "a" {
  s3 {
    endpoint = "[::1]:9000"
    bucket = "bkt"
    access_key = "a"
    secret_key = "b"
    ca_bundle = "junk.pem"
  }
  schedule = "every 0d300s"
  retention { forever = true }
}
appliance { name = "x" }
`,
		// A CA bundle that is not a regular file: reading it must neither
		// hang nor allocate without bound.
		strings.Replace(issueExample, `tls        = true`, "tls = true\n    ca_bundle = \"/dev/zero\"", 1),
		issueExample + `alerts {
  smtp {
    server    = "mail.example.com:587"
    from      = "Holdfast <hf@example.com>"
    to        = ["ops@example.com", "b@example.org"]
    username  = "hf"
    password  = "pw"
    ca_bundle = "ca.pem"
  }
  webhook {
    url          = "https://hooks.example.com:8443/x?y=z"
    secret       = "0123456789abcdef"
    bearer_token = "t"
    ca_bundle    = "junk.pem"
  }
  rate_limit = "5 per 1d1h"
}
`,
	}
	for _, s := range docExamples(f) {
		seeds = append(seeds, s)
	}
	for _, s := range seeds {
		f.Add(s, false)
	}
	f.Add(`{"appliance": {"name": "hf"}, "source": {"s": {"s3": {"endpoint": "h", "bucket": "bkt", "access_key": "a", "secret_key": "b"}, "schedule": "every 1d", "retention": {"all_for": "1y6m"}, "parallel": 64}}}`, true)
	f.Add(`{"appliance": [{"name": "hf"}, {"name": "hg"}], "source": []}`, true)
	f.Add(issueExample+`target "t" {
  s3 {
    endpoint   = "h:9000"
    bucket     = "bkt"
    prefix     = "r/"
    access_key = "a"
    secret_key = "b"
    ca_bundle  = "ca.pem"
  }
}
target "t" { s3 { } }
`, false)

	f.Fuzz(func(t *testing.T, src string, json bool) {
		name := filepath.Join(dir, "cfg.hcl")
		if json {
			name = filepath.Join(dir, "cfg.json")
		}
		cfg, err := Parse(name, []byte(src))
		if err != nil {
			if cfg != nil {
				t.Fatalf("Parse returned both a config and an error: %v", err)
			}
			return
		}
		if err := checkInvariants(cfg, name); err != nil {
			t.Fatalf("accepted config breaks an invariant: %v\n%s", err, src)
		}
	})
}

// docExamples returns the ```hcl blocks of docs/config.md.
func docExamples(tb testing.TB) []string {
	raw, err := os.ReadFile(filepath.Join("..", "..", "docs", "config.md"))
	if err != nil {
		tb.Fatalf("read docs/config.md: %v", err)
	}
	var out []string
	for _, m := range regexp.MustCompile("(?s)```hcl\n(.*?)```").FindAllStringSubmatch(string(raw), -1) {
		out = append(out, m[1])
	}
	if len(out) == 0 {
		tb.Fatal("docs/config.md holds no ```hcl example")
	}
	return out
}

// fullExample sets every field (CA bundle relative to the config file).
const fullExample = `appliance { name = "holdfast-01" }
source "mail-archive" {
  s3 {
    endpoint       = "10.0.0.5:9000"
    bucket         = "mail"
    prefix         = "2024/"
    region         = "eu-west-1"
    access_key     = "READONLY"
    secret_key     = "s3cr3t-value"
    tls            = true
    ca_bundle      = "ca.pem"
    check_etag_md5 = false
  }
  schedule = "every 1d12h"
  parallel = 8
  retries  = 3
  retention {
    all_for    = "14d"
    daily_for  = "90d"
    weekly_for = "6m"
    monthly_for = "2y"
    yearly_for = "10y"
  }
  limits {
    max_object_size      = "5GiB"
    max_objects_per_pull = 1000000
    quota                = "2TB"
  }
  mass_change_threshold     = 0.5
  legal_hold_on_mass_change = false
}
source "other" {
  s3 {
    endpoint   = "minio"
    bucket     = "b.c-d"
    access_key = "a"
    secret_key = "b"
    tls        = false
  }
  schedule = "every 30m"
}
`

// checkInvariants checks what Parse promises about a file it accepts (see
// docs/config.md): every value in range, names well formed and unique, and
// schedules and periods that print back to themselves.
func checkInvariants(f *File, path string) error {
	if f.Path != path {
		return fmt.Errorf("path %q, want %q", f.Path, path)
	}
	if !sourceNameRE.MatchString(f.Appliance.Name) {
		return fmt.Errorf("appliance name %q", f.Appliance.Name)
	}
	if len(f.Sources) == 0 {
		return errors.New("no source")
	}
	names := map[string]bool{}
	for _, s := range f.Sources {
		if err := checkSource(s); err != nil {
			return fmt.Errorf("source %q: %w", s.Name, err)
		}
		if names[s.Name] {
			return fmt.Errorf("source %q twice", s.Name)
		}
		names[s.Name] = true
		if got, ok := f.Source(s.Name); !ok || got.Name != s.Name {
			return fmt.Errorf("Source(%q) does not find it", s.Name)
		}
	}
	if f.Alerts != nil {
		if err := checkAlerts(f.Alerts); err != nil {
			return fmt.Errorf("alerts: %w", err)
		}
	}
	targets := map[string]bool{}
	for _, tg := range f.Targets {
		// A target's s3 block is held to a source's rules.
		if err := checkSource(Source{Name: tg.Name, S3: tg.S3, Schedule: Schedule{Every: MinScheduleInterval}, Parallel: 1,
			MassChangeThreshold: 1, Limits: Limits{MaxObjectSize: 1, MaxObjectsPerPull: 1, Quota: 1}, Retention: Retention{Forever: true}}); err != nil {
			return fmt.Errorf("target %q: %w", tg.Name, err)
		}
		if targets[tg.Name] || tg.S3.CheckETagMD5 {
			return fmt.Errorf("target %q twice, or with an ETag check", tg.Name)
		}
		targets[tg.Name] = true
		if got, ok := f.Target(tg.Name); !ok || got.Name != tg.Name {
			return fmt.Errorf("Target(%q) does not find it", tg.Name)
		}
	}
	return nil
}

// checkAlerts: at least one sender; SMTP has a host:port that is not 465,
// valid addresses, at least one and at most MaxAlertRecipients recipients,
// and a password exactly when it has a username; the webhook URL is
// https; every CA bundle read holds a certificate; the rate limit is in
// range and reads back from its String.
func checkAlerts(a *Alerts) error {
	if a.SMTP == nil && a.Webhook == nil {
		return errors.New("no sender")
	}
	if s := a.SMTP; s != nil {
		if checkSMTPServer(s.Server) != nil || CheckMailAddress(s.From) != nil ||
			len(s.To) == 0 || len(s.To) > MaxAlertRecipients {
			return fmt.Errorf("smtp %+v", *s)
		}
		for _, to := range s.To {
			if err := CheckMailAddress(to); err != nil {
				return fmt.Errorf("smtp to: %w", err)
			}
		}
		if (s.Username == "") != (s.Password == "") || s.Password.String() != "" && s.Password.String() != "REDACTED" {
			return fmt.Errorf("smtp username %q with password set=%v", s.Username, s.Password != "")
		}
		if s.CABundle == "" && s.CAPEM != nil || s.CABundle != "" && len(s.CAPEM) == 0 {
			return fmt.Errorf("smtp ca bundle %q with %d bytes", s.CABundle, len(s.CAPEM))
		}
	}
	if w := a.Webhook; w != nil {
		if err := CheckWebhookURL(w.URL); err != nil {
			return fmt.Errorf("webhook url: %w", err)
		}
		if w.Secret != "" && len(w.Secret.Reveal()) < MinWebhookSecret {
			return errors.New("webhook secret too short")
		}
		if w.CABundle == "" && w.CAPEM != nil || w.CABundle != "" && len(w.CAPEM) == 0 {
			return fmt.Errorf("webhook ca bundle %q with %d bytes", w.CABundle, len(w.CAPEM))
		}
	}
	r := a.RateLimit
	if r.Count < 1 || r.Count > MaxRateLimitCount || r.Window < MinRateLimitWindow || r.Window > MaxRateLimitWindow {
		return fmt.Errorf("rate limit %v", r)
	}
	if back, err := ParseRateLimit(r.String()); err != nil || back != r {
		return fmt.Errorf("rate limit %v prints as %q, which reads back as %v, %v", r, r, back, err)
	}
	return nil
}

func checkSource(s Source) error {
	const year = 366 * 24 * time.Hour
	checks := []struct {
		what string
		ok   bool
	}{
		{"name", sourceNameRE.MatchString(s.Name)},
		{"endpoint", checkEndpoint(s.S3.Endpoint) == nil},
		{"bucket", bucketRE.MatchString(s.S3.Bucket) && !strings.Contains(s.S3.Bucket, "..") && net.ParseIP(s.S3.Bucket) == nil},
		{"prefix", len(s.S3.Prefix) <= 1024},
		{"access key", strings.TrimSpace(s.S3.AccessKey) != ""},
		{"secret key", s.S3.SecretKey.Reveal() != "" && s.S3.SecretKey.String() == "REDACTED"},
		{"ca bundle", s.S3.CABundle == "" && s.S3.CAPEM == nil || s.S3.CABundle != "" && s.S3.TLS && len(s.S3.CAPEM) > 0 && len(s.S3.CAPEM) <= maxCABundle},
		{"schedule", s.Schedule.Every >= MinScheduleInterval && s.Schedule.Every <= year},
		{"parallel", s.Parallel >= 1 && s.Parallel <= MaxParallel},
		{"retries", s.Retries >= 0 && s.Retries <= 100},
		{"mass change threshold", s.MassChangeThreshold > 0 && s.MassChangeThreshold <= 1},
		{"max object size", s.Limits.MaxObjectSize > 0},
		{"max objects per pull", s.Limits.MaxObjectsPerPull > 0},
		{"quota", s.Limits.Quota > 0},
	}
	for _, c := range checks {
		if !c.ok {
			return fmt.Errorf("%s: %+v", c.what, s)
		}
	}
	if every, err := ParseSchedule(s.Schedule.String()); err != nil || every != s.Schedule.Every {
		return fmt.Errorf("schedule %s does not read back: %v, %v", s.Schedule, every, err)
	}
	return checkRetention(s.Retention)
}

// checkRetention: forever excludes every period; otherwise at least one
// period is set, each is in range and reads back from its String, and
// RetainUntil lies strictly in the future.
func checkRetention(r Retention) error {
	periods := []Period{r.AllFor, r.DailyFor, r.WeeklyFor, r.MonthlyFor, r.YearlyFor}
	now := time.Date(2025, 3, 30, 1, 30, 0, 0, time.UTC)
	set := 0
	for _, p := range periods {
		if p.IsZero() {
			continue
		}
		set++
		if p.Years < 0 || p.Months < 0 || p.Days < 0 || p.Hours < 0 ||
			p.Years > maxPeriodNumber || p.Months > maxPeriodNumber || p.Days > 8*maxPeriodNumber || p.Hours > maxPeriodNumber {
			return fmt.Errorf("period %+v out of range", p)
		}
		if back, err := ParsePeriod(p.String()); err != nil || back != p {
			return fmt.Errorf("period %+v prints as %q, which reads back as %+v, %v", p, p, back, err)
		}
	}
	until := r.RetainUntil(now, []time.Time{now.Add(-time.Hour), now.AddDate(0, -1, 0)})
	switch {
	case r.Forever && set > 0:
		return fmt.Errorf("forever with %d periods", set)
	case r.Forever && !until.IsZero():
		return fmt.Errorf("forever retains until %s", until)
	case !r.Forever && set == 0:
		return errors.New("no retention period and not forever")
	case !r.Forever && !r.AllFor.IsZero() && !until.After(now):
		return fmt.Errorf("all_for %s retains only until %s", r.AllFor, until)
	case !r.Forever && until.Before(now):
		return fmt.Errorf("retains until %s, before %s", until, now)
	}
	return nil
}
