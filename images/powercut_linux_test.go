package images

import (
	"context"
	"fmt"
	"maps"
	"math/rand/v2"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/minio/minio-go/v7"

	"github.com/holdfast-appliance/holdfast/firmware/appliance"
	"github.com/holdfast-appliance/holdfast/firmware/console"
	"github.com/holdfast-appliance/holdfast/tools/testminio"
)

// The power-cut test's knobs: HOLDFAST_POWERCUTS cuts (make faults sets
// 50), seeded by HOLDFAST_POWERCUT_SEED (default: the time; logged), the
// summary table also written to HOLDFAST_POWERCUT_REPORT when set (a
// relative path is taken from the repository's root).
const (
	powerCutsDefault = 3
	pcSmallObjects   = 70
	pcBigObjects     = 2
	pcBigSize        = 12 << 20
	// pcBootTimeout bounds one boot (QEMU start to the ready line and the
	// boot's scheduled pull) under TCG on a loaded machine.
	pcBootTimeout = 8 * time.Minute
	// pcPerCut is the time budget of one cut: boot, checks, pull.
	pcPerCut = 4 * time.Minute
	// pcReadAll is how many snapshots are all read back after every cut;
	// with more, a sample (see check).
	pcReadAll = 12
)

const pcIDPattern = `\d{8}T\d{6}Z-[0-9a-f]{8}`

var (
	pcStartedRE     = regexp.MustCompile(`snapshot started: id=(` + pcIDPattern + `) source=mail`)
	pcStoreCommitRE = regexp.MustCompile(`snapshot committed: id=(` + pcIDPattern + `)`)
	// The worker's line once a pull returned (firmware/worker).
	pcPullDoneRE   = regexp.MustCompile(`snapshot committed: source=mail snapshot=(` + pcIDPattern + `) .*complete=(true|false)`)
	pcPullFailedRE = regexp.MustCompile(`scheduled pull failed:[^\n]*`)
	pcSnapLineRE   = regexp.MustCompile(`(?m)^(` + pcIDPattern + `) mail \S+ objects=(\d+) bytes=(\d+) complete=(true|false) `)
	// What recovery says about an interrupted snapshot: PID 1's journal
	// recovery at boot (services/store recover) and the next pull's
	// finishInterrupted (services/ingest).
	pcRecoveryREs = []struct {
		re   *regexp.Regexp
		what string
	}{
		{regexp.MustCompile(`completing commit interrupted before its rename: id=(` + pcIDPattern + `)`), "commit completed at boot"},
		{regexp.MustCompile(`removing journal torn before its first frame: id=(` + pcIDPattern + `)`), "torn journal removed at boot"},
		{regexp.MustCompile(`interrupted snapshot discarded: id=(` + pcIDPattern + `)`), "journal discarded"},
		{regexp.MustCompile(`interrupted pull committed as an incomplete snapshot:[^\n]*snapshot=(` + pcIDPattern + `)`), "journal resumed, committed incomplete"},
		{regexp.MustCompile(`receipt issued for a snapshot committed without one[^\n]*id=(` + pcIDPattern + `)`), "receipt issued by the worker's open"},
	}
	// The worker's Sync to the second disk after a pull (services/mirror).
	pcSyncedRE      = regexp.MustCompile(`mirror synced: disk=vdc copied=[1-9]`)
	pcSealedRE      = regexp.MustCompile(`sealing file left unsealed by a crash: path=\S*/(packs|snapshots|receipts|retention)/`)
	pcPruneFrozenRE = regexp.MustCompile(`prune frozen: nothing was deleted:[^\n]*error="([^"\n]*)"`)
	pcPruneDoneRE   = regexp.MustCompile(`prune done: expired=(\d+)`)
	pcTimeLagRE     = regexp.MustCompile(`trusted time runs late[^\n]*lag=(\S+)`)
	// Lines that must never follow a power cut.
	pcBadREs = []*regexp.Regexp{
		regexp.MustCompile(`disk-error[^\n]*`),
		regexp.MustCompile(`scrub-damage[^\n]*`),
		regexp.MustCompile(`unreadable journal[^\n]*`),
		regexp.MustCompile(`unsealed file fails its check[^\n]*`),
		regexp.MustCompile(`cannot open the store[^\n]*`),
		regexp.MustCompile(`recovered snapshot has no receipt[^\n]*`),
		regexp.MustCompile(`snapshot committed without a receipt[^\n]*`),
		regexp.MustCompile(`snapshot still has no receipt[^\n]*`),
		regexp.MustCompile(`missing receipts not issued[^\n]*`),
		regexp.MustCompile(`finish interrupted snapshot[^\n]*`),
		regexp.MustCompile(`panic:[^\n]*`),
	}
	// The worker's and the console's log lines: the last one before a
	// cut is what the console showed in progress.
	pcLogLineRE = regexp.MustCompile(`(?m)^\S+ \[\w+\]\s+holdfast\.((?:worker[\w.]*|console)): ([^:\r\n]+)`)
	pcResumedRE = regexp.MustCompile(`snapshot resumed: id=(` + pcIDPattern + `) source=mail objects=(\d+)`)
)

