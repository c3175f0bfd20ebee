package appliance

import (
	"bytes"
	"context"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"golang.org/x/sys/unix"

	"github.com/holdfast-appliance/holdfast/boards"
	"github.com/holdfast-appliance/holdfast/firmware/console"
	"github.com/holdfast-appliance/holdfast/firmware/control"
	"github.com/holdfast-appliance/holdfast/firmware/roles"
	"github.com/holdfast-appliance/holdfast/services/config"
)

func mustTime(t *testing.T, s string) time.Time {
	t.Helper()
	v, err := time.Parse(time.RFC3339, s)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

// TestMaintenancePlan: with an injected clock, the plan reboots at the
// first look at or after the window, never while the worker is busy,
// asks again every maintenanceRetry, warns once after a day and reboots
// anyway only after maxMaintenanceDeferral; "off" never reboots.
func TestMaintenancePlan(t *testing.T) {
	weekly := config.DefaultMaintenance // Sunday 03:00 UTC
	type look struct {
		at   time.Duration // after the boot
		busy string        // the worker's answer if asked
		want maintenanceAction
	}
	boot := mustTime(t, "2026-12-13T02:50:00Z") // a Sunday, 10 minutes before
	for _, tc := range []struct {
		name  string
		sched config.Maintenance
		looks []look
	}{
		{"idle at the time: reboot", weekly, []look{
			{0, "", maintWait},
			{9*time.Minute + 59*time.Second, "", maintWait},
			{10 * time.Minute, "", maintReboot},
		}},
		{"late look (the box was busy booting): reboot", weekly, []look{
			{13 * time.Minute, "", maintReboot},
		}},
		{"busy: wait, retry after 10 minutes, then reboot", weekly, []look{
			{10 * time.Minute, "pull of mail running", maintBusy},
			{11 * time.Minute, "", maintWait}, // not asked again yet
			{19 * time.Minute, "", maintWait},
			{20 * time.Minute, "restore of x to t running", maintBusy},
			{30 * time.Minute, "", maintReboot},
		}},
		{"busy for a day: one alert, still no reboot", weekly, []look{
			{10 * time.Minute, "pull of mail running", maintBusy},
			{10*time.Minute + 24*time.Hour, "pull of mail running", maintWarn},
			{20*time.Minute + 24*time.Hour, "pull of mail running", maintBusy},
			{30*time.Minute + 24*time.Hour, "", maintReboot},
		}},
		{"busy for a week: reboot anyway", weekly, []look{
			{10 * time.Minute, "pull of mail running", maintBusy},
			{10*time.Minute + 7*24*time.Hour - time.Second, "pull of mail running", maintWarn},
			{10*time.Minute + 7*24*time.Hour, "pull of mail running", maintWait}, // the retry is 10 minutes away
			{20*time.Minute + 7*24*time.Hour - time.Second, "pull of mail running", maintForce},
		}},
		{"off: never", config.Maintenance{Off: true}, []look{
			{10 * time.Minute, "", maintWait},
			{30 * 24 * time.Hour, "", maintWait},
		}},
		{"daily, booted just after the time: tomorrow", config.Maintenance{Daily: true, Hour: 2, Minute: 45}, []look{
			{time.Minute, "", maintWait},
			{23 * time.Hour, "", maintWait},
			{23*time.Hour + 55*time.Minute, "", maintReboot},
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := newMaintenancePlan(tc.sched, boot)
			for _, l := range tc.looks {
				asked := false
				got, why := p.step(boot.Add(l.at), func() string { asked = true; return l.busy })
				if got != l.want {
					t.Fatalf("at boot+%s: %v (%q), want %v", l.at, got, why, l.want)
				}
				if got == maintWait && asked {
					t.Errorf("at boot+%s: the worker was asked before the window or the retry", l.at)
				}
				if (got == maintBusy || got == maintWarn || got == maintForce) && why != l.busy {
					t.Errorf("at boot+%s: why %q, want the worker's %q", l.at, why, l.busy)
				}
				if got == maintReboot || got == maintForce {
					break
				}
			}
		})
	}
	p := newMaintenancePlan(weekly, boot)
	if l := p.line(); !strings.Contains(l, "weekly sun 03:00") || !strings.Contains(l, "next window 2026-12-13T03:00:00Z") {
		t.Errorf("status line %q", l)
	}
	p.step(boot.Add(10*time.Minute), func() string { return "pull of mail running" })
	if l := p.line(); !strings.Contains(l, "waiting (pull of mail running; next try 2026-12-13T03:10:00Z)") {
		t.Errorf("status line while waiting %q", l)
	}
	if l := newMaintenancePlan(config.Maintenance{Off: true}, boot).line(); !strings.Contains(l, "maintenance off") {
		t.Errorf("status line when off %q", l)
	}
}

// fakeWorker answers PID 1's quiesce over a real control channel, busy
// while busy is set, and counts the questions.
type fakeWorker struct {
	mu    sync.Mutex
	busy  string
	asked int
}

func (f *fakeWorker) set(b string) { f.mu.Lock(); f.busy = b; f.mu.Unlock() }

func (f *fakeWorker) handle(_ context.Context, req control.Request) (control.Reply, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if req.Op() != control.OpQuiesce {
		return nil, control.Errorf(control.Refused, "unexpected %s", req.Op())
	}
	f.asked++
	return &control.QuiesceReply{Busy: f.busy}, nil
}

// TestMaintenanceRebootDecision: PID 1's scheduled reboot and the console's
// maintenance command, over a real control channel to a worker that says
// what runs: nothing reboots while it is busy, and when it is idle the
// reboot goes through halt (reboot(2) with RESTART, recorded).
func TestMaintenanceRebootDecision(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	newBox := func(t *testing.T) (*appliance, *fakeWorker, chan int) {
		pid1End, workerEnd, err := roles.Socketpair("control")
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { pid1End.Close(); workerEnd.Close() })
		fw := &fakeWorker{}
		control.New(workerEnd, control.Options{Side: control.Worker, Handler: fw.handle})
		rebooted := make(chan int, 1)
		a := &appliance{log: hclog.NewNullLogger(), mounted: map[string]string{}, pulls: map[string]*pullStatus{},
			o: Options{Board: &boards.Board{Name: "test"}, RunDir: t.TempDir(), Reboot: func(how int) error { rebooted <- how; return nil }}}
		a.worker = control.New(pid1End, control.Options{Side: control.PID1, Handler: func(context.Context, control.Request) (control.Reply, error) { return nil, nil }})
		return a, fw, rebooted
	}
	noReboot := func(t *testing.T, rebooted chan int, when string) {
		t.Helper()
		select {
		case how := <-rebooted:
			t.Fatalf("%s: rebooted (%#x)", when, how)
		default:
		}
	}

	t.Run("scheduled", func(t *testing.T) {
		a, fw, rebooted := newBox(t)
		boot := mustTime(t, "2026-12-13T02:58:00Z")
		p := newMaintenancePlan(config.DefaultMaintenance, boot)
		a.maint = p
		fw.set("pull of mail running")
		if a.maintenanceStep(ctx, p, boot.Add(time.Minute)) {
			t.Fatal("rebooted before the window")
		}
		if a.maintenanceStep(ctx, p, boot.Add(2*time.Minute)) {
			t.Fatal("rebooted during a pull")
		}
		noReboot(t, rebooted, "during a pull")
		if st := a.status(); !strings.Contains(st, "waiting (pull of mail running") {
			t.Errorf("status does not say why the window waits:\n%s", st)
		}
		fw.set("")
		if a.maintenanceStep(ctx, p, boot.Add(5*time.Minute)) {
			t.Fatal("rebooted before the retry")
		}
		noReboot(t, rebooted, "before the retry")
		if !a.maintenanceStep(ctx, p, boot.Add(12*time.Minute)) {
			t.Fatal("no reboot once the pull ended")
		}
		if how := <-rebooted; how != unix.LINUX_REBOOT_CMD_RESTART {
			t.Fatalf("reboot(2) with %#x, want RESTART", how)
		}
		if fw.asked != 2 {
			t.Errorf("the worker was asked %d times, want 2 (at the window and at the retry)", fw.asked)
		}
	})

	t.Run("console", func(t *testing.T) {
		a, fw, rebooted := newBox(t)
		a.maint = newMaintenancePlan(config.DefaultMaintenance, mustTime(t, "2026-12-09T12:00:00Z"))
		var out bytes.Buffer
		if err := a.command(ctx, console.Command{Name: "maintenance"}, &out); err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(out.String(), "next window 2026-12-13T03:00:00Z") || !strings.Contains(out.String(), "maintenance now") {
			t.Errorf("maintenance shows %q", out.String())
		}
		fw.set("restore of 20261207T000000Z-00aabbcc to t0 running")
		err := a.command(ctx, console.Command{Name: "maintenance", Args: []string{"now"}}, &out)
		if err == nil || !strings.Contains(err.Error(), "not rebooting while a pull or restore runs (restore of 20261207T000000Z-00aabbcc to t0 running)") {
			t.Fatalf("maintenance now during a restore: %v", err)
		}
		time.Sleep(1500 * time.Millisecond)
		noReboot(t, rebooted, "maintenance now during a restore")
		if err := a.command(ctx, console.Command{Name: "maintenance", Args: []string{"later"}}, &out); err == nil {
			t.Error("maintenance later was accepted")
		}
		fw.set("")
		out.Reset()
		if err := a.command(ctx, console.Command{Name: "maintenance", Args: []string{"now"}}, &out); err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(out.String(), MaintenanceRebootLine) {
			t.Errorf("maintenance now said %q", out.String())
		}
		select {
		case how := <-rebooted:
			if how != unix.LINUX_REBOOT_CMD_RESTART {
				t.Fatalf("reboot(2) with %#x", how)
			}
		case <-time.After(10 * time.Second):
			t.Fatal("maintenance now did not reboot")
		}
	})

	t.Run("worker gone", func(t *testing.T) {
		// A worker that died pulls nothing: the window does not wait for it.
		a, _, _ := newBox(t)
		pid1End, workerEnd, err := roles.Socketpair("control")
		if err != nil {
			t.Fatal(err)
		}
		a.worker = control.New(pid1End, control.Options{Side: control.PID1, Handler: func(context.Context, control.Request) (control.Reply, error) { return nil, nil }})
		workerEnd.Close()
		<-a.worker.Done()
		if why := a.quiesce(ctx); why != "" {
			t.Errorf("quiesce with the worker gone: %q", why)
		}
		pid1End.Close()
	})
}
