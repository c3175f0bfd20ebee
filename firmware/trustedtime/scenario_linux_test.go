package trustedtime

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/holdfast-appliance/holdfast/firmware/tpm"
	"github.com/holdfast-appliance/holdfast/firmware/tpm/swtpm"
	"github.com/holdfast-appliance/holdfast/services/store"
	"github.com/holdfast-appliance/holdfast/services/store/storetest"
)

// box is an appliance as far as trusted time and prune go: a swtpm that
// keeps its state across boots, the config partition's records, a wall
// clock the test moves, and a store. Uptime is simulated by moving the
// TPM's Clock forward with TPM2_ClockSet (the owner auth is empty on a
// fresh swtpm) and the wall clock by the same amount.
type box struct {
	t     *testing.T
	state string
	cfg   string
	sim   *swtpm.Sim
	tp    *tpm.TPM
	wall  time.Time
	k     *Keeper
	st    *store.Store
	log   hclog.Logger
	t0    time.Time
	snaps map[string]time.Time // snapshot ID -> retain-until
}

type boxClock struct{ b *box }

func (c boxClock) Now() (time.Time, error) { return c.b.wall, nil }

func ctxT(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	t.Cleanup(cancel)
	return ctx
}

func newBox(t *testing.T) *box {
	t.Helper()
	state, err := os.MkdirTemp("", "tpmstate-") // swtpm takes no comma in a path
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(state) })
	t0 := time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC)
	b := &box{t: t, state: state, cfg: t.TempDir(), wall: t0, t0: t0, snaps: map[string]time.Time{},
		log: hclog.New(&hclog.LoggerOptions{Name: t.Name(), Level: hclog.Info, Output: testWriter{t}})}
	t.Cleanup(func() {
		if b.st != nil {
			b.st.Close()
		}
		if b.sim != nil {
			b.tp.Close()
			b.sim.Kill()
		}
	})
	b.boot()
	if _, err := b.k.Start(ctxT(t), b.wall); err != nil {
		t.Fatal(err)
	}
	st, err := store.Init(ctxT(t), storetest.Dir(t), store.StaticKey(testMaster()), store.InitOptions{}, store.Options{Clock: boxClock{b}, Logger: b.log})
	if err != nil {
		t.Fatal(err)
	}
	b.st = st
	return b
}

type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(string(bytes.TrimRight(p, "\n")))
	return len(p), nil
}

// boot powers the TPM on and loads the records, as PID 1 does in phase 4.
func (b *box) boot() {
	b.t.Helper()
	ctx := ctxT(b.t)
	sim, err := swtpm.Start(ctx, swtpm.Options{StateDir: b.state})
	if err != nil {
		b.t.Fatalf("start swtpm: %v", err)
	}
	b.sim = sim
	if b.tp, err = tpm.Dial(ctx, "unix", sim.SocketPath(), nil); err != nil {
		b.t.Fatal(err)
	}
	id, err := b.tp.Identity(ctx)
	if err != nil {
		b.t.Fatal(err)
	}
	key, err := Key(testMaster())
	if err != nil {
		b.t.Fatal(err)
	}
	b.k = NewKeeper(Options{Records: Records{Dir: b.cfg, Key: key}, TPM: b.tp, Identity: id, Wall: func() time.Time { return b.wall }, Logger: b.log})
	if _, err := b.k.Load(); err != nil && !strings.Contains(err.Error(), ErrNoRecord.Error()) {
		b.t.Fatal(err)
	}
}

// up lets d of uptime pass: the TPM's Clock and the wall clock move on.
func (b *box) up(d time.Duration) {
	b.t.Helper()
	ctx := ctxT(b.t)
	ci, err := b.tp.ReadClock(ctx)
	if err != nil {
		b.t.Fatal(err)
	}
	if err := b.tp.ClockSet(ctx, ci.Clock+uint64(d/time.Millisecond), nil); err != nil {
		b.t.Fatal(err)
	}
	b.wall = b.wall.Add(d)
}

func (b *box) advance() Event {
	b.t.Helper()
	prev, _ := b.k.T()
	_, ev, err := b.k.Advance(ctxT(b.t))
	if err != nil {
		b.t.Fatal(err)
	}
	if now, _ := b.k.T(); now.Before(prev) {
		b.t.Fatalf("T went back from %v to %v", prev, now)
	}
	return ev
}

// hourly is n hours of uptime with PID 1's hourly advance.
func (b *box) hourly(n int) {
	b.t.Helper()
	for range n {
		b.up(time.Hour)
		if ev := b.advance(); ev.Kind != KindCredit {
			b.t.Fatalf("hourly advance: %+v", ev)
		}
	}
}

