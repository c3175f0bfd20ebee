package config

import (
	"bytes"
	"crypto/x509"
	"fmt"
	"net"
	"net/mail"
	"net/url"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/hashicorp/hcl/v2"
)

// Alert defaults and bounds.
const (
	// DefaultRateLimitCount alerts of one kind and source are sent per
	// DefaultRateLimitWindow; the rest are folded into one summary.
	DefaultRateLimitCount  = 5
	DefaultRateLimitWindow = time.Hour
	// MaxRateLimitCount bounds the count of rate_limit.
	MaxRateLimitCount = 1000
	// MinRateLimitWindow and MaxRateLimitWindow bound its window.
	MinRateLimitWindow = time.Minute
	MaxRateLimitWindow = 7 * 24 * time.Hour
	// MaxAlertRecipients bounds smtp.to.
	MaxAlertRecipients = 32
	// MinWebhookSecret is the shortest webhook secret (bytes) accepted: a
	// shorter one could be guessed from a signed body.
	MinWebhookSecret = 16
)

// Alerts says where alerts go besides the log (which always gets them).
// At least one of SMTP and Webhook is set.
type Alerts struct {
	SMTP      *SMTP    // nil: no mail
	Webhook   *Webhook // nil: no webhook
	RateLimit RateLimit
}

// SMTP is the mail relay alerts are sent through. The connection always
// upgrades with STARTTLS before anything but EHLO is sent.
type SMTP struct {
	Server   string   // host:port of the relay (587, the submission port, as a rule)
	From     string   // the sender, "addr@example.com" or "Name <addr@example.com>"
	To       []string // one or more recipients, in the same forms
	Username string   // AUTH PLAIN when set
	Password Secret
	// CABundle is the path of a PEM file of CA certificates to trust for
	// the relay instead of the system roots; CAPEM is its content.
	CABundle string
	CAPEM    []byte
}

// Webhook is an HTTPS endpoint alerts are POSTed to as JSON.
type Webhook struct {
	// URL is https only. Its path and query may hold a token, so it is
	// never printed whole: Redacted gives scheme and host only.
	URL string
	// Secret, when set, keys an HMAC-SHA256 of each body sent in a header.
	Secret Secret
	// BearerToken, when set, is sent as "Authorization: Bearer TOKEN".
	BearerToken Secret
	CABundle    string
	CAPEM       []byte
}

// Redacted returns the webhook URL with its path, query and fragment
// replaced by "/...", for logs and errors.
func (w Webhook) Redacted() string { return RedactURL(w.URL) }

// RedactURL returns scheme://host/... for a URL whose path or query may
// hold a token, or "(invalid URL)".
func RedactURL(raw string) string {
	u, err := url.Parse(raw)
	if err != nil || u.Host == "" {
		return "(invalid URL)"
	}
	s := u.Scheme + "://" + u.Host
	if u.Path != "" && u.Path != "/" || u.RawQuery != "" {
		s += "/..."
	}
	return s
}

// RateLimit allows Count alerts of one kind and source per Window.
type RateLimit struct {
	Count  int
	Window time.Duration
}

// String gives the limit back in config syntax.
func (r RateLimit) String() string {
	return fmt.Sprintf("%d per %s", r.Count, formatWindow(r.Window))
}

func formatWindow(d time.Duration) string {
	if d >= 24*time.Hour && d%(24*time.Hour) == 0 {
		return fmt.Sprintf("%dd", d/(24*time.Hour))
	}
	return d.String()
}

// --- HCL shapes -------------------------------------------------------------

type alertsHCL struct {
	SMTP      *smtpHCL    `hcl:"smtp,block"`
	Webhook   *webhookHCL `hcl:"webhook,block"`
	RateLimit *string     `hcl:"rate_limit,optional"`
	DefRange  hcl.Range   `hcl:",def_range"`
	Body      hcl.Body    `hcl:",body"`
}

type smtpHCL struct {
	Server   string   `hcl:"server"`
	From     string   `hcl:"from"`
	To       []string `hcl:"to"`
	Username *string  `hcl:"username,optional"`
	Password *string  `hcl:"password,optional"`
	CABundle *string  `hcl:"ca_bundle,optional"`
	Body     hcl.Body `hcl:",body"`
}

type webhookHCL struct {
	URL         string   `hcl:"url"`
	Secret      *string  `hcl:"secret,optional"`
	BearerToken *string  `hcl:"bearer_token,optional"`
	CABundle    *string  `hcl:"ca_bundle,optional"`
	Body        hcl.Body `hcl:",body"`
}

func (v *validator) alerts(r *alertsHCL) *Alerts {
	out := &Alerts{RateLimit: RateLimit{Count: DefaultRateLimitCount, Window: DefaultRateLimitWindow}}
	if r.SMTP == nil && r.Webhook == nil {
		v.diags = append(v.diags, &hcl.Diagnostic{
			Severity: hcl.DiagError, Summary: "Alerts block without a sender",
			Detail:  "the alerts block needs an smtp { ... } block, a webhook { ... } block or both; without an alerts block alerts go to the log only",
			Subject: r.DefRange.Ptr(),
		})
	}
	if r.SMTP != nil {
		out.SMTP = v.smtp(r.SMTP)
	}
	if r.Webhook != nil {
		out.Webhook = v.webhook(r.Webhook)
	}
	if r.RateLimit != nil {
		rl, err := ParseRateLimit(*r.RateLimit)
		if err != nil {
			v.errf(r.Body, "rate_limit", `Invalid value for "rate_limit"`, "alerts: %v", err)
		} else {
			out.RateLimit = rl
		}
	}
	return out
}

