package store

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"strconv"
	"strings"
	"time"

	"github.com/pkg/xattr"
)

// Retention is recorded three ways, and prune takes the most protective:
//
//	| where                        | written                 | changeable       |
//	|------------------------------|-------------------------|------------------|
//	| manifest head frame          | at Begin                | never (sealed)   |
//	| xattrs on the manifest file  | before the seal         | never (sealed)   |
//	|   user.holdfast.retain_until |   RFC 3339, UTC, ns     |                  |
//	|   user.holdfast.legal_hold   |   "1" or "0"            |                  |
//	| retention/<id>.<ns>.ext      | Extend (console, ingest | never; new       |
//	|                              | on a mass change)       | records only add |
//
// Extension record layout: magic "HFRETX01" (8) || nonce(12) ||
// AES-GCM(meta key, AD = "HFRX" || file name) of CBOR retentionExt || tag.
const (
	xattrRetainUntil = "user.holdfast.retain_until"
	xattrLegalHold   = "user.holdfast.legal_hold"
	extMagic         = "HFRETX01"
)

type retentionExt struct {
	Snapshot    string `cbor:"1,keyasint"`
	RetainUntil int64  `cbor:"2,keyasint,omitempty"`
	LegalHold   bool   `cbor:"3,keyasint,omitempty"`
	Reason      string `cbor:"4,keyasint,omitempty"`
	At          int64  `cbor:"5,keyasint"`
}

// Retention is the effective retention of a snapshot.
type Retention struct {
	RetainUntil time.Time
	LegalHold   bool
	// Disagree is set when the manifest and its xattrs differ (tampering
	// before the seal, or damage); the stronger value is used.
	Disagree bool
}

// Protects reports whether the snapshot must be kept at time now. A snapshot
// with no retain-until is kept forever.
func (r Retention) Protects(now time.Time) bool {
	return r.LegalHold || r.RetainUntil.IsZero() || now.Before(r.RetainUntil)
}

func (s *Store) setRetentionXattrs(path string, until time.Time, hold bool) error {
	v := ""
	if !until.IsZero() {
		v = until.UTC().Format(time.RFC3339Nano)
	}
	if err := xattr.LSet(path, xattrRetainUntil, []byte(v)); err != nil {
		return fmt.Errorf("set retention xattr: %w", err)
	}
	h := "0"
	if hold {
		h = "1"
	}
	if err := xattr.LSet(path, xattrLegalHold, []byte(h)); err != nil {
		return fmt.Errorf("set legal hold xattr: %w", err)
	}
	return nil
}

// readRetentionXattrs returns the xattr values; ok is false when either is
// missing or malformed.
func readRetentionXattrs(path string) (until time.Time, hold bool, ok bool) {
	u, err := xattr.LGet(path, xattrRetainUntil)
	if err != nil {
		return time.Time{}, false, false
	}
	h, err := xattr.LGet(path, xattrLegalHold)
	if err != nil {
		return time.Time{}, false, false
	}
	if len(u) > 0 {
		if until, err = time.Parse(time.RFC3339Nano, string(u)); err != nil {
			return time.Time{}, false, false
		}
	}
	switch string(h) {
	case "1":
		hold = true
	case "0":
	default:
		return time.Time{}, false, false
	}
	return until, hold, true
}

