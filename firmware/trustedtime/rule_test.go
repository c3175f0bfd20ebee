package trustedtime

import (
	"testing"
	"time"
)

func TestAdvance(t *testing.T) {
	tpmA := [32]byte{1}
	tpmB := [32]byte{2}
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	base := State{T: t0, Wall: t0, Reading: Reading{TPM: tpmA, Clock: 1_000_000, ResetCount: 5, RestartCount: 2}}
	hour := uint64(time.Hour / time.Millisecond)
	rd := func(id [32]byte, clock uint64, reset, restart uint32) Reading {
		return Reading{TPM: id, Clock: clock, ResetCount: reset, RestartCount: restart}
	}
	for _, tc := range []struct {
		name   string
		r      Reading
		wall   time.Time
		credit time.Duration
		kind   Kind
	}{
		{"an hour of uptime credits an hour less 1% drift", rd(tpmA, 1_000_000+hour, 5, 2), t0.Add(time.Hour), time.Hour - 36*time.Second, KindCredit},
		{"a slow wall clock bounds the credit", rd(tpmA, 1_000_000+hour, 5, 2), t0.Add(30 * time.Minute), 30 * time.Minute, KindCredit},
		{"orderly reboot (restartCount up) credits the TPM's time", rd(tpmA, 1_000_000+hour, 5, 3), t0.Add(time.Hour), time.Hour - 36*time.Second, KindCredit},
		{"cold boot (resetCount up, Clock kept) credits the TPM's time", rd(tpmA, 1_000_000+hour, 6, 0), t0.Add(time.Hour), time.Hour - 36*time.Second, KindCredit},
		{"3 days off after an hour up credits the hour only", rd(tpmA, 1_000_000+hour, 6, 0), t0.Add(73 * time.Hour), time.Hour - 36*time.Second, KindShort},
		{"wall clock 10 years ahead credits the TPM's hour only", rd(tpmA, 1_000_000+hour, 5, 2), t0.AddDate(10, 0, 0), time.Hour - 36*time.Second, KindShort},
		{"wall clock back credits nothing", rd(tpmA, 1_000_000+hour, 5, 2), t0.Add(-time.Hour), 0, KindWallBack},
		{"power cut: Clock below the record credits nothing", rd(tpmA, 999_000, 6, 0), t0.Add(time.Hour), 0, KindRebase},
		{"TPM cleared: resetCount back credits nothing", rd(tpmA, 1_000_000+hour, 0, 0), t0.Add(time.Hour), 0, KindRebase},
		{"restartCount back in the same reset credits nothing", rd(tpmA, 1_000_000+hour, 5, 1), t0.Add(time.Hour), 0, KindRebase},
		{"another TPM credits nothing however far its Clock", rd(tpmB, 1<<62, 9, 9), t0.Add(time.Hour), 0, KindRebase},
		{"ClockSet to the end of time is bounded by the wall clock", rd(tpmA, 1<<63, 5, 2), t0.Add(time.Hour), time.Hour, KindCredit},
		{"nothing passed", rd(tpmA, 1_000_000, 5, 2), t0, 0, KindCredit},
		{"TPM advanced, wall did not", rd(tpmA, 1_000_000+hour, 5, 2), t0, 0, KindCredit},
	} {
		t.Run(tc.name, func(t *testing.T) {
			next, ev := DefaultRule().Advance(base, tc.r, tc.wall)
			if ev.Kind != tc.kind {
				t.Errorf("kind %v, want %v (%s)", ev.Kind, tc.kind, ev.Reason)
			}
			if ev.Credit != tc.credit || !next.T.Equal(base.T.Add(tc.credit)) {
				t.Errorf("credit %v, T %v; want credit %v", ev.Credit, next.T, tc.credit)
			}
			if next.T.Before(base.T) {
				t.Errorf("T went back: %v", next.T)
			}
			if real := tc.wall.Sub(base.Wall); ev.Credit > max(real, 0) {
				t.Errorf("credited %v, more than the wall clock's %v", ev.Credit, real)
			}
			if next.Reading != tc.r || !next.Wall.Equal(tc.wall) {
				t.Errorf("not re-based on the new reading: %+v", next)
			}
			if ev.Lag != tc.wall.Sub(next.T) {
				t.Errorf("lag %v, want %v", ev.Lag, tc.wall.Sub(next.T))
			}
			if ev.Alert() != (tc.kind != KindCredit) {
				t.Errorf("alert %v for kind %v", ev.Alert(), ev.Kind)
			}
		})
	}
}

