package store

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/holdfast-appliance/holdfast/services/store/fsflag"
)

// trustFixture commits three snapshots retained for a year, in small packs.
type trustFixture struct {
	s    *Store
	clk  *fakeClock
	t0   time.Time
	objs map[string]map[string][]byte // snapshot ID -> objects
}

func newTrustFixture(t *testing.T) *trustFixture {
	t.Helper()
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	f := &trustFixture{clk: &fakeClock{t: t0}, t0: t0, objs: map[string]map[string][]byte{}}
	f.s = newStore(t, InitOptions{PackSize: 1 << 20}, Options{Clock: f.clk})
	for i := range 3 {
		f.clk.set(t0.Add(time.Duration(i) * time.Minute))
		objs := map[string][]byte{
			"a": randBytes(uint64(100+i), 1<<20+i),
			"b": randBytes(uint64(200+i), 300<<10),
		}
		m := putObjects(t, f.s, "src", t0.Add(365*24*time.Hour), objs)
		f.objs[m.ID] = objs
	}
	return f
}

func (f *trustFixture) checkAll(t *testing.T, s *Store) {
	t.Helper()
	for id, objs := range f.objs {
		checkSnapshot(t, s, id, objs)
	}
}

// An index authenticated with the meta key (which the worker can derive)
// that claims every pack holds one chunk nobody references must not make
// prune remove anything: prune judges a pack by its own sealed trailer.
func TestForgedIndexCacheChangesNothingPruneRemoves(t *testing.T) {
	f := newTrustFixture(t)
	packs, err := f.s.listPacks()
	if err != nil {
		t.Fatal(err)
	}
	forgeIndex(t, f.s, packs, nil)
	s := reopen(t, f.s, Options{Clock: f.clk})
	f.clk.set(f.t0.Add(24 * time.Hour))
	res, err := s.Prune(t.Context(), PruneOptions{})
	if err != nil {
		t.Fatalf("prune: %v", err)
	}
	if len(res.Packs) != 0 || len(res.Expired) != 0 {
		t.Fatalf("prune trusted the forged cache: removed packs %v, snapshots %v", res.Packs, res.Expired)
	}
	after, _ := s.listPacks()
	if !slices.Equal(packs, after) {
		t.Fatalf("packs before %v, after %v", packs, after)
	}
	f.checkAll(t, s)
	f.checkAll(t, reopen(t, s, Options{Clock: f.clk}))
}

// plantLyingPack writes and seals a pack whose trailer is authentic but
// claims the chunks of every existing pack, with garbage at their offsets,
// under a name that sorts before every other pack.
func plantLyingPack(t *testing.T, s *Store, seal bool) string {
	t.Helper()
	packs, err := s.listPacks()
	if err != nil {
		t.Fatal(err)
	}
	var claims []packEntry
	for _, p := range packs {
		es, _, err := s.packEntries(p)
		if err != nil {
			t.Fatal(err)
		}
		claims = append(claims, es...)
	}
	body := []byte(packMagic)
	var es []packEntry
	for _, c := range claims {
		es = append(es, packEntry{id: c.id, offset: uint32(len(body)), length: c.length, plainLen: c.plainLen})
		g := make([]byte, c.length)
		rand.Read(g)
		body = append(body, g...)
	}
	plain := appendEntries(nil, es)
	for range 1 << 20 {
		trailer := sealTo(nil, s.keys.meta, trailerAD, plain)
		out := slices.Concat(body, trailer, binary.BigEndian.AppendUint32(nil, uint32(len(trailer))), []byte(packEndMagic))
		sum := sha256.Sum256(out)
		name := hex.EncodeToString(sum[:])
		if name >= packs[0] {
			continue
		}
		shard := s.path(packsDir, name[:2])
		if err := s.ensureShard(shard); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(shard, name), out, 0o600); err != nil {
			t.Fatal(err)
		}
		if !seal {
			return name
		}
		if err := s.sealer.SealFile(filepath.Join(shard, name)); err != nil {
			t.Fatal(err)
		}
		return name
	}
	t.Fatal("no name sorting first found")
	return ""
}

func TestLyingPackHidesNoChunk(t *testing.T) {
	f := newTrustFixture(t)
	liar := plantLyingPack(t, f.s, true)
	s := reopen(t, f.s, Options{Clock: f.clk})
	f.checkAll(t, s)

	r, err := s.Verify(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	named := false
	for _, p := range r.Problems {
		if strings.HasSuffix(p.Path, liar) && p.Kind == "pack" {
			named = true
		}
		if p.Path != "" && !strings.HasSuffix(p.Path, liar) {
			t.Errorf("verify blames an honest file: %s", p)
		}
	}
	if !named {
		t.Errorf("verify does not name the lying pack %s: %v", liar, r.Problems)
	}
	if len(r.DamagedObjects) != 0 {
		t.Errorf("verify calls objects damaged that read back: %v", r.DamagedObjects)
	}

	if err := s.RebuildIndex(); err != nil {
		t.Fatal(err)
	}
	f.checkAll(t, s)

	// Prune keeps every honest pack: the liar never stands in for them.
	f.clk.set(f.t0.Add(24 * time.Hour))
	res, err := s.Prune(t.Context(), PruneOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Packs) != 0 {
		t.Fatalf("prune removed %v", res.Packs)
	}
	f.checkAll(t, reopen(t, s, Options{Clock: f.clk}))
}

// Recovery, which holds the keys, seals no pack whose blobs do not match
// its trailer: a crash-left pack is checked blob by blob first.
func TestRecoverySealsNoLyingPack(t *testing.T) {
	f := newTrustFixture(t)
	liar := plantLyingPack(t, f.s, false)
	s := reopen(t, f.s, Options{Clock: f.clk})
	sealed, err := fsflag.Has(s.packPath(liar), fsflag.Immutable)
	if err != nil {
		t.Fatal(err)
	}
	if sealed {
		t.Fatalf("recovery sealed pack %s whose trailer lies", liar)
	}
	f.checkAll(t, s)
}
