package ingest

import (
	"context"

	"github.com/hashicorp/go-hclog"
)

// Alert is an event an operator must see: mail and webhook senders wire in
// through Alerter.
type Alert struct {
	Kind    string // "mass-change"
	Source  string
	Message string
	// Snapshot is the new snapshot; Held lists the earlier snapshots put
	// under legal hold because of this alert.
	Snapshot string
	Held     []string
	// Mass-change figures: of Previous live objects, Gone were not listed
	// again and Changed were listed with another size or ETag.
	Previous, Gone, Changed int
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
	l.Log.Error(a.Message, "alert", true, "kind", a.Kind, "source", a.Source, "snapshot", a.Snapshot,
		"previous", a.Previous, "gone", a.Gone, "changed", a.Changed, "held", a.Held)
	return nil
}
