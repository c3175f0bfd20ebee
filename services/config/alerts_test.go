package config

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
)

// alertsBase is a valid file whose alerts block starts on line 11.
const alertsBase = `appliance { name = "holdfast-01" }
source "mail" {
  s3 {
    endpoint   = "s3.example.internal:9000"
    bucket     = "mail"
    access_key = "READONLY"
    secret_key = "x"
  }
  schedule = "every 6h"
}
`

func TestParseAlerts(t *testing.T) {
	dir := t.TempDir()
	writeCA(t, filepath.Join(dir, "ca.pem"))
	tests := []struct {
		name  string
		block string
		check func(t *testing.T, a *Alerts)
	}{
		{"smtp only, defaults", `alerts {
  smtp {
    server = "mail.example.com:587"
    from   = "holdfast@example.com"
    to     = ["ops@example.com"]
  }
}`, func(t *testing.T, a *Alerts) {
			want := SMTP{Server: "mail.example.com:587", From: "holdfast@example.com", To: []string{"ops@example.com"}}
			if a.Webhook != nil || fmt.Sprintf("%#v", *a.SMTP) != fmt.Sprintf("%#v", want) {
				t.Errorf("got %#v / %#v", a.SMTP, a.Webhook)
			}
			if a.RateLimit != (RateLimit{Count: DefaultRateLimitCount, Window: DefaultRateLimitWindow}) {
				t.Errorf("rate limit %v", a.RateLimit)
			}
		}},
		{"everything", `alerts {
  smtp {
    server    = "10.0.0.25:25"
    from      = "Holdfast 01 <holdfast@example.com>"
    to        = ["ops@example.com", "On Call <oncall@example.org>"]
    username  = "holdfast"
    password  = "mail-TOPSECRET"
    ca_bundle = "ca.pem"
  }
  webhook {
    url          = "https://hooks.example.com:8443/services/T0/B0/TOKEN?x=1"
    secret       = "0123456789abcdef0123"
    bearer_token = "tok-TOPSECRET"
    ca_bundle    = "ca.pem"
  }
  rate_limit = "10 per 1d"
}`, func(t *testing.T, a *Alerts) {
			s, w := a.SMTP, a.Webhook
			checks := []struct {
				name      string
				got, want any
			}{
				{"server", s.Server, "10.0.0.25:25"},
				{"from", s.From, "Holdfast 01 <holdfast@example.com>"},
				{"to", strings.Join(s.To, "|"), "ops@example.com|On Call <oncall@example.org>"},
				{"username", s.Username, "holdfast"},
				{"password", s.Password.Reveal(), "mail-TOPSECRET"},
				{"smtp ca", s.CABundle, filepath.Join(dir, "ca.pem")},
				{"smtp ca pem", len(s.CAPEM) > 0, true},
				{"url", w.URL, "https://hooks.example.com:8443/services/T0/B0/TOKEN?x=1"},
				{"redacted", w.Redacted(), "https://hooks.example.com:8443/..."},
				{"secret", w.Secret.Reveal(), "0123456789abcdef0123"},
				{"bearer", w.BearerToken.Reveal(), "tok-TOPSECRET"},
				{"webhook ca pem", len(w.CAPEM) > 0, true},
				{"rate limit", a.RateLimit, RateLimit{Count: 10, Window: 24 * time.Hour}},
				{"rate limit string", a.RateLimit.String(), "10 per 1d"},
			}
			for _, c := range checks {
				if c.got != c.want {
					t.Errorf("%s = %v, want %v", c.name, c.got, c.want)
				}
			}
		}},
		{"webhook only", `alerts {
  webhook { url = "https://hooks.example.com/x" }
  rate_limit = "1 per 90m"
}`, func(t *testing.T, a *Alerts) {
			if a.SMTP != nil || a.Webhook == nil || a.Webhook.Secret != "" || a.Webhook.BearerToken != "" || a.Webhook.CAPEM != nil {
				t.Errorf("got %#v / %#v", a.SMTP, a.Webhook)
			}
			if a.RateLimit != (RateLimit{Count: 1, Window: 90 * time.Minute}) {
				t.Errorf("rate limit %v", a.RateLimit)
			}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f, err := Parse(filepath.Join(dir, "cfg.hcl"), []byte(alertsBase+tt.block+"\n"))
			if err != nil {
				t.Fatalf("parse: %v", err)
			}
			if f.Alerts == nil {
				t.Fatal("no alerts")
			}
			tt.check(t, f.Alerts)
			if err := checkAlerts(f.Alerts); err != nil {
				t.Errorf("invariant: %v", err)
			}
		})
	}
	f, err := Parse("cfg.hcl", []byte(alertsBase))
	if err != nil || f.Alerts != nil {
		t.Errorf("without an alerts block: %v, %+v", err, f)
	}
}

