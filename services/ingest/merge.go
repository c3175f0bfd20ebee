package ingest

import (
	"bytes"
	"errors"
	"fmt"
	"iter"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/holdfast-appliance/holdfast/services/store"
)

// What earlier snapshots tell a pull, found as the listing streams by.
//
// A pull records its snapshot sorted (store.BeginOptions.Sorted): the
// listing's order, keys ascending by byte as S3 lists them, versions of a
// key as listed. When every snapshot a pull reuses from is sorted, the
// pull walks their object streams in step with the listing (a merge by
// key; within a key, by version ID), so it holds one manifest frame per
// stream and the objects of the current key, never a list of the bucket.
// A snapshot that is not sorted (written before the flag, format 1, or by
// `holdfast put`) cannot be merged: the pull then reads them whole into a
// map, as before, and logs so.

// maxMergeStreams bounds the snapshots merged with a listing: the
// baseline and the newest incomplete ones after it (each stream holds one
// manifest frame, up to a few MiB). Objects only in an older incomplete
// snapshot are fetched again (their chunks are deduplicated).
const maxMergeStreams = 4

// maxKeyGroup bounds the versions of one key a stream holds for reuse;
// versions past it are fetched again (a hostile bucket with a million
// versions of one key does not grow the pull).
const maxKeyGroup = 4096

// past finds reusable objects and tracks mass change as the listing
// streams by. Its methods are called from the listing only, in order.
type past interface {
	// observe notes a listed entry; inOrder is false for an entry listed
	// out of S3's key order (it is refused, and only counted). An error
	// is the store's: a previous snapshot could not be read.
	observe(e entry, inOrder bool) error
	// find returns the previous record of e's key and version, if any.
	find(e entry) (store.Object, bool)
	// massChange returns the change since the baseline once the listing
	// is complete, or nil when there is none past threshold.
	massChange(threshold float64) (*MassChange, error)
	close()
}

// history is what earlier snapshots of a source tell a pull.
type history struct {
	all    []store.SnapshotInfo // the source's snapshots, oldest first
	starts []time.Time          // start times of complete snapshots
	base   int                  // index in all of the baseline, -1 when none
}

func (p *Puller) history(source string) (*history, error) {
	infos, err := p.Store.Snapshots()
	if err != nil {
		return nil, fmt.Errorf("list snapshots: %w", err)
	}
	h := &history{base: -1}
	for _, si := range infos {
		if si.Source != source {
			continue
		}
		h.all = append(h.all, si)
		if si.Complete {
			h.starts = append(h.starts, si.Started)
			h.base = len(h.all) - 1
		}
	}
	if len(h.all) > 0 && h.base < 0 {
		h.base = len(h.all) - 1 // no complete one: the latest
	}
	return h, nil
}

// open returns the past to merge a listing with: the baseline (latest
// complete snapshot, else the latest) and the incomplete snapshots after
// it, merged when they are all sorted, else read into a map.
func (h *history) open(s *store.Store, log hclog.Logger) (past, error) {
	if h.base < 0 {
		return &mergePast{}, nil
	}
	snaps := h.all[h.base:]
	for _, si := range snaps {
		if !si.Sorted {
			log.Warn("a previous snapshot is not sorted (written before sorted snapshots): reading the previous snapshots into memory; this pull's memory grows with their object count",
				"unsorted", si.ID, "snapshots", len(snaps))
			return openMapPast(s, snaps)
		}
	}
	mp := &mergePast{baseID: snaps[0].ID}
	// Newest first: the first record found wins, as the newest did in
	// the map.
	later := snaps[1:]
	if len(later) > maxMergeStreams-1 {
		log.Info("many incomplete snapshots since the baseline: reusing from the newest only", "incomplete", len(later), "merged", maxMergeStreams-1)
		later = later[len(later)-(maxMergeStreams-1):]
	}
	ids := []string{snaps[0].ID}
	for _, si := range later {
		ids = append(ids, si.ID)
	}
	for i := len(ids) - 1; i >= 0; i-- {
		st := openStream(s, ids[i])
		mp.streams = append(mp.streams, st)
		if i == 0 {
			mp.base = st
		}
	}
	return mp, nil
}

