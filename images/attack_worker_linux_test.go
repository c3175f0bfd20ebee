package images

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/minio/minio-go/v7"

	"github.com/holdfast-appliance/holdfast/firmware/appliance"
	"github.com/holdfast-appliance/holdfast/firmware/console"
	"github.com/holdfast-appliance/holdfast/firmware/roles"
	"github.com/holdfast-appliance/holdfast/images/qemu"
	"github.com/holdfast-appliance/holdfast/tools/testminio"
)

var (
	// workerRowRE is one row of the worker adversary
	// (firmware/cmd/holdfast-attack/worker_linux.go).
	workerRowRE = regexp.MustCompile(`^ATTACK (\d+) worker (\S+): (planted|refused): disk=(\S+) path=(\S+); (.*)$`)
	// workerIdentRE is its first line: who it runs as, and each disk's
	// store.
	workerIdentRE = regexp.MustCompile(`worker adversary: uid=(\d+) gid=(\d+) capabilities effective=(\S+) permitted=(\S+) bounding=(\S+); stores ([^\r\n]*)`)
	// controlRowRE is one row of its control techniques
	// (firmware/cmd/holdfast-attack/control_linux.go), controlCheckRE
	// one of PID 1's verdicts after them (attack_worker_linux.go).
	controlRowRE   = regexp.MustCompile(`^ATTACK (\d+) worker-control (\S+): (refused|SUCCEEDED|n/a): (.*)$`)
	controlCheckRE = regexp.MustCompile(`^ATTACK CHECK worker-control (\S+): (refused|SUCCEEDED): (.*)$`)
	pruneDoneRE    = regexp.MustCompile(`prune done: expired=(\d+)[^\n]*`)
	foreignRE      = regexp.MustCompile(`attack: foreign entries in the store[^\n]*`)
)

// workerClasses are the classes the worker adversary plants on each disk
// (index-cache-forged on the first, index-devzero at the same path on the
// others) and what its row must say.
var workerClasses = []struct {
	name, detail string
	first, other bool // planted on the first disk, on the others
}{
	{"index-cache-forged", "authentic under the meta key", true, false},
	{"index-devzero", "/dev/zero", false, true},
	{"lying-pack", "the sealer SEALED it", true, true},
	{"journal-fifo", "FIFO", true, true},
	{"retention-sparse", "sparse 1024 GiB", true, true},
	{"manifest-symlink", "the sealer refused", true, true},
	{"manifest-fifo", "the sealer refused", true, true},
	{"manifest-garbage", "the sealer refused", true, true},
	{"manifest-hardlink", "the sealer refused", true, true},
	{"junk-wip", "3000 empty files", true, true},
	{"junk-state", "3000 empty files", true, true},
	{"junk-index", "3000 empty files", true, true},
	{"clock-log-junk", "appended", true, true},
}

// controlTechniques are the worker adversary's control techniques, in
// their order; controlChecks PID 1's verdicts after them.
var (
	controlTechniques = []string{"fake-hold", "fake-extend", "status-flood-invented", "status-flood-configured", "status-error-flood",
		"alert-flood", "escape-sequences", "sign-flood", "concurrent-flood", "sign-missing", "sign-unsealed", "sign-foreign-id",
		"sign-foreign-digest", "config-write-ops", "wrong-side-ops", "fake-replies", "notice-request-mixup", "malformed-frames",
		"primary-foreign", "oversized-frame", "pid1-memory"}
	controlChecks = []string{"config-partition-unchanged", "status-only-configured", "primary-unchanged", "own-alert-kept",
		"goroutines-back", "pid1-memory"}
)

