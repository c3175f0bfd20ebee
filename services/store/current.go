package store

import (
	"bytes"
	"errors"
	"fmt"
)

// A snapshot may record a key more than once: the versions of an S3
// object, or a local file read again after a resumed put. Its current
// record, the key's state at the source when the snapshot was taken, is
// what restore writes and cat shows:
//
//	| snapshot              | records of one key                   | current record |
//	|-----------------------|--------------------------------------|----------------|
//	| sorted (head key 5,   | adjacent, newest version first (S3   | the first      |
//	| a pull)               | lists a key's versions so)           |                |
//	| not sorted (format 1, | in the order they were recorded      | the last       |
//	| older pulls, put)     |                                      |                |
//
// A current record that is a delete marker says the key was deleted at the
// source: restore skips it.

// errStopWalk ends a walk early; never returned to a caller.
var errStopWalk = errors.New("stop walk")

// WalkCurrent hands fn the current record of every key of committed
// snapshot id for which match (nil: every key) is true, in the snapshot's
// order, and returns the snapshot's summary (Objects empty). For a sorted
// snapshot it streams: memory does not grow with the object count. For
// another it first reads every record (snapshots written before sorted
// ones). An error from fn stops the walk and is returned as it is.
func (s *Store) WalkCurrent(id string, match func(key []byte) bool, fn func(Object) error) (*Manifest, error) {
	return s.WalkCurrentRange(id, KeyRange{}, match, fn)
}

// KeyRange is the keys from From (inclusive) up to To (exclusive); a nil
// To has no end. The zero KeyRange is every key.
type KeyRange struct{ From, To []byte }

// PrefixRange returns the range of the keys that start with prefix.
func PrefixRange(prefix []byte) KeyRange {
	r := KeyRange{From: bytes.Clone(prefix)}
	for to := bytes.Clone(prefix); len(to) > 0; to = to[:len(to)-1] {
		if to[len(to)-1] != 0xff {
			to[len(to)-1]++
			r.To = to
			break
		}
	}
	return r
}

// Has reports whether key is in r.
func (r KeyRange) Has(key []byte) bool {
	return bytes.Compare(key, r.From) >= 0 && (r.To == nil || bytes.Compare(key, r.To) < 0)
}

// meets reports whether some key from first to last (inclusive) is in r.
func (r KeyRange) meets(first, last []byte) bool {
	return bytes.Compare(last, r.From) >= 0 && (r.To == nil || bytes.Compare(first, r.To) < 0)
}

// WalkCurrentRange is WalkCurrent of the keys in r (and for which match,
// when not nil, is true). In a sorted snapshot it seeks: metadata chunks
// whose keys all lie outside r are not read, and the walk stops past r,
// so restoring one user's prefix of a large snapshot reads that part of it
// (the summary returned is then the snapshot's head).
func (s *Store) WalkCurrentRange(id string, r KeyRange, match func(key []byte) bool, fn func(Object) error) (*Manifest, error) {
	head, err := s.SnapshotHead(id)
	if err != nil {
		return nil, err
	}
	if match == nil {
		match = func([]byte) bool { return true }
	}
	if inner := match; r.From != nil || r.To != nil {
		match = func(k []byte) bool { return r.Has(k) && inner(k) }
	}
	if head.Sorted {
		var prev []byte
		first := true
		// A chunk is wanted when [first, last] meets r. Skipping the
		// chunks before r leaves prev stale only for keys below r, which
		// match refuses.
		want := func(_ ChunkID, ref wireRef) bool { return r.meets(ref.First, ref.Last) }
		m, err := s.walkCommitted(id, want, func(o Object) error {
			if r.To != nil && bytes.Compare(o.Key, r.To) >= 0 {
				return errStopWalk // past the range
			}
			if !first && bytes.Equal(o.Key, prev) {
				return nil // an older version: the first record was current
			}
			first, prev = false, append(prev[:0], o.Key...)
			if !match(o.Key) {
				return nil
			}
			return fn(o)
		})
		if errors.Is(err, errStopWalk) {
			return head, nil
		}
		return m, err
	}
	m, err := s.ReadManifest(id)
	if err != nil {
		return nil, err
	}
	last := map[string]int{}
	for i, o := range m.Objects {
		if match(o.Key) {
			last[string(o.Key)] = i
		}
	}
	objs := m.Objects
	m.Objects = nil
	for i, o := range objs {
		if j, ok := last[string(o.Key)]; !ok || j != i {
			continue
		}
		if err := fn(o); err != nil {
			return nil, err
		}
	}
	return m, nil
}

// FindObject returns the current record of key in snapshot id (which may
// be a delete marker), and the snapshot's summary (Objects empty). It
// streams the manifest: memory does not grow with the object count; in a
// sorted snapshot it stops at the key's first record, or where the key
// would be.
func (s *Store) FindObject(id string, key []byte) (*Manifest, Object, error) {
	head, err := s.SnapshotHead(id)
	if err != nil {
		return nil, Object{}, err
	}
	var found Object
	ok := false
	// In a sorted snapshot, metadata chunks that end before the key are
	// skipped unread: cat reads the manifest and the chunk that holds it.
	var wantRef func(ChunkID, wireRef) bool
	if head.Sorted {
		wantRef = func(_ ChunkID, r wireRef) bool { return bytes.Compare(r.Last, key) >= 0 }
	}
	m, err := s.walkCommitted(id, wantRef, func(o Object) error {
		c := bytes.Compare(o.Key, key)
		switch {
		case c == 0 && head.Sorted:
			found, ok = o, true
			return errStopWalk
		case c == 0:
			found, ok = o, true // the last record wins
		case c > 0 && head.Sorted:
			return errStopWalk // past where it would be
		}
		return nil
	})
	switch {
	case errors.Is(err, errStopWalk):
		m = head
	case err != nil:
		return nil, Object{}, err
	}
	if !ok {
		return nil, Object{}, fmt.Errorf("object %q in %s: %w", key, id, ErrNoObject)
	}
	return m, found, nil
}