// errStopWalk stops a WalkObjects early.
var errStopWalk = errors.New("stop walk")

// objStream is a cursor over a sorted snapshot's objects, read one
// manifest frame at a time.
type objStream struct {
	id      string
	next    func() (store.Object, bool)
	stop    func()
	err     error // of the walk, once next reports the end
	cur     store.Object
	ok      bool // cur is valid
	started bool
	// group is the records of the key last asked for (at most
	// maxKeyGroup of them), state its live state (over all of them).
	group []store.Object
	state groupState
}

func openStream(s *store.Store, id string) *objStream {
	st := &objStream{id: id}
	seq := func(yield func(store.Object) bool) {
		_, err := s.WalkObjects(id, func(o store.Object) error {
			if !yield(o) {
				return errStopWalk
			}
			return nil
		})
		if err != nil && !errors.Is(err, errStopWalk) {
			st.err = err
		}
	}
	st.next, st.stop = iter.Pull(seq)
	return st
}

// advance moves to the next object; it checks the stream is sorted.
func (st *objStream) advance() error {
	prev, had := st.cur.Key, st.ok
	st.cur, st.ok = st.next()
	st.started = true
	if !st.ok {
		if st.err != nil {
			return fmt.Errorf("read previous snapshot %s: %w", st.id, st.err)
		}
		return nil
	}
	if had && bytes.Compare(st.cur.Key, prev) < 0 {
		return fmt.Errorf("read previous snapshot %s: sorted snapshot holds %q after %q: %w", st.id, st.cur.Key, prev, store.ErrCorrupt)
	}
	return nil
}

// seek skips the records with keys below key, handing each skipped key's
// records to skipped (when set) one key at a time, then gathers the
// records of key itself into st.group.
func (st *objStream) seek(key []byte, skipped func(k []byte, g *groupState)) error {
	if !st.started {
		if err := st.advance(); err != nil {
			return err
		}
	}
	st.group, st.state = st.group[:0], groupState{}
	for st.ok && bytes.Compare(st.cur.Key, key) < 0 {
		k := st.cur.Key
		var g groupState
		for st.ok && bytes.Equal(st.cur.Key, k) {
			g.add(st.cur)
			if err := st.advance(); err != nil {
				return err
			}
		}
		if skipped != nil {
			skipped(k, &g)
		}
	}
	for st.ok && bytes.Equal(st.cur.Key, key) {
		if len(st.group) < maxKeyGroup {
			st.group = append(st.group, st.cur)
		}
		st.state.add(st.cur)
		if err := st.advance(); err != nil {
			return err
		}
	}
	return nil
}

// rest hands every key left in the stream to fn.
func (st *objStream) rest(fn func(k []byte, g *groupState)) error {
	if !st.started {
		if err := st.advance(); err != nil {
			return err
		}
	}
	for st.ok {
		k := st.cur.Key
		var g groupState
		for st.ok && bytes.Equal(st.cur.Key, k) {
			g.add(st.cur)
			if err := st.advance(); err != nil {
				return err
			}
		}
		fn(k, &g)
	}
	return nil
}

// groupState is a baseline key's live state: its newest version.
type groupState struct {
	then liveInfo
	any  bool
}

func (g *groupState) add(o store.Object) {
	li := liveInfo{size: o.Size, etag: o.ETag, modTime: o.ModTime, deleted: o.DeleteMarker}
	// With versions, the newest version of a key is its live state.
	if !g.any || li.modTime.After(g.then.modTime) {
		g.then, g.any = li, true
	}
}

// mergePast merges sorted snapshots' streams with the listing.
type mergePast struct {
	baseID  string
	streams []*objStream // newest snapshot first
	base    *objStream   // the baseline's stream (also in streams)
	key     []byte       // the key listed last
	keyed   bool         // key is set
	// Mass change: the baseline's state of the current key and what the
	// listing said of it.
	cur      groupState
	now      liveInfo
	seen     bool
	previous int
	current  int
	gone     int
	changed  int
}

// settle counts the current key against the baseline.
func (m *mergePast) settle() {
	if !m.cur.any || m.cur.then.deleted {
		return
	}
	m.previous++
	switch {
	case !m.seen || m.now.deleted:
		m.gone++
	case m.now.size != m.cur.then.size || m.now.etag != m.cur.then.etag:
		m.changed++
	}
}

