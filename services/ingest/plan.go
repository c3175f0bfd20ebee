package ingest

import (
	"time"

	"github.com/holdfast-appliance/holdfast/services/store"
)

// liveInfo is what mass-change detection compares.
type liveInfo struct {
	size    int64
	etag    string
	modTime time.Time
	deleted bool
}

// baseObj is a key of the baseline: its state then and, once listed, now.
type baseObj struct {
	then, now liveInfo
	seen      bool
}

// massTracker compares a listing, as it streams by, with the baseline's
// live objects. It holds the baseline's keys only, never the listing's, so
// a listing costs no memory here (a first pull has no baseline at all).
type massTracker struct {
	base    *store.Manifest
	keys    map[string]*baseObj
	current int // live objects listed (a key listed twice counts twice)
}

// newMassTracker returns a tracker for base; nil base tracks nothing.
func newMassTracker(base *store.Manifest) *massTracker {
	t := &massTracker{base: base}
	if base == nil {
		return t
	}
	t.keys = make(map[string]*baseObj, len(base.Objects))
	for _, o := range base.Objects {
		li := liveInfo{size: o.Size, etag: o.ETag, modTime: o.ModTime, deleted: o.DeleteMarker}
		// With versions, the newest version of a key is its live state.
		if b, ok := t.keys[string(o.Key)]; !ok {
			t.keys[string(o.Key)] = &baseObj{then: li}
		} else if li.modTime.After(b.then.modTime) {
			b.then = li
		}
	}
	return t
}

// add notes one listed entry that is the latest version of its key.
func (t *massTracker) add(e entry) {
	if !e.DeleteMarker {
		t.current++
	}
	if b, ok := t.keys[string(e.Key)]; ok {
		b.now = liveInfo{size: e.Size, etag: e.ETag, modTime: e.ModTime, deleted: e.DeleteMarker}
		b.seen = true
	}
}

// result returns the change since the baseline, or nil when there is no
// baseline or the change is within threshold.
func (t *massTracker) result(threshold float64) *MassChange {
	if t.base == nil {
		return nil
	}
	mc := &MassChange{Baseline: t.base.ID, Current: t.current}
	for _, b := range t.keys {
		if b.then.deleted {
			continue
		}
		mc.Previous++
		switch {
		case !b.seen || b.now.deleted:
			mc.Gone++
		case b.now.size != b.then.size || b.now.etag != b.then.etag:
			mc.Changed++
		}
	}
	if mc.Previous == 0 {
		return nil
	}
	mc.Empty = mc.Current == 0
	mc.Share = float64(mc.Gone+mc.Changed) / float64(mc.Previous)
	if !mc.Empty && mc.Share <= threshold {
		return nil
	}
	return mc
}