// TestParseAlertsErrors: each bad value is refused with an error naming
// the file, the line and the field, and no secret is ever echoed.
func TestParseAlertsErrors(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "junk.pem"), []byte("not a cert"), 0o600); err != nil {
		t.Fatal(err)
	}
	// smtp returns an alerts block (line 11) whose smtp block has server,
	// from and to on lines 13 to 15, then extra from line 16.
	smtp := func(server, from, to, extra string) string {
		return "alerts {\n  smtp {\n" +
			"    server = " + server + "\n" +
			"    from   = " + from + "\n" +
			"    to     = " + to + "\n" +
			extra +
			"  }\n}\n"
	}
	okSMTP := func(extra string) string {
		return smtp(`"mail.example.com:587"`, `"hf@example.com"`, `["ops@example.com"]`, extra)
	}
	hook := func(body string) string { return "alerts {\n  webhook {\n" + body + "  }\n}\n" }
	const u = "    url = \"https://hooks.example.com/TOKENPATH\"\n"
	tests := []struct {
		name  string
		block string
		want  []string
	}{
		{"no sender", "alerts {\n  rate_limit = \"5 per 1h\"\n}\n", []string{"cfg.hcl:11", "needs an smtp"}},
		{"two alerts blocks", okSMTP("") + okSMTP(""), []string{"cfg.hcl", "alerts"}},
		{"unknown field", okSMTP("    colour = \"red\"\n"), []string{"cfg.hcl:16", "colour"}},
		{"server missing", "alerts {\n  smtp {\n    from = \"a@b.c\"\n    to = [\"a@b.c\"]\n  }\n}\n", []string{"cfg.hcl", "server"}},
		{"server without port", smtp(`"mail.example.com"`, `"hf@example.com"`, `["ops@example.com"]`, ""), []string{"cfg.hcl:13", "server", "host:port"}},
		{"server with scheme", smtp(`"smtp://mail.example.com:587"`, `"hf@example.com"`, `["ops@example.com"]`, ""), []string{"cfg.hcl:13", "server", "scheme"}},
		{"server bad port", smtp(`"mail.example.com:0"`, `"hf@example.com"`, `["ops@example.com"]`, ""), []string{"cfg.hcl:13", "server", "port"}},
		{"smtps port", smtp(`"mail.example.com:465"`, `"hf@example.com"`, `["ops@example.com"]`, ""), []string{"cfg.hcl:13", "465", "STARTTLS"}},
		{"from not an address", smtp(`"mail.example.com:587"`, `"holdfast"`, `["ops@example.com"]`, ""), []string{"cfg.hcl:14", "from"}},
		{"from with a line break", smtp(`"mail.example.com:587"`, `"hf@example.com\nBcc: x@y.z"`, `["ops@example.com"]`, ""), []string{"cfg.hcl:14", "from", "control character"}},
		{"no recipient", smtp(`"mail.example.com:587"`, `"hf@example.com"`, `[]`, ""), []string{"cfg.hcl:15", "to", "at least one"}},
		{"to is a string", smtp(`"mail.example.com:587"`, `"hf@example.com"`, `"ops@example.com"`, ""), []string{"cfg.hcl:15", "to"}},
		{"bad recipient", smtp(`"mail.example.com:587"`, `"hf@example.com"`, `["ops@example.com", "nobody"]`, ""), []string{"cfg.hcl:15", "to[1]"}},
		{"non-ASCII address", smtp(`"mail.example.com:587"`, `"hf@example.com"`, `["öps@example.com"]`, ""), []string{"cfg.hcl:15", "to[0]", "ASCII"}},
		{"duplicate recipient", smtp(`"mail.example.com:587"`, `"hf@example.com"`, `["ops@example.com", "Ops <OPS@example.com>"]`, ""), []string{"cfg.hcl:15", "twice"}},
		{"too many recipients", smtp(`"mail.example.com:587"`, `"hf@example.com"`, manyRecipients(MaxAlertRecipients+1), ""), []string{"cfg.hcl:15", "at most 32"}},
		{"username without password", okSMTP("    username = \"hf\"\n"), []string{"cfg.hcl", "password", "username \"hf\""}},
		{"empty password", okSMTP("    username = \"hf\"\n    password = \"\"\n"), []string{"cfg.hcl:17", "password"}},
		{"password without username", okSMTP("    password = \"TOPSECRET\"\n"), []string{"cfg.hcl:16", "password", "without a username"}},
		{"password with a line break", okSMTP("    username = \"hf\"\n    password = \"TOPSECRET\\r\\nQUIT\"\n"), []string{"cfg.hcl:17", "password", "line break"}},
		{"smtp ca missing", okSMTP("    ca_bundle = \"nope.pem\"\n"), []string{"cfg.hcl:16", "ca_bundle", "nope.pem"}},
		{"smtp ca junk", okSMTP("    ca_bundle = \"junk.pem\"\n"), []string{"cfg.hcl:16", "ca_bundle", "no PEM"}},
		{"http url", hook("    url = \"http://hooks.example.com/TOKENPATH\"\n"), []string{"cfg.hcl:13", "url", `scheme "http" refused`, "https"}},
		{"no scheme", hook("    url = \"hooks.example.com/TOKENPATH\"\n"), []string{"cfg.hcl:13", "url", "https"}},
		{"user in url", hook("    url = \"https://me:TOPSECRET@hooks.example.com/TOKENPATH\"\n"), []string{"cfg.hcl:13", "url", "user information"}},
		{"url fragment", hook("    url = \"https://hooks.example.com/TOKENPATH#x\"\n"), []string{"cfg.hcl:13", "fragment"}},
		{"url port", hook("    url = \"https://hooks.example.com:70000/TOKENPATH\"\n"), []string{"cfg.hcl:13", "port"}},
		{"url missing", hook("    secret = \"0123456789abcdef\"\n"), []string{"cfg.hcl", "url"}},
		{"short secret", hook(u + "    secret = \"TOPSECRET\"\n"), []string{"cfg.hcl:14", "secret", "at least 16"}},
		{"bearer with a space", hook(u + "    bearer_token = \"TOP SECRET\"\n"), []string{"cfg.hcl:14", "bearer_token"}},
		{"webhook ca junk", hook(u + "    ca_bundle = \"junk.pem\"\n"), []string{"cfg.hcl:14", "ca_bundle", "no PEM"}},
		{"rate limit zero", "alerts {\n  rate_limit = \"0 per 1h\"\n" + okSMTP("")[len("alerts {\n"):], []string{"cfg.hcl:12", "rate_limit", "count"}},
		{"rate limit short window", "alerts {\n  rate_limit = \"5 per 10s\"\n" + okSMTP("")[len("alerts {\n"):], []string{"cfg.hcl:12", "rate_limit", "window"}},
		{"rate limit syntax", "alerts {\n  rate_limit = \"5/h\"\n" + okSMTP("")[len("alerts {\n"):], []string{"cfg.hcl:12", "rate_limit", "per"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Parse(filepath.Join(dir, "cfg.hcl"), []byte(alertsBase+tt.block))
			if err == nil {
				t.Fatalf("parse succeeded; want an error mentioning %q", tt.want)
			}
			msg := err.Error()
			for _, w := range tt.want {
				if !strings.Contains(msg, w) {
					t.Errorf("error %q does not mention %q", msg, w)
				}
			}
			for _, secret := range []string{"TOPSECRET", "TOKENPATH"} {
				if strings.Contains(msg, secret) {
					t.Errorf("error leaks %s: %q", secret, msg)
				}
			}
		})
	}
}

