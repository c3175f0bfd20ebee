package tpm_test

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/holdfast-appliance/holdfast/firmware/tpm"
)

// TestClockAnchor: only an anchor written with this box's master key counts;
// an orderly reboot keeps time trusted; Advance moves the anchor.
func TestClockAnchor(t *testing.T) {
	m := newMachine(t, boot1)
	ctx := ctxT(t)
	master := bytes.Repeat([]byte{3}, 32)
	path := filepath.Join(m.keyDir, tpm.ClockAnchorFile)
	clock := func(key []byte) *tpm.Clock {
		c, err := tpm.NewClock(m.tpm, tpm.ClockOptions{AnchorPath: path, MasterKey: key, Logger: m.log})
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	if err := clock(master).Anchor(ctx, time.Now()); err != nil {
		t.Fatal(err)
	}
	good, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name   string
		file   []byte
		key    []byte
		reboot bool
		want   error
	}{
		{"fresh anchor", good, master, false, nil},
		{"after an orderly reboot", good, master, true, nil},
		{"anchor of another master key", good, bytes.Repeat([]byte{4}, 32), false, tpm.ErrNoAnchor},
		{"wall time in the anchor edited", func() []byte {
			b := bytes.Clone(good)
			b[12]-- // about 3.6 hours earlier; any change breaks the MAC
			return b
		}(), master, false, tpm.ErrNoAnchor},
		{"truncated anchor", good[:40], master, false, tpm.ErrNoAnchor},
		{"no anchor", nil, master, false, tpm.ErrNoAnchor},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			os.Remove(path)
			if tc.file != nil {
				if err := os.WriteFile(path, tc.file, 0o600); err != nil {
					t.Fatal(err)
				}
			}
			if tc.reboot {
				m.reboot(boot1)
			}
			now, err := clock(tc.key).Now()
			if tc.want == nil {
				if err != nil {
					t.Fatalf("now: %v", err)
				}
				if d := time.Since(now); d < -time.Second || d > time.Second {
					t.Fatalf("clock says %v, off by %v", now, d)
				}
				return
			}
			if !errors.Is(err, tc.want) {
				t.Fatalf("now: got %v, want %v", err, tc.want)
			}
		})
	}

	os.WriteFile(path, good, 0o600)
	c := clock(master)
	before, err := c.ReadAnchor()
	if err != nil {
		t.Fatal(err)
	}
	time.Sleep(20 * time.Millisecond)
	if err := c.Advance(ctx); err != nil {
		t.Fatalf("advance: %v", err)
	}
	after, err := c.ReadAnchor()
	if err != nil {
		t.Fatal(err)
	}
	if after.Clock <= before.Clock || !after.Wall.After(before.Wall) {
		t.Fatalf("advance did not move the anchor: %+v -> %+v", before, after)
	}
}
