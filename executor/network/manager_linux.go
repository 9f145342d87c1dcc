package network

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
)

func (m *Manager) fw() firewall { return firewall{table: m.opts.Table} }

func (m *Manager) netnsPath(id string) string  { return filepath.Join(m.opts.StateDir, "netns", id) }
func (m *Manager) hostsPath(id string) string  { return filepath.Join(m.opts.StateDir, "hosts", id) }
func (m *Manager) resolvPath(id string) string { return filepath.Join(m.opts.StateDir, "resolv", id) }

// vethName is the host end of a container's veth pair. It is derived from
// the state dir and the container ID, so Detach finds it even when Attach
// crashed before recording it.
func (m *Manager) vethName(id string) string {
	sum := sha256.Sum256([]byte(m.opts.StateDir + "\x00" + id))
	return "kv" + hex.EncodeToString(sum[:])[:11]
}

func (m *Manager) fail(step string) error {
	if m.failpoint == nil {
		return nil
	}
	return m.failpoint(step)
}

func isBuiltin(name string) bool { return name == Bridge || name == Host || name == None }

// userNetwork says whether containers of the network resolve each other.
func userNetwork(name string) bool { return !isBuiltin(name) }

func builtinNetwork(name string) Network {
	return Network{Name: name, ID: builtinID(name), Driver: name}
}

// takenSubnets returns what a new subnet must not overlap: the routes of
// the host (other than through kiln's own bridges) and kiln's networks.
func (m *Manager) takenSubnets(st *state) ([]netip.Prefix, error) {
	bridges := []string{m.opts.DefaultBridge}
	var taken []netip.Prefix
	for _, n := range st.Networks {
		bridges = append(bridges, n.Bridge)
		taken = append(taken, n.Subnet)
	}
	routes, err := hostRoutes(bridges)
	if err != nil {
		return nil, err
	}
	return append(taken, routes...), nil
}

func overlapError(p netip.Prefix, taken []netip.Prefix) error {
	for _, t := range taken {
		if p.Overlaps(t) {
			return fmt.Errorf("subnet %s overlaps %s, in use on the host or by another network", p, t)
		}
	}
	return nil
}

// defaultNetwork returns the record of the built-in bridge network,
// choosing its subnet the first time (the caller saves the state).
func (m *Manager) defaultNetwork(st *state) (*netRecord, bool, error) {
	if n, ok := st.Networks[Bridge]; ok {
		return n, false, nil
	}
	taken, err := m.takenSubnets(st)
	if err != nil {
		return nil, false, err
	}
	var p netip.Prefix
	if m.opts.DefaultSubnet != "" {
		p, _ = parseSubnet(m.opts.DefaultSubnet)
		if err := overlapError(p, taken); err != nil {
			return nil, false, fmt.Errorf("default bridge network: %w", err)
		}
	} else if p, err = pickSubnet(slicePrefixes(defaultSubnets()), taken); err != nil {
		return nil, false, fmt.Errorf("default bridge network: %w", err)
	}
	n := &netRecord{Name: Bridge, ID: builtinID(Bridge), Driver: "bridge", Bridge: m.opts.DefaultBridge, Subnet: p, Gateway: gatewayOf(p)}
	st.Networks[Bridge] = n
	return n, true, nil
}

// setupNetwork makes sure the kernel has what the network needs: its bridge,
// its NAT rules and IPv4 forwarding. It is idempotent.
func (m *Manager) setupNetwork(n *netRecord) error {
	if err := ensureBridge(n.Bridge, n.Subnet, n.Gateway); err != nil {
		return fmt.Errorf("network %s: %w", n.Name, err)
	}
	if err := m.fw().ensureNetwork(n.Bridge, n.Subnet); err != nil {
		return fmt.Errorf("network %s: %w", n.Name, err)
	}
	if err := writeSysctl("net/ipv4/ip_forward", "1"); err != nil {
		return fmt.Errorf("network %s: %w", n.Name, err)
	}
	return nil
}

// teardownNetwork removes a network's bridge and NAT rules.
func (m *Manager) teardownNetwork(n *netRecord) error {
	return errors.Join(m.fw().deleteTag(networkTag(n.Bridge)), deleteLink(n.Bridge))
}

