package alert

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"time"

	"github.com/holdfast-appliance/holdfast/services/config"
)

// Webhook request headers.
const (
	// SignatureHeader carries "sha256=" and the hex HMAC-SHA256 of the
	// exact request body under the shared secret.
	SignatureHeader = "X-Holdfast-Signature-256"
	// IDHeader repeats the document's id.
	IDHeader = "X-Holdfast-Alert-Id"
)

// WebhookVersion is the version field of webhookDoc.
const WebhookVersion = 1

// webhookDoc is the JSON document POSTed for each message
// (Content-Type: application/json, UTF-8):
//
//	| field        | type             | meaning                                                        |
//	|--------------|------------------|----------------------------------------------------------------|
//	| version      | number           | 1; fields are only ever added within a version                 |
//	| id           | string           | 32 hex digits, unique per alert, the same on every retry       |
//	| appliance    | string           | the appliance's name (appliance.name in the config)            |
//	| kind         | string           | pull-failed, mass-change, disk-error, scrub-damage,            |
//	|              |                  | clock-anomaly, safe-mode, disk-full, attack or test            |
//	| source       | string           | the source (or disk) concerned; "" when none                   |
//	| time         | string           | when it happened, RFC 3339 in UTC (a summary: its window's end)|
//	| message      | string           | what happened, for a person                                    |
//	| snapshot     | string           | the snapshot concerned; omitted when none                      |
//	| held         | array of strings | earlier snapshots put under legal hold; omitted when none      |
//	| mass_change  | object           | {"previous", "gone", "changed"}: numbers of objects; present   |
//	|              |                  | for mass-change alerts (and whenever one is not zero)          |
//	| details      | object           | further facts, string to string; omitted when none             |
//	| folded       | number           | 0 for an alert; for a rate-limit summary the count of alerts   |
//	|              |                  | of this kind and source not sent one by one (the last of them  |
//	|              |                  | fills the fields above)                                        |
//	| window_start | string           | summary only: when the rate-limit window opened (RFC 3339)     |
//	| window_end   | string           | summary only: when it closed                                   |
//
// With a secret configured, the request carries SignatureHeader:
// "sha256=" + hex(HMAC-SHA256(secret, body)); a receiver recomputes it over
// the raw body, compares in constant time, and may drop ids it has seen.
type webhookDoc struct {
	Version     int               `json:"version"`
	ID          string            `json:"id"`
	Appliance   string            `json:"appliance"`
	Kind        string            `json:"kind"`
	Source      string            `json:"source"`
	Time        string            `json:"time"`
	Message     string            `json:"message"`
	Snapshot    string            `json:"snapshot,omitempty"`
	Held        []string          `json:"held,omitempty"`
	MassChange  *massChangeDoc    `json:"mass_change,omitempty"`
	Details     map[string]string `json:"details,omitempty"`
	Folded      int               `json:"folded"`
	WindowStart string            `json:"window_start,omitempty"`
	WindowEnd   string            `json:"window_end,omitempty"`
}

type massChangeDoc struct {
	Previous int `json:"previous"`
	Gone     int `json:"gone"`
	Changed  int `json:"changed"`
}

// WebhookDocument returns the JSON body sent for m.
func WebhookDocument(m Message) ([]byte, error) {
	m = m.normalize()
	a := m.Alert
	d := webhookDoc{
		Version: WebhookVersion, ID: m.ID, Appliance: m.Appliance,
		Kind: cleanText(a.Kind, true, 200), Source: cleanText(a.Source, true, 1024),
		Time:     a.Time.UTC().Format(time.RFC3339Nano),
		Message:  cleanText(a.Message, false, maxText),
		Snapshot: a.Snapshot, Held: a.Held, Details: a.Details, Folded: m.Folded,
	}
	if a.Kind == KindMassChange || a.Previous != 0 || a.Gone != 0 || a.Changed != 0 {
		d.MassChange = &massChangeDoc{Previous: a.Previous, Gone: a.Gone, Changed: a.Changed}
	}
	if m.Folded > 0 {
		d.WindowStart = m.WindowStart.UTC().Format(time.RFC3339Nano)
		d.WindowEnd = m.WindowEnd.UTC().Format(time.RFC3339Nano)
	}
	b, err := json.Marshal(d)
	if err != nil {
		return nil, fmt.Errorf("encode webhook document: %w", err)
	}
	return b, nil
}