// TestWorkerAdversary is issue 15's adversary in QEMU: code inside the
// worker, uid 1000, with its keys (the store subkeys of its "init" message,
// the store of every data disk, a sealer socket per disk). The box
// provisions on disk A and makes disk B a mirror; once both hold the same
// snapshots (retention 10 years), the TEST image's attack-worker command
// plants every class of issue 15 on both disks (a forged-but-authentic
// index cache, a sealed pack with a lying trailer, FIFOs, symlinks, a
// sparse 1 TiB record, a hard link offered to the sealer, thousands of
// junk files, junk in the clock log) and the box is powered off. At each
// of the next two boots the box must reach ready (or safe mode with an
// alert, never a hang), every snapshot must read back byte-identical,
// prune must expire nothing, verify must find no damaged snapshot, and
// every planted entry must have been reported (alert, store log or
// verify).
//
// HOLDFAST_ATTACK_TABLE=FILE writes the verdicts as the rows of the attack
// table in docs/lockdown.md.
func TestWorkerAdversary(t *testing.T) {
	v := startVMTest(t, "qemu-x86_64", "worker-adversary", 40*time.Minute, Options{AttackSuite: true}, nil)
	ctx, b, r, log, out := v.ctx, v.b, v.r, v.log, v.out

	mc := testminio.Start(t)
	mc.MakeBucket(t, "mail", false)
	_, port, _ := strings.Cut(mc.Endpoint, ":")
	objs := randomMails(rand.New(rand.NewPCG(15, 1000)), 20, 500, 300000)
	for k, v := range objs {
		mc.Put(t, "mail", k, v, minio.PutObjectOptions{ContentType: "message/rfc822"})
	}
	want := sums(objs)
	cfg := strings.Replace(mailConfig("holdfast-worker-adversary", port, ""), `all_for = "14d"`, `all_for = "10y"`, 1)
	state := filepath.Join(out, "vm")
	vmc := qemu.Config{DataDiskSize: 512 << 20}

	// Boot 1: provision on A, ask for B as a mirror.
	g := bootGuestWith(ctx, t, b, r.Image, state, vmc, log)
	provision(ctx, t, g, r, "holdfast-worker-adversary", cfg)
	if o := g.run(ctx, "mirror-disk", "HOLDFAST-DATA1"); !strings.Contains(o, "second copy of the store at the next boot") {
		t.Fatalf("mirror-disk: %s", o)
	}
	g.powerOff(ctx)

	// Boot 2: B is made a mirror; the boot's pull is synced to it; then
	// the adversary.
	g = bootGuestWith(ctx, t, b, r.Image, state, vmc, log)
	g.wait(ctx, "Mirror disk made:")
	g.wait(ctx, appliance.ReadyLine)
	g.wait(ctx, "snapshot committed")
	waitStatus(ctx, t, g, " in sync with ")
	ids := snapshotIDs(g.run(ctx, "snapshots"))
	if len(ids) == 0 {
		t.Fatal("no snapshot before the attack")
	}
	for _, id := range ids {
		equalSums(t, "before the attack: "+id, objectSums(t, g.run(ctx, "ls", id)), want)
	}
	start := time.Now()
	res, err := g.runMayFail(ctx, "attack-worker")
	t.Logf("the worker adversary ran in %s (%v):\n%s", time.Since(start).Round(time.Second), err, res)
	m := workerIdentRE.FindStringSubmatch(res)
	if m == nil || m[1] != strconv.Itoa(roles.WorkerUID) || m[2] != strconv.Itoa(roles.WorkerUID) || strings.Trim(m[3], "0") != "" || strings.Trim(m[4], "0") != "" || strings.Trim(m[5], "0") != "" {
		t.Fatalf("the adversary did not run with the worker's credentials (uid and gid 1000, no capabilities, empty bounding set): %q", m)
	}
	var disks []string // first disk first
	storeOf := map[string]string{}
	for _, p := range strings.Fields(m[6]) {
		d, dir, _ := strings.Cut(p, "=")
		disks = append(disks, d)
		storeOf[d] = dir
	}
	if len(disks) != 2 {
		t.Errorf("the adversary saw disks %v, want the two of the mirror", disks)
	}
	var rows []attackRow
	planted := map[string]attackRow{} // disk/name -> row
	paths := map[string]string{}      // disk/name -> path
	for _, l := range strings.Split(strings.ReplaceAll(res, "\r", ""), "\n") {
		w := workerRowRE.FindStringSubmatch(l)
		if w == nil {
			continue
		}
		n, _ := strconv.Atoi(w[1])
		row := attackRow{n: n, category: "worker", name: w[2], result: w[3], detail: w[6]}
		rows = append(rows, row)
		planted[w[4]+"/"+w[2]] = row
		paths[w[4]+"/"+w[2]] = w[5]
	}
	for i, d := range disks {
		for _, c := range workerClasses {
			if (i == 0 && !c.first) || (i > 0 && !c.other) {
				continue
			}
			row, ok := planted[d+"/"+c.name]
			switch {
			case !ok:
				t.Errorf("%s: %s not planted", d, c.name)
			case row.result != "planted" || !strings.Contains(row.detail, c.detail):
				t.Errorf("%s: %s: %s: %s, want planted and %q", d, c.name, row.result, row.detail, c.detail)
			}
		}
	}
	// Issue 16: the control channel. Every technique has a row, none
	// succeeded, PID 1's checks all hold; the console still answers,
	// quotes the worker's words and shows PID 1's own alert.
	var ctlTable []attackRow
	ctlRows := map[string]attackRow{}
	for _, l := range strings.Split(strings.ReplaceAll(res, "\r", ""), "\n") {
		if w := controlRowRE.FindStringSubmatch(l); w != nil {
			n, _ := strconv.Atoi(w[1])
			row := attackRow{n: n, category: "worker (uid 1000, its keys): control channel", name: w[2], result: w[3], detail: w[4]}
			ctlRows[w[2]] = row
			ctlTable = append(ctlTable, row)
		}
		if w := controlCheckRE.FindStringSubmatch(l); w != nil {
			row := attackRow{category: "PID 1's check after it", name: w[1], result: w[2], detail: w[3]}
			ctlRows["CHECK "+w[1]] = row
			ctlTable = append(ctlTable, row)
		}
	}
	for _, name := range controlTechniques {
		row, ok := ctlRows[name]
		switch {
		case !ok:
			t.Errorf("control technique %s: no row", name)
		case row.result == "SUCCEEDED" || (row.result == "n/a" && name != "pid1-memory"):
			t.Errorf("control technique %s: %s: %s", name, row.result, row.detail)
		default:
			t.Logf("control %s: %s: %s", name, row.result, row.detail)
		}
	}
	for _, name := range controlChecks {
		row, ok := ctlRows["CHECK "+name]
		switch {
		case !ok:
			t.Errorf("PID 1's check %s: no row", name)
		case row.result != "refused":
			t.Errorf("PID 1's check %s: %s: %s", name, row.result, row.detail)
		default:
			t.Logf("check %s: %s", name, row.detail)
		}
	}
	if !strings.Contains(res, "succeeded=0") {
		t.Errorf("the worker adversary's summary does not say succeeded=0")
	}
	st := g.run(ctx, "status")
	if strings.ContainsAny(st, "\x1b\u009b") {
		t.Errorf("status shows the worker's escape sequences unquoted:\n%q", lastLines(st, 20))
	}
	if !strings.Contains(st, "the worker adversary starts") {
		t.Errorf("PID 1's own alert is gone from status after the worker's floods:\n%s", lastLines(st, 60))
	}
	g.powerOff(ctx)

	// Boots 3 and 4: what the adversary left must change nothing.
	reported := map[string]bool{} // disk/name
	for boot := 3; boot <= 4; boot++ {
		g = bootGuestWith(ctx, t, b, r.Image, state, vmc, log)
		how := waitReadyOrSafe(ctx, t, g)
		t.Logf("boot %d: %s %s after QEMU start", boot, how, time.Since(g.started).Round(time.Second))
		text := g.text.String()
		if how == appliance.SafeModeLine && !strings.Contains(text, "alert") {
			t.Errorf("boot %d: safe mode without an alert", boot)
		}
		for _, bad := range []string{"Kernel panic", "Out of memory", "panic: ", "goroutine "} {
			if strings.Contains(text, bad) {
				t.Errorf("boot %d: the console shows %q", boot, bad)
			}
		}
		prunes := pruneDoneRE.FindAllStringSubmatch(text, -1)
		for _, p := range prunes {
			t.Logf("boot %d: %s", boot, strings.TrimSpace(p[0]))
			if p[1] != "0" {
				t.Errorf("boot %d: prune expired snapshots of a 10-year retention: %s", boot, p[0])
			}
		}
		if len(prunes) < len(disks) {
			t.Errorf("boot %d: %d prune(s) ran, want one per disk (%d)", boot, len(prunes), len(disks))
		}
		for _, a := range foreignRE.FindAllString(text, -1) {
			t.Logf("boot %d: %s", boot, strings.TrimSpace(a))
		}
		// What the console said of each lying pack.
		for _, d := range disks {
			name := filepath.Base(paths[d+"/lying-pack"])
			shown := 0
			for _, l := range strings.Split(text, "\n") {
				if name != "." && strings.Contains(l, name) && shown < 4 {
					t.Logf("boot %d: %s's lying pack: %s", boot, d, strings.TrimSpace(l))
					shown++
				}
			}
		}
		t.Logf("boot %d: %d console bytes", boot, len(text))
		got := snapshotIDs(g.run(ctx, "snapshots"))
		listed := map[string]bool{}
		for _, id := range got {
			listed[id] = true
		}
		for _, id := range ids {
			if !listed[id] {
				t.Errorf("boot %d: snapshot %s is gone", boot, id)
			}
		}
		for _, id := range got {
			equalSums(t, fmt.Sprintf("boot %d: snapshot %s", boot, id), objectSums(t, g.run(ctx, "ls", id)), want)
		}
		// verify fails (the planted entries are problems); it must name
		// no damaged object or manifest.
		ver, verr := g.runMayFail(ctx, "verify")
		t.Logf("boot %d: verify (%v):\n%s", boot, verr, lastLines(ver, 40))
		for _, l := range strings.Split(ver, "\n") {
			l = strings.TrimSpace(l)
			if strings.HasPrefix(l, "problem: object") {
				t.Errorf("boot %d: verify found damage: %s", boot, l)
			}
			for _, id := range append(ids, got...) {
				if strings.HasPrefix(l, "problem: manifest snapshot="+id) || strings.HasPrefix(l, "problem: retention snapshot="+id) {
					t.Errorf("boot %d: verify found damage: %s", boot, l)
				}
			}
		}
		st := g.run(ctx, "status")
		if !strings.Contains(st, "attack: foreign entries") {
			t.Errorf("boot %d: status shows no attack alert:\n%s", boot, st)
		}
		// Reported: the path in an alert, a store log line or verify's
		// output, on the console of this boot; the junk files by count.
		all := text + ver + st
		for i, d := range disks {
			dirAlerts := ""
			for _, a := range foreignRE.FindAllString(all, -1) {
				if strings.Contains(a, storeOf[d]) {
					dirAlerts += a + "\n"
				}
			}
			for _, c := range workerClasses {
				if (i == 0 && !c.first) || (i > 0 && !c.other) {
					continue
				}
				key := d + "/" + c.name
				switch {
				case c.name == "index-cache-forged":
					// verify names it while it lasts; prune, which reads every
					// trailer, names it (an alert) and replaces it.
					if strings.Contains(ver, "problem: index path=index/index") || skippedAlertNames(text, storeOf[d], "index/index") {
						reported[key] = true
					}
				case strings.HasPrefix(c.name, "junk-"):
					if n := maxCount(dirAlerts); n >= 3000 {
						reported[key] = true
					}
				case strings.Contains(all, paths[key]):
					reported[key] = true
				}
			}
		}
		g.powerOff(ctx)
	}
	var table []attackRow
	for i, d := range disks {
		for _, c := range workerClasses {
			if (i == 0 && !c.first) || (i > 0 && !c.other) {
				continue
			}
			key := d + "/" + c.name
			row := planted[key]
			row.name = c.name
			if !reported[key] {
				t.Errorf("%s: %s (%s) was never reported in two boots", d, c.name, paths[key])
			}
			if i == 0 || c.first != c.other {
				// The docs' table names the disks a class was planted on.
				switch {
				case c.first && c.other:
					row.category = "A, B"
				case c.first:
					row.category = "A"
				default:
					row.category = "B"
				}
				table = append(table, row)
			}
		}
	}
	t.Logf("worker adversary: %d entries planted on %d disks; verdicts over two boots: failed=%v", len(rows), len(disks), t.Failed())
	if p := os.Getenv("HOLDFAST_ATTACK_TABLE"); p != "" {
		writeWorkerTable(t, p, table, ctlTable, !t.Failed())
	}
	t.Logf("worker adversary test in %s", time.Since(v.start).Round(time.Second))
}

