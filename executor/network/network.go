package network

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"path/filepath"
)

// Names of the built-in networks.
const (
	Bridge = "bridge" // the default network, Linux bridge kiln0
	Host   = "host"   // share the host's network namespace
	None   = "none"   // loopback only
)

// Defaults used when the matching Options field is empty.
const (
	DefaultBridgeName = "kiln0"
	DefaultTable      = "kiln"
)

// Errors returned by Manager, to be checked with errors.Is.
var (
	// ErrNotFound: no network of that name.
	ErrNotFound = errors.New("network not found")
	// ErrExists: a network of that name exists already.
	ErrExists = errors.New("network already exists")
	// ErrInUse: the network still has containers attached.
	ErrInUse = errors.New("network has containers attached")
	// ErrAttached: the container is attached already.
	ErrAttached = errors.New("container is already attached")
	// ErrPortInUse: a published host port is taken; the error is a
	// *PortInUseError.
	ErrPortInUse = errors.New("port is already in use")
	// ErrAddressInUse: the address asked for (AttachRequest.IP) is
	// another container's or the host's.
	ErrAddressInUse = errors.New("address already in use")
)

// Options configures New.
type Options struct {
	// StateDir holds the allocator state, network records and the
	// bind-mounted network namespaces (e.g. <store root>/network).
	StateDir string
	// DefaultBridge is the Linux bridge of the built-in "bridge" network;
	// "" means DefaultBridgeName. At most 15 characters.
	DefaultBridge string
	// DefaultSubnet is the IPv4 subnet of the built-in "bridge" network,
	// used the first time that network is set up (it is then recorded in
	// StateDir). "" picks 10.88.0.0/16 or, when that overlaps a route of
	// the host, another free private /16.
	DefaultSubnet string
	// Table is the nftables table (family ip) that holds kiln's NAT and
	// published-port rules; "" means DefaultTable.
	Table string
	// ResolvConf is the host's resolver configuration copied into
	// containers; "" means /etc/resolv.conf.
	ResolvConf string
	// HostsFile is the host's hosts file, copied for containers on the
	// Host network; "" means /etc/hosts.
	HostsFile string
}

// Manager creates networks and attaches containers to them. Several kiln
// processes may use one StateDir at once (it locks).
type Manager struct {
	opts Options
	// failpoint, when set (by tests), is called between the steps of
	// Attach; an error makes Attach fail there.
	failpoint func(step string) error
}

// New returns a Manager. It checks the options but touches nothing.
func New(opts Options) (*Manager, error) {
	if opts.StateDir == "" {
		return nil, errors.New("network: Options.StateDir is required")
	}
	dir, err := filepath.Abs(opts.StateDir)
	if err != nil {
		return nil, fmt.Errorf("network: state dir: %w", err)
	}
	opts.StateDir = dir
	if opts.DefaultBridge == "" {
		opts.DefaultBridge = DefaultBridgeName
	}
	if err := checkIfName(opts.DefaultBridge); err != nil {
		return nil, fmt.Errorf("network: default bridge: %w", err)
	}
	if opts.DefaultSubnet != "" {
		if _, err := parseSubnet(opts.DefaultSubnet); err != nil {
			return nil, fmt.Errorf("network: default subnet: %w", err)
		}
	}
	if opts.Table == "" {
		opts.Table = DefaultTable
	}
	if opts.ResolvConf == "" {
		opts.ResolvConf = "/etc/resolv.conf"
	}
	if opts.HostsFile == "" {
		opts.HostsFile = "/etc/hosts"
	}
	return &Manager{opts: opts}, nil
}

// Network is a network containers can be attached to.
type Network struct {
	Name    string
	ID      string
	Driver  string // "bridge", "host" or "none"
	Bridge  string // Linux interface name, e.g. "kiln0"
	Subnet  netip.Prefix
	Gateway netip.Addr
}

// Create makes a user bridge network with a Linux bridge "kiln-<short id>";
// subnet "" picks a free private /24. The subnet may not overlap another
// network's or a route of the host.
func (m *Manager) Create(ctx context.Context, name, subnet string) (*Network, error) {
	return m.create(ctx, name, subnet)
}

// List returns every network, the built-in ones first, then the user
// networks by name.
func (m *Manager) List(ctx context.Context) ([]Network, error) {
	return m.list(ctx)
}

// Remove deletes a user network (its bridge and NAT rules); it fails with
// ErrInUse while containers are attached, and ErrNotFound for an unknown
// name. Built-in networks cannot be removed (see Teardown).
func (m *Manager) Remove(ctx context.Context, name string) error {
	return m.remove(ctx, name)
}

// Teardown removes what the networks put into the kernel: every bridge,
// the default one included, and kiln's nftables table. The records stay, so
// the next Attach sets them up again. It fails with ErrInUse while any
// container is attached. Meant for tests and for uninstalling.
func (m *Manager) Teardown(ctx context.Context) error {
	return m.teardown(ctx)
}

// AttachRequest connects one container.
type AttachRequest struct {
	// ContainerID names the endpoint; Name is the container name others
	// on a user bridge resolve. ContainerID is used in file names: letters,
	// digits, '_', '.' and '-' only, at most 128 characters.
	ContainerID string
	Name        string
	// Hostname is the container's host name, written into its hosts file;
	// "" means the first 12 characters of ContainerID.
	Hostname string
	// Network is Bridge (default), None, Host or a user network name.
	Network string
	// Ports are published on the host (bridge networks only). A HostPort
	// of 0 picks a free port; Endpoint.Ports tells which.
	Ports []PortMapping
	// ExtraHosts are added to the hosts file ("name ip", docker run
	// --add-host).
	ExtraHosts []string
	// Aliases are more names the other containers of a user network
	// resolve to this one (docker run --network-alias).
	Aliases []string
	// IP, when valid, is the address to take (docker run --ip), on a user
	// network created with a subnet only.
	IP netip.Addr
	// MAC, when set, is the hardware address of the container's eth0
	// (docker run --mac-address).
	MAC []byte
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
	// Network is the name of the network the container is attached to.
	Network string
	// Ports are the published ports, host ports filled in.
	Ports []PortMapping
}

// Attach creates the container's network namespace and connects it. When it
// fails it leaves nothing behind. A container is attached to one network at
// a time (ErrAttached otherwise).
func (m *Manager) Attach(ctx context.Context, req AttachRequest) (*Endpoint, error) {
	return m.attach(ctx, req)
}

// Detach removes everything Attach set up for the container (veth, address,
// rules, port forwards, namespace, hosts entries); detaching twice is fine.
// It also cleans up after an Attach interrupted by a crash.
func (m *Manager) Detach(ctx context.Context, containerID string) error {
	return m.detach(ctx, containerID)
}
