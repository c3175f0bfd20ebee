package images

import (
	"context"
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

	"github.com/holdfast-appliance/holdfast/boards"
	"github.com/holdfast-appliance/holdfast/firmware/appliance"
	"github.com/holdfast-appliance/holdfast/images/qemu"
	"github.com/holdfast-appliance/holdfast/tools/testminio"
)

func TestReleaseRefusesAttackSuite(t *testing.T) {
	b, err := boards.Load("qemu-x86_64")
	if err != nil {
		t.Fatal(err)
	}
	_, err = Build(context.Background(), Options{Board: b, OutDir: t.TempDir(), Release: true, AttackSuite: true})
	if err == nil || !strings.Contains(err.Error(), "attack suite") {
		t.Fatalf("release build with the attack suite: %v, want a refusal", err)
	}
}

// adversary names who plays a technique (docs/lockdown.md): root (uid 0
// with no capability), the worker's uid (the -as-owner techniques) or
// every identity that owns anything and every role's, with its groups
// (the identity techniques but the first, which root tries by itself).
func adversary(r attackRow) string {
	switch {
	case r.category == "identity" && r.name != "setresuid-every-identity":
		return "every identity; worker 1000, sealer 1001+1000, export 1002+1000, dhcp 1003"
	case r.category == "identity":
		return "root, becoming every identity"
	case strings.HasSuffix(r.name, "-as-owner"):
		return "worker uid 1000"
	}
	return "root"
}

// attackLineRE matches one result line of holdfast-attack.
var attackLineRE = regexp.MustCompile(`^ATTACK (\d+) (\S+) (\S+): (refused|SUCCEEDED|n/a): ?(.*)$`)

type attackRow struct {
	n                              int
	category, name, result, detail string
}

// parseAttack returns the result rows and the SUMMARY line of the suite.
func parseAttack(out string) ([]attackRow, string) {
	var rows []attackRow
	summary := ""
	for _, l := range strings.Split(strings.ReplaceAll(out, "\r", ""), "\n") {
		if strings.HasPrefix(l, "ATTACK SUMMARY") {
			summary = l
		}
		m := attackLineRE.FindStringSubmatch(l)
		if m == nil {
			continue
		}
		n, _ := strconv.Atoi(m[1])
		rows = append(rows, attackRow{n, m[2], m[3], m[4], m[5]})
	}
	return rows, summary
}

