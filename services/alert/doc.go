// Package alert sends the appliance's alerts out: by mail through an SMTP
// relay and as a signed JSON POST to an HTTPS webhook, besides the log line
// every alert always gets. Everything here is outbound and initiated by the
// appliance: nothing listens (invariant I3).
//
// The Dispatcher is the ingest.Alerter the services use. Alert logs the
// alert (like ingest.LogAlerter), applies the rate limit and puts the alert
// on one bounded in-memory queue per sender, then returns: it never waits
// for the network. One goroutine per sender works through its queue,
// retrying transient failures (network errors, SMTP 4xx, HTTP 408/425/429/5xx)
// with exponential backoff up to a bounded number of attempts; permanent
// failures (a relay without STARTTLS, a refused login or certificate, SMTP
// 5xx, other HTTP 4xx) are not retried. Every alert that is given up is
// logged.
//
// Rate limit: per kind and source, at most Options.RateLimit alerts are sent
// in a window that opens with the first of them; the rest of the window's
// alerts are folded, and when the window ends one summary (Message.Folded)
// carries their count, first and last time and the last one's text. A
// flapping source therefore costs a mailbox at most RateLimit+1 mails per
// window.
//
// Mail: the SMTP sender always upgrades with STARTTLS (TLS 1.2 or later,
// certificate checked against the system roots or the configured CA
// bundle) before it sends anything but EHLO, and refuses a relay that does
// not offer it; AUTH PLAIN is used when a username is configured. The mail
// is plain text (UTF-8, quoted-printable) with every field of the alert.
//
// Webhook: a POST of one JSON document (see webhookDoc for its fields) to
// an https:// URL, never through an environment proxy and never following
// a redirect, with an optional bearer token and an optional HMAC-SHA256 of
// the body (header X-Holdfast-Signature-256: sha256=<hex>) under a shared
// secret, so the receiver can tell the appliance's alerts from forgeries.
//
// Limits: queues live in memory, so alerts still queued when the process
// ends are lost (their log lines are not); delivery is at least once (a
// reply lost after the relay or receiver took the alert means it is sent
// again; the webhook's id and the mail's Message-ID stay the same across
// attempts, so duplicates can be told apart); one relay and one webhook
// URL; mail is neither signed (DKIM, S/MIME) nor encrypted end to end.
package alert
