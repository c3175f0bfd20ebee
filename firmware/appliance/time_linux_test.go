package appliance

import (
	"bytes"
	"context"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"golang.org/x/sys/unix"

	"github.com/holdfast-appliance/holdfast/firmware/configpart"
	"github.com/holdfast-appliance/holdfast/firmware/console"
	"github.com/holdfast-appliance/holdfast/firmware/tpm"
	"github.com/holdfast-appliance/holdfast/firmware/tpm/swtpm"
	"github.com/holdfast-appliance/holdfast/firmware/tpm/tpmtest"
	"github.com/holdfast-appliance/holdfast/services/store"
	"github.com/holdfast-appliance/holdfast/services/store/storetest"
)

// steppingClock reads a second later at every call, so snapshots start in
// order.
type steppingClock struct{ t time.Time }

func (c *steppingClock) Now() (time.Time, error) {
	c.t = c.t.Add(time.Second)
	return c.t, nil
}

// TestPhase6TrustedTime: phase 6 prunes with T, not the wall clock; an old
// clock anchor starts T on a box updated from firmware before trusted
// time; confirm-time shows the lag and only with yes moves T to the wall
// clock; without any record prune is skipped with an alert.
func TestPhase6TrustedTime(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	day := 24 * time.Hour
	now := time.Now()
	for _, tc := range []struct {
		name        string
		anchor      time.Duration // old clock anchor this long ago; 0: none
		wantExpired int           // at the first prune, of snapshots retained until now-20d, now-5d
		wantAlert   string
	}{
		{"old anchor 10 days ago: T starts there", 10 * day, 1, ""},
		{"no record and no anchor: prune waits", 0, 0, "prune skipped: no trusted time"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a := &appliance{log: hclog.NewNullLogger(), tpm: tpmtest.Start(t), part: &configpart.Partition{Dir: t.TempDir()}}
			master := bytes.Repeat([]byte{9}, 32)
			if tc.anchor > 0 {
				// What firmware before trusted time left: an anchor
				// taken when the wall clock read now-anchor.
				c, err := tpm.NewClock(a.tpm, tpm.ClockOptions{AnchorPath: a.part.Dir + "/" + tpm.ClockAnchorFile, MasterKey: master})
				if err != nil {
					t.Fatal(err)
				}
				if err := c.Anchor(ctx, now.Add(-tc.anchor)); err != nil {
					t.Fatal(err)
				}
			}
			tt, err := a.openTrustedTime(ctx, master)
			if err != nil {
				t.Fatal(err)
			}
			a.tt = tt
			st, err := store.Init(ctx, storetest.Dir(t), store.StaticKey(master), store.InitOptions{},
				store.Options{Clock: &steppingClock{now.Add(-30 * day)}, PruneClock: trustedClock{a}})
			if err != nil {
				t.Fatal(err)
			}
			defer st.Close()
			var ids []string
			for _, until := range []time.Time{now.Add(-20 * day), now.Add(-5 * day), now.Add(100 * day)} {
				sn, err := st.Begin(ctx, store.BeginOptions{Source: "src", RetainUntil: until})
				if err != nil {
					t.Fatal(err)
				}
				m, err := sn.Commit(ctx, store.CommitOptions{})
				if err != nil {
					t.Fatal(err)
				}
				ids = append(ids, m.ID)
			}
			a.prune(ctx, []*store.Store{st})
			snaps, err := st.Snapshots()
			if err != nil {
				t.Fatal(err)
			}
			if got := 3 - len(snaps); got != tc.wantExpired {
				t.Fatalf("phase 6 pruned %d snapshots, want %d (the wall clock alone would prune 2); alerts %q", got, tc.wantExpired, a.alerts)
			}
			if tc.wantAlert != "" && !strings.Contains(strings.Join(a.alerts, "\n"), tc.wantAlert) {
				t.Fatalf("alerts %q, want %q", a.alerts, tc.wantAlert)
			}

			// confirm-time without yes shows and changes nothing.
			var out bytes.Buffer
			before, had := a.tt.T()
			if err := a.confirmTime(ctx, console.Command{Name: "confirm-time"}, &out); err != nil {
				t.Fatal(err)
			}
			if after, _ := a.tt.T(); after != before || !strings.Contains(out.String(), "wall clock") || !strings.Contains(out.String(), "confirm-time yes") {
				t.Fatalf("confirm-time without yes: T %v -> %v, said %q", before, after, out.String())
			}
			if had && !strings.Contains(out.String(), "lags the wall clock by") {
				t.Fatalf("confirm-time did not show the lag: %q", out.String())
			}
			out.Reset()
			if err := a.confirmTime(ctx, console.Command{Name: "confirm-time", Args: []string{"yes"}}, &out); err != nil {
				t.Fatal(err)
			}
			if after, ok := a.tt.T(); !ok || time.Since(after) > time.Minute || after.After(time.Now()) {
				t.Fatalf("after confirm-time yes T is %v, want the wall clock", after)
			}
			a.prune(ctx, []*store.Store{st})
			if snaps, _ := st.Snapshots(); len(snaps) != 1 || snaps[0].ID != ids[2] {
				t.Fatalf("after confirm-time, prune left %v, want only %s", snaps, ids[2])
			}
		})
	}
}

// TestHaltShutsDownTPM: poweroff and reboot end with TPM2_Shutdown(STATE),
// so the next boot is a TPM Restart (restartCount +1, resetCount and Clock
// kept, safe) rather than a Reset. (powerOff sent none before.)
func TestHaltShutsDownTPM(t *testing.T) {
	for _, tc := range []struct {
		name string
		how  int
	}{
		{"poweroff", unix.LINUX_REBOOT_CMD_POWER_OFF},
		{"reboot", unix.LINUX_REBOOT_CMD_RESTART},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			state, err := os.MkdirTemp("", "tpmstate-")
			if err != nil {
				t.Fatal(err)
			}
			defer os.RemoveAll(state)
			boot := func() (*swtpm.Sim, *tpm.TPM) {
				sim, err := swtpm.Start(ctx, swtpm.Options{StateDir: state})
				if err != nil {
					t.Fatal(err)
				}
				t.Cleanup(func() { sim.Kill() })
				tp, err := tpm.Dial(ctx, "unix", sim.SocketPath(), nil)
				if err != nil {
					t.Fatal(err)
				}
				return sim, tp
			}
			sim, tp := boot()
			before, err := tp.ReadClock(ctx)
			if err != nil {
				t.Fatal(err)
			}
			got := -1
			a := &appliance{log: hclog.NewNullLogger(), tpm: tp, mounted: map[string]string{},
				o: Options{RunDir: t.TempDir(), Reboot: func(how int) error { got = how; return nil }}}
			if err := a.halt(tc.how); err != nil {
				t.Fatal(err)
			}
			if got != tc.how {
				t.Fatalf("reboot(2) with %#x, want %#x", got, tc.how)
			}
			tp.Close()
			if err := sim.Stop(ctx); err != nil { // power goes
				t.Fatal(err)
			}
			_, tp = boot()
			defer tp.Close()
			after, err := tp.ReadClock(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if after.ResetCount != before.ResetCount || after.RestartCount != before.RestartCount+1 || !after.Safe || after.Clock < before.Clock {
				t.Fatalf("TPM after %s: %+v, before %+v: want a TPM Restart (no TPM2_Shutdown(STATE) was sent)", tc.name, after, before)
			}
		})
	}
}