// TestAttackSuite boots the TEST image (images.Options.AttackSuite), lets it
// pull a snapshot, then runs the attack program as uid 0 after lockdown:
// every technique must be refused and the store unchanged. The VM is then
// powered off and booted again with its hardware clock ten years ahead:
// prune must refuse to trust the time (the clock alert shows on the
// console and in status), nothing is deleted, and the snapshot verifies
// and reads back byte-identical.
//
// HOLDFAST_ATTACK_TABLE=FILE writes the results as the markdown table in
// docs/lockdown.md.
func TestAttackSuite(t *testing.T) {
	v := startVMTest(t, "qemu-x86_64", "attack", 30*time.Minute, Options{AttackSuite: true}, nil)
	ctx, b, r, log, out := v.ctx, v.b, v.r, v.log, v.out

	mc := testminio.Start(t)
	mc.MakeBucket(t, "mail", false)
	_, port, _ := strings.Cut(mc.Endpoint, ":")
	objs := randomMails(rand.New(rand.NewPCG(3, 4)), 30, 500, 200000)
	objs["weird/spa ce & ?query=1%20"] = []byte("hostile key")
	objs["weird/\x1b[2J clear \n newline"] = []byte("hostile key 2")
	for k, v := range objs {
		mc.Put(t, "mail", k, v, minio.PutObjectOptions{ContentType: "message/rfc822"})
	}
	cfg := mailConfig("holdfast-attack-test", port, "")
	state := filepath.Join(out, "vm")
	// Small data disks, so that the fill-the-disk technique is quick; a
	// second network card on a tap in a namespace of the test's own, for
	// the port scan.
	sn := newScanNet(t)
	vmc := qemu.Config{DataDiskSize: 512 << 20, TapNIC: sn.tapFile}

	g := bootGuestWith(ctx, t, b, r.Image, state, vmc, log)
	provision(ctx, t, g, r, "holdfast-attack-test", cfg)
	ids := snapshotIDs(g.run(ctx, "snapshots"))
	if len(ids) != 1 {
		t.Fatalf("%d snapshots after the first pull, want 1", len(ids))
	}
	for _, l := range strings.Split(g.text.String(), "\n") {
		if strings.Contains(l, "sysctl not set") || strings.Contains(l, "not unmounted") || strings.Contains(l, "not made immutable") {
			t.Logf("lockdown: %s", strings.TrimSpace(l))
		}
	}
	for _, bad := range []string{"lockdown: not every mount is read-only", "lockdown: PID 1 keeps capabilities"} {
		if strings.Contains(g.text.String(), bad) {
			t.Errorf("the console shows %q", bad)
		}
	}
	want := sums(objs)
	equalSums(t, "before the attack", objectSums(t, g.run(ctx, "ls", ids[0])), want)
	if socks := g.run(ctx, "sockets"); !strings.Contains(socks, "0 listening socket(s)") {
		t.Errorf("listening sockets in the guest without an export:\n%s", socks)
	}
	procs := g.run(ctx, "processes")
	// No process (kernel threads aside) keeps a bounding set after
	// lockdown but the sealer (CAP_LINUX_IMMUTABLE and CAP_FOWNER, in its
	// mount namespace where only its store is writable): PID 1's is
	// empty, so nothing started later can setuid, setgid or setpcap.
	pid1Seen := false
	for _, l := range strings.Split(strings.ReplaceAll(procs, "\r", ""), "\n") {
		if !strings.HasPrefix(l, "pid=") {
			continue
		}
		pid1Seen = pid1Seen || strings.HasPrefix(l, "pid=1 ")
		if !strings.Contains(l, "cap_bnd=0000000000000000") && !(strings.Contains(l, `name="holdfast-sealer"`) && strings.Contains(l, "uid=1001 gid=1001 groups=1000 cap_eff=0000000000000208 cap_bnd=0000000000000208")) {
			t.Errorf("a process keeps a bounding set after lockdown: %s", l)
		}
	}
	if !pid1Seen {
		t.Errorf("processes does not list PID 1:\n%s", procs)
	}
	for _, bad := range []string{"lockdown: /dev not fully replaced", "lockdown: role"} {
		if strings.Contains(g.text.String(), bad) {
			t.Errorf("the console shows %q", bad)
		}
	}

	// The suite.
	suiteStart := time.Now()
	res := g.run(ctx, "attack")
	rows, summary := parseAttack(res)
	t.Logf("attack suite: %d techniques in %s; %s", len(rows), time.Since(suiteStart).Round(time.Second), summary)
	tried, seen := 0, map[string]bool{}
	for _, row := range rows {
		if seen[row.name] {
			t.Errorf("technique %s reported twice", row.name)
		}
		seen[row.name] = true
		switch row.result {
		case "SUCCEEDED":
			t.Errorf("ATTACK SUCCEEDED: %02d %s %s: %s", row.n, row.category, row.name, row.detail)
			tried++
		case "refused":
			tried++
		}
	}
	if tried < 40 {
		t.Errorf("only %d techniques were tried (n/a excluded), want at least 40:\n%s", tried, res)
	}
	if !strings.Contains(summary, "succeeded=0") || !strings.Contains(summary, "store_changed=false") {
		t.Errorf("suite summary %q; output:\n%s", summary, res)
	}
	if p := os.Getenv("HOLDFAST_ATTACK_TABLE"); p != "" {
		writeAttackTable(t, p, rows)
	}
	// PID 1 is alive and answers; the store is whole.
	if st := g.run(ctx, "status"); !strings.Contains(st, "phase running") {
		t.Errorf("status after the attack suite: %s", st)
	}
	if v := g.run(ctx, "verify"); !strings.Contains(v, "verify OK") {
		t.Errorf("verify after the attack suite: %s", v)
	}
	equalSums(t, "after the attack", objectSums(t, g.run(ctx, "ls", ids[0])), want)
	// From outside: every TCP port of the guest, through its second card.
	scanStart := time.Now()
	scan, err := sn.scanTCP(ctx)
	if err != nil {
		t.Fatalf("port scan: %v", err)
	}
	t.Logf("port scan of [%s] from the host: %d ports refused, %d open, %d silent, in %s",
		guestLinkLocal, len(scan.refused), len(scan.open), len(scan.silent), time.Since(scanStart).Round(time.Second))
	if len(scan.open) > 0 {
		t.Errorf("open TCP ports on the guest: %v", scan.open)
	}
	if len(scan.refused) != 65535 {
		t.Errorf("only %d of 65535 ports answered with a reset (%d silent: the scan did not reach the guest)", len(scan.refused), len(scan.silent))
	}
	g.powerOff(ctx)

	// Boot 2, the hardware clock ten years ahead: the trusted time credits
	// only what the TPM saw, so prune runs and deletes nothing, and the
	// alert says how far T lags.
	vmc.TapNIC = nil
	vmc.RTCBase = time.Now().UTC().AddDate(10, 0, 0).Format("2006-01-02T15:04:05")
	g = bootGuestWith(ctx, t, b, r.Image, state, vmc, log)
	g.wait(ctx, appliance.ReadyLine)
	text := g.text.String()
	for _, w := range []string{"trusted time runs late", "lag=", "prune done: expired=0"} {
		if !strings.Contains(text, w) {
			t.Errorf("boot with the clock 10 years ahead: the console lacks %q", w)
		}
	}
	if st := g.run(ctx, "status"); !strings.Contains(st, "trusted time runs late") || !strings.Contains(st, "lags the wall clock by") {
		t.Errorf("status does not show the clock alert:\n%s", st)
	}
	if got := snapshotIDs(g.run(ctx, "snapshots")); len(got) != 1 || got[0] != ids[0] {
		t.Errorf("snapshots after the clock jump: %v, want %v", got, ids)
	}
	if v := g.run(ctx, "verify"); !strings.Contains(v, "verify OK") {
		t.Errorf("verify after the clock jump: %s", v)
	}
	equalSums(t, "after the clock jump", objectSums(t, g.run(ctx, "ls", ids[0])), want)
	g.stop(ctx)
	t.Logf("attack suite test in %s", time.Since(v.start).Round(time.Second))
}