func manyRecipients(n int) string {
	var parts []string
	for i := range n {
		parts = append(parts, fmt.Sprintf("%q", fmt.Sprintf("ops%d@example.com", i)))
	}
	return "[" + strings.Join(parts, ", ") + "]"
}

func TestParseRateLimit(t *testing.T) {
	tests := []struct {
		in   string
		want RateLimit
		ok   bool
	}{
		{"5 per 1h", RateLimit{5, time.Hour}, true},
		{" 1 per 1m ", RateLimit{1, time.Minute}, true},
		{"1000 per 7d", RateLimit{1000, 7 * 24 * time.Hour}, true},
		{"3 per 1d12h", RateLimit{3, 36 * time.Hour}, true},
		{"20 per 90m", RateLimit{20, 90 * time.Minute}, true},
		{"0 per 1h", RateLimit{}, false},
		{"1001 per 1h", RateLimit{}, false},
		{"-1 per 1h", RateLimit{}, false},
		{"5 per 59s", RateLimit{}, false},
		{"5 per 8d", RateLimit{}, false},
		{"5 per 7d1h", RateLimit{}, false},
		{"5 per hour", RateLimit{}, false},
		{"5 per", RateLimit{}, false},
		{"5/1h", RateLimit{}, false},
		{"", RateLimit{}, false},
		{"five per 1h", RateLimit{}, false},
	}
	for _, tt := range tests {
		got, err := ParseRateLimit(tt.in)
		if (err == nil) != tt.ok || got != tt.want {
			t.Errorf("ParseRateLimit(%q) = %v, %v; want %v, ok=%v", tt.in, got, err, tt.want, tt.ok)
			continue
		}
		if tt.ok {
			if back, err := ParseRateLimit(got.String()); err != nil || back != got {
				t.Errorf("%v prints as %q, which reads back as %v, %v", got, got, back, err)
			}
		}
	}
}