// pcBucket is the source bucket and what it held at each pull: gens[g] is
// key -> SHA-256 after the g-th change (0: the first fill).
type pcBucket struct {
	mc   *testminio.Server
	rnd  *rand.Rand
	objs map[string][]byte
	gens []map[string]string
	next int
}

func (b *pcBucket) random(n int) []byte {
	p := make([]byte, n+7)
	for i := 0; i < n; i += 8 {
		v := b.rnd.Uint64()
		for j := range 8 {
			p[i+j] = byte(v >> (8 * j))
		}
	}
	return p[:n]
}

func (b *pcBucket) put(t *testing.T, k string, v []byte) {
	t.Helper()
	b.objs[k] = v
	b.mc.Put(t, "mail", k, v, minio.PutObjectOptions{ContentType: "message/rfc822"})
}

func (b *pcBucket) small() []byte { return b.random(1000 + b.rnd.IntN(60000)) }

func (b *pcBucket) snapshot() {
	b.gens = append(b.gens, sums(b.objs))
}

func (b *pcBucket) bytes() int64 {
	var n int64
	for _, v := range b.objs {
		n += int64(len(v))
	}
	return n
}

// fill puts the first contents: pcSmallObjects mails and pcBigObjects
// mailboxes.
func (b *pcBucket) fill(t *testing.T) {
	t.Helper()
	for i := range pcSmallObjects {
		b.put(t, fmt.Sprintf("inbox/%03d.eml", i), b.small())
	}
	for i := range pcBigObjects {
		b.put(t, fmt.Sprintf("archive/big-%d.mbox", i), b.random(pcBigSize))
	}
	b.snapshot()
}

// change adds two mails, changes two, deletes one and rewrites one big
// mailbox, so that every pull writes a pack of about 12 MiB (sealed at
// the commit: a pack holds 16 MiB) and a journal frame; the store grows
// by that much per pull, which bounds how long verify takes after the
// 50th cut. Six changes in about 75 objects stay well below the
// mass-change threshold (30 %).
func (b *pcBucket) change(ctx context.Context, t *testing.T) {
	t.Helper()
	var small []string
	for k := range b.objs {
		if strings.HasPrefix(k, "inbox/") {
			small = append(small, k)
		}
	}
	slices.Sort(small)
	for range 2 {
		b.put(t, fmt.Sprintf("inbox/new-%04d.eml", b.next), b.small())
		b.next++
	}
	for range 2 {
		b.put(t, small[b.rnd.IntN(len(small))], b.small())
	}
	gone := small[b.rnd.IntN(len(small))]
	delete(b.objs, gone)
	if err := b.mc.Client.RemoveObject(ctx, "mail", gone, minio.RemoveObjectOptions{}); err != nil {
		t.Fatalf("remove %q: %v", gone, err)
	}
	b.put(t, fmt.Sprintf("archive/big-%d.mbox", len(b.gens)%pcBigObjects), b.random(pcBigSize))
	b.snapshot()
}

// pcSnap is a snapshot the test has seen, and the bucket generation its
// pull listed.
type pcSnap struct {
	gen      int
	cut      bool // its pull was cut: it may be committed incomplete
	listed   bool // seen in the snapshots list
	complete bool
	objects  int
	receipt  bool // its receipt checked
	readBack bool // read back at least once
}

