package executor

import (
	"fmt"
	"net/netip"
	"strings"
)

// LoopbackHosts is the start of a docker run container's /etc/hosts: the
// loopback names, before any extra host and the container's own address.
const LoopbackHosts = "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n" +
	"fe00::0\tip6-localnet\nff00::0\tip6-mcastprefix\nff02::1\tip6-allnodes\nff02::2\tip6-allrouters\n"

// ParseExtraHost reads an extra host as Spec.ExtraHosts holds it ("name
// ip") or as docker's --add-host takes it ("name:ip", "name=ip", an IPv6
// address possibly in brackets).
func ParseExtraHost(s string) (name string, ip netip.Addr, err error) {
	var addr string
	if f := strings.Fields(s); len(f) == 2 {
		name, addr = f[0], f[1]
	} else if n, a, ok := strings.Cut(s, "="); ok {
		name, addr = n, a
	} else {
		name, addr, _ = strings.Cut(s, ":")
	}
	if name == "" || strings.ContainsAny(name, " \t\n") {
		return "", netip.Addr{}, fmt.Errorf("invalid extra host %q: want NAME:IP", s)
	}
	if ip, err = netip.ParseAddr(strings.Trim(addr, "[]")); err != nil {
		return "", netip.Addr{}, fmt.Errorf("invalid extra host %q: %q is not an IP address", s, addr)
	}
	return name, ip, nil
}
