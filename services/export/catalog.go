package export

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/holdfast-appliance/holdfast/services/store"
)

// bucketNameRE is what a source name must look like to be served as a
// bucket: one path segment a client can put in a URL. Source names from
// services/config always match (1-64 letters, digits, '.', '_', '-');
// `holdfast store put --source` accepts any text, and such a source is
// left out (and logged).
var bucketNameRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$`)

// latestName is the first key segment that stands for a source's newest
// complete snapshot. Snapshot IDs start with a digit, so it never clashes
// with one, and it sorts after all of them.
const latestName = "latest"

// snapshotsDir is the store's directory of committed manifests
// (docs/store-format.md); the catalog lists it to notice new snapshots.
const snapshotsDir = "snapshots"

// catalog is the export's view of the store: the committed snapshots of
// every exported source. It reopens the store (read-only) when the set of
// manifests in STORE/snapshots/ changes, so that snapshots committed or
// pruned since are seen, with an index that covers their packs.
type catalog struct {
	dir      string
	key      store.KeySource
	only     map[string]bool // nil: every source
	log      hclog.Logger
	interval time.Duration
	now      func() time.Time

	mu      sync.Mutex
	gen     *generation
	names   string    // the listing of snapshots/ gen was built from
	checked time.Time // when snapshots/ was last listed
	skipped map[string]bool
}

// generation is one opening of the store and what it held.
type generation struct {
	st      *store.Store
	buckets map[string]*bucket
	order   []string // bucket names, sorted
}

// bucket is one exported source.
type bucket struct {
	name    string
	snaps   []store.SnapshotInfo // sorted by ID
	byID    map[string]int       // snapshot ID -> index in snaps
	latest  string               // newest complete snapshot, "" when none
	created time.Time            // start of the oldest snapshot
}

// snapshot returns the snapshot with id, or the latest complete one for
// "latest".
func (b *bucket) snapshot(id string) (store.SnapshotInfo, bool) {
	if id == latestName {
		id = b.latest
	}
	i, ok := b.byID[id]
	if !ok {
		return store.SnapshotInfo{}, false
	}
	return b.snaps[i], true
}

func newCatalog(dir string, key store.KeySource, sources []string, interval time.Duration, now func() time.Time, log hclog.Logger) *catalog {
	c := &catalog{dir: dir, key: key, log: log, interval: interval, now: now, skipped: map[string]bool{}}
	if sources != nil {
		c.only = map[string]bool{}
		for _, s := range sources {
			c.only[s] = true
		}
	}
	return c
}

// current returns the generation to serve from, refreshing it when
// snapshots/ changed and the last look is older than the interval. A failed
// refresh keeps serving the previous generation (and logs the error).
func (c *catalog) current(ctx context.Context) (*generation, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	now := c.now()
	if c.gen != nil && now.Sub(c.checked) < c.interval && now.Sub(c.checked) >= 0 {
		return c.gen, nil
	}
	names, err := c.listSnapshots()
	if err != nil {
		if c.gen != nil {
			c.log.Error("cannot list the store's snapshots; serving the last known state", "error", err)
			return c.gen, nil
		}
		g, lerr := c.load(ctx)
		if lerr != nil {
			return nil, lerr // says why better: not a store, wrong key
		}
		g.st.Close()
		return nil, err
	}
	c.checked = now
	if c.gen != nil && names == c.names {
		return c.gen, nil
	}
	g, err := c.load(ctx)
	if err != nil {
		if c.gen != nil {
			c.log.Error("cannot reopen the store; serving the last known state", "error", err)
			return c.gen, nil
		}
		return nil, err
	}
	if c.gen != nil {
		c.log.Info("store changed; serving its new state", "buckets", len(g.order))
	}
	c.gen, c.names = g, names
	return g, nil
}

func (c *catalog) listSnapshots() (string, error) {
	es, err := os.ReadDir(filepath.Join(c.dir, snapshotsDir))
	if err != nil {
		return "", fmt.Errorf("list snapshots of %s: %w", c.dir, err)
	}
	names := make([]string, 0, len(es))
	for _, e := range es {
		names = append(names, e.Name())
	}
	sort.Strings(names)
	return strings.Join(names, "\n"), nil
}

// load opens the store read-only and groups its snapshots by source.
func (c *catalog) load(ctx context.Context) (*generation, error) {
	st, err := store.Open(ctx, c.dir, c.key, store.Options{ReadOnly: true, Logger: c.log})
	if err != nil {
		return nil, fmt.Errorf("open store %s read-only: %w", c.dir, err)
	}
	infos, err := st.Snapshots()
	if err != nil {
		st.Close()
		return nil, fmt.Errorf("list snapshots of %s: %w", c.dir, err)
	}
	g := &generation{st: st, buckets: map[string]*bucket{}}
	for _, si := range infos {
		if c.only != nil && !c.only[si.Source] {
			continue
		}
		if !bucketNameRE.MatchString(si.Source) {
			if !c.skipped[si.Source] {
				c.skipped[si.Source] = true
				c.log.Warn("source not exported: its name cannot be a bucket name", "source", fmt.Sprintf("%q", si.Source))
			}
			continue
		}
		b := g.buckets[si.Source]
		if b == nil {
			b = &bucket{name: si.Source, byID: map[string]int{}}
			g.buckets[si.Source] = b
		}
		b.snaps = append(b.snaps, si)
	}
	for name, b := range g.buckets {
		g.order = append(g.order, name)
		var newest time.Time
		for _, si := range b.snaps { // by start time, oldest first
			if b.created.IsZero() || si.Started.Before(b.created) {
				b.created = si.Started
			}
			if si.Complete && !si.Started.Before(newest) {
				newest, b.latest = si.Started, si.ID
			}
		}
		sort.Slice(b.snaps, func(i, j int) bool { return b.snaps[i].ID < b.snaps[j].ID })
		for i, si := range b.snaps {
			b.byID[si.ID] = i
		}
	}
	sort.Strings(g.order)
	return g, nil
}

// contents is how listings and GETs read one snapshot: its live keys in
// byte order, each with its current record (the store's rule, as restore
// and cat use it: in a sorted snapshot a key's first record, in another
// its last); a key whose current record is a delete marker is absent.
type contents interface {
	// find returns the current record of key k.
	find(k string) (*store.Object, bool, error)
	// iter returns an iterator over the keys at least from.
	iter(from string) keyIter
	// empty reports whether the snapshot has no live key.
	empty() bool
}

// keyIter walks the live keys of a snapshot in byte order.
type keyIter interface {
	// next returns the next key and its current record; false at the
	// end or on an error (see err).
	next() (string, *store.Object, bool)
	// seek moves to the first key at least from.
	seek(from string)
	err() error
}

// sortedContents serves a sorted snapshot through the store's index of
// its manifest: memory is O(manifest frames), not O(objects)
// (store.SnapshotIndex says what it holds).
type sortedContents struct{ x *store.SnapshotIndex }

func (c sortedContents) find(k string) (*store.Object, bool, error) {
	o, ok, err := c.x.Find([]byte(k))
	if err != nil || !ok || o.DeleteMarker {
		return nil, false, err
	}
	return &o, true, nil
}

func (c sortedContents) iter(from string) keyIter { return &sortedIter{it: c.x.Seek([]byte(from))} }

func (c sortedContents) empty() bool {
	empty, err := c.x.Empty()
	return err == nil && empty // one that does not read is listed, and fails when opened
}

type sortedIter struct{ it *store.SnapshotIter }

func (s *sortedIter) next() (string, *store.Object, bool) {
	for {
		o, ok := s.it.Next()
		if !ok {
			return "", nil, false
		}
		if !o.DeleteMarker {
			return string(o.Key), &o, true
		}
	}
}

func (s *sortedIter) seek(from string) { s.it.Seek([]byte(from)) }
func (s *sortedIter) err() error       { return s.it.Err() }

// view is the live objects of a snapshot that is not sorted (written
// before sorted snapshots), held in memory (O(objects)) and sorted by key:
// for each key its last record, left out when that is a delete marker.
type view struct {
	keys []string
	objs []store.Object
}

func (v *view) find(k string) (*store.Object, bool, error) {
	i := sort.SearchStrings(v.keys, k)
	if i < len(v.keys) && v.keys[i] == k {
		return &v.objs[i], true, nil
	}
	return nil, false, nil
}

func (v *view) iter(from string) keyIter {
	it := &viewIter{v: v}
	it.seek(from)
	return it
}

func (v *view) empty() bool { return len(v.keys) == 0 }

type viewIter struct {
	v *view
	i int
}

func (it *viewIter) next() (string, *store.Object, bool) {
	if it.i >= len(it.v.keys) {
		return "", nil, false
	}
	it.i++
	return it.v.keys[it.i-1], &it.v.objs[it.i-1], true
}

func (it *viewIter) seek(from string) { it.i = sort.SearchStrings(it.v.keys, from) }
func (it *viewIter) err() error       { return nil }

// newView builds the view of a manifest read whole, current records by
// the store's rule (store.WalkCurrent): the first record of a key in a
// sorted snapshot, the last in another.
func newView(m *store.Manifest) *view {
	cur := make(map[string]int, len(m.Objects))
	for i, o := range m.Objects {
		k := string(o.Key)
		if _, seen := cur[k]; !seen || !m.Sorted {
			cur[k] = i
		}
	}
	v := &view{keys: make([]string, 0, len(cur))}
	for k, i := range cur {
		if !m.Objects[i].DeleteMarker {
			v.keys = append(v.keys, k)
		}
	}
	sort.Strings(v.keys)
	v.objs = make([]store.Object, len(v.keys))
	for i, k := range v.keys {
		v.objs[i] = m.Objects[cur[k]]
	}
	return v
}

// viewCache keeps the contents of the most recently used snapshots: the
// index of a sorted one, the view of another. Manifests never change, so
// an entry stays valid for as long as its snapshot exists.
type viewCache struct {
	max int

	mu      sync.Mutex
	entries map[string]*viewEntry
	order   []string // least recently used first
}

type viewEntry struct {
	ready chan struct{}
	v     contents
	err   error
}

func newViewCache(max int) *viewCache {
	return &viewCache{max: max, entries: map[string]*viewEntry{}}
}

// peek returns the contents of id if they are cached and loaded.
func (vc *viewCache) peek(id string) (contents, bool) {
	vc.mu.Lock()
	e, ok := vc.entries[id]
	vc.mu.Unlock()
	if !ok {
		return nil, false
	}
	select {
	case <-e.ready:
		return e.v, e.err == nil
	default:
		return nil, false
	}
}

// get returns the contents of snapshot id, reading its manifest from st
// when they are not cached: a sorted snapshot is indexed, another read
// whole. Concurrent callers for the same snapshot share one read.
func (vc *viewCache) get(ctx context.Context, st *store.Store, id string) (contents, error) {
	vc.mu.Lock()
	e, ok := vc.entries[id]
	if ok {
		vc.touch(id)
		vc.mu.Unlock()
		select {
		case <-e.ready:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
		return e.v, e.err
	}
	e = &viewEntry{ready: make(chan struct{})}
	vc.entries[id] = e
	vc.order = append(vc.order, id)
	for len(vc.order) > vc.max {
		delete(vc.entries, vc.order[0])
		vc.order = vc.order[1:]
	}
	vc.mu.Unlock()

	e.v, e.err = readContents(st, id)
	close(e.ready)
	if e.err != nil {
		vc.mu.Lock()
		if vc.entries[id] == e {
			delete(vc.entries, id)
			vc.order = removeString(vc.order, id)
		}
		vc.mu.Unlock()
	}
	return e.v, e.err
}

// readContents indexes snapshot id when it is sorted and reads it whole
// into a view when not.
func readContents(st *store.Store, id string) (contents, error) {
	x, err := st.IndexSnapshot(id)
	if err == nil {
		return sortedContents{x}, nil
	}
	if !errors.Is(err, store.ErrNotSorted) {
		return nil, fmt.Errorf("index manifest of snapshot %s: %w", id, err)
	}
	m, err := st.ReadManifest(id)
	if err != nil {
		return nil, fmt.Errorf("read manifest of snapshot %s: %w", id, err)
	}
	return newView(m), nil
}

// touch moves id to the most recently used end; vc.mu is held.
func (vc *viewCache) touch(id string) {
	vc.order = append(removeString(vc.order, id), id)
}

func removeString(ss []string, s string) []string {
	for i, x := range ss {
		if x == s {
			return append(ss[:i:i], ss[i+1:]...)
		}
	}
	return ss
}

// chunkSizes remembers the plaintext size of chunks already read (each one
// authenticated when it was read), so a Range GET can skip the chunks
// before its start without reading them again. Bounded: when full it is
// emptied.
type chunkSizes struct {
	mu  sync.Mutex
	max int
	m   map[store.ChunkID]int64
}

func (c *chunkSizes) get(id store.ChunkID) (int64, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	n, ok := c.m[id]
	return n, ok
}

func (c *chunkSizes) put(id store.ChunkID, n int64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.m == nil || len(c.m) >= c.max {
		c.m = make(map[store.ChunkID]int64)
	}
	c.m[id] = n
}
