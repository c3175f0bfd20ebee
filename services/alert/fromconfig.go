package alert

import (
	"crypto/x509"
	"errors"
	"fmt"

	"github.com/hashicorp/go-hclog"

	"github.com/holdfast-appliance/holdfast/services/config"
)

// NewSenders returns the senders an alerts block configures: SMTP first,
// then the webhook. appliance (the appliance's name) is given in EHLO.
func NewSenders(a *config.Alerts, appliance string) ([]Sender, error) {
	if a == nil {
		return nil, errors.New("alerts: the configuration has no alerts block")
	}
	var out []Sender
	if c := a.SMTP; c != nil {
		pool, err := certPool(c.CAPEM)
		if err != nil {
			return nil, fmt.Errorf("alerts.smtp: ca_bundle %s: %w", c.CABundle, err)
		}
		s, err := NewSMTP(SMTPConfig{
			Server: c.Server, From: c.From, To: c.To,
			Username: c.Username, Password: c.Password.Reveal(),
			RootCAs: pool, HeloName: appliance,
		})
		if err != nil {
			return nil, fmt.Errorf("alerts: %w", err)
		}
		out = append(out, s)
	}
	if c := a.Webhook; c != nil {
		pool, err := certPool(c.CAPEM)
		if err != nil {
			return nil, fmt.Errorf("alerts.webhook: ca_bundle %s: %w", c.CABundle, err)
		}
		w, err := NewWebhook(WebhookConfig{
			URL: c.URL, Secret: c.Secret.Reveal(), BearerToken: c.BearerToken.Reveal(), RootCAs: pool,
		})
		if err != nil {
			return nil, fmt.Errorf("alerts: %w", err)
		}
		out = append(out, w)
	}
	if len(out) == 0 {
		return nil, errors.New("alerts: the alerts block names no sender")
	}
	return out, nil
}

// FromConfig starts a Dispatcher for f's alerts block with the default
// retry settings. The caller must Close it.
func FromConfig(f *config.File, log hclog.Logger) (*Dispatcher, error) {
	senders, err := NewSenders(f.Alerts, f.Appliance.Name)
	if err != nil {
		return nil, err
	}
	return New(Options{
		Appliance: f.Appliance.Name,
		Log:       log,
		Senders:   senders,
		RateLimit: f.Alerts.RateLimit.Count,
		Window:    f.Alerts.RateLimit.Window,
	}), nil
}

// certPool returns the pool of the PEM certificates, or nil (the system
// roots) when there are none.
func certPool(pem []byte) (*x509.CertPool, error) {
	if len(pem) == 0 {
		return nil, nil
	}
	p := x509.NewCertPool()
	if !p.AppendCertsFromPEM(pem) {
		return nil, errors.New("holds no PEM certificate")
	}
	return p, nil
}