func TestRedactURL(t *testing.T) {
	tests := []struct{ in, want string }{
		{"https://hooks.example.com/services/T0/B0/TOKEN", "https://hooks.example.com/..."},
		{"https://hooks.example.com/?token=x", "https://hooks.example.com/..."},
		{"https://hooks.example.com", "https://hooks.example.com"},
		{"https://hooks.example.com/", "https://hooks.example.com"},
		{"https://[::1]:8443/x", "https://[::1]:8443/..."},
		{"not a url", "(invalid URL)"},
		{"://", "(invalid URL)"},
	}
	for _, tt := range tests {
		if got := RedactURL(tt.in); got != tt.want {
			t.Errorf("RedactURL(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}

// TestAlertSecretsNeverPrinted formats the alerts block every way a log
// line might.
func TestAlertSecretsNeverPrinted(t *testing.T) {
	src := alertsBase + `alerts {
  smtp {
    server   = "mail.example.com:587"
    from     = "hf@example.com"
    to       = ["ops@example.com"]
    username = "hf"
    password = "PASSWORD-TOPSECRET"
  }
  webhook {
    url          = "https://hooks.example.com/x"
    secret       = "HMAC-KEY-TOPSECRET"
    bearer_token = "BEARER-TOPSECRET"
  }
}
`
	f, err := Parse("cfg.hcl", []byte(src))
	if err != nil {
		t.Fatal(err)
	}
	var logs bytes.Buffer
	log := hclog.New(&hclog.LoggerOptions{Output: &logs, JSONFormat: true})
	log.Info("alerts", "smtp", f.Alerts.SMTP, "webhook", f.Alerts.Webhook, "alerts", f.Alerts)
	outs := map[string]string{
		"%v":    fmt.Sprintf("%v %v", *f.Alerts.SMTP, *f.Alerts.Webhook),
		"%+v":   fmt.Sprintf("%+v %+v", *f.Alerts.SMTP, *f.Alerts.Webhook),
		"%#v":   fmt.Sprintf("%#v %#v", *f.Alerts.SMTP, *f.Alerts.Webhook),
		"hclog": logs.String(),
	}
	for how, out := range outs {
		if strings.Contains(out, "TOPSECRET") {
			t.Errorf("%s prints a secret: %s", how, out)
		}
	}
}

// TestDocAlertsExample: the alerts example in docs/config.md parses (with
// its CA bundle lines dropped, as the files do not exist here).
func TestDocAlertsExample(t *testing.T) {
	var block string
	for _, ex := range docExamples(t) {
		if strings.HasPrefix(strings.TrimSpace(ex), "alerts {") {
			block = ex
		}
	}
	if block == "" {
		t.Fatal("docs/config.md has no ```hcl example starting with alerts {")
	}
	block = regexp.MustCompile(`(?m)^\s*ca_bundle\s*=.*$`).ReplaceAllString(block, "")
	f, err := Parse("cfg.hcl", []byte(alertsBase+block))
	if err != nil {
		t.Fatalf("the documented example does not parse: %v", err)
	}
	if f.Alerts == nil || f.Alerts.SMTP == nil || f.Alerts.Webhook == nil {
		t.Fatalf("the documented example should configure both senders: %+v", f.Alerts)
	}
	if err := checkAlerts(f.Alerts); err != nil {
		t.Error(err)
	}
}