// pcRow is one line of the summary table.
type pcRow struct {
	cut      int
	delay    time.Duration
	lastLine string // the last worker or console log line before the cut
	phase    string // what the cut interrupted
	snapshot string // the cut pull's snapshot, "" when it had not begun
	outcome  string
	recovery []string
	boot     time.Duration
	verify   time.Duration
	complete int
	partial  int
	readBack int
	took     time.Duration
	failures []string
	prune    string // what prune did at the boot after the cut
	scrub    string // what the scrub of both disks found after it
}

func (r *pcRow) result() string {
	if len(r.failures) == 0 {
		return "OK"
	}
	return "FAIL: " + strings.Join(r.failures, "; ")
}

// pcRun is the state of TestPowerCuts.
type pcRun struct {
	t       *testing.T
	ctx     context.Context
	bucket  *pcBucket
	snaps   map[string]*pcSnap
	order   []string // snapshot IDs in the order first seen
	rows    []*pcRow
	pullFor time.Duration // an uninterrupted pull, typed to committed and synced to the second disk
	seed    uint64
	pick    *rand.Rand // which older snapshots are read back
}

// note records the snapshot IDs that text names (pull or recovery lines)
// and that the test does not know yet as pulls of bucket generation gen.
func (p *pcRun) note(text string, gen int, cut bool) {
	var ids []string
	for _, m := range pcStartedRE.FindAllStringSubmatch(text, -1) {
		ids = append(ids, m[1])
	}
	for _, r := range pcRecoveryREs {
		for _, m := range r.re.FindAllStringSubmatch(text, -1) {
			ids = append(ids, m[1])
		}
	}
	for _, id := range ids {
		if _, ok := p.snaps[id]; !ok {
			p.snaps[id] = &pcSnap{gen: gen, cut: cut}
			p.order = append(p.order, id)
		}
	}
}

// try runs a console command, returning its error instead of failing.
func (p *pcRun) try(g *guest, name string, args ...string) (string, error) {
	var out strings.Builder
	ctx, cancel := g.live(p.ctx)
	defer cancel()
	_, err := console.RunCommand(ctx, g.c, console.Command{Name: name, Args: args}, &out)
	if err != nil && context.Cause(ctx) != nil {
		err = fmt.Errorf("%w (%v)", err, context.Cause(ctx))
	}
	return out.String(), err
}

