package network

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"slices"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// ensureBridge creates the Linux bridge of a network if it is missing,
// gives it the gateway address, lets it carry DNAT-ed loopback traffic
// (route_localnet, for ports published on 127.0.0.1) and brings it up.
func ensureBridge(name string, subnet netip.Prefix, gateway netip.Addr) error {
	link, err := netlink.LinkByName(name)
	var notFound netlink.LinkNotFoundError
	switch {
	case errors.As(err, &notFound):
		br := &netlink.Bridge{LinkAttrs: netlink.NewLinkAttrs()}
		br.Name = name
		if err := netlink.LinkAdd(br); err != nil && !errors.Is(err, unix.EEXIST) {
			return fmt.Errorf("create bridge %s: %w", name, err)
		}
		if link, err = netlink.LinkByName(name); err != nil {
			return fmt.Errorf("create bridge %s: %w", name, err)
		}
	case err != nil:
		return fmt.Errorf("look up bridge %s: %w", name, err)
	case link.Type() != "bridge":
		return fmt.Errorf("interface %s exists and is not a bridge", name)
	}
	gw := &netlink.Addr{IPNet: &net.IPNet{IP: gateway.AsSlice(), Mask: net.CIDRMask(subnet.Bits(), 32)}}
	if err := netlink.AddrReplace(link, gw); err != nil {
		return fmt.Errorf("address bridge %s: %w", name, err)
	}
	if err := writeSysctl("net/ipv4/conf/"+name+"/route_localnet", "1"); err != nil {
		return err
	}
	if err := netlink.LinkSetUp(link); err != nil {
		return fmt.Errorf("bring up bridge %s: %w", name, err)
	}
	return nil
}

// deleteLink removes an interface; a missing one is fine.
func deleteLink(name string) error {
	link, err := netlink.LinkByName(name)
	var notFound netlink.LinkNotFoundError
	if errors.As(err, &notFound) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("look up %s: %w", name, err)
	}
	if err := netlink.LinkDel(link); err != nil && !errors.Is(err, unix.ENODEV) {
		return fmt.Errorf("delete %s: %w", name, err)
	}
	return nil
}

// vethConfig is what connectVeth sets up.
type vethConfig struct {
	HostName string // host end, enslaved to Bridge
	Bridge   string
	NetNS    string // the container end becomes eth0 here
	IP       netip.Addr
	Subnet   netip.Prefix
	Gateway  netip.Addr
	MAC      net.HardwareAddr // eth0's address; nil: the kernel's random one
}

// connectVeth creates a veth pair whose container end is born inside the
// namespace as eth0 (so it never clashes with a host eth0), enslaves the
// host end to the bridge, and configures eth0: address, up, default route
// through the gateway. On error the caller deletes HostName.
func connectVeth(c vethConfig) error {
	br, err := netlink.LinkByName(c.Bridge)
	if err != nil {
		return fmt.Errorf("look up bridge %s: %w", c.Bridge, err)
	}
	h, ns, err := nsHandle(c.NetNS)
	if err != nil {
		return err
	}
	defer ns.Close()
	defer h.Close()

	veth := &netlink.Veth{LinkAttrs: netlink.NewLinkAttrs(), PeerName: "eth0", PeerNamespace: netlink.NsFd(ns)}
	veth.Name = c.HostName
	veth.MasterIndex = br.Attrs().Index
	veth.MTU = br.Attrs().MTU
	if veth.MTU < 1280 {
		veth.MTU = 1500
	}
	veth.PeerMTU = uint32(veth.MTU)
	if err := netlink.LinkAdd(veth); err != nil {
		return fmt.Errorf("create veth %s: %w", c.HostName, err)
	}
	host, err := netlink.LinkByName(c.HostName)
	if err != nil {
		return fmt.Errorf("look up veth %s: %w", c.HostName, err)
	}
	if err := netlink.LinkSetUp(host); err != nil {
		return fmt.Errorf("bring up veth %s: %w", c.HostName, err)
	}

	eth0, err := h.LinkByName("eth0")
	if err != nil {
		return fmt.Errorf("look up eth0 in netns: %w", err)
	}
	if c.MAC != nil {
		if err := h.LinkSetHardwareAddr(eth0, c.MAC); err != nil {
			return fmt.Errorf("set the MAC address of eth0 to %s: %w", c.MAC, err)
		}
	}
	addr := &netlink.Addr{IPNet: &net.IPNet{IP: c.IP.AsSlice(), Mask: net.CIDRMask(c.Subnet.Bits(), 32)}}
	if err := h.AddrAdd(eth0, addr); err != nil {
		return fmt.Errorf("address eth0: %w", err)
	}
	if err := h.LinkSetUp(eth0); err != nil {
		return fmt.Errorf("bring up eth0: %w", err)
	}
	route := &netlink.Route{LinkIndex: eth0.Attrs().Index, Gw: c.Gateway.AsSlice(), Scope: netlink.SCOPE_UNIVERSE}
	if err := h.RouteAdd(route); err != nil {
		return fmt.Errorf("default route via %s: %w", c.Gateway, err)
	}
	return nil
}

// hostRoutes returns the IPv4 routes of the host, in every table, except
// default routes and those through the named interfaces (kiln's bridges).
func hostRoutes(skip []string) ([]netip.Prefix, error) {
	skipIdx := map[int]bool{}
	for _, name := range skip {
		if l, err := netlink.LinkByName(name); err == nil {
			skipIdx[l.Attrs().Index] = true
		}
	}
	var routes []netlink.Route
	var err error
	for range 5 {
		routes, err = netlink.RouteListFiltered(netlink.FAMILY_V4, &netlink.Route{Table: unix.RT_TABLE_UNSPEC}, netlink.RT_FILTER_TABLE)
		if !errors.Is(err, netlink.ErrDumpInterrupted) {
			break
		}
	}
	if err != nil {
		return nil, fmt.Errorf("list host routes: %w", err)
	}
	var out []netip.Prefix
	for _, r := range routes {
		if r.Dst == nil || skipIdx[r.LinkIndex] {
			continue
		}
		a, ok := netip.AddrFromSlice(r.Dst.IP)
		if !ok {
			continue
		}
		bits, _ := r.Dst.Mask.Size()
		p := netip.PrefixFrom(a.Unmap(), bits).Masked()
		if p.Bits() == 0 || slices.Contains(out, p) {
			continue
		}
		out = append(out, p)
	}
	return out, nil
}

// hostAddrs returns the IPv4 addresses of the host's interfaces.
func hostAddrs() (map[netip.Addr]bool, error) {
	addrs, err := netlink.AddrList(nil, netlink.FAMILY_V4)
	if err != nil && !errors.Is(err, netlink.ErrDumpInterrupted) {
		return nil, fmt.Errorf("list host addresses: %w", err)
	}
	out := map[netip.Addr]bool{}
	for _, x := range addrs {
		if a, ok := netip.AddrFromSlice(x.IP); ok {
			out[a.Unmap()] = true
		}
	}
	return out, nil
}

func writeSysctl(key, value string) error {
	path := "/proc/sys/" + key
	if cur, err := os.ReadFile(path); err == nil && string(cur) == value+"\n" {
		return nil
	}
	if err := os.WriteFile(path, []byte(value), 0o644); err != nil {
		return fmt.Errorf("sysctl %s=%s: %w", key, value, err)
	}
	return nil
}