// Sign returns the SignatureHeader value for body under secret.
func Sign(secret, body []byte) string {
	h := hmac.New(sha256.New, secret)
	h.Write(body)
	return "sha256=" + hex.EncodeToString(h.Sum(nil))
}

// WebhookConfig configures a webhook sender.
type WebhookConfig struct {
	URL         string // https:// only
	Secret      string // HMAC key; empty: no signature header
	BearerToken string // empty: no Authorization header
	// RootCAs verifies the receiver's certificate; nil means the system
	// roots.
	RootCAs *x509.CertPool
}

// Webhook POSTs alerts to one HTTPS URL.
type Webhook struct {
	cfg      WebhookConfig
	redacted string
	client   *http.Client
}

// NewWebhook checks cfg (https only) and returns its sender. The client
// never uses a proxy from the environment and never follows a redirect.
func NewWebhook(cfg WebhookConfig) (*Webhook, error) {
	if err := config.CheckWebhookURL(cfg.URL); err != nil {
		return nil, fmt.Errorf("webhook: %w", err)
	}
	tr := &http.Transport{
		Proxy:                  nil, // the appliance connects directly, always
		DialContext:            (&net.Dialer{Timeout: 30 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
		TLSClientConfig:        &tls.Config{RootCAs: cfg.RootCAs, MinVersion: tls.VersionTLS12},
		TLSHandshakeTimeout:    15 * time.Second,
		ForceAttemptHTTP2:      true,
		MaxIdleConns:           2,
		IdleConnTimeout:        90 * time.Second,
		MaxResponseHeaderBytes: 64 << 10,
	}
	return &Webhook{
		cfg:      cfg,
		redacted: config.RedactURL(cfg.URL),
		client: &http.Client{
			Transport: tr,
			// A 3xx comes back as the response and fails the attempt.
			CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
		},
	}, nil
}

// Name returns "webhook".
func (w *Webhook) Name() string { return "webhook" }

// Send POSTs m once. A 2xx reply is success; 408, 425, 429 and 5xx and
// network errors are transient; any other reply, and a certificate the
// client does not trust, are permanent.
func (w *Webhook) Send(ctx context.Context, m Message) error {
	if err := w.send(ctx, m); err != nil {
		return fmt.Errorf("webhook %s: %w", w.redacted, err)
	}
	return nil
}

func (w *Webhook) send(ctx context.Context, m Message) error {
	m = m.normalize()
	body, err := WebhookDocument(m)
	if err != nil {
		return Permanent(err)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, w.cfg.URL, bytes.NewReader(body))
	if err != nil {
		return Permanent(errors.New("cannot build the request (check the url)"))
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", "holdfast-alert/1")
	req.Header.Set(IDHeader, m.ID)
	if w.cfg.Secret != "" {
		req.Header.Set(SignatureHeader, Sign([]byte(w.cfg.Secret), body))
	}
	if w.cfg.BearerToken != "" {
		req.Header.Set("Authorization", "Bearer "+w.cfg.BearerToken)
	}
	resp, err := w.client.Do(req)
	if err != nil {
		var ue *url.Error
		if errors.As(err, &ue) {
			// Name neither the path nor the query: they may hold a token.
			err = fmt.Errorf("POST: %w", ue.Err)
		}
		var unknownCA x509.UnknownAuthorityError
		var hostErr x509.HostnameError
		var invalid x509.CertificateInvalidError
		var verify *tls.CertificateVerificationError
		if errors.As(err, &unknownCA) || errors.As(err, &hostErr) || errors.As(err, &invalid) || errors.As(err, &verify) {
			return Permanent(err)
		}
		return err
	}
	defer resp.Body.Close()
	snippet, _ := io.ReadAll(io.LimitReader(resp.Body, 256))
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	if resp.StatusCode >= 200 && resp.StatusCode < 300 {
		return nil
	}
	err = fmt.Errorf("POST: status %d %s: %q", resp.StatusCode, http.StatusText(resp.StatusCode), cleanText(string(snippet), true, 200))
	switch {
	case resp.StatusCode >= 300 && resp.StatusCode < 400:
		return Permanent(fmt.Errorf("%w: redirects are not followed; give the final URL", err))
	case resp.StatusCode == http.StatusRequestTimeout, resp.StatusCode == http.StatusTooEarly,
		resp.StatusCode == http.StatusTooManyRequests, resp.StatusCode >= 500:
		return err
	default:
		return Permanent(err)
	}
}

// CloseIdleConnections closes the client's idle connections.
func (w *Webhook) CloseIdleConnections() { w.client.CloseIdleConnections() }
