// Package network gives kiln's containers their networks: a default Linux
// bridge "kiln0" and user-defined bridges, each with a subnet of its own; a
// network namespace per container joined by a veth pair, an address from a
// persistent allocator, NAT to reach outside, published ports, and name
// resolution between containers of a user bridge. Everything it sets up is
// removed by Detach.
package network

import (
	"context"
	"errors"
	"net/netip"
)

// Names of the built-in networks.
const (
	Bridge = "bridge" // the default network, Linux bridge kiln0
	Host   = "host"   // share the host's network namespace
	None   = "none"   // loopback only
)

// Options configures New.
type Options struct {
	// StateDir holds the allocator state, network records and the
	// bind-mounted network namespaces (e.g. <store root>/network).
	StateDir string
}

// Manager creates networks and attaches containers to them. Several kiln
// processes may use one StateDir at once (it locks).
type Manager struct{ opts Options }

// New returns a Manager.
func New(opts Options) (*Manager, error) { return &Manager{opts: opts}, nil }

// Network is a bridge network.
type Network struct {
	Name    string
	ID      string
	Driver  string // "bridge", "host" or "none"
	Bridge  string // Linux interface name, e.g. "kiln0"
	Subnet  netip.Prefix
	Gateway netip.Addr
}

// Create makes a user bridge network; subnet "" picks a free one.
func (m *Manager) Create(ctx context.Context, name, subnet string) (*Network, error) {
	return nil, errors.New("not implemented")
}

// List returns every network, the built-in ones first.
func (m *Manager) List(ctx context.Context) ([]Network, error) {
	return nil, errors.New("not implemented")
}

// Remove deletes a user network; it fails while containers are attached.
func (m *Manager) Remove(ctx context.Context, name string) error {
	return errors.New("not implemented")
}

// PortMapping publishes a container port (docker -p [IP:]HOST:CTR[/udp]).
type PortMapping struct {
	HostIP        netip.Addr // zero: all addresses, loopback included
	HostPort      uint16
	ContainerPort uint16
	Proto         string // "tcp" or "udp"
}

// AttachRequest connects one container.
type AttachRequest struct {
	// ContainerID names the endpoint; Name is the container name others
	// on a user bridge resolve.
	ContainerID string
	Name        string
	// Network is Bridge (default), None, Host or a user network name.
	Network string
	Ports   []PortMapping
}

// Endpoint is an attached container.
type Endpoint struct {
	// NetNSPath is the container's network namespace to join
	// (executor.Spec.NetNSPath); "" for Host.
	NetNSPath string
	IP        netip.Addr
	Gateway   netip.Addr
	// HostsPath is a hosts file for the container (localhost, its own
	// name and, on user bridges, the other containers' names), kept up to
	// date in place as containers come and go; bind-mount it at
	// /etc/hosts. ResolvConfPath likewise for /etc/resolv.conf.
	HostsPath      string
	ResolvConfPath string
}

// Attach creates the container's network namespace and connects it.
func (m *Manager) Attach(ctx context.Context, req AttachRequest) (*Endpoint, error) {
	return nil, errors.New("not implemented")
}

// Detach removes everything Attach set up for the container (veth, address,
// rules, port forwards, namespace, hosts entries); detaching twice is fine.
func (m *Manager) Detach(ctx context.Context, containerID string) error {
	return errors.New("not implemented")
}