// TestNeverEarly walks many random-looking sequences of events and checks
// that T never passes the real time elapsed since the start.
func TestNeverEarly(t *testing.T) {
	ru := DefaultRule()
	id := [32]byte{7}
	for _, tc := range []struct {
		name  string
		steps []step
	}{
		{"uptime with a fast TPM (1% fast)", repeat(step{real: time.Hour, tpm: time.Hour + 36*time.Second, wall: time.Hour}, 720)},
		{"power-offs", repeat(step{real: 24 * time.Hour, tpm: time.Hour, wall: 24 * time.Hour}, 30)},
		{"wall ahead then right", []step{{real: time.Hour, tpm: time.Hour, wall: 10 * 365 * 24 * time.Hour}, {real: time.Hour, tpm: time.Hour, wall: -10 * 365 * 24 * time.Hour}, {real: time.Hour, tpm: time.Hour, wall: time.Hour}}},
		{"power cuts", []step{{real: time.Hour, tpm: time.Hour, wall: time.Hour}, {real: time.Hour, tpm: -30 * time.Minute, wall: time.Hour, reset: true}, {real: time.Hour, tpm: time.Hour, wall: time.Hour}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
			s, _ := Start(Reading{TPM: id, Clock: 10_000_000}, t0)
			real, wall, clock := t0, t0, int64(10_000_000)
			var reset uint32
			for i, st := range tc.steps {
				real, wall = real.Add(st.real), wall.Add(st.wall)
				clock += int64(st.tpm / time.Millisecond)
				if st.reset {
					reset++
				}
				prevT := s.T
				s, _ = ru.Advance(s, Reading{TPM: id, Clock: uint64(clock), ResetCount: reset}, wall)
				if s.T.After(real) {
					t.Fatalf("step %d: T %v is ahead of real time %v", i, s.T, real)
				}
				if s.T.Before(prevT) {
					t.Fatalf("step %d: T went back", i)
				}
			}
			if s.T.Before(t0) {
				t.Fatalf("T before start")
			}
		})
	}
}

type step struct {
	real, tpm, wall time.Duration
	reset           bool
}

func repeat(s step, n int) []step {
	out := make([]step, n)
	for i := range out {
		out[i] = s
	}
	return out
}

func TestConfirm(t *testing.T) {
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	id := [32]byte{3}
	s := State{T: t0, Wall: t0.Add(time.Hour), Reading: Reading{TPM: id, Clock: 5}}
	r := Reading{TPM: id, Clock: 9}
	for _, tc := range []struct {
		name  string
		wall  time.Time
		wantT time.Time
	}{
		{"forward to the wall clock", t0.Add(72 * time.Hour), t0.Add(72 * time.Hour)},
		{"a wall clock behind T leaves T", t0.Add(-time.Hour), t0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			n, ev := Confirm(s, r, tc.wall)
			if !n.T.Equal(tc.wantT) || ev.Kind != KindConfirm || n.Reading != r || !n.Wall.Equal(tc.wall) {
				t.Fatalf("got %+v %+v, want T %v", n, ev, tc.wantT)
			}
		})
	}
}

func TestRetainFrom(t *testing.T) {
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	for _, tc := range []struct {
		name     string
		wall, tt time.Time
		want     time.Time
	}{
		{"wall ahead of T", t0.Add(time.Hour), t0, t0.Add(time.Hour)},
		{"wall set back behind T", t0.Add(-time.Hour), t0, t0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := RetainFrom(tc.wall, tc.tt); !got.Equal(tc.want) {
				t.Fatalf("got %v, want %v", got, tc.want)
			}
		})
	}
}