func (m *Manager) create(ctx context.Context, name, subnet string) (*Network, error) {
	if isBuiltin(name) {
		return nil, fmt.Errorf("create network %s: %w (built-in)", name, ErrExists)
	}
	if err := checkNetworkName(name); err != nil {
		return nil, fmt.Errorf("create network: %w", err)
	}
	var want netip.Prefix
	if subnet != "" {
		var err error
		if want, err = parseSubnet(subnet); err != nil {
			return nil, fmt.Errorf("create network %s: %w", name, err)
		}
	}
	var out Network
	err := m.locked(ctx, func(st *state) error {
		if _, ok := st.Networks[name]; ok {
			return ErrExists
		}
		taken, err := m.takenSubnets(st)
		if err != nil {
			return err
		}
		p := want
		if p.IsValid() {
			if err := overlapError(p, taken); err != nil {
				return err
			}
		} else if p, err = pickSubnet(userSubnets, taken); err != nil {
			return err
		}
		id := newID()
		n := &netRecord{Name: name, ID: id, Driver: "bridge", Bridge: "kiln-" + id[:10], Subnet: p, Gateway: gatewayOf(p), UserSubnet: want.IsValid()}
		st.Networks[name] = n
		if err := m.setupNetwork(n); err != nil {
			return errors.Join(err, m.teardownNetwork(n))
		}
		if err := m.save(st); err != nil {
			return errors.Join(err, m.teardownNetwork(n))
		}
		out = n.network()
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("create network %s: %w", name, err)
	}
	return &out, nil
}

func (m *Manager) list(ctx context.Context) ([]Network, error) {
	var out []Network
	err := m.locked(ctx, func(st *state) error {
		def, created, err := m.defaultNetwork(st)
		if err != nil {
			return err
		}
		if created {
			if err := m.save(st); err != nil {
				return err
			}
		}
		out = append(out, def.network(), builtinNetwork(Host), builtinNetwork(None))
		var user []Network
		for name, n := range st.Networks {
			if name != Bridge {
				user = append(user, n.network())
			}
		}
		slices.SortFunc(user, func(a, b Network) int { return strings.Compare(a.Name, b.Name) })
		out = append(out, user...)
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("list networks: %w", err)
	}
	return out, nil
}

func (m *Manager) remove(ctx context.Context, name string) error {
	if isBuiltin(name) {
		return fmt.Errorf("remove network %s: built-in networks cannot be removed", name)
	}
	err := m.locked(ctx, func(st *state) error {
		n, ok := st.Networks[name]
		if !ok {
			return ErrNotFound
		}
		if eps := st.endpointsOn(name); len(eps) > 0 {
			var ids []string
			for _, e := range eps {
				ids = append(ids, e.ContainerID)
			}
			slices.Sort(ids)
			return fmt.Errorf("%w: %s", ErrInUse, strings.Join(ids, ", "))
		}
		if err := m.teardownNetwork(n); err != nil {
			return err
		}
		delete(st.Networks, name)
		return m.save(st)
	})
	if err != nil {
		return fmt.Errorf("remove network %s: %w", name, err)
	}
	return nil
}

func (m *Manager) teardown(ctx context.Context) error {
	err := m.locked(ctx, func(st *state) error {
		if len(st.Endpoints) > 0 {
			return fmt.Errorf("%w: %d containers", ErrInUse, len(st.Endpoints))
		}
		var errs []error
		for _, n := range st.Networks {
			errs = append(errs, deleteLink(n.Bridge))
		}
		errs = append(errs, m.fw().deleteTable())
		return errors.Join(errs...)
	})
	if err != nil {
		return fmt.Errorf("tear down networks: %w", err)
	}
	return nil
}

func (m *Manager) attach(ctx context.Context, req AttachRequest) (*Endpoint, error) {
	id := req.ContainerID
	if err := checkContainerID(id); err != nil {
		return nil, fmt.Errorf("attach: %w", err)
	}
	if req.Network == "" {
		req.Network = Bridge
	}
	if req.Hostname == "" {
		req.Hostname = id[:min(12, len(id))]
	}
	ports, err := normalizePorts(req.Ports)
	if err != nil {
		return nil, fmt.Errorf("attach %s: %w", id, err)
	}
	if len(ports) > 0 && (req.Network == Host || req.Network == None) {
		return nil, fmt.Errorf("attach %s: ports cannot be published on the %s network", id, req.Network)
	}
	var ep *Endpoint
	err = m.locked(ctx, func(st *state) error {
		if _, ok := st.Endpoints[id]; ok {
			return ErrAttached
		}
		rec := &epRecord{
			ContainerID:    id,
			Name:           req.Name,
			Hostname:       req.Hostname,
			Network:        req.Network,
			HostsPath:      m.hostsPath(id),
			ResolvConfPath: m.resolvPath(id),
			Ports:          ports,
			ExtraHosts:     req.ExtraHosts,
			Aliases:        req.Aliases,
			WantIP:         req.IP,
			MAC:            req.MAC,
		}
		var err error
		ep, err = m.attachLocked(ctx, st, rec)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("attach %s to network %s: %w", id, req.Network, err)
	}
	return ep, nil
}

// undo is a stack of clean-up steps run, last first, when Attach fails.
type undo []func() error

func (u *undo) push(f func() error) { *u = append(*u, f) }

func (u undo) run() {
	for i := len(u) - 1; i >= 0; i-- {
		// Best effort: Attach is already failing with the error that matters,
		// and Detach cleans up whatever is still left by name.
		_ = u[i]()
	}
}

func (m *Manager) attachLocked(ctx context.Context, st *state, rec *epRecord) (_ *Endpoint, err error) {
	var u undo
	defer func() {
		if err != nil {
			u.run()
		}
	}()
	id := rec.ContainerID
	var n *netRecord
	switch rec.Network {
	case Host:
	case None:
		if err := m.removeStale(id, false); err != nil {
			return nil, err
		}
		rec.NetNSPath = m.netnsPath(id)
		u.push(func() error { return deleteNetNS(rec.NetNSPath) })
		if err := createNetNS(rec.NetNSPath); err != nil {
			return nil, err
		}
		if err := m.fail("netns"); err != nil {
			return nil, err
		}
	default:
		if rec.Network == Bridge {
			var created bool
			if n, created, err = m.defaultNetwork(st); err != nil {
				return nil, err
			}
			// Record the subnet before the bridge exists, so a failure
			// below never leaves a bridge whose subnet nobody knows.
			if created {
				if err := m.save(st); err != nil {
					return nil, err
				}
			}
		} else if n = st.Networks[rec.Network]; n == nil {
			return nil, ErrNotFound
		}
		if err := m.setupNetwork(n); err != nil {
			return nil, err
		}
		if err := m.reservePorts(st, rec.Ports); err != nil {
			return nil, err
		}
		if rec.IP, err = m.allocateIP(st, n, rec.WantIP); err != nil {
			return nil, err
		}
		if err := m.removeStale(id, true); err != nil {
			return nil, err
		}
		rec.NetNSPath = m.netnsPath(id)
		rec.HostVeth = m.vethName(id)

		u.push(func() error { return deleteNetNS(rec.NetNSPath) })
		if err := createNetNS(rec.NetNSPath); err != nil {
			return nil, err
		}
		if err := m.fail("netns"); err != nil {
			return nil, err
		}
		u.push(func() error { return deleteLink(rec.HostVeth) })
		err := connectVeth(vethConfig{
			HostName: rec.HostVeth,
			Bridge:   n.Bridge,
			NetNS:    rec.NetNSPath,
			IP:       rec.IP,
			Subnet:   n.Subnet,
			Gateway:  n.Gateway,
			MAC:      net.HardwareAddr(rec.MAC),
		})
		if err != nil {
			return nil, err
		}
		if err := m.fail("veth"); err != nil {
			return nil, err
		}
		tag := endpointTag(rec.HostVeth)
		u.push(func() error { return m.fw().deleteTag(tag) })
		if err := m.fw().addPorts(tag, rec.IP, rec.Ports); err != nil {
			return nil, err
		}
		if err := m.fail("ports"); err != nil {
			return nil, err
		}
		if !rec.WantIP.IsValid() {
			n.LastIP = rec.IP
		}
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}

	u.push(func() error {
		return errors.Join(removeFile(rec.HostsPath), removeFile(rec.ResolvConfPath))
	})
	if err := m.writeOwnFiles(st, rec); err != nil {
		return nil, err
	}
	if err := m.fail("files"); err != nil {
		return nil, err
	}
	st.Endpoints[id] = rec
	u.push(func() error {
		delete(st.Endpoints, id)
		return m.refreshPeers(st, rec.Network, id)
	})
	if err := m.refreshPeers(st, rec.Network, id); err != nil {
		return nil, err
	}
	if err := m.fail("save"); err != nil {
		return nil, err
	}
	if err := m.save(st); err != nil {
		return nil, err
	}
	return rec.endpoint(n), nil
}

// removeStale clears what a crashed Attach of the same container may have
// left (there is no record of it, or Attach would have refused).
func (m *Manager) removeStale(id string, bridged bool) error {
	veth := m.vethName(id)
	var errs []error
	if bridged {
		errs = append(errs, m.fw().deleteTag(endpointTag(veth)), deleteLink(veth))
	}
	return errors.Join(append(errs, deleteNetNS(m.netnsPath(id)))...)
}

// allocateIP picks the network's next free address: not the gateway, not
// another endpoint's, not an address of the host. A valid want is taken
// as it is, when the network's subnet was given at create and the
// address is a free host address in it.
func (m *Manager) allocateIP(st *state, n *netRecord, want netip.Addr) (netip.Addr, error) {
	used, err := hostAddrs()
	if err != nil {
		return netip.Addr{}, err
	}
	for _, e := range st.endpointsOn(n.Name) {
		used[e.IP] = true
	}
	if want.IsValid() {
		switch {
		case !userNetwork(n.Name) || !n.UserSubnet:
			return netip.Addr{}, errors.New("user specified IP address is supported only when connecting to networks with user configured subnets")
		case !n.Subnet.Contains(want) || want == n.Subnet.Addr() || want == broadcastOf(n.Subnet) || want == n.Gateway:
			return netip.Addr{}, fmt.Errorf("address %s is not a free host address of %s", want, n.Subnet)
		case used[want]:
			return netip.Addr{}, fmt.Errorf("address %s: %w", want, ErrAddressInUse)
		}
		return want, nil
	}
	return allocate(n.Subnet, n.Gateway, n.LastIP, func(a netip.Addr) bool { return used[a] })
}

// reservePorts checks that the requested host ports are free, among kiln's
// containers and on the host, and picks the ones left at 0. Nothing holds
// the ports afterwards: a process that binds one later is shadowed by the
// DNAT rule for traffic to it.
func (m *Manager) reservePorts(st *state, ports []PortMapping) error {
	inUseBy := func(p PortMapping, mine []PortMapping) error {
		for _, q := range mine {
			if q.Proto == p.Proto && q.HostPort == p.HostPort && hostIPsOverlap(q.HostIP, p.HostIP) {
				return &PortInUseError{HostIP: p.HostIP, Port: p.HostPort, Proto: p.Proto}
			}
		}
		for _, e := range st.Endpoints {
			for _, q := range e.Ports {
				if q.Proto == p.Proto && q.HostPort == p.HostPort && hostIPsOverlap(q.HostIP, p.HostIP) {
					who := e.Name
					if who == "" {
						who = e.ContainerID
					}
					return &PortInUseError{HostIP: p.HostIP, Port: p.HostPort, Proto: p.Proto, Container: who}
				}
			}
		}
		return nil
	}
	for i := range ports {
		p := &ports[i]
		if p.HostPort != 0 {
			if err := inUseBy(*p, ports[:i]); err != nil {
				return err
			}
			if err := probePort(*p); err != nil {
				return err
			}
			continue
		}
		var err error
		for range 20 {
			if p.HostPort, err = freePort(*p); err != nil {
				return err
			}
			if err = inUseBy(*p, ports[:i]); err == nil {
				break
			}
		}
		if err != nil {
			return fmt.Errorf("publish %s: no free host port found: %w", p, err)
		}
	}
	return nil
}

func listenAddr(p PortMapping, port uint16) string {
	ip := "0.0.0.0"
	if p.HostIP.IsValid() {
		ip = p.HostIP.String()
	}
	return net.JoinHostPort(ip, strconv.Itoa(int(port)))
}

// probePort binds the host port for a moment to see whether a process on
// the host uses it.
func probePort(p PortMapping) error {
	addr := listenAddr(p, p.HostPort)
	var err error
	if p.Proto == "udp" {
		var c net.PacketConn
		if c, err = net.ListenPacket("udp4", addr); err == nil {
			c.Close()
		}
	} else {
		var l net.Listener
		if l, err = net.Listen("tcp4", addr); err == nil {
			l.Close()
		}
	}
	switch {
	case err == nil:
		return nil
	case errors.Is(err, syscall.EADDRINUSE):
		return &PortInUseError{HostIP: p.HostIP, Port: p.HostPort, Proto: p.Proto}
	case errors.Is(err, syscall.EADDRNOTAVAIL):
		return fmt.Errorf("publish %s: %s is not an address of this host", p, p.HostIP)
	default:
		return fmt.Errorf("publish %s: %w", p, err)
	}
}

// freePort asks the kernel for a free host port.
func freePort(p PortMapping) (uint16, error) {
	addr := listenAddr(p, 0)
	var a net.Addr
	if p.Proto == "udp" {
		c, err := net.ListenPacket("udp4", addr)
		if err != nil {
			return 0, fmt.Errorf("publish %s: pick a host port: %w", p, err)
		}
		a = c.LocalAddr()
		c.Close()
	} else {
		l, err := net.Listen("tcp4", addr)
		if err != nil {
			return 0, fmt.Errorf("publish %s: pick a host port: %w", p, err)
		}
		a = l.Addr()
		l.Close()
	}
	ap, err := netip.ParseAddrPort(a.String())
	if err != nil {
		return 0, fmt.Errorf("publish %s: pick a host port: %w", p, err)
	}
	return ap.Port(), nil
}

// hostsFor renders the hosts file of an endpoint from the state.
func (m *Manager) hostsFor(st *state, rec *epRecord) []byte {
	self := hostEntry{IP: rec.IP, Names: []string{rec.Hostname, rec.Name}}
	var peers []hostEntry
	if userNetwork(rec.Network) {
		for _, e := range st.endpointsOn(rec.Network) {
			if e.ContainerID != rec.ContainerID {
				peers = append(peers, hostEntry{IP: e.IP, Names: append([]string{e.Name, e.Hostname}, e.Aliases...)})
			}
		}
	}
	return renderHosts(self, extraHostEntries(rec.ExtraHosts), peers)
}

// writeOwnFiles writes a new endpoint's hosts file and resolv.conf. On the
// host network they are copies of the host's.
func (m *Manager) writeOwnFiles(st *state, rec *epRecord) error {
	var hosts, resolv []byte
	if rec.Network == Host {
		var err error
		hosts, err = os.ReadFile(m.opts.HostsFile)
		if errors.Is(err, fs.ErrNotExist) {
			hosts, err = renderHosts(hostEntry{}, nil, nil), nil
		}
		if err != nil {
			return fmt.Errorf("read hosts file: %w", err)
		}
		resolv, err = os.ReadFile(m.opts.ResolvConf)
		if err != nil && !errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("read resolv.conf: %w", err)
		}
	} else {
		hosts = m.hostsFor(st, rec)
		var err error
		if resolv, err = m.containerResolvConf(); err != nil {
			return err
		}
	}
	if rec.Network == Host {
		for _, e := range extraHostEntries(rec.ExtraHosts) {
			hosts = appendHostEntry(hosts, e)
		}
	}
	return errors.Join(writeInPlace(rec.HostsPath, hosts), writeInPlace(rec.ResolvConfPath, resolv))
}

// containerResolvConf is the host's resolv.conf without loopback
// nameservers. When those were all it had and systemd-resolved keeps the
// real upstream list, that list is used instead.
func (m *Manager) containerResolvConf() ([]byte, error) {
	data, err := os.ReadFile(m.opts.ResolvConf)
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("read resolv.conf: %w", err)
	}
	out := filterResolvConf(data)
	if out == nil && m.opts.ResolvConf == "/etc/resolv.conf" {
		if data, err := os.ReadFile("/run/systemd/resolve/resolv.conf"); err == nil {
			out = filterResolvConf(data)
		}
	}
	return out, nil
}

// refreshPeers rewrites, in place, the hosts files of the other containers
// of a user network.
func (m *Manager) refreshPeers(st *state, network, except string) error {
	if !userNetwork(network) {
		return nil
	}
	var errs []error
	for _, e := range st.endpointsOn(network) {
		if e.ContainerID != except {
			errs = append(errs, writeInPlace(e.HostsPath, m.hostsFor(st, e)))
		}
	}
	return errors.Join(errs...)
}

// writeInPlace truncates and rewrites a file rather than replacing it, so
// that bind mounts of it see the new content.
func writeInPlace(path string, data []byte) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o644)
	if err != nil {
		return err
	}
	_, err = f.Write(data)
	return errors.Join(err, f.Close())
}

