package network

import (
	"errors"
	"fmt"
	"net/netip"
	"strconv"
	"strings"
)

// PortMapping publishes a container port (docker -p [IP:]HOST:CTR[/udp]).
type PortMapping struct {
	HostIP        netip.Addr `json:"host_ip,omitzero"` // zero: all addresses, loopback included
	HostPort      uint16     `json:"host_port"`        // 0: a free port, picked by Attach
	ContainerPort uint16     `json:"container_port"`
	Proto         string     `json:"proto"` // "tcp" or "udp"; "" means "tcp"
}

// String formats the mapping the way ParsePortMapping reads it.
func (p PortMapping) String() string {
	var b strings.Builder
	if p.HostIP.IsValid() {
		b.WriteString(p.HostIP.String())
		b.WriteByte(':')
	}
	if p.HostPort != 0 {
		b.WriteString(strconv.Itoa(int(p.HostPort)))
	}
	if p.HostIP.IsValid() || p.HostPort != 0 {
		b.WriteByte(':')
	}
	b.WriteString(strconv.Itoa(int(p.ContainerPort)))
	if p.Proto != "" && p.Proto != "tcp" {
		b.WriteString("/" + p.Proto)
	}
	return b.String()
}

// ParsePortMapping reads a docker -p value: CTR, HOST:CTR, IP:HOST:CTR or
// IP::CTR, each optionally followed by /tcp or /udp. A missing host port is
// 0 (Attach picks one). Port ranges and IPv6 host addresses are not
// supported.
func ParsePortMapping(spec string) (PortMapping, error) {
	var pm PortMapping
	rest, proto, hasProto := strings.Cut(spec, "/")
	pm.Proto = "tcp"
	if hasProto {
		if proto != "tcp" && proto != "udp" {
			return pm, fmt.Errorf("publish %q: protocol %q: only tcp and udp are supported", spec, proto)
		}
		pm.Proto = proto
	}
	parts := strings.Split(rest, ":")
	var ip, host, ctr string
	switch len(parts) {
	case 1:
		ctr = parts[0]
	case 2:
		host, ctr = parts[0], parts[1]
	case 3:
		ip, host, ctr = parts[0], parts[1], parts[2]
	default:
		return pm, fmt.Errorf("publish %q: want [IP:][HOST:]CONTAINER[/udp] (IPv6 host addresses are not supported)", spec)
	}
	if ip != "" {
		a, err := netip.ParseAddr(ip)
		if err != nil || !a.Is4() {
			return pm, fmt.Errorf("publish %q: host address %q is not an IPv4 address", spec, ip)
		}
		if !a.IsUnspecified() {
			pm.HostIP = a
		}
	}
	if host != "" {
		p, err := parsePort(host)
		if err != nil {
			return pm, fmt.Errorf("publish %q: host port: %w", spec, err)
		}
		pm.HostPort = p
	}
	p, err := parsePort(ctr)
	if err != nil {
		return pm, fmt.Errorf("publish %q: container port: %w", spec, err)
	}
	pm.ContainerPort = p
	return pm, nil
}

func parsePort(s string) (uint16, error) {
	if strings.Contains(s, "-") {
		return 0, fmt.Errorf("port ranges (%q) are not supported", s)
	}
	n, err := strconv.ParseUint(s, 10, 16)
	if err != nil || n == 0 {
		return 0, fmt.Errorf("%q is not a port number (1-65535)", s)
	}
	return uint16(n), nil
}

// PortInUseError reports a host port that cannot be published because a
// process on the host or another container already uses it. It matches
// ErrPortInUse.
type PortInUseError struct {
	HostIP    netip.Addr // zero when publishing on every address
	Port      uint16
	Proto     string
	Container string // the container that publishes it, if that is the reason
}

func (e *PortInUseError) Error() string {
	var b strings.Builder
	if e.Proto == "udp" {
		b.WriteString("udp ")
	}
	fmt.Fprintf(&b, "port %d is already in use", e.Port)
	if e.HostIP.IsValid() {
		fmt.Fprintf(&b, " on %s", e.HostIP)
	}
	if e.Container != "" {
		fmt.Fprintf(&b, " (published by container %s)", e.Container)
	}
	return b.String()
}

// Is makes errors.Is(err, ErrPortInUse) true.
func (e *PortInUseError) Is(target error) bool { return target == ErrPortInUse }

// normalizePorts fills in defaults and rejects mappings that cannot work or
// that clash with each other.
func normalizePorts(ports []PortMapping) ([]PortMapping, error) {
	out := make([]PortMapping, 0, len(ports))
	for _, p := range ports {
		if p.Proto == "" {
			p.Proto = "tcp"
		}
		if p.Proto != "tcp" && p.Proto != "udp" {
			return nil, fmt.Errorf("publish %s: protocol %q: only tcp and udp are supported", p, p.Proto)
		}
		if p.ContainerPort == 0 {
			return nil, fmt.Errorf("publish %s: container port is required", p)
		}
		if p.HostIP.IsValid() {
			p.HostIP = p.HostIP.Unmap()
			if !p.HostIP.Is4() {
				return nil, fmt.Errorf("publish %s: only IPv4 host addresses are supported", p)
			}
			if p.HostIP.IsUnspecified() {
				p.HostIP = netip.Addr{}
			}
		}
		for _, q := range out {
			if q.HostPort != 0 && q.HostPort == p.HostPort && q.Proto == p.Proto && hostIPsOverlap(p.HostIP, q.HostIP) {
				return nil, fmt.Errorf("publish %s and %s: %w", q, p, &PortInUseError{HostIP: p.HostIP, Port: p.HostPort, Proto: p.Proto})
			}
		}
		out = append(out, p)
	}
	return out, nil
}

// hostIPsOverlap says whether two published host addresses catch some of
// the same traffic (zero means every address).
func hostIPsOverlap(a, b netip.Addr) bool {
	return !a.IsValid() || !b.IsValid() || a == b
}

var errBadID = errors.New("container id must be 1-128 letters, digits, '_', '.' or '-', not starting with '.' or '-'")

// checkContainerID keeps container IDs safe to use as file names.
func checkContainerID(id string) error {
	if id == "" || len(id) > 128 || id[0] == '.' || id[0] == '-' {
		return fmt.Errorf("%w: %q", errBadID, id)
	}
	for _, r := range id {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '_' || r == '.' || r == '-') {
			return fmt.Errorf("%w: %q", errBadID, id)
		}
	}
	return nil
}

// checkNetworkName accepts docker-style network names.
func checkNetworkName(name string) error {
	if name == "" || len(name) > 64 {
		return fmt.Errorf("network name %q: must be 1-64 characters", name)
	}
	for i, r := range name {
		ok := r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || i > 0 && (r == '_' || r == '.' || r == '-')
		if !ok {
			return fmt.Errorf("network name %q: use letters, digits, '_', '.' and '-', starting with a letter or digit", name)
		}
	}
	return nil
}

// checkIfName checks a Linux interface name.
func checkIfName(name string) error {
	if name == "" || len(name) > 15 || strings.ContainsAny(name, "/ \t\n:") || name == "." || name == ".." {
		return fmt.Errorf("interface name %q: must be 1-15 characters without '/', ':' or spaces", name)
	}
	return nil
}