// waitAny waits until the text of g after offset off matches one of res
// and returns the index of the first that does and its match.
func (p *pcRun) waitAny(g *guest, off int, timeout time.Duration, res ...*regexp.Regexp) (int, []string, error) {
	ctx, cancel := context.WithTimeout(p.ctx, timeout)
	defer cancel()
	for {
		text := g.text.String()
		if off > len(text) {
			off = len(text)
		}
		for i, re := range res {
			if m := re.FindStringSubmatch(text[off:]); m != nil {
				return i, m, nil
			}
		}
		select {
		case <-ctx.Done():
			return -1, nil, fmt.Errorf("waiting %s for %v: %w", timeout, res, ctx.Err())
		case <-g.vm.Done():
			return -1, nil, fmt.Errorf("QEMU exited while waiting for %v: %s; last console lines:\n%s", res, g.exitStatus(), lastLines(g.text.String(), 40))
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// lastLine is the last log line of the worker or the console in text:
// logger and message.
func lastLine(text string) string {
	m := pcLogLineRE.FindAllStringSubmatch(text, -1)
	if len(m) == 0 {
		return "none yet"
	}
	l := m[len(m)-1]
	return l[1] + ": " + l[2]
}

// phase says what the cut interrupted, from what the console showed
// before it (pre) and what recovery and the next pull showed after it
// (post): the store logs only the milestones of a pull, the rest follows
// from the state the cut left.
func (p *pcRun) phase(row *pcRow, pre, post string, committedBefore bool, sealed map[string]int) string {
	id := row.snapshot
	ph := ""
	s := p.snaps[id]
	switch {
	case id == "":
		ph = "worker opening the store (no snapshot begun)"
	case committedBefore && strings.Contains(pre, "mirror synced: disk=vdc"):
		ph = "after the commit and the sync to the second disk"
	case committedBefore && regexp.MustCompile(`snapshot committed: source=mail snapshot=`+id).MatchString(pre):
		ph = "after the commit: syncing to the second disk"
	case committedBefore:
		ph = "after the commit (store closing)"
	case strings.Contains(post, "completing commit interrupted before its rename: id="+id):
		ph = "commit: tail frame written, manifest not yet renamed"
	case strings.Contains(post, "removing journal torn before its first frame: id="+id):
		ph = "begin: journal head frame"
	case s != nil && s.listed && s.complete && sealed["snapshots"] > 0:
		ph = "commit: manifest renamed, not yet sealed"
	case s != nil && s.listed && s.complete && regexp.MustCompile(`receipt issued for a snapshot committed without one[^\n]*id=`+id).MatchString(post):
		ph = "commit: manifest sealed, receipt not yet written"
	case s != nil && s.listed && s.complete:
		ph = "commit: manifest renamed and sealed (receipt, index, clock record)"
	}
	if ph == "" {
		n := -1
		for _, m := range pcResumedRE.FindAllStringSubmatch(post, -1) {
			if m[1] == id {
				n, _ = strconv.Atoi(m[2])
			}
		}
		switch {
		case n < 0:
			ph = "unknown"
		case !strings.Contains(pre, "listed: snapshot="+id) && n == 0:
			ph = "listing (journal head only)"
		case n == 0:
			ph = "fetching: no pack sealed yet"
		case s != nil && n >= len(p.bucket.gens[s.gen]):
			ph = fmt.Sprintf("commit: every object journaled (%d), no tail yet", n)
		default:
			ph = fmt.Sprintf("fetching or committing: a pack sealed, %d objects journaled", n)
		}
	}
	if sealed["packs"] > 0 {
		ph += "; a pack renamed, not yet sealed"
	}
	return ph
}

func (p *pcRun) fail(row *pcRow, format string, args ...any) {
	p.t.Helper()
	msg := fmt.Sprintf(format, args...)
	if row != nil {
		row.failures = append(row.failures, msg)
		msg = fmt.Sprintf("cut %d: %s", row.cut, msg)
	}
	p.t.Error(msg)
}

// check runs after a boot's scheduled pull: verify, the snapshot list
// against what the test knows, snapshots read back (all of them when all
// is set), and the receipt of every snapshot whose pull was cut.
func (p *pcRun) check(g *guest, row *pcRow, all bool) {
	t := p.t
	t.Helper()
	began := time.Now()
	if out, err := p.try(g, "verify"); err != nil || !strings.Contains(out, "verify OK") {
		p.fail(row, "verify: %v: %s", err, strings.TrimSpace(out))
	}
	if row != nil {
		row.verify = time.Since(began)
	}
	// Both disks hold every sealed file, undamaged: a copy the cut
	// interrupted is finished at boot (maintenance Sync) or by the
	// scrub's repair of missing files, never left half-made.
	out, err := p.try(g, "scrub")
	sc := strings.TrimPrefix(scrubLineRE.FindString(out), "scrub: ")
	if err != nil || !strings.Contains(sc, " 0 damaged and ") || !strings.Contains(sc, " 0 with no good copy, 0 conflicting") ||
		strings.Contains(sc, "disks not read") {
		p.fail(row, "scrub: %v: %s", err, strings.TrimSpace(out))
	}
	if row != nil {
		row.scrub = pcScrub(sc)
	}
	out, err = p.try(g, "snapshots")
	if err != nil {
		p.fail(row, "snapshots: %v: %s", err, out)
		return
	}
	listed := map[string]bool{}
	for _, m := range pcSnapLineRE.FindAllStringSubmatch(out, -1) {
		id, complete := m[1], m[4] == "true"
		n, _ := strconv.Atoi(m[2])
		listed[id] = true
		s, ok := p.snaps[id]
		if !ok {
			p.fail(row, "snapshot %s is listed but no pull or recovery on the console named it", id)
			continue
		}
		if s.listed && (s.complete != complete || s.objects != n) {
			p.fail(row, "snapshot %s changed: complete=%v objects=%d, was complete=%v objects=%d", id, complete, n, s.complete, s.objects)
		}
		if !complete && !s.cut {
			p.fail(row, "snapshot %s is incomplete, yet its pull was not cut", id)
		}
		s.listed, s.complete, s.objects = true, complete, n
	}
	if row != nil {
		row.complete, row.partial = 0, 0
	}
	for _, id := range p.order {
		s := p.snaps[id]
		if s.listed && !listed[id] {
			p.fail(row, "committed snapshot %s is no longer listed", id)
		}
		if row != nil && listed[id] {
			if s.complete {
				row.complete++
			} else {
				row.partial++
			}
		}
	}
	// Read snapshots back through the store: every one while there are
	// at most pcReadAll, and after the last cut; in between, those not
	// read back yet, the first and three drawn at random (verify has
	// checked every chunk and manifest of all of them).
	var older []string
	for _, id := range p.order {
		if s := p.snaps[id]; listed[id] && s.readBack && id != p.order[0] {
			older = append(older, id)
		}
	}
	sample := map[string]bool{}
	for range 3 {
		if len(older) > 0 {
			sample[older[p.pick.IntN(len(older))]] = true
		}
	}
	n := 0
	for _, id := range p.order {
		s := p.snaps[id]
		if !listed[id] || !(all || len(listed) <= pcReadAll || !s.readBack || id == p.order[0] || sample[id]) {
			continue
		}
		s.readBack = true
		out, err := p.try(g, "ls", id)
		if err != nil {
			p.fail(row, "ls %s: %v", id, err)
			continue
		}
		got, want := objectSums(t, out), p.bucket.gens[s.gen]
		what := fmt.Sprintf("snapshot %s (bucket generation %d, complete=%v)", id, s.gen, s.complete)
		if s.complete {
			if !maps.Equal(got, want) {
				p.fail(row, "%s: %d objects read back, %d differ from the bucket's %d at its pull", what, len(got), pcDiffer(got, want), len(want))
			}
		} else {
			for k, sum := range got {
				if want[k] != sum {
					p.fail(row, "%s: object %q reads back as %s, the bucket held %q", what, k, sum, want[k])
				}
			}
		}
		if len(got) != s.objects {
			p.fail(row, "%s: %d objects read back, the list says %d", what, len(got), s.objects)
		}
		n++
		// A snapshot committed across a cut still has its receipt: the
		// console's restore checks it before anything else, and only
		// then finds that the prefix matches nothing, so nothing is
		// written.
		if s.cut && !s.receipt {
			s.receipt = true
			out, err := p.try(g, "restore", id, "restored", "receipt-check/")
			if err == nil || !strings.Contains(err.Error(), `holds no object under "receipt-check/"`) {
				p.fail(row, "%s: receipt check (console restore): %v: %s", what, err, strings.TrimSpace(out))
			}
		}
	}
	if row != nil {
		row.readBack = n
	}
}

// pcScrub shortens a scrub summary for the table: files checked and
// copies made.
func pcScrub(sc string) string {
	files, _, _ := strings.Cut(sc, ":")
	out := files + " checked"
	if m := regexp.MustCompile(`(\d+) missing on one disk`).FindStringSubmatch(sc); m != nil && m[1] != "0" {
		out += ", " + m[1] + " missing copied"
	}
	return out
}

func pcDiffer(got, want map[string]string) int {
	n := 0
	for k, w := range want {
		if got[k] != w {
			n++
		}
	}
	for k := range got {
		if _, ok := want[k]; !ok {
			n++
		}
	}
	return n
}

// pcPrune says what prune did at a boot, from its console text.
func pcPrune(text string) string {
	if m := pcPruneFrozenRE.FindStringSubmatch(text); m != nil {
		switch {
		case strings.Contains(m[1], "below the anchor"):
			return "frozen: TPM clock below the anchor"
		case strings.Contains(m[1], "without TPM2_Shutdown"):
			return "frozen: TPM safe=NO"
		}
		return "frozen: " + m[1]
	}
	if m := pcPruneDoneRE.FindStringSubmatch(text); m != nil {
		lag := "T on time"
		if l := pcTimeLagRE.FindStringSubmatch(text); l != nil {
			lag = "T lags " + l[1]
		}
		return "ran, expired " + m[1] + "; " + lag
	}
	return "no prune line"
}

// bootPull waits for the boot's ready line and its scheduled pull (the
// worker pulls every source once when it starts), which must commit a
// complete snapshot of the bucket as it is.
func (p *pcRun) bootPull(g *guest, row *pcRow) (string, bool) {
	p.t.Helper()
	i, m, err := p.waitAny(g, 0, pcBootTimeout, regexp.MustCompile(regexp.QuoteMeta(appliance.ReadyLine)), regexp.MustCompile(appliance.SafeModeLine+`[^\n]*`))
	if err != nil || i != 0 {
		p.fail(row, "boot: no ready line (%v): %q", err, m)
		return "", false
	}
	if row != nil {
		row.boot = time.Since(g.started)
	}
	i, m, err = p.waitAny(g, 0, pcBootTimeout, pcPullDoneRE, pcPullFailedRE)
	switch {
	case err != nil:
		p.fail(row, "the boot's scheduled pull did not end: %v", err)
		return "", false
	case i == 1:
		p.fail(row, "the boot's scheduled pull failed: %s", m[0])
		return "", false
	case m[2] != "true":
		p.fail(row, "the boot's scheduled pull committed %s incomplete", m[1])
	}
	return m[1], true
}

// TestPowerCuts cuts the appliance's power (SIGKILL to QEMU, swtpm with it)
// at random instants during pulls and boots it again each time on the same
// disks and TPM state. After each cut: the box boots to ready; the boot's
// scheduled pull finishes the interrupted snapshot (committed incomplete,
// or completed, or its torn journal removed, as the console must say) and
// commits a complete snapshot of the bucket; verify passes; every snapshot
// ever committed is still listed, unchanged, and reads back byte-identical
// with the bucket as its pull listed it (an incomplete one: a subset of
// it); only snapshots whose pull was cut are incomplete; and every
// snapshot committed across a cut has a receipt that checks. The delay of
// each cut is drawn, from a logged seed, over the duration of an
// uninterrupted pull measured first.
func TestPowerCuts(t *testing.T) {
	cuts := powerCutsDefault
	if s := os.Getenv("HOLDFAST_POWERCUTS"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 {
			t.Fatalf("HOLDFAST_POWERCUTS=%q: want a positive count", s)
		}
		cuts = n
	}
	seed := uint64(time.Now().UnixNano())
	if s := os.Getenv("HOLDFAST_POWERCUT_SEED"); s != "" {
		n, err := strconv.ParseUint(s, 10, 64)
		if err != nil {
			t.Fatalf("HOLDFAST_POWERCUT_SEED=%q: %v", s, err)
		}
		seed = n
	}
	t.Logf("%d power cuts, seed %d (HOLDFAST_POWERCUT_SEED=%[2]d repeats the bucket's changes and the delays)", cuts, seed)
	// The budget grows with the count.
	v := startVMTest(t, "qemu-x86_64", "powercut", 15*time.Minute+time.Duration(cuts)*pcPerCut, Options{}, nil)
	ctx, b, r, log, out := v.ctx, v.b, v.r, v.log, v.out

	mc := testminio.Start(t)
	mc.MakeBucket(t, "mail", false)
	mc.MakeBucket(t, "restored", false)
	_, port, _ := strings.Cut(mc.Endpoint, ":")
	p := &pcRun{t: t, ctx: ctx, snaps: map[string]*pcSnap{}, seed: seed, pick: rand.New(rand.NewPCG(seed, 3)),
		bucket: &pcBucket{mc: mc, rnd: rand.New(rand.NewPCG(seed, 1)), objs: map[string][]byte{}}}
	delays := rand.New(rand.NewPCG(seed, 2))
	p.bucket.fill(t)
	t.Logf("bucket: %d objects, %d bytes", len(p.bucket.objs), p.bucket.bytes())
	defer p.summary()
	cfg := mailConfig("holdfast-powercut", port, restoredTarget(port))
	state := filepath.Join(out, "vm")

	// Boot 1: provision; the first pull is the worker's scheduled one.
	g := bootGuest(ctx, t, b, r.Image, state, log)
	provision(ctx, t, g, r, "holdfast-powercut", cfg)
	if _, ok := p.bootPull(g, nil); !ok {
		t.FailNow()
	}
	p.note(g.text.String(), 0, false)

	// The store is kept on both data disks (docs/mirror.md): cuts also
	// land in the worker's Sync to the second disk, and every check
	// scrubs both. The mirror is made at the next boot.
	if out := g.run(ctx, "mirror-disk", "HOLDFAST-DATA1"); !strings.Contains(out, "second copy of the store at the next boot") {
		t.Fatalf("mirror-disk: %s", out)
	}
	g.powerOff(ctx)
	g = bootGuest(ctx, t, b, r.Image, state, log)
	if _, ok := p.bootPull(g, nil); !ok {
		t.FailNow()
	}
	if !strings.Contains(g.text.String(), "Mirror disk made:") {
		t.Fatal("the second data disk was not made a mirror")
	}
	p.note(g.text.String(), 0, false)

	// An uninterrupted pull, typed as the cut ones are: its duration is
	// the range the cuts' delays are drawn from.
	p.bucket.change(ctx, t)
	off := len(g.text.String())
	typed := time.Now()
	g.typeLine("pull")
	if _, m, err := p.waitAny(g, off, pcBootTimeout, pcPullDoneRE); err != nil || m[2] != "true" {
		t.Fatalf("uninterrupted pull: %v %q", err, m)
	}
	// The range ends when the pull's files are on the second disk too.
	if _, m, err := p.waitAny(g, off, pcBootTimeout, pcSyncedRE); err != nil {
		t.Fatalf("uninterrupted pull: not synced to the second disk: %v %q", err, m)
	}
	p.pullFor = time.Since(typed)
	p.note(g.text.String()[off:], 1, false)
	t.Logf("an uninterrupted pull (%d objects; a mailbox of %d MiB and five mails changed) takes %s from typing pull to its files on the second disk; cuts fall in [0, that]",
		len(p.bucket.objs), pcBigSize>>20, p.pullFor.Round(time.Millisecond))
	p.check(g, nil, true)
	if t.Failed() {
		t.FailNow()
	}

	for n := 1; n <= cuts; n++ {
		began := time.Now()
		row := &pcRow{cut: n, delay: time.Duration(delays.Int64N(int64(p.pullFor)))}
		p.rows = append(p.rows, row)
		gen := len(p.bucket.gens)
		p.bucket.change(ctx, t)
		off := len(g.text.String())
		g.typeLine("pull")
		select {
		case <-time.After(row.delay):
		case <-ctx.Done():
			t.Fatalf("cut %d: %v", n, ctx.Err())
		}
		if err := g.vm.Kill(); err != nil {
			t.Fatalf("cut %d: %v", n, err)
		}
		pre := g.text.String()[off:]
		g.stop(ctx)
		row.lastLine = lastLine(pre)
		p.note(pre, gen, true)
		committedBefore := false
		if m := pcStartedRE.FindStringSubmatch(pre); m != nil {
			row.snapshot = m[1]
			committedBefore = slices.ContainsFunc(pcStoreCommitRE.FindAllStringSubmatch(pre, -1), func(c []string) bool { return c[1] == m[1] })
		}

		g = bootGuest(ctx, t, b, r.Image, state, log)
		bootID, ok := p.bootPull(g, row)
		text := g.text.String()
		// Recovery may name the cut pull's snapshot when its start line
		// never reached the console; the bucket is as that pull listed
		// it, and as the boot's pull listed it.
		for _, rc := range pcRecoveryREs {
			for _, m := range rc.re.FindAllStringSubmatch(text, -1) {
				if row.snapshot == "" {
					row.snapshot = m[1]
				}
				what := rc.what
				if m[1] != row.snapshot {
					what += " (another snapshot: " + m[1] + ")"
				}
				row.recovery = append(row.recovery, what)
			}
		}
		p.note(text, gen, true)
		if bootID != "" {
			p.snaps[bootID].cut = false
		}
		sealed := map[string]int{}
		for _, m := range pcSealedRE.FindAllStringSubmatch(text, -1) {
			sealed[m[1]]++
		}
		for _, dir := range slices.Sorted(maps.Keys(sealed)) {
			row.recovery = append(row.recovery, fmt.Sprintf("%d file(s) in %s/ sealed at boot", sealed[dir], dir))
		}
		row.prune = pcPrune(text)
		for _, re := range pcBadREs {
			if m := re.FindString(text); m != "" {
				p.fail(row, "console after the cut: %s", m)
			}
		}
		if !ok {
			t.FailNow()
		}
		p.check(g, row, n == cuts)
		row.phase = p.phase(row, pre, text, committedBefore, sealed)
		// What became of the pull in progress.
		switch s := p.snaps[row.snapshot]; {
		case row.snapshot == "":
			row.outcome = "no snapshot begun"
		case committedBefore:
			row.outcome = "committed before the cut"
		case s != nil && s.listed && s.complete:
			row.outcome = "committed complete"
		case s != nil && s.listed:
			row.outcome = fmt.Sprintf("committed incomplete, %d objects", s.objects)
			if !slices.ContainsFunc(row.recovery, func(r string) bool { return strings.HasPrefix(r, "journal resumed") }) {
				p.fail(row, "snapshot %s was committed incomplete without the console saying so", row.snapshot)
			}
		case strings.Contains(text, "removing journal torn before its first frame: id="+row.snapshot):
			row.outcome = "torn journal removed"
		default:
			p.fail(row, "the interrupted snapshot %s is neither committed nor reported removed", row.snapshot)
			row.outcome = "vanished"
		}
		row.took = time.Since(began)
		t.Logf("cut %d: delay %s; last line %q; interrupted %s; snapshot %s %s; recovery: %s; prune %s; boot %s, verify %s; %d complete + %d incomplete snapshots, %d read back; %s (%s)",
			n, row.delay.Round(time.Millisecond), row.lastLine, row.phase, row.snapshot, row.outcome, strings.Join(row.recovery, ", "), row.prune,
			row.boot.Round(time.Second), row.verify.Round(100*time.Millisecond), row.complete, row.partial, row.readBack, row.result(), row.took.Round(time.Second))
		t.Logf("cut %d: scrub of both disks: %s", n, row.scrub)
	}
	g.stop(ctx)
}

// summary logs the table of cuts and writes it to HOLDFAST_POWERCUT_REPORT.
func (p *pcRun) summary() {
	if len(p.rows) == 0 {
		return
	}
	var b strings.Builder
	ok, frozen := 0, 0
	var total time.Duration
	for _, r := range p.rows {
		if len(r.failures) == 0 {
			ok++
		}
		if strings.HasPrefix(r.prune, "frozen") {
			frozen++
		}
		total += r.took
	}
	fmt.Fprintf(&b, "Power cuts: %d of %d passed; seed %d; uninterrupted pull %s; %s per cut on average (boot, checks, read-back); prune frozen at %d of the boots after a cut (goal: 0; the trusted time credits nothing for a cut, so it only runs late)\n\n",
		ok, len(p.rows), p.seed, p.pullFor.Round(time.Millisecond), (total / time.Duration(len(p.rows))).Round(time.Second), frozen)
	fmt.Fprintf(&b, "| cut | delay | last line before the cut | what the cut interrupted | interrupted snapshot | recovery on the console | prune at boot | boot / verify | scrub of both disks | snapshots after (complete+incomplete) | read back | result |\n")
	fmt.Fprintf(&b, "|---|---|---|---|---|---|---|---|---|---|---|---|\n")
	for _, r := range p.rows {
		rec := strings.Join(r.recovery, ", ")
		if rec == "" {
			rec = "-"
		}
		snap := r.outcome
		if r.snapshot != "" {
			snap = r.snapshot + ": " + r.outcome
		}
		fmt.Fprintf(&b, "| %d | %s | %s | %s | %s | %s | %s | %s / %s | %s | %d+%d | %d | %s |\n", r.cut, r.delay.Round(time.Millisecond), r.lastLine, r.phase,
			snap, rec, r.prune, r.boot.Round(time.Second), r.verify.Round(100*time.Millisecond), r.scrub, r.complete, r.partial, r.readBack,
			strings.ReplaceAll(r.result(), "|", "/"))
	}
	p.t.Logf("summary:\n%s", b.String())
	if f := os.Getenv("HOLDFAST_POWERCUT_REPORT"); f != "" {
		// Relative to the repository, not to the package directory go
		// test runs in: make faults passes out/powercuts.md.
		if !filepath.IsAbs(f) {
			f = filepath.Join(moduleRoot(p.t), f)
		}
		if err := os.MkdirAll(filepath.Dir(f), 0o755); err != nil {
			p.t.Errorf("report: %v", err)
			return
		}
		if err := os.WriteFile(f, []byte(b.String()), 0o644); err != nil {
			p.t.Errorf("report: %v", err)
		}
	}
}