// writeAttackTable writes the suite's results as a markdown table.
func writeAttackTable(t *testing.T, p string, rows []attackRow) {
	var b strings.Builder
	b.WriteString("| # | adversary | category | technique | result | what the kernel or the design answered |\n|---|---|---|---|---|---|\n")
	for _, r := range rows {
		fmt.Fprintf(&b, "| %d | %s | %s | %s | %s | %s |\n", r.n, adversary(r), r.category, r.name, r.result, strings.ReplaceAll(r.detail, "|", `\|`))
	}
	if err := os.WriteFile(p, []byte(b.String()), 0o644); err != nil {
		t.Errorf("attack table: %v", err)
	}
}

func TestAdversary(t *testing.T) {
	for _, tc := range []struct {
		cat, name, want string
	}{
		{"store", "unlink-pack", "root"},
		{"owner", "unlink-pack-as-owner", "worker uid 1000"},
		{"fill", "fill-tmp-as-owner", "worker uid 1000"},
		{"identity", "setresuid-every-identity", "root, becoming every identity"},
		{"identity", "mknod-every-identity", "every identity; worker 1000, sealer 1001+1000, export 1002+1000, dhcp 1003"},
		{"identity", "store-every-identity", "every identity; worker 1000, sealer 1001+1000, export 1002+1000, dhcp 1003"},
		{"signal", "kill-sealer", "root"},
	} {
		if got := adversary(attackRow{category: tc.cat, name: tc.name}); got != tc.want {
			t.Errorf("adversary(%s %s) = %q, want %q", tc.cat, tc.name, got, tc.want)
		}
	}
}
