package store

import (
	"errors"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/holdfast-appliance/holdfast/services/store/fsflag"
)

// ErrUnconfirmed means the store does not hold, in sealed data, the
// retention a process said it recorded.
var ErrUnconfirmed = errors.New("retention not confirmed by sealed data")

// ConfirmRetention checks, from sealed data alone, that snapshot id is
// kept at least until until (zero: no date was asked) and, with hold, is
// under legal hold. It counts the sealed manifest's own retention and the
// extension records in retention/ whose files carry FS_IMMUTABLE_FL and
// are authentic: an unsealed record could still be rewritten by the
// process that wrote it, and the manifest's xattrs add nothing the head
// frame does not. PID 1 calls it after the worker reports an extend or a
// hold (invariant I10): the worker's word is not proof. The error wraps
// ErrUnconfirmed and says what the sealed data shows instead.
func (s *Store) ConfirmRetention(id string, until time.Time, hold bool) error {
	m, err := s.SnapshotHead(id)
	if err != nil {
		return fmt.Errorf("confirm retention of %s: %w", id, err)
	}
	if sealed, err := fsflag.Has(s.path(snapshotsDir, id+".snap"), fsflag.Immutable); err != nil || !sealed {
		return fmt.Errorf("confirm retention of %s: manifest not sealed (%v): %w", id, err, ErrUnconfirmed)
	}
	got, err := s.sealedRetention(m)
	if err != nil {
		return fmt.Errorf("confirm retention of %s: %w", id, err)
	}
	short := !until.IsZero() && !got.RetainUntil.IsZero() && got.RetainUntil.Before(until)
	if short || (hold && !got.LegalHold) {
		shows := "kept forever"
		if !got.RetainUntil.IsZero() {
			shows = "kept until " + got.RetainUntil.UTC().Format(time.RFC3339)
		}
		return fmt.Errorf("confirm retention of %s: sealed data shows %s, legal hold %v: %w", id, shows, got.LegalHold, ErrUnconfirmed)
	}
	return nil
}

// sealedRetention is m's retention from sealed data alone: the manifest's
// head frame and the authentic extension records whose files are sealed.
// An unsealed record counts for prune (it can only make prune keep more)
// but not here: its writer could still rewrite it, so it neither proves a
// change nor stands in the way of recording one.
func (s *Store) sealedRetention(m *Manifest) (Retention, error) {
	got := Retention{RetainUntil: m.RetainUntil, LegalHold: m.LegalHold}
	es, err := os.ReadDir(s.path(retentionDir))
	if err != nil {
		return got, fmt.Errorf("read retention: %w", err)
	}
	for _, e := range es {
		if !strings.HasPrefix(e.Name(), m.ID+".") || !e.Type().IsRegular() {
			continue
		}
		if sealed, err := fsflag.Has(s.path(retentionDir, e.Name()), fsflag.Immutable); err != nil || !sealed {
			continue
		}
		x, err := s.readExtension(e.Name())
		if err != nil || x.Snapshot != m.ID {
			continue
		}
		if x.RetainUntil != 0 {
			got.RetainUntil = laterRetention(got.RetainUntil, unixOrZero(x.RetainUntil))
		}
		got.LegalHold = got.LegalHold || x.LegalHold
	}
	return got, nil
}
