package export

import (
	"context"
	"encoding/base64"
	"errors"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/holdfast-appliance/holdfast/services/store"
)

// The key space of a bucket is a sequence of segments, one per snapshot
// ("<ID>/" followed by the snapshot's keys, in ID order) and then
// "latest/" (the keys of the newest complete snapshot). Snapshot IDs have
// one length and start with a digit, so this order is the byte order of
// the full keys S3 listings promise.

// segment is one snapshot's part of the key space.
type segment struct {
	name  string // "<ID>/" or "latest/"
	id    string // the snapshot it shows
	count int64  // objects its manifest records (0: surely empty)
}

// segments returns b's key space; pin, when it names a snapshot of b,
// stands in for the latest one (a listing continued with a token keeps
// listing the snapshot it started on).
func (b *bucket) segments(pin string) []segment {
	segs := make([]segment, 0, len(b.snaps)+1)
	for _, si := range b.snaps {
		segs = append(segs, segment{name: si.ID + "/", id: si.ID, count: si.Count})
	}
	latest := b.latest
	if _, ok := b.byID[pin]; ok {
		latest = pin
	}
	if i, ok := b.byID[latest]; ok {
		segs = append(segs, segment{name: latestName + "/", id: latest, count: b.snaps[i].Count})
	}
	return segs
}

// listParams is one listing request, V1 or V2.
type listParams struct {
	prefix, delimiter string
	marker            string // list what sorts after this (a key or a common prefix already returned)
	maxKeys           int
}

// listItem is one key or common prefix of a listing.
type listItem struct {
	key     string
	isDir   bool // a common prefix
	obj     *store.Object
	snapped time.Time // start of the object's snapshot: its Last-Modified when it records none
}

type listResult struct {
	items     []listItem
	truncated bool
	next      string // marker of the next page when truncated
}

// viewSource gives listings the contents of a snapshot.
type viewSource interface {
	view(ctx context.Context, id string) (contents, error)
	cachedView(id string) (contents, bool)
}

// list walks the segments in key order and returns up to p.maxKeys keys
// and common prefixes. A snapshot whose keys all roll up into one common
// prefix (the usual "delimiter /" listing of a bucket's top level) is not
// read at all; within a snapshot the keys that roll up into a common
// prefix are skipped by seeking past them, not read one by one.
func list(ctx context.Context, vs viewSource, segs []segment, started map[string]time.Time, p listParams) (listResult, error) {
	var res listResult
	limit := p.maxKeys + 1 // one more, to know whether the listing is truncated
	add := func(it listItem) bool {
		res.items = append(res.items, it)
		return len(res.items) >= limit
	}
	for _, sg := range segs {
		if !strings.HasPrefix(sg.name, p.prefix) && !strings.HasPrefix(p.prefix, sg.name) {
			continue
		}
		if p.marker > sg.name && !strings.HasPrefix(p.marker, sg.name) {
			continue // every key of the segment sorts before the marker
		}
		if sg.count == 0 {
			continue
		}
		if p.delimiter != "" && len(p.prefix) <= len(sg.name) {
			if i := strings.Index(sg.name[len(p.prefix):], p.delimiter); i >= 0 {
				cp := sg.name[:len(p.prefix)+i+len(p.delimiter)]
				if v, ok := vs.cachedView(sg.id); ok && v.empty() {
					continue
				}
				if cp > p.marker && (len(res.items) == 0 || res.items[len(res.items)-1].key != cp) {
					if add(listItem{key: cp, isDir: true}) {
						break
					}
				}
				continue
			}
		}
		v, err := vs.view(ctx, sg.id)
		if err != nil {
			return listResult{}, err
		}
		from := ""
		if len(p.prefix) > len(sg.name) {
			from = p.prefix[len(sg.name):]
		}
		if rest, ok := strings.CutPrefix(p.marker, sg.name); ok && rest+"\x00" > from {
			from = rest + "\x00" // the first key after the marker
		}
		it := v.iter(from)
		full := false
		for {
			rel, o, ok := it.next()
			if !ok {
				break
			}
			k := sg.name + rel
			if !strings.HasPrefix(k, p.prefix) {
				break
			}
			if p.delimiter != "" {
				if j := strings.Index(k[len(p.prefix):], p.delimiter); j >= 0 {
					cp := k[:len(p.prefix)+j+len(p.delimiter)]
					if cp > p.marker {
						if full = add(listItem{key: cp, isDir: true}); full {
							break
						}
					}
					// Skip the rest of the keys that roll up into cp.
					end, ok := prefixEnd(cp[len(sg.name):])
					if !ok {
						break
					}
					it.seek(end)
					continue
				}
			}
			if full = add(listItem{key: k, obj: o, snapped: started[sg.id]}); full {
				break
			}
		}
		if err := it.err(); err != nil {
			return listResult{}, err
		}
		if full {
			break
		}
	}
	if len(res.items) >= limit {
		res.truncated = true
		res.items = res.items[:p.maxKeys]
		res.next = p.marker
		if n := len(res.items); n > 0 {
			res.next = res.items[n-1].key
		}
	}
	return res, nil
}

// prefixEnd returns the smallest key that sorts after every key starting
// with p; false when there is none (p is empty or all 0xff bytes).
func prefixEnd(p string) (string, bool) {
	b := []byte(p)
	for i := len(b) - 1; i >= 0; i-- {
		if b[i] < 0xff {
			b[i]++
			return string(b[:i+1]), true
		}
	}
	return "", false
}

// xmlSafe reports whether s can be written in XML 1.0 exactly: valid
// UTF-8 of characters XML allows. A key that is not can only be listed
// with encoding-type=url.
func xmlSafe(s string) bool {
	for _, r := range s {
		switch {
		case r == utf8.RuneError:
			return false // invalid UTF-8 (U+FFFD itself is never in a key S3 could list either)
		case r == '\t' || r == '\n' || r == '\r':
		case r < 0x20, r >= 0xD800 && r <= 0xDFFF, r == 0xFFFE, r == 0xFFFF:
			return false
		}
	}
	return true
}

// Continuation tokens are opaque to clients: "v1" NUL pinned-latest-ID NUL
// marker, base64url. The pin keeps a listing of latest/ on the snapshot it
// began with when a newer one is committed in between.
func encodeToken(pin, marker string) string {
	return base64.RawURLEncoding.EncodeToString([]byte("v1\x00" + pin + "\x00" + marker))
}

var errBadToken = errors.New("the continuation token provided is incorrect")

func decodeToken(tok string) (pin, marker string, err error) {
	raw, err := base64.RawURLEncoding.DecodeString(tok)
	if err != nil {
		return "", "", errBadToken
	}
	parts := strings.SplitN(string(raw), "\x00", 3)
	if len(parts) != 3 || parts[0] != "v1" || (parts[1] != "" && !store.ValidSnapshotID(parts[1])) {
		return "", "", errBadToken
	}
	return parts[1], parts[2], nil
}
