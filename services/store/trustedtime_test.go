package store

import (
	"testing"
	"time"
)

// TestPruneNeverFreezes: a box that runs long between prunes (or whose
// prune clock jumped far ahead) still prunes. The old high-water rule
// refused any clock more than 7 days past the last prune, so a box that ran
// 8 days between boots never pruned again.
func TestPruneNeverFreezes(t *testing.T) {
	day := 24 * time.Hour
	for _, tc := range []struct {
		name string
		gap  time.Duration
	}{
		{"8 days between prunes", 8 * day},
		{"30 days between prunes", 30 * day},
		{"a year between prunes", 365 * day},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
			clk := &fakeClock{t: t0}
			s := newStore(t, InitOptions{}, Options{Clock: clk})
			old := putObjects(t, s, "src", t0.Add(2*day), map[string][]byte{"a": []byte("old")})
			clk.set(t0.Add(time.Second))
			cur := putObjects(t, s, "src", t0.Add(1000*day), map[string][]byte{"a": []byte("new")})
			res, err := s.Prune(t.Context(), PruneOptions{})
			if err != nil || len(res.Expired) != 0 {
				t.Fatalf("first prune: %+v, %v", res, err)
			}
			clk.set(t0.Add(tc.gap))
			res, err = s.Prune(t.Context(), PruneOptions{})
			if err != nil {
				t.Fatalf("prune after %s: %v", tc.gap, err)
			}
			if len(res.Expired) != 1 || res.Expired[0] != old.ID {
				t.Fatalf("expired %v, want only %s", res.Expired, old.ID)
			}
			checkSnapshot(t, s, cur.ID, map[string][]byte{"a": []byte("new")})
		})
	}
}

// TestPruneUsesTrustedTime: with the trusted time T given, prune removes
// exactly what T says expired, whatever the prune clock reads.
func TestPruneUsesTrustedTime(t *testing.T) {
	day := 24 * time.Hour
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	for _, tc := range []struct {
		name    string
		clock   time.Time // the prune clock (wall)
		tt      time.Time // T
		expired int       // of the three old snapshots (1, 2, 3 days)
	}{
		{"wall 10 years ahead, T an hour in", t0.AddDate(10, 0, 0), t0.Add(time.Hour), 0},
		{"wall right, T lags a day after a power-off", t0.Add(3*day + time.Hour), t0.Add(2*day + time.Hour), 2},
		{"wall set back, T on time", t0.Add(-day), t0.Add(3*day + time.Hour), 3},
	} {
		t.Run(tc.name, func(t *testing.T) {
			clk := &fakeClock{t: t0}
			s := newStore(t, InitOptions{}, Options{Clock: clk})
			var old []string
			for i := 1; i <= 3; i++ {
				clk.set(t0.Add(time.Duration(i) * time.Second))
				old = append(old, putObjects(t, s, "src", t0.Add(time.Duration(i)*day), map[string][]byte{"a": {byte(i)}}).ID)
			}
			clk.set(t0.Add(time.Minute))
			putObjects(t, s, "src", t0.Add(1000*day), map[string][]byte{"a": []byte("newest")})
			clk.set(tc.clock)
			res, err := s.Prune(t.Context(), PruneOptions{Now: tc.tt})
			if err != nil {
				t.Fatal(err)
			}
			if !res.Now.Equal(tc.tt) {
				t.Errorf("prune used %v, want T %v", res.Now, tc.tt)
			}
			if len(res.Expired) != tc.expired {
				t.Fatalf("expired %v, want the first %d of %v", res.Expired, tc.expired, old)
			}
			for i, id := range res.Expired {
				if id != old[i] {
					t.Fatalf("expired %v, want the first %d of %v", res.Expired, tc.expired, old)
				}
			}
		})
	}
}
