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

// ResolvConf is the resolv.conf of a container given the host's and
// docker run's --dns, --dns-search and --dns-option values: with none of
// them, the host's file as it is; else a file of search, nameserver and
// options lines, each from the values given or else from the host's
// file. A --dns-search of "." means no search domains.
func ResolvConf(host []byte, dns, search, options []string) []byte {
	if len(dns) == 0 && len(search) == 0 && len(options) == 0 {
		return host
	}
	var hostDNS, hostSearch, hostOptions []string
	for _, line := range strings.Split(string(host), "\n") {
		f := strings.Fields(line)
		if len(f) < 2 {
			continue
		}
		switch f[0] {
		case "nameserver":
			hostDNS = append(hostDNS, f[1])
		case "search", "domain":
			hostSearch = f[1:]
		case "options":
			hostOptions = append(hostOptions, f[1:]...)
		}
	}
	if len(dns) == 0 {
		dns = hostDNS
	}
	if len(search) == 0 {
		search = hostSearch
	} else if len(search) == 1 && search[0] == "." {
		search = nil
	}
	if len(options) == 0 {
		options = hostOptions
	}
	var b strings.Builder
	if len(search) > 0 {
		b.WriteString("search " + strings.Join(search, " ") + "\n")
	}
	for _, ns := range dns {
		b.WriteString("nameserver " + ns + "\n")
	}
	if len(options) > 0 {
		b.WriteString("options " + strings.Join(options, " ") + "\n")
	}
	return []byte(b.String())
}