// shutdown is the orderly power-off: TPM2_Shutdown(STATE) last.
func (b *box) shutdown() {
	b.t.Helper()
	ctx := ctxT(b.t)
	if err := b.tp.Shutdown(ctx); err != nil {
		b.t.Fatal(err)
	}
	b.tp.Close()
	if err := b.sim.Stop(ctx); err != nil {
		b.t.Fatal(err)
	}
	b.sim = nil
}

// powerCut kills swtpm without TPM2_Shutdown.
func (b *box) powerCut() {
	b.t.Helper()
	b.tp.Close()
	if err := b.sim.Kill(); err != nil {
		b.t.Fatal(err)
	}
	b.sim = nil
}

func (b *box) snapshot(name string, until time.Time) {
	b.t.Helper()
	ctx := ctxT(b.t)
	sn, err := b.st.Begin(ctx, store.BeginOptions{Source: "src", RetainUntil: until})
	if err != nil {
		b.t.Fatal(err)
	}
	if _, err := sn.Put(ctx, store.ObjectInfo{Key: []byte(name)}, strings.NewReader(name+" content")); err != nil {
		b.t.Fatal(err)
	}
	m, err := sn.Commit(ctx, store.CommitOptions{})
	if err != nil {
		b.t.Fatal(err)
	}
	b.snaps[m.ID] = until
	b.wall = b.wall.Add(time.Millisecond) // snapshots start in order
}

// prune prunes with T, as phase 6 does, and checks it removed exactly the
// snapshots whose retain-until is not after T (the newest, kept as the
// newest of its source, has retention far ahead in every test).
func (b *box) prune() *store.PruneResult {
	b.t.Helper()
	T, ok := b.k.T()
	if !ok {
		b.t.Fatal("no trusted time")
	}
	res, err := b.st.Prune(ctxT(b.t), store.PruneOptions{Now: T})
	if err != nil {
		b.t.Fatalf("prune with T %v: %v", T, err)
	}
	var want []string
	for id, until := range b.snaps {
		if !until.After(T) {
			want = append(want, id)
			delete(b.snaps, id)
		}
	}
	got := slices.Clone(res.Expired)
	slices.Sort(got)
	slices.Sort(want)
	if !slices.Equal(got, want) {
		b.t.Fatalf("prune at T %v removed %v, want %v", T, got, want)
	}
	return res
}

func (b *box) lag() time.Duration {
	T, _ := b.k.T()
	return b.wall.Sub(T)
}

// TestThirtyDaysUptime: 30 days up with hourly advances; prune then
// removes exactly what T says expired, not what the wall clock says.
func TestThirtyDaysUptime(t *testing.T) {
	b := newBox(t)
	day := 24 * time.Hour
	for _, d := range []time.Duration{10 * day, 29*day + 12*time.Hour, 29*day + 20*time.Hour, 40 * day, 1000 * day} {
		b.snapshot(d.String(), b.t0.Add(d))
	}
	b.hourly(30 * 24)
	// 1 % drift: T lags 7.2 h after 30 days (a little less: swtpm's own
	// clock runs while the test does).
	if l := b.lag(); l < 7*time.Hour || l > 7*time.Hour+15*time.Minute {
		t.Fatalf("after 30 days T lags the wall clock by %v, want about 7.2h", l)
	}
	res := b.prune()
	if len(res.Expired) != 2 {
		t.Fatalf("expired %d snapshots, want 2 (10d and 29d12h; 29d20h is past by the wall clock only)", len(res.Expired))
	}
}

// TestPowerCut: swtpm killed without TPM2_Shutdown credits at most the
// powered time (here less than the real time), raises an event, and prune
// runs at the next boot.
func TestPowerCut(t *testing.T) {
	b := newBox(t)
	b.snapshot("1d", b.t0.Add(24*time.Hour))
	b.snapshot("47h", b.t0.Add(47*time.Hour))
	b.snapshot("49h", b.t0.Add(49*time.Hour))
	b.snapshot("newest", b.t0.Add(1000*24*time.Hour))
	b.hourly(48)
	before, _ := b.k.T()
	b.up(50 * time.Minute) // no advance in between
	b.powerCut()
	b.wall = b.wall.Add(time.Hour) // off for an hour
	b.boot()
	ev := b.advance()
	after, _ := b.k.T()
	t.Logf("after the power cut: %+v", ev)
	if !ev.Alert() {
		t.Fatalf("no alert after a power cut and an hour off: %+v", ev)
	}
	if c := after.Sub(before); c > 50*time.Minute {
		t.Fatalf("credited %v for 1h50m of which 50 min powered", c)
	}
	res := b.prune()
	if len(res.Expired) != 2 {
		t.Fatalf("expired %v, want 1d and 47h (49h is past by the wall clock only)", res.Expired)
	}
}

