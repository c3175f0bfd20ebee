package images

import (
	"context"
	"fmt"
	"math/rand/v2"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/minio/minio-go/v7"

	"github.com/holdfast-appliance/holdfast/firmware/appliance"
	"github.com/holdfast-appliance/holdfast/images/qemu"
	"github.com/holdfast-appliance/holdfast/tools/testminio"
)

var (
	mirrorLogREs = []*regexp.Regexp{
		regexp.MustCompile(`[^\n]*(disk-error|scrub-damage|maintenance sync|maintenance scrub|maintenance repair|Mirror disk made|Repaired \d+|mirror degraded|left out|starts again on the next disk)[^\n]*`),
	}
	ioErrorRE    = regexp.MustCompile(`I/O error, dev (vd[a-z])`)
	mirrorPullRE = regexp.MustCompile(`snapshot committed: source=mail snapshot=(` + pcIDPattern + `) [^\n]*disk=(vd[a-z])`)
	scrubLineRE  = regexp.MustCompile(`(?m)^scrub: [^\r\n]*`)
)

// scrubClean is what a scrub that found nothing says (mirror.ScrubReport's
// Summary).
const scrubClean = " 0 damaged and 0 missing on one disk with a good copy on another, 0 with no good copy, 0 conflicting"

// mirrorBucket is the test's source bucket and what it held at each
// snapshot.
type mirrorBucket struct {
	t    *testing.T
	mc   *testminio.Server
	rnd  *rand.Rand
	objs map[string][]byte
	// snaps maps each snapshot to the sums of the bucket it was taken of.
	snaps map[string]map[string]string
	n     int
}

// change adds objects (one of 2 MiB, so the pull writes a new pack) and
// replaces one.
func (b *mirrorBucket) change(small int) {
	for range small {
		b.put(fmt.Sprintf("inbox/%04d.eml", b.n), 2000+b.rnd.IntN(30000))
	}
	b.put(fmt.Sprintf("archive/%04d.mbox", b.n), 2<<20)
	if b.n > 0 {
		b.put("inbox/0000.eml", 5000)
	}
}

func (b *mirrorBucket) put(k string, size int) {
	v := make([]byte, size)
	for i := range v {
		v[i] = byte(b.rnd.Uint32())
	}
	b.objs[k] = v
	b.n++
	b.mc.Put(b.t, "mail", k, v, minio.PutObjectOptions{ContentType: "message/rfc822"})
}

// committed waits for the pull after off to commit and records the bucket
// it was taken of; it returns the snapshot and the disk it went to.
func (b *mirrorBucket) committed(ctx context.Context, g *guest, off int) (id, disk string) {
	b.t.Helper()
	for {
		if m := mirrorPullRE.FindStringSubmatch(g.text.String()[off:]); m != nil {
			b.snaps[m[1]] = sums(b.objs)
			return m[1], m[2]
		}
		select {
		case <-ctx.Done():
			b.t.Fatalf("no pull committed:\n%s", g.text.String()[off:])
		case <-time.After(500 * time.Millisecond):
		}
	}
}

// checkAll reads every snapshot back at the console and compares it with
// the bucket it was taken of, and runs verify.
func (b *mirrorBucket) checkAll(ctx context.Context, g *guest, when string) {
	b.t.Helper()
	// Every snapshot taken is listed; a pull cut by a failing disk may
	// add one more (its journal resumed as an incomplete snapshot).
	listed := map[string]bool{}
	for _, id := range snapshotIDs(g.run(ctx, "snapshots")) {
		listed[id] = true
	}
	for id := range b.snaps {
		if !listed[id] {
			b.t.Errorf("%s: snapshot %s is not listed", when, id)
		}
	}
	if len(listed) != len(b.snaps) {
		b.t.Logf("%s: %d snapshots listed, %d taken by the test", when, len(listed), len(b.snaps))
	}
	for id, want := range b.snaps {
		equalSums(b.t, when+": snapshot "+id, objectSums(b.t, g.run(ctx, "ls", id)), want)
	}
	if out := g.run(ctx, "verify"); !strings.Contains(out, "verify OK") {
		b.t.Errorf("%s: verify: %s", when, out)
	}
}

// waitStatus polls status until it contains want.
func waitStatus(ctx context.Context, t *testing.T, g *guest, want string) string {
	t.Helper()
	for {
		st := g.run(ctx, "status")
		if strings.Contains(st, want) {
			return st
		}
		select {
		case <-ctx.Done():
			t.Fatalf("status never showed %q; last:\n%s", want, st)
		case <-time.After(2 * time.Second):
		}
	}
}

