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
	head, err := s.SnapshotHead(id)
	if err != nil {
		return nil, err
	}
	if match == nil {
		match = func([]byte) bool { return true }
	}
	if head.Sorted {
		var prev []byte
		first := true
		return s.WalkObjects(id, func(o Object) error {
			if !first && bytes.Equal(o.Key, prev) {
				return nil // an older version: the first record was current
			}
			first, prev = false, append(prev[:0], o.Key...)
			if !match(o.Key) {
				return nil
			}
			return fn(o)
		})
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
	var wantRef func(first, last []byte) bool
	if head.Sorted {
		wantRef = func(_, last []byte) bool { return bytes.Compare(last, key) >= 0 }
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
