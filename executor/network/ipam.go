package network

import (
	"errors"
	"fmt"
	"net/netip"
)

// parseSubnet reads an IPv4 subnet of size /8 to /30 and masks it.
func parseSubnet(s string) (netip.Prefix, error) {
	p, err := netip.ParsePrefix(s)
	if err != nil {
		return netip.Prefix{}, fmt.Errorf("subnet %q: %w", s, err)
	}
	if !p.Addr().Is4() {
		return netip.Prefix{}, fmt.Errorf("subnet %q: only IPv4 subnets are supported", s)
	}
	if p.Bits() < 8 || p.Bits() > 30 {
		return netip.Prefix{}, fmt.Errorf("subnet %q: prefix length must be between /8 and /30", s)
	}
	return p.Masked(), nil
}

// gatewayOf returns the bridge's address: the first host of the subnet.
func gatewayOf(subnet netip.Prefix) netip.Addr { return subnet.Addr().Next() }

// broadcastOf returns the last address of an IPv4 subnet.
func broadcastOf(subnet netip.Prefix) netip.Addr {
	a := subnet.Addr().As4()
	n := uint32(a[0])<<24 | uint32(a[1])<<16 | uint32(a[2])<<8 | uint32(a[3])
	n |= ^uint32(0) >> subnet.Bits()
	return netip.AddrFrom4([4]byte{byte(n >> 24), byte(n >> 16), byte(n >> 8), byte(n)})
}

var errSubnetFull = errors.New("no free address left in the subnet")

// allocate picks the next free host address of subnet after last (round
// robin, so a released address is not handed out again at once), skipping
// the network and broadcast addresses, the gateway and every address for
// which used returns true.
func allocate(subnet netip.Prefix, gateway, last netip.Addr, used func(netip.Addr) bool) (netip.Addr, error) {
	first := subnet.Addr().Next()
	bcast := broadcastOf(subnet)
	start := first
	if last.IsValid() && subnet.Contains(last) {
		if n := last.Next(); n != bcast && n != subnet.Addr() {
			start = n
		}
	}
	hosts := 1<<(32-subnet.Bits()) - 2
	a := start
	for range hosts {
		if a != gateway && !used(a) {
			return a, nil
		}
		a = a.Next()
		if a == bcast {
			a = first
		}
	}
	return netip.Addr{}, fmt.Errorf("%s: %w", subnet, errSubnetFull)
}

// defaultSubnets are tried, in order, for the built-in bridge network.
func defaultSubnets() []netip.Prefix {
	var out []netip.Prefix
	for i := 88; i >= 80; i-- {
		out = append(out, netip.PrefixFrom(netip.AddrFrom4([4]byte{10, byte(i), 0, 0}), 16))
	}
	for i := 18; i <= 31; i++ {
		out = append(out, netip.PrefixFrom(netip.AddrFrom4([4]byte{172, byte(i), 0, 0}), 16))
	}
	return out
}

// pickSubnet returns the first candidate that overlaps none of taken.
func pickSubnet(candidates func(yield func(netip.Prefix) bool), taken []netip.Prefix) (netip.Prefix, error) {
	for c := range candidates {
		if !overlapsAny(c, taken) {
			return c, nil
		}
	}
	return netip.Prefix{}, errors.New("no free private subnet left; give one explicitly")
}

// userSubnets yields the /24s of 10.89.0.0/16 through 10.99.0.0/16, the
// candidates for user networks created without a subnet.
func userSubnets(yield func(netip.Prefix) bool) {
	for b := 89; b <= 99; b++ {
		for c := 0; c <= 255; c++ {
			if !yield(netip.PrefixFrom(netip.AddrFrom4([4]byte{10, byte(b), byte(c), 0}), 24)) {
				return
			}
		}
	}
}

func slicePrefixes(ps []netip.Prefix) func(yield func(netip.Prefix) bool) {
	return func(yield func(netip.Prefix) bool) {
		for _, p := range ps {
			if !yield(p) {
				return
			}
		}
	}
}

func overlapsAny(p netip.Prefix, others []netip.Prefix) bool {
	for _, o := range others {
		if p.Overlaps(o) {
			return true
		}
	}
	return false
}
