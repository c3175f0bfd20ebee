package ingest

import (
	"context"
	"time"

	"github.com/hashicorp/go-hclog"
)

// Alert is an event an operator must see: mail and webhook senders wire in
// through Alerter (services/alert, which also names the kinds).
type Alert struct {
	Kind    string // one of services/alertkind ("mass-change", ...)
	Source  string // the source (or disk, ...) it concerns; may be empty
	Message string
	// Snapshot is the new snapshot; Held lists the earlier snapshots put
	// under legal hold because of this alert.
	Snapshot string
	Held     []string
	// Mass-change figures: of Previous live objects, Gone were not listed
	// again and Changed were listed with another size or ETag.
	Previous, Gone, Changed int
	// Time is when it happened; zero means "when the Alerter got it".
	Time time.Time
	// Details holds further facts by name (device, usage, ...), for kinds
	// that have no field of their own.
	Details map[string]string
}

// Alerter delivers alerts.
type Alerter interface {
	Alert(ctx context.Context, a Alert) error
}

// LogAlerter logs each alert at error level with alert=true, so log
// shippers and the console can pick it out.
type LogAlerter struct{ Log hclog.Logger }

// Alert logs a.
func (l LogAlerter) Alert(_ context.Context, a Alert) error {
	args := []any{"alert", true, "kind", a.Kind, "source", a.Source, "snapshot", a.Snapshot,
		"previous", a.Previous, "gone", a.Gone, "changed", a.Changed, "held", a.Held}
	if !a.Time.IsZero() {
		args = append(args, "alert_time", a.Time.UTC().Format(time.RFC3339Nano))
	}
	if len(a.Details) > 0 {
		args = append(args, "details", a.Details)
	}
	l.Log.Error(a.Message, args...)
	return nil
}