// runMayFail runs a console command that may fail on the appliance (verify
// with problems) and returns its output and that failure.
func (g *guest) runMayFail(ctx context.Context, name string, args ...string) (string, error) {
	g.t.Helper()
	var out bytes.Buffer
	ctx, cancel := g.live(ctx)
	defer cancel()
	_, err := console.RunCommand(ctx, g.c, console.Command{Name: name, Args: args}, &out)
	if err != nil && !errors.Is(err, console.ErrCommandFailed) {
		g.t.Fatalf("console %s %v: %v (%v)\n%s\nlast console lines:\n%s", name, args, err, context.Cause(ctx), out.String(), lastLines(g.text.String(), 40))
	}
	return out.String(), err
}

// skippedAlertNames says whether an alert of prune's skipped entries on the
// store dir names path.
func skippedAlertNames(text, dir, path string) bool {
	for _, l := range strings.Split(text, "\n") {
		if strings.Contains(l, "attack: prune skipped store entries") && strings.Contains(l, "disk="+dir+" ") && strings.Contains(l, path) {
			return true
		}
	}
	return false
}

// maxCount is the largest count= in alerts.
func maxCount(alerts string) int {
	best := 0
	for _, m := range regexp.MustCompile(`count=(\d+)`).FindAllStringSubmatch(alerts, -1) {
		if n, _ := strconv.Atoi(m[1]); n > best {
			best = n
		}
	}
	return best
}

