package roles

import (
	"context"
	"fmt"
	"net"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/u-root/u-root/pkg/dhclient"
	"github.com/vishvananda/netlink"
)

// The DHCP client role (uid 1003, CAP_NET_ADMIN and CAP_NET_RAW only, no
// key, no store, no socket to PID 1): one DHCPv4 exchange on every
// Ethernet link at boot, then it exits. It configures addresses and the
// default route only; it resolves no names and writes no file.

// configure4 applies a DHCPv4 lease's address and default route. It is
// dhclient's Packet4.Configure without the DNS part: the appliance
// resolves no names and the DHCP process may not write /etc/resolv.conf.
func configure4(l dhclient.Lease) error {
	p, ok := l.(*dhclient.Packet4)
	if !ok {
		return fmt.Errorf("not a DHCPv4 lease")
	}
	ipnet := p.Lease()
	if ipnet == nil {
		return fmt.Errorf("lease has no address")
	}
	if err := netlink.AddrReplace(p.Link(), &netlink.Addr{IPNet: ipnet}); err != nil {
		return fmt.Errorf("address %s: %w", ipnet, err)
	}
	msg, _ := p.Message()
	if gw := msg.Router(); len(gw) > 0 {
		if err := netlink.RouteReplace(&netlink.Route{LinkIndex: p.Link().Attrs().Index, Gw: gw[0]}); err != nil {
			return fmt.Errorf("default route via %s: %w", gw[0], err)
		}
	}
	return nil
}

// network brings up the loopback and every Ethernet link and asks DHCP for
// an IPv4 address on each.
func network(ctx context.Context, log hclog.Logger) error {
	links, err := netlink.LinkList()
	if err != nil {
		return fmt.Errorf("list links: %w", err)
	}
	var ifs []netlink.Link
	for _, l := range links {
		attrs := l.Attrs()
		if attrs.Flags&net.FlagLoopback != 0 {
			if err := netlink.LinkSetUp(l); err != nil {
				log.Warn("loopback not up", "error", err)
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
			log.Warn("DHCP failed", "interface", name, "error", r.Err)
			continue
		}
		if err := configure4(r.Lease); err != nil {
			log.Warn("DHCP lease not applied", "interface", name, "error", err)
			continue
		}
		configured++
		log.Info("network up", "interface", name, "lease", r.Lease.String())
	}
	if configured == 0 {
		return fmt.Errorf("no interface got a DHCP lease")
	}
	return nil
}
