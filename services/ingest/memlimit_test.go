package ingest

import "testing"

func TestMemoryLimit(t *testing.T) {
	const mib = 1 << 20
	cases := []struct {
		name            string
		procs, parallel int
		want            int64
	}{
		// make bench-pull's machine and the appliance: 2 cores, 4 GETs.
		{"2 cores, 4 GETs", 2, 4, 72 * mib},
		{"1 core, 1 GET", 1, 1, 50 * mib},
		{"8 cores, 16 GETs", 8, 16, 168 * mib},
		{"parallel unset: the default 4", 2, 0, 72 * mib},
		{"no cores reported", 0, 4, 68 * mib},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if got := MemoryLimit(c.procs, c.parallel); got != c.want {
				t.Errorf("MemoryLimit(%d, %d) = %d MiB, want %d MiB", c.procs, c.parallel, got/mib, c.want/mib)
			}
		})
	}
}
