package alert

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/holdfast-appliance/holdfast/services/alertkind"
	"github.com/holdfast-appliance/holdfast/services/ingest"
)

// Kinds of alert (ingest.Alert.Kind), from services/alertkind, the one
// vocabulary. An alert of another kind is still delivered as it is.
const (
	KindPullFailed   = alertkind.PullFailed
	KindMassChange   = alertkind.MassChange
	KindDiskError    = alertkind.DiskError
	KindScrubDamage  = alertkind.ScrubDamage
	KindClockAnomaly = alertkind.ClockAnomaly
	KindSafeMode     = alertkind.SafeMode
	KindDiskFull     = alertkind.DiskFull
	KindAttack       = alertkind.Attack
	KindTest         = alertkind.Test
)

// Kinds lists the kinds above.
func Kinds() []string {
	return []string{KindPullFailed, KindMassChange, KindDiskError, KindScrubDamage,
		KindClockAnomaly, KindSafeMode, KindDiskFull, KindAttack, KindTest}
}

// DiskFullShare is the share of a filesystem in use above which DiskFull
// raises an alert.
const DiskFullShare = 0.85

// DiskFull returns a disk-full alert for the filesystem of path (source
// names the store or disk) when used of total bytes is more than
// DiskFullShare; ok is false below it.
func DiskFull(source, path string, used, total uint64) (a ingest.Alert, ok bool) {
	if total == 0 || float64(used) <= DiskFullShare*float64(total) {
		return ingest.Alert{}, false
	}
	pct := 100 * float64(used) / float64(total)
	return ingest.Alert{
		Kind:    KindDiskFull,
		Source:  source,
		Message: fmt.Sprintf("the filesystem of %s is %.1f%% full (%d of %d bytes used, alert above %.0f%%); pulls will fail when it is full", path, pct, used, total, 100*DiskFullShare),
		Details: map[string]string{
			"path":        path,
			"used_bytes":  fmt.Sprint(used),
			"total_bytes": fmt.Sprint(total),
			"used_pct":    fmt.Sprintf("%.1f", pct),
		},
	}, true
}

// Message is what a Sender delivers: one alert, or (Folded > 0) the
// summary of the alerts the rate limit folded in one window.
type Message struct {
	// ID is unique per message and the same on every attempt, so a
	// receiver can drop a duplicate.
	ID        string
	Appliance string
	// Alert is the alert, with Time set. For a summary it is the last
	// folded alert with Time = WindowEnd and a Message that says what was
	// folded.
	Alert ingest.Alert
	// Folded counts the alerts of Alert.Kind and Alert.Source that were
	// not sent one by one between WindowStart and WindowEnd.
	Folded                 int
	WindowStart, WindowEnd time.Time
}

// normalize fills in an empty ID and a zero alert time.
func (m Message) normalize() Message {
	if m.ID == "" {
		m.ID = newID()
	}
	if m.Alert.Time.IsZero() {
		m.Alert.Time = time.Now()
	}
	return m
}

// Sender delivers messages to one destination.
type Sender interface {
	// Name says which destination ("smtp", "webhook") for logs.
	Name() string
	// Send delivers m once. An error wrapped by Permanent is not retried.
	Send(ctx context.Context, m Message) error
}

// permanentError marks a failure that retrying will not cure.
type permanentError struct{ err error }

func (e permanentError) Error() string { return e.err.Error() }
func (e permanentError) Unwrap() error { return e.err }

// Permanent marks err as not worth retrying (nil stays nil).
func Permanent(err error) error {
	if err == nil || IsPermanent(err) {
		return err
	}
	return permanentError{err}
}

// IsPermanent reports whether err was marked by Permanent.
func IsPermanent(err error) bool {
	var p permanentError
	return errors.As(err, &p)
}

// newID returns a random 128-bit hex ID.
func newID() string {
	var b [16]byte
	_, _ = rand.Read(b[:]) // crypto/rand.Read never fails (Go 1.24+)
	return hex.EncodeToString(b[:])
}

// maxText bounds one text field of an alert in a message: the text may come
// from a hostile source (an error naming an object key).
const maxText = 16 << 10

// cleanText makes s safe to print: valid UTF-8, control characters other
// than newline and tab replaced by U+FFFD (and newline too when oneLine),
// at most max bytes (cut at a rune boundary, with "..." appended).
func cleanText(s string, oneLine bool, max int) string {
	s = strings.ToValidUTF8(s, "\uFFFD")
	var b strings.Builder
	for _, r := range s {
		switch {
		case r == '\n' || r == '\t':
			if oneLine {
				r = ' '
			}
		case r == '\r':
			continue
		case unicode.IsControl(r) || r == '\u2028' || r == '\u2029':
			r = '\uFFFD'
		}
		if b.Len()+utf8.RuneLen(r) > max {
			b.WriteString("...")
			break
		}
		b.WriteRune(r)
	}
	return b.String()
}