// TestMirror is issue 8's second disk, missing disk and failing disk, on
// the appliance in QEMU:
//
//	| boot | disks                            | checks                                         |
//	|------|----------------------------------|------------------------------------------------|
//	| 1    | A formatted, B blank             | provision; mirror-disk HOLDFAST-DATA1          |
//	| 2    | A, B                             | B made a mirror at boot; a pull is synced to B |
//	| -    | (host flips 64 bytes of a pack   |                                                |
//	|      | on B's image)                    |                                                |
//	| 3    | A, B                             | scrub finds the damaged pack on B, alerts,     |
//	|      |                                  | asks for a repair at the next boot             |
//	| 4    | A, B                             | maintenance repairs it from A; scrub clean;    |
//	|      |                                  | the pack on B's image is A's again             |
//	| 5    | A only (B detached)              | disk-error alert names B; the pull goes on (A) |
//	| 6    | A through blkdebug, failing every| B catches up at boot; A fails; the pull is     |
//	|      | request once a pull allocates    | committed on B; every snapshot reads back      |
//	| 7    | A healthy, B through blkdebug    | A gets B's snapshot at boot (read from B); B   |
//	|      | failing every write              | fails, alert; the pull goes to A               |
//	| 8    | A, B healthy again               | B catches up at boot; scrub clean; every       |
//	|      |                                  | snapshot reads back byte-identical, verify OK  |
func TestMirror(t *testing.T) {
	v := startVMTest(t, "qemu-x86_64", "mirror", 40*time.Minute, Options{}, nil)
	ctx, b, r, log, out := v.ctx, v.b, v.r, v.log, v.out
	mc := testminio.Start(t)
	mc.MakeBucket(t, "mail", false)
	_, port, _ := strings.Cut(mc.Endpoint, ":")
	bk := &mirrorBucket{t: t, mc: mc, rnd: rand.New(rand.NewPCG(8, 2)), objs: map[string][]byte{}, snaps: map[string]map[string]string{}}
	bk.change(20)
	cfg := mailConfig("holdfast-mirror", port, "")
	state := filepath.Join(out, "vm")
	small := qemu.Config{DataDiskSize: 512 << 20}
	n := 0
	boot := func(c qemu.Config) *guest {
		c.DataDiskSize = small.DataDiskSize
		n++
		return bootGuestWith(ctx, t, b, r.Image, state, c, log)
	}
	// poweroff is the orderly one: the disks are unmounted and the TPM
	// saves its clock, as on a real box.
	poweroff := func(g *guest) {
		g.powerOff(ctx)
		t.Logf("boot %d: %s from QEMU start to power-off", n, time.Since(g.started).Round(time.Second))
	}
	// evidence logs the console lines that show what a boot did.
	evidence := func(g *guest, res ...*regexp.Regexp) {
		t.Helper()
		for _, re := range res {
			for _, m := range re.FindAllString(g.text.String(), -1) {
				t.Logf("boot %d: %s", n, strings.TrimSpace(m))
			}
		}
	}

	// Boot 1: provision on A; ask for B as a mirror.
	g := boot(qemu.Config{})
	provision(ctx, t, g, r, "holdfast-mirror", cfg)
	bk.committed(ctx, g, 0)
	if out := g.run(ctx, "mirror-disk", "HOLDFAST-DATA1"); !strings.Contains(out, "second copy of the store at the next boot") {
		t.Fatalf("mirror-disk: %s", out)
	}
	evidence(g, mirrorLogREs...)
	poweroff(g)

	// Boot 2: B is formatted and filled before lockdown; the boot's pull
	// goes to A and is synced to B.
	bk.change(5)
	g = boot(qemu.Config{})
	g.wait(ctx, "Mirror disk made:")
	g.wait(ctx, appliance.ReadyLine)
	if id, disk := bk.committed(ctx, g, 0); disk != "vdb" {
		t.Errorf("boot 2: snapshot %s went to %s, want vdb", id, disk)
	}
	st := waitStatus(ctx, t, g, "vdc in sync with vdb")
	if !strings.Contains(st, "mirror: disks vdb, vdc") {
		t.Errorf("boot 2: status:\n%s", st)
	}
	bk.checkAll(ctx, g, "boot 2")
	evidence(g, mirrorLogREs...)
	poweroff(g)

	// Between boots: damage one pack on B.
	rel := corruptFileInImage(ctx, t, qemu.DataDiskPath(state, 1), "/store/packs")
	t.Logf("flipped 64 bytes of %s on B", rel)

	// Boot 3: a scrub finds it; the repair waits for the maintenance
	// window.
	g = boot(qemu.Config{})
	g.wait(ctx, appliance.ReadyLine)
	bk.committed(ctx, g, 0)
	sc := scrubLineRE.FindString(g.run(ctx, "scrub"))
	if !strings.Contains(sc, " 1 damaged and 0 missing") || !strings.Contains(sc, "at the next boot") {
		t.Errorf("boot 3: scrub did not report the damaged pack for the next boot: %q", sc)
	}
	if st := g.run(ctx, "status"); !strings.Contains(st, "scrub-damage") {
		t.Errorf("boot 3: no scrub-damage alert in status:\n%s", st)
	}
	evidence(g, mirrorLogREs...)
	poweroff(g)

	// Boot 4: repaired from A before lockdown.
	g = boot(qemu.Config{})
	g.wait(ctx, "Repaired 1 of 1 damaged or missing files")
	g.wait(ctx, appliance.ReadyLine)
	bk.committed(ctx, g, 0)
	if sc := scrubLineRE.FindString(g.run(ctx, "scrub")); !strings.Contains(sc, scrubClean) {
		t.Errorf("boot 4: scrub after the repair: %q", sc)
	}
	evidence(g, mirrorLogREs...)
	poweroff(g)
	a, bb := fileInImage(ctx, t, qemu.DataDiskPath(state, 0), "/store/"+rel), fileInImage(ctx, t, qemu.DataDiskPath(state, 1), "/store/"+rel)
	if string(a) != string(bb) || len(a) == 0 {
		t.Errorf("after the repair, %s on B (%d bytes) differs from A's (%d bytes)", rel, len(bb), len(a))
	}

	// Boot 5: B is missing: an alert, and the pull goes on on A.
	bk.change(5)
	g = boot(qemu.Config{DetachDataDisk: [2]bool{false, true}})
	g.wait(ctx, appliance.ReadyLine)
	if _, disk := bk.committed(ctx, g, 0); disk != "vdb" {
		t.Errorf("boot 5: the pull went to %s, want vdb (A)", disk)
	}
	if st := g.run(ctx, "status"); !strings.Contains(st, "mirror degraded: data disk missing") || !strings.Contains(st, "HOLDFAST-DATA1") {
		t.Errorf("boot 5: status shows no missing-disk alert:\n%s", st)
	}
	evidence(g, mirrorLogREs...)
	poweroff(g)

	// Boot 6: A fails every request once a pull allocates space on it.
	bk.change(5)
	g = boot(qemu.Config{DataDiskFaults: [2]string{qemu.FailAllAfterFirstAlloc, ""}})
	g.wait(ctx, appliance.ReadyLine)
	if _, disk := bk.committed(ctx, g, 0); disk != "vdc" {
		t.Errorf("boot 6: the pull went to %s, want vdc (B) after A failed", disk)
	}
	// A fails in maintenance (left out) or under the pull (the worker
	// moves on): either way a disk-error alert names it.
	st = waitStatus(ctx, t, g, "disk-error")
	if !regexp.MustCompile(`disk-error[^\n]*HOLDFAST-DATA0`).MatchString(st) {
		t.Errorf("boot 6: no disk-error alert names A:\n%s", st)
	}
	bk.checkAll(ctx, g, "boot 6 (A failed)")
	evidence(g, mirrorLogREs...)
	poweroff(g)

	ioErrors(t, g, "boot 6")
	// Boot 7: A is healthy again; B fails every write (reads work). A gets
	// what B took alone in boot 6 (read from B), B is left out, the pull
	// goes to A.
	bk.change(5)
	g = boot(qemu.Config{DataDiskFaults: [2]string{"", qemu.FailWrites}})
	g.wait(ctx, appliance.ReadyLine)
	if _, disk := bk.committed(ctx, g, 0); disk != "vdb" {
		t.Errorf("boot 7: the pull went to %s, want vdb (A) while B fails", disk)
	}
	if !strings.Contains(g.text.String(), "maintenance sync: from=vdc to=vdb") {
		t.Errorf("boot 7: A did not get B's snapshot at boot")
	}
	st = waitStatus(ctx, t, g, "disk-error")
	if !regexp.MustCompile(`disk-error[^\n]*(HOLDFAST-DATA1|vdc)`).MatchString(st) {
		t.Errorf("boot 7: no disk-error alert names B:\n%s", st)
	}
	bk.checkAll(ctx, g, "boot 7 (B fails writes)")
	evidence(g, mirrorLogREs...)
	poweroff(g)
	ioErrors(t, g, "boot 7")

	// Boot 8: both disks healthy: B gets A's snapshot; every snapshot
	// reads back and scrub finds both disks equal.
	g = boot(qemu.Config{})
	g.wait(ctx, appliance.ReadyLine)
	bk.committed(ctx, g, 0)
	waitStatus(ctx, t, g, "vdc in sync with vdb")
	if !strings.Contains(g.text.String(), "maintenance sync: from=vdb to=vdc") {
		t.Errorf("boot 8: B did not get A's snapshot at boot")
	}
	if sc := scrubLineRE.FindString(g.run(ctx, "scrub")); !strings.Contains(sc, scrubClean) {
		t.Errorf("boot 8: scrub: %q", sc)
	}
	bk.checkAll(ctx, g, "boot 8")
	evidence(g, mirrorLogREs...)
	poweroff(g)
}

// ioErrors logs how many block-layer I/O errors the guest's kernel
// reported per disk during a boot (its console prints KERN_ERR; the
// kernel rate-limits them, so this is a lower bound).
func ioErrors(t *testing.T, g *guest, when string) {
	t.Helper()
	n := map[string]int{}
	for _, m := range ioErrorRE.FindAllStringSubmatch(g.text.String(), -1) {
		n[m[1]]++
	}
	t.Logf("%s: I/O errors the guest kernel reported: %v", when, n)
}
