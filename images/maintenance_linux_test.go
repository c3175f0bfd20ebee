package images

import (
	"context"
	"fmt"
	"math/rand/v2"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/minio/minio-go/v7"

	"github.com/holdfast-appliance/holdfast/firmware/appliance"
	"github.com/holdfast-appliance/holdfast/images/qemu"
	"github.com/holdfast-appliance/holdfast/services/config"
	"github.com/holdfast-appliance/holdfast/tools/testminio"
)

// waitFrom waits until the console shows want at or after byte off and
// returns where it starts. While it waits it types status every few
// minutes (a line the appliance answers as text, not a framed command a
// reboot could cut), so that a quiet stretch before a scheduled event is
// not taken for a stuck guest.
func waitFrom(ctx context.Context, t *testing.T, g *guest, off int, want string) int {
	t.Helper()
	nudge := time.Now()
	for {
		text := g.text.String()
		if i := strings.Index(text[off:], want); i >= 0 {
			return off + i
		}
		select {
		case <-ctx.Done():
			t.Fatalf("serial console never showed %q after byte %d (%v); last lines:\n%s", want, off, ctx.Err(), lastLines(text, 40))
		case <-g.vm.Done():
			t.Fatalf("QEMU exited while the test waited for %q: %s\nlast console lines:\n%s", want, g.exitStatus(), lastLines(text, 40))
		case <-time.After(time.Second):
			if time.Since(nudge) > 3*time.Minute {
				g.typeLine("status")
				nudge = time.Now()
			}
		}
	}
}

// TestMaintenanceReboot: the box reboots itself into its maintenance
// window on the default schedule (weekly, Sunday 03:00 UTC) and comes
// back to "ready" with no one at the console; phase 6 prunes there; every
// snapshot reads back intact. The guest's hardware clock starts a few
// minutes before a Sunday 03:00 (qemu.Config.RTCBase); the pulls of that
// boot fail (the clock is days off MinIO's), which the test allows.
func TestMaintenanceReboot(t *testing.T) {
	v := startVMTest(t, "qemu-x86_64", "maint", 38*time.Minute, Options{}, nil)
	ctx, b, r, log, out := v.ctx, v.b, v.r, v.log, v.out

	mc := testminio.Start(t)
	mc.MakeBucket(t, "mail", false)
	_, port, _ := strings.Cut(mc.Endpoint, ":")
	rnd := rand.New(rand.NewPCG(17, 3))
	objs := map[string][]byte{}
	put := func(k string, n int) {
		data := randomBytes(rnd, n)
		objs[k] = data
		mc.Put(t, "mail", k, data, minio.PutObjectOptions{ContentType: "message/rfc822"})
	}
	for i := range 12 {
		put(fmt.Sprintf("inbox/%03d.eml", i), 500+rnd.IntN(100000))
	}
	state := filepath.Join(out, "vm")

	// Boot 1, at the real time: provision (the config sets no
	// maintenance: the default), pull twice.
	g := bootGuest(ctx, t, b, r.Image, state, log)
	provision(ctx, t, g, r, "holdfast-maint-test", mailConfig("holdfast-maint-test", port, ""))
	boot1 := time.Since(g.started)
	want := []map[string]string{sums(objs)}
	put("inbox/000.eml", 3000) // changed
	put("inbox/new.eml", 7000) // added
	g.run(ctx, "pull")
	want = append(want, sums(objs))
	ids := snapshotIDs(g.run(ctx, "snapshots"))
	if len(ids) != 2 {
		t.Fatalf("%d snapshots after two pulls, want 2", len(ids))
	}
	for i, id := range ids {
		equalSums(t, "boot 1 snapshot "+id, objectSums(t, g.run(ctx, "ls", id)), want[i])
	}
	g.powerOff(ctx)

	// Boot 2: the hardware clock starts before the next Sunday 03:00 by
	// boot 1's time to ready (which included provisioning and a pull, so
	// more than boot 2 needs), at least 4 minutes, so the box is ready
	// before the window without idling long.
	margin := min(max(boot1, 4*time.Minute), 20*time.Minute)
	window := config.DefaultMaintenance.Next(time.Now().Add(48 * time.Hour))
	rtc := window.Add(-margin)
	t.Logf("boot 2: hardware clock starts at %s, %s before the window %s", rtc.Format(time.RFC3339), margin, window.Format(time.RFC3339))
	g = bootGuestWith(ctx, t, b, r.Image, state, qemu.Config{RTCBase: rtc.Format("2006-01-02T15:04:05")}, log)
	g.wait(ctx, appliance.ReadyLine)
	ready2 := time.Since(g.started)
	t.Logf("boot 2: ready %s after QEMU start", ready2.Round(time.Second))
	if ready2 >= margin {
		t.Fatalf("boot 2 took %s, longer than the %s before the window: the test cannot see the scheduled reboot", ready2, margin)
	}
	st := g.run(ctx, "status")
	if !strings.Contains(st, "maintenance weekly sun 03:00 (UTC): next window "+window.Format(time.RFC3339)) {
		t.Errorf("status does not show the next maintenance window %s:\n%s", window.Format(time.RFC3339), st)
	}
	mt := g.run(ctx, "maintenance")
	if !strings.Contains(mt, "next window "+window.Format(time.RFC3339)) {
		t.Errorf("the console's maintenance does not show the next window:\n%s", mt)
	}

	// The window comes: the box reboots itself and is ready again.
	off := len(g.text.String())
	at := waitFrom(ctx, t, g, off, appliance.MaintenanceRebootLine)
	rebootAt := time.Now()
	t.Logf("maintenance reboot %s after boot 2's QEMU start", rebootAt.Sub(g.started).Round(time.Second))
	p6 := waitFrom(ctx, t, g, at, "phase 6/8 maintenance")
	pr := waitFrom(ctx, t, g, p6, "prune done: expired=")
	waitFrom(ctx, t, g, pr, appliance.ReadyLine)
	t.Logf("boot 3: ready %s after the maintenance reboot", time.Since(rebootAt).Round(time.Second))
	after := g.text.String()[at:]
	for _, w := range []string{"halting", "prune done: expired=0", "kept=2"} {
		if !strings.Contains(after, w) {
			t.Errorf("the console after the maintenance reboot lacks %q", w)
		}
	}
	for _, bad := range []string{appliance.SafeModeLine, appliance.RecoveryKeyLine} {
		if strings.Contains(after, bad) {
			t.Errorf("the boot after the maintenance reboot shows %q", bad)
		}
	}
	st = g.run(ctx, "status")
	if next := window.AddDate(0, 0, 7).Format(time.RFC3339); !strings.Contains(st, "next window "+next) || !strings.Contains(st, "phase running") {
		t.Errorf("status after the maintenance reboot: want phase running and the next window %s:\n%s", next, st)
	}
	if got := snapshotIDs(g.run(ctx, "snapshots")); strings.Join(got, " ") != strings.Join(ids, " ") {
		t.Errorf("snapshots after the maintenance reboot: %v, want %v", got, ids)
	}
	if vr := g.run(ctx, "verify"); !strings.Contains(vr, "verify OK") {
		t.Errorf("verify after the maintenance reboot: %s", vr)
	}
	for i, id := range ids {
		equalSums(t, "after the maintenance reboot, snapshot "+id, objectSums(t, g.run(ctx, "ls", id)), want[i])
	}
	g.stop(ctx)
	t.Logf("maintenance reboot test in %s", time.Since(v.start).Round(time.Second))
}