// extensions returns every authentic extension record by snapshot.
// A record can only lengthen retention, so trusting one (sealed or not)
// can only make prune keep more; entries that are not regular files of a
// record's size are skipped without being read.
func (s *Store) extensions() (map[string][]retentionExt, error) {
	out := map[string][]retentionExt{}
	err := scanDir(s.path(retentionDir), func(name string, typ fs.FileMode) error {
		if !typ.IsRegular() {
			s.log.Warn("foreign entry in retention/ ignored", "name", name, "type", typ.String())
			return nil
		}
		x, err := s.readExtension(name)
		if err != nil {
			s.log.Warn("retention record ignored", "name", name, "error", err)
			return nil
		}
		out[x.Snapshot] = append(out[x.Snapshot], x)
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("read retention: %w", err)
	}
	return out, nil
}

func (s *Store) readExtension(name string) (retentionExt, error) {
	raw, err := readStoreFile(s.path(retentionDir, name), maxRecordFile)
	if err != nil {
		return retentionExt{}, err
	}
	if !bytes.HasPrefix(raw, []byte(extMagic)) {
		return retentionExt{}, fmt.Errorf("retention record magic: %w", ErrCorrupt)
	}
	plain, err := openSealed(s.keys.meta, []byte("HFRX"+name), raw[len(extMagic):])
	if err != nil {
		return retentionExt{}, err
	}
	var x retentionExt
	if err := s.codec.unmarshal(plain, &x); err != nil {
		return retentionExt{}, err
	}
	if !strings.HasPrefix(name, x.Snapshot+".") {
		return retentionExt{}, fmt.Errorf("retention record %s names snapshot %s: %w", name, x.Snapshot, ErrCorrupt)
	}
	return x, nil
}

func (s *Store) checkExtensionFile(path string) error {
	_, err := s.readExtension(path[strings.LastIndexByte(path, '/')+1:])
	return err
}

// laterRetention returns the more protective of two retain-until times; the
// zero time means "kept forever" and wins over any date.
func laterRetention(a, b time.Time) time.Time {
	if a.IsZero() || b.IsZero() {
		return time.Time{}
	}
	if b.After(a) {
		return b
	}
	return a
}

// effectiveRetention combines manifest, xattrs and extension records.
func (s *Store) effectiveRetention(m *Manifest, exts []retentionExt) Retention {
	r := Retention{RetainUntil: m.RetainUntil, LegalHold: m.LegalHold}
	until, hold, ok := readRetentionXattrs(s.path(snapshotsDir, m.ID+".snap"))
	if !ok || !until.Equal(m.RetainUntil) || hold != m.LegalHold {
		r.Disagree = true
	}
	if ok {
		r.RetainUntil = laterRetention(r.RetainUntil, until)
		r.LegalHold = r.LegalHold || hold
	}
	for _, x := range exts {
		if x.RetainUntil != 0 { // 0: the record only adds a hold
			r.RetainUntil = laterRetention(r.RetainUntil, unixOrZero(x.RetainUntil))
		}
		r.LegalHold = r.LegalHold || x.LegalHold
	}
	return r
}

// ErrShorten means an extension would not lengthen retention.
var ErrShorten = errors.New("retention can only be extended")

// Extend lengthens a snapshot's retention or puts it under legal hold, by
// adding a sealed record; nothing existing is changed. A zero until asks
// for no new date (a hold alone). A request that would shorten retention,
// or change nothing, fails with ErrShorten.
func (s *Store) Extend(id string, until time.Time, hold bool, reason string) error {
	if s.ro {
		return errors.New("extend: store opened read-only")
	}
	m, err := s.SnapshotHead(id)
	if err != nil {
		return fmt.Errorf("extend: %w", err)
	}
	// Only sealed data says what is recorded: an unsealed record (which
	// prune does count) could be rewritten by its writer after this
	// extension was refused as "no change".
	cur, err := s.sealedRetention(m)
	if err != nil {
		return fmt.Errorf("extend: %w", err)
	}
	longer := !until.IsZero() && !cur.RetainUntil.IsZero() && until.After(cur.RetainUntil)
	if !longer && !(hold && !cur.LegalHold) {
		return fmt.Errorf("extend %s to %s (hold %v): current %s (hold %v): %w", id, until.UTC().Format(time.RFC3339), hold, cur.RetainUntil.UTC().Format(time.RFC3339), cur.LegalHold, ErrShorten)
	}
	now, err := s.clock.Now()
	if err != nil {
		return fmt.Errorf("extend: clock: %w", err)
	}
	x := retentionExt{Snapshot: id, LegalHold: hold, Reason: reason, At: now.UnixNano()}
	if longer {
		x.RetainUntil = until.UnixNano()
	}
	plain, err := s.codec.marshal(x)
	if err != nil {
		return err
	}
	name := id + "." + strconv.FormatInt(now.UnixNano(), 10) + ".ext"
	out := sealTo([]byte(extMagic), s.keys.meta, []byte("HFRX"+name), plain)
	if err := s.installSealed(retentionDir, name, out); err != nil {
		return fmt.Errorf("extend: %w", err)
	}
	if longer {
		s.log.Info("retention extended", "snapshot", id, "retain_until", until, "legal_hold", hold, "reason", reason)
	} else {
		s.log.Info("legal hold added", "snapshot", id, "reason", reason)
	}
	return nil
}