// TestPowerOffThreeDays: three days off delay expiry by three days (and
// the drift), and prune runs at every boot and hour meanwhile.
func TestPowerOffThreeDays(t *testing.T) {
	b := newBox(t)
	until := b.t0.Add(48 * time.Hour)
	b.snapshot("48h", until)
	b.snapshot("newest", b.t0.Add(1000*24*time.Hour))
	b.hourly(24)
	b.prune()
	b.shutdown()
	b.wall = b.wall.Add(72 * time.Hour)
	b.boot()
	ev := b.advance()
	if ev.Kind != KindShort || ev.Lag < 72*time.Hour {
		t.Fatalf("after three days off: %+v, want KindShort lagging three days", ev)
	}
	var expiredAt time.Time
	for range 30 {
		if res := b.prune(); len(res.Expired) == 1 {
			expiredAt = b.wall
			break
		}
		b.hourly(1)
	}
	if expiredAt.IsZero() {
		t.Fatal("the 48h snapshot never expired")
	}
	delay := expiredAt.Sub(until)
	if delay < 72*time.Hour || delay > 72*time.Hour+2*time.Hour {
		t.Fatalf("expired %v after its retain-until, want three days and at most the drift", delay)
	}
}

// TestWallClockTenYearsAhead: the wall clock set 10 years ahead credits at
// most what the TPM saw, deletes nothing, and says how far T lags.
func TestWallClockTenYearsAhead(t *testing.T) {
	b := newBox(t)
	b.snapshot("1d", b.t0.Add(24*time.Hour))
	b.snapshot("30d", b.t0.Add(30*24*time.Hour))
	b.hourly(2)
	b.up(time.Hour)
	b.wall = b.wall.AddDate(10, 0, 0)
	ev := b.advance()
	if ev.Kind != KindShort || ev.Credit > time.Hour || ev.Lag < 9*365*24*time.Hour {
		t.Fatalf("wall clock 10 years ahead: %+v", ev)
	}
	if res := b.prune(); len(res.Expired) != 0 {
		t.Fatalf("prune removed %v", res.Expired)
	}
	// The clock is put right: nothing credited for the way back, and
	// hourly credit resumes.
	b.wall = b.wall.AddDate(-10, 0, 0)
	if ev := b.advance(); ev.Kind != KindWallBack || ev.Credit != 0 {
		t.Fatalf("wall clock put back: %+v", ev)
	}
	b.hourly(2)
	if res := b.prune(); len(res.Expired) != 0 {
		t.Fatalf("prune removed %v", res.Expired)
	}
}

// TestForgedRecordAsWorker: a far-future record written as a compromised
// worker could (with any key it holds, in the slot PID 1 writes next)
// changes nothing: T at the next boot comes from PID 1's record.
func TestForgedRecordAsWorker(t *testing.T) {
	b := newBox(t)
	b.snapshot("1d", b.t0.Add(24*time.Hour))
	b.snapshot("newest", b.t0.Add(1000*24*time.Hour))
	b.hourly(3)
	before, _ := b.k.T()
	future := time.Date(2099, 1, 1, 0, 0, 0, 0, time.UTC)
	st, _ := b.k.State()
	for name, wk := range workerKeys(t) {
		forged := State{T: future, Wall: future, Reading: st.Reading}
		for _, slot := range []int{0, 1} {
			p := filepath.Join(b.cfg, SlotFile(slot))
			if err := os.WriteFile(p, Encode(wk, uint64(1000+slot), forged), 0o600); err != nil {
				t.Fatal(err)
			}
			b.shutdown()
			b.boot()
			if T, ok := b.k.T(); ok && T.After(before) {
				t.Fatalf("record forged with %s in slot %d moved T to %v", name, slot, T)
			}
			b.advance()
			if T, _ := b.k.T(); T.After(b.wall) {
				t.Fatalf("T %v ahead of the wall clock %v", T, b.wall)
			}
			if res := b.prune(); len(res.Expired) != 0 {
				t.Fatalf("prune removed %v after a forged record", res.Expired)
			}
		}
	}
}