func (m *mergePast) skippedBase(_ []byte, g *groupState) {
	if g.any && !g.then.deleted {
		m.previous++
		m.gone++
	}
}

func (m *mergePast) observe(e entry, inOrder bool) error {
	if e.IsLatest && !e.DeleteMarker {
		m.current++
	}
	if !inOrder || len(m.streams) == 0 {
		return nil
	}
	if !m.keyed || !bytes.Equal(e.Key, m.key) {
		if m.keyed {
			m.settle()
		}
		m.key, m.keyed = append(m.key[:0], e.Key...), true
		m.cur, m.seen = groupState{}, false
		for _, st := range m.streams {
			var skipped func([]byte, *groupState)
			if st == m.base {
				skipped = m.skippedBase
			}
			if err := st.seek(e.Key, skipped); err != nil {
				return err
			}
			if st == m.base {
				m.cur = st.state
			}
		}
	}
	if e.IsLatest {
		m.now = liveInfo{size: e.Size, etag: e.ETag, modTime: e.ModTime, deleted: e.DeleteMarker}
		m.seen = true
	}
	return nil
}

func (m *mergePast) find(e entry) (store.Object, bool) {
	if !m.keyed || !bytes.Equal(e.Key, m.key) {
		return store.Object{}, false
	}
	for _, st := range m.streams {
		var found store.Object
		ok := false
		for _, o := range st.group {
			if o.VersionID == e.VersionID && !o.DeleteMarker {
				found, ok = o, true // the last record of a snapshot wins
			}
		}
		if ok {
			return found, true
		}
	}
	return store.Object{}, false
}

func (m *mergePast) massChange(threshold float64) (*MassChange, error) {
	if m.base == nil {
		return nil, nil
	}
	if m.keyed {
		m.settle()
		m.keyed = false
	}
	if err := m.base.rest(m.skippedBase); err != nil {
		return nil, err
	}
	return massResult(m.baseID, m.previous, m.current, m.gone, m.changed, threshold), nil
}

func (m *mergePast) close() {
	for _, st := range m.streams {
		st.stop()
	}
}

// massResult returns the change, or nil when within threshold.
func massResult(baseline string, previous, current, gone, changed int, threshold float64) *MassChange {
	if previous == 0 {
		return nil
	}
	mc := &MassChange{Baseline: baseline, Previous: previous, Current: current, Gone: gone, Changed: changed}
	mc.Empty = mc.Current == 0
	mc.Share = float64(mc.Gone+mc.Changed) / float64(mc.Previous)
	if !mc.Empty && mc.Share <= threshold {
		return nil
	}
	return mc
}

// mapPast is the fallback for snapshots that are not sorted: every record
// of the baseline and later snapshots in a map, and the baseline's keys in
// a mass tracker (memory grows with their object count).
type mapPast struct {
	reuse map[objKey]store.Object
	mass  *massTracker
}

// objKey identifies one object version.
type objKey struct{ key, version string }

func openMapPast(s *store.Store, snaps []store.SnapshotInfo) (*mapPast, error) {
	mp := &mapPast{reuse: map[objKey]store.Object{}}
	for i, si := range snaps {
		m, err := s.ReadManifest(si.ID)
		if err != nil {
			return nil, fmt.Errorf("read previous snapshot: %w", err)
		}
		if i == 0 {
			mp.mass = newMassTracker(m)
		}
		for _, o := range m.Objects {
			if o.DeleteMarker {
				continue
			}
			mp.reuse[objKey{string(o.Key), o.VersionID}] = o
		}
	}
	return mp, nil
}

func (mp *mapPast) observe(e entry, _ bool) error {
	if e.IsLatest {
		mp.mass.add(e)
	}
	return nil
}

func (mp *mapPast) find(e entry) (store.Object, bool) {
	o, ok := mp.reuse[objKey{string(e.Key), e.VersionID}]
	return o, ok
}

func (mp *mapPast) massChange(threshold float64) (*MassChange, error) {
	return mp.mass.result(threshold), nil
}

func (mp *mapPast) close() {}