func (v *validator) smtp(r *smtpHCL) *SMTP {
	s := &SMTP{Server: r.Server, From: r.From, To: r.To}
	if err := checkSMTPServer(r.Server); err != nil {
		v.errf(r.Body, "server", `Invalid value for "server"`, "alerts.smtp: %v", err)
	}
	if err := CheckMailAddress(r.From); err != nil {
		v.errf(r.Body, "from", `Invalid value for "from"`, "alerts.smtp: from: %v", err)
	}
	switch {
	case len(r.To) == 0:
		v.errf(r.Body, "to", `Invalid value for "to"`, "alerts.smtp: to names no recipient; want at least one address, e.g. to = [\"ops@example.com\"]")
	case len(r.To) > MaxAlertRecipients:
		v.errf(r.Body, "to", `Invalid value for "to"`, "alerts.smtp: to names %d recipients; at most %d (use a list address)", len(r.To), MaxAlertRecipients)
	}
	seen := map[string]bool{}
	for i, to := range r.To {
		if err := CheckMailAddress(to); err != nil {
			v.errf(r.Body, "to", `Invalid value for "to"`, "alerts.smtp: to[%d]: %v", i, err)
			continue
		}
		a, _ := mail.ParseAddress(to)
		key := strings.ToLower(a.Address)
		if seen[key] {
			v.errf(r.Body, "to", `Invalid value for "to"`, "alerts.smtp: to[%d]: %s is listed twice", i, a.Address)
		}
		seen[key] = true
	}
	if r.Username != nil {
		s.Username = *r.Username
		if s.Username == "" || !printableASCII(s.Username, true) {
			v.errf(r.Body, "username", `Invalid value for "username"`, "alerts.smtp: username must be non-empty printable text; leave it out to send without AUTH")
		}
	}
	if r.Password != nil {
		s.Password = Secret(*r.Password)
	}
	switch {
	case s.Username != "" && s.Password == "":
		v.errf(r.Body, "password", `Invalid value for "password"`, "alerts.smtp: username %q is set but password is empty or missing", s.Username)
	case s.Username == "" && r.Username == nil && s.Password != "":
		v.errf(r.Body, "password", `Invalid value for "password"`, "alerts.smtp: password is set without a username")
	case strings.ContainsAny(string(s.Password), "\x00\r\n"):
		// Never echo the password, not even in an error.
		v.errf(r.Body, "password", `Invalid value for "password"`, "alerts.smtp: password holds a NUL or line break")
	}
	s.CABundle, s.CAPEM = v.caBundle(r.Body, "alerts.smtp", r.CABundle)
	return s
}

func (v *validator) webhook(r *webhookHCL) *Webhook {
	w := &Webhook{URL: r.URL}
	if err := CheckWebhookURL(r.URL); err != nil {
		v.errf(r.Body, "url", `Invalid value for "url"`, "alerts.webhook: %v", err)
	}
	if r.Secret != nil {
		w.Secret = Secret(*r.Secret)
		if len(*r.Secret) < MinWebhookSecret {
			v.errf(r.Body, "secret", `Invalid value for "secret"`, "alerts.webhook: secret is %d bytes; want at least %d (e.g. 32 random hex digits)", len(*r.Secret), MinWebhookSecret)
		}
	}
	if r.BearerToken != nil {
		w.BearerToken = Secret(*r.BearerToken)
		if *r.BearerToken == "" || !printableASCII(*r.BearerToken, false) {
			v.errf(r.Body, "bearer_token", `Invalid value for "bearer_token"`, "alerts.webhook: bearer_token must be non-empty printable ASCII without spaces")
		}
	}
	w.CABundle, w.CAPEM = v.caBundle(r.Body, "alerts.webhook", r.CABundle)
	return w
}

// caBundle reads and checks the ca_bundle attribute of body (nil or empty:
// none), returning its absolute path and its content.
func (v *validator) caBundle(body hcl.Body, where string, in *string) (string, []byte) {
	if in == nil || *in == "" {
		return "", nil
	}
	p := *in
	if !filepath.IsAbs(p) {
		p = filepath.Join(v.dir, p)
	}
	pem, err := readCABundle(p)
	switch {
	case err != nil:
		v.errf(body, "ca_bundle", `Invalid value for "ca_bundle"`, "%s: %v", where, err)
	case !x509.NewCertPool().AppendCertsFromPEM(pem):
		v.errf(body, "ca_bundle", `Invalid value for "ca_bundle"`, "%s: %s holds no PEM certificate", where, p)
	default:
		return p, bytes.Clone(pem)
	}
	return p, nil
}