func removeFile(path string) error {
	if err := os.Remove(path); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	return nil
}

func (m *Manager) detach(ctx context.Context, id string) error {
	if err := checkContainerID(id); err != nil {
		return fmt.Errorf("detach: %w", err)
	}
	err := m.locked(ctx, func(st *state) error {
		rec := st.Endpoints[id]
		// Without a record, clean up by name whatever an interrupted Attach
		// may have left.
		kernel := rec == nil || (rec.Network != Host && rec.Network != None)
		var errs []error
		if kernel {
			veth := m.vethName(id)
			errs = append(errs, m.fw().deleteTag(endpointTag(veth)), deleteLink(veth))
		}
		errs = append(errs, deleteNetNS(m.netnsPath(id)))
		if err := errors.Join(errs...); err != nil {
			// Keep the record (and so the address) until Detach succeeds.
			return err
		}
		if err := errors.Join(removeFile(m.hostsPath(id)), removeFile(m.resolvPath(id))); err != nil {
			return err
		}
		if rec == nil {
			return nil
		}
		delete(st.Endpoints, id)
		if err := m.save(st); err != nil {
			return err
		}
		return m.refreshPeers(st, rec.Network, id)
	})
	if err != nil {
		return fmt.Errorf("detach %s: %w", id, err)
	}
	return nil
}
