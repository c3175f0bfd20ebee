package appliance

import (
	"context"
	"fmt"
	"net"
	"os"
	"strings"
	"time"

	"github.com/u-root/u-root/pkg/dhclient"
	"github.com/vishvananda/netlink"

	"github.com/holdfast-appliance/holdfast/firmware/console"
	"github.com/holdfast-appliance/holdfast/services/ingest"
	"github.com/holdfast-appliance/holdfast/services/store"
)

// maintenance is phase 6: the store's journal recovery ran when it was
// opened; prune removes what has expired, if the TPM vouches for the clock.
func (a *appliance) maintenance(ctx context.Context) {
	a.setPhase("maintenance")
	a.log.Info("phase 6/8 maintenance: prune with the TPM-vouched clock")
	a.storeMu.Lock()
	res, err := a.st.Prune(ctx, store.PruneOptions{})
	a.storeMu.Unlock()
	if err != nil {
		a.alert("prune frozen: nothing was deleted", "error", err)
		return
	}
	a.log.Info("prune done", "expired", len(res.Expired), "kept", len(res.Kept), "packs_removed", len(res.Packs), "freed", res.FreedBytes)
}

// lockdown is phase 7: the sysctls that close doors this appliance never
// opens again. Dropping capabilities and moving ingest into its own
// unprivileged process is the lockdown issue's work.
func (a *appliance) lockdown(ctx context.Context) {
	a.setPhase("lockdown")
	for _, s := range []struct{ path, value string }{
		{"/proc/sys/kernel/kexec_load_disabled", "1"},
		{"/proc/sys/kernel/dmesg_restrict", "1"},
		{"/proc/sys/fs/suid_dumpable", "0"},
		{"/proc/sys/kernel/yama/ptrace_scope", "3"},
		{"/proc/sys/kernel/modules_disabled", "1"},
	} {
		if err := os.WriteFile(s.path, []byte(s.value), 0); err != nil {
			a.log.Warn("sysctl not set", "sysctl", s.path, "error", err)
			continue
		}
	}
	a.log.Info("phase 7/8 lockdown: kexec, module loading, ptrace and dmesg closed")
}

// services is phase 8: the network, the pull schedule and the console.
func (a *appliance) services(ctx context.Context) error {
	a.setPhase("services")
	if err := a.network(ctx); err != nil {
		a.alert("network not configured; pulls will fail until it is", "error", err)
	}
	jobs := make([]ingest.Job, 0, len(a.cfg.Sources))
	for _, s := range a.cfg.Sources {
		jobs = append(jobs, ingest.Job{Name: s.Name, Every: s.Schedule.Every})
	}
	sched := &ingest.Scheduler{Log: a.log.Named("schedule"), Pull: a.pull}
	go func() {
		if err := sched.Run(ctx, jobs); err != nil && ctx.Err() == nil {
			a.alert("scheduler stopped", "error", err)
		}
	}()
	a.setPhase("running")
	a.log.Info(ReadyLine, "since_init", time.Since(a.o.Start).Round(time.Millisecond), "sources", len(jobs))
	for {
		err := console.Serve(ctx, a.o.Conn, console.ServeOptions{Handler: a.command, Typed: a.o.Typed, Human: a.o.Human, Prompt: Prompt, Log: a.log.Named("console")})
		if ctx.Err() != nil {
			return ctx.Err()
		}
		return fmt.Errorf("console: %w", err)
	}
}

// pull runs one scheduled pull of a source.
func (a *appliance) pull(ctx context.Context, name string) error {
	src, ok := a.cfg.Source(name)
	if !ok {
		return fmt.Errorf("no source %q", name)
	}
	start := time.Now()
	a.storeMu.Lock()
	p := &ingest.Puller{Store: a.st, Log: a.log.Named("pull"), Alerter: alertSink{a}}
	res, err := p.Pull(ctx, src)
	a.storeMu.Unlock()
	ps := &pullStatus{Last: start, Took: time.Since(start), Next: start.Add(src.Schedule.Every)}
	if res != nil {
		ps.Snapshot = res.Snapshot
		ps.Summary = fmt.Sprintf("%d objects, %d bytes, %d fetched, %d reused, complete=%v", res.Objects, res.Bytes, res.Fetched, res.Reused, res.Complete)
		a.log.Info("snapshot committed", "source", name, "snapshot", res.Snapshot, "objects", res.Objects, "bytes", res.Bytes,
			"fetched", res.Fetched, "reused", res.Reused, "complete", res.Complete, "took", ps.Took.Round(time.Millisecond))
	}
	if err != nil {
		ps.Err = err.Error()
		a.alert("pull failed", "source", name, "error", err)
	}
	a.mu.Lock()
	a.pulls[name] = ps
	a.mu.Unlock()
	return err
}

// alertSink records ingest alerts for status and logs them.
type alertSink struct{ a *appliance }

func (s alertSink) Alert(_ context.Context, al ingest.Alert) error {
	s.a.alert(al.Message, "kind", al.Kind, "source", al.Source, "snapshot", al.Snapshot, "held", strings.Join(al.Held, ","))
	return nil
}

// network brings up the loopback and every Ethernet link and asks DHCP for
// an IPv4 address on each.
func (a *appliance) network(ctx context.Context) error {
	links, err := netlink.LinkList()
	if err != nil {
		return fmt.Errorf("list links: %w", err)
	}
	var ifs []netlink.Link
	for _, l := range links {
		attrs := l.Attrs()
		if attrs.Flags&net.FlagLoopback != 0 {
			if err := netlink.LinkSetUp(l); err != nil {
				a.log.Warn("loopback not up", "error", err)
			}
			continue
		}
		if l.Type() == "device" {
			ifs = append(ifs, l)
		}
	}
	if len(ifs) == 0 {
		return fmt.Errorf("no network interface")
	}
	dctx, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	configured := 0
	for r := range dhclient.SendRequests(dctx, ifs, true, false, dhclient.Config{Timeout: 5 * time.Second, Retries: 5}, 15*time.Second) {
		name := r.Interface.Attrs().Name
		if r.Err != nil {
			a.log.Warn("DHCP failed", "interface", name, "error", r.Err)
			continue
		}
		if err := r.Lease.Configure(); err != nil {
			a.log.Warn("DHCP lease not applied", "interface", name, "error", err)
			continue
		}
		configured++
		a.log.Info("network up", "interface", name, "lease", r.Lease.String())
	}
	if configured == 0 {
		return fmt.Errorf("no interface got a DHCP lease")
	}
	return nil
}