// printableASCII reports whether s is printable ASCII (spaces allowed only
// when spaces is set).
func printableASCII(s string, spaces bool) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c < 0x20 || c > 0x7e || c == ' ' && !spaces {
			return false
		}
	}
	return true
}

// checkSMTPServer accepts host:port with an explicit port, refusing 465
// (implicit TLS, which the STARTTLS-only client does not speak).
func checkSMTPServer(s string) error {
	if err := checkEndpoint(s); err != nil {
		return fmt.Errorf("server: %w", err)
	}
	_, port, err := net.SplitHostPort(s)
	if err != nil || port == "" {
		return fmt.Errorf("server %q: want host:port, e.g. mail.example.com:587", s)
	}
	if port == "465" {
		return fmt.Errorf("server %q: port 465 is implicit TLS (SMTPS); alerts use STARTTLS, usually on the submission port 587", s)
	}
	return nil
}

// CheckMailAddress accepts one RFC 5322 address ("a@example.com" or
// "Name <a@example.com>") whose address part is ASCII.
func CheckMailAddress(s string) error {
	if s == "" {
		return fmt.Errorf("address is empty")
	}
	if len(s) > 320 {
		return fmt.Errorf("address is %d bytes long; at most 320", len(s))
	}
	for _, c := range s {
		if c < 0x20 || c == 0x7f {
			return fmt.Errorf("address %q holds a control character", s)
		}
	}
	a, err := mail.ParseAddress(s)
	if err != nil {
		return fmt.Errorf("address %q: %v", s, err)
	}
	if !printableASCII(a.Address, false) {
		return fmt.Errorf("address %q: the part in <> must be ASCII without spaces", s)
	}
	if i := strings.LastIndexByte(a.Address, '@'); i < 1 || i == len(a.Address)-1 {
		return fmt.Errorf("address %q: want local@domain", s)
	}
	return nil
}

// CheckWebhookURL accepts an absolute https:// URL with a host and no user
// information or fragment. Errors never repeat the URL's path or query,
// which may hold a token.
func CheckWebhookURL(raw string) error {
	if raw == "" {
		return fmt.Errorf("url is empty; want https://host/path")
	}
	for _, c := range raw {
		if c <= 0x20 || c == 0x7f {
			return fmt.Errorf("url holds a space or control character")
		}
	}
	u, err := url.Parse(raw)
	if err != nil {
		return fmt.Errorf("url does not parse (want https://host/path)")
	}
	switch {
	case u.Scheme != "https":
		return fmt.Errorf("url scheme %q refused: alerts go over https:// only", u.Scheme)
	case u.Opaque != "" || u.Host == "":
		return fmt.Errorf("url has no host; want https://host/path")
	case u.User != nil:
		return fmt.Errorf("url holds user information; use bearer_token or secret instead")
	case u.Fragment != "" || strings.Contains(raw, "#"):
		return fmt.Errorf("url has a fragment (#...), which is never sent")
	}
	if p := u.Port(); p != "" {
		n, err := strconv.Atoi(p)
		if err != nil || n < 1 || n > 65535 {
			return fmt.Errorf("url port %q: want 1 to 65535", p)
		}
	}
	if u.Hostname() == "" {
		return fmt.Errorf("url has no host; want https://host/path")
	}
	return nil
}

// ParseRateLimit parses "<count> per <window>", e.g. "5 per 1h": at most
// count alerts of one kind and source per window. The window is one or more
// terms with units d (24h), h, m (minutes) and s, from 1m to 7d; the count
// is 1 to MaxRateLimitCount.
func ParseRateLimit(s string) (RateLimit, error) {
	n, w, ok := strings.Cut(strings.TrimSpace(s), " per ")
	if !ok {
		return RateLimit{}, fmt.Errorf("rate limit %q: want \"<count> per <window>\", e.g. \"5 per 1h\"", s)
	}
	count, err := strconv.Atoi(strings.TrimSpace(n))
	if err != nil || count < 1 || count > MaxRateLimitCount {
		return RateLimit{}, fmt.Errorf("rate limit %q: count %q: want 1 to %d", s, strings.TrimSpace(n), MaxRateLimitCount)
	}
	w = strings.TrimSpace(w)
	var window time.Duration
	if days, after, found := strings.Cut(w, "d"); found {
		d, err := strconv.Atoi(days)
		if err != nil || d < 0 || d > 7 {
			return RateLimit{}, fmt.Errorf("rate limit %q: days %q: want 0 to 7", s, days)
		}
		window = time.Duration(d) * 24 * time.Hour
		w = after
	}
	if w != "" {
		d, err := time.ParseDuration(w)
		if err != nil || d < 0 {
			return RateLimit{}, fmt.Errorf("rate limit %q: window: want terms such as 1d, 1h, 30m", s)
		}
		window += d
	}
	if window < MinRateLimitWindow || window > MaxRateLimitWindow {
		return RateLimit{}, fmt.Errorf("rate limit %q: window %s: want %s to %s", s, window, MinRateLimitWindow, formatWindow(MaxRateLimitWindow))
	}
	return RateLimit{Count: count, Window: window}, nil
}