// waitReadyOrSafe waits for the ready line or the safe-mode line and
// says which came; silence fails the test (g.wait's rule).
func waitReadyOrSafe(ctx context.Context, t *testing.T, g *guest) string {
	t.Helper()
	seen, quiet := 0, time.Now()
	for {
		text := g.text.String()
		for _, w := range []string{appliance.ReadyLine, appliance.SafeModeLine} {
			if strings.Contains(text, w) {
				return w
			}
		}
		if len(text) != seen {
			seen, quiet = len(text), time.Now()
		}
		select {
		case <-ctx.Done():
			t.Fatalf("neither ready nor safe mode (%v); the console shows:\n%s", ctx.Err(), lastLines(text, 40))
		case <-g.vm.Done():
			t.Fatalf("QEMU exited before ready or safe mode: %s\n%s", g.exitStatus(), lastLines(g.text.String(), 40))
		case <-time.After(250 * time.Millisecond):
			if time.Since(quiet) > consoleSilence {
				t.Fatalf("a hang: no console output for %s before ready or safe mode\n%s", consoleSilence, lastLines(text, 40))
			}
		}
	}
}

// writeWorkerTable writes the worker adversary's rows for docs/lockdown.md:
// the verdict is the two boots' (refused: nothing lost, reported).
// The control channel's rows follow (C1...), their result their own.
func writeWorkerTable(t *testing.T, p string, rows, ctl []attackRow, ok bool) {
	var b strings.Builder
	b.WriteString("| # | adversary | technique | disks | result | what was planted, and what the sealer said |\n|---|---|---|---|---|---|\n")
	for i, r := range rows {
		res := "refused"
		if !ok {
			res = "SUCCEEDED (see the test log)"
		}
		fmt.Fprintf(&b, "| W%d | worker (uid 1000, its keys) | %s | %s | %s | %s |\n", i+1, r.name, r.category, res, strings.ReplaceAll(r.detail, "|", `\|`))
	}
	b.WriteString("\n| # | adversary | technique | result | what it sent, and what PID 1 answered |\n|---|---|---|---|---|\n")
	for i, r := range ctl {
		fmt.Fprintf(&b, "| C%d | %s | %s | %s | %s |\n", i+1, r.category, r.name, r.result, strings.ReplaceAll(r.detail, "|", `\|`))
	}
	if err := os.WriteFile(p, []byte(b.String()), 0o644); err != nil {
		t.Errorf("attack table: %v", err)
	}
}
