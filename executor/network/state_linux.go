package network

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"net/netip"
	"os"
	"path/filepath"
	"time"

	"golang.org/x/sys/unix"
)

const stateVersion = 1

// state is StateDir/state.json: every network but host and none (the
// default bridge once it has been set up) and every attached container.
// The addresses in use on a network are those of its endpoints; LastIP
// makes allocation round robin.
type state struct {
	Version   int                   `json:"version"`
	Networks  map[string]*netRecord `json:"networks"`
	Endpoints map[string]*epRecord  `json:"endpoints"`
}

type netRecord struct {
	Name    string       `json:"name"`
	ID      string       `json:"id"`
	Driver  string       `json:"driver"`
	Bridge  string       `json:"bridge"`
	Subnet  netip.Prefix `json:"subnet"`
	Gateway netip.Addr   `json:"gateway"`
	LastIP  netip.Addr   `json:"last_ip,omitzero"`
	// UserSubnet: the subnet was given at create (--subnet), so
	// containers may ask for their address in it.
	UserSubnet bool `json:"user_subnet,omitempty"`
}

func (n *netRecord) network() Network {
	return Network{Name: n.Name, ID: n.ID, Driver: n.Driver, Bridge: n.Bridge, Subnet: n.Subnet, Gateway: n.Gateway}
}

type epRecord struct {
	ContainerID    string        `json:"container_id"`
	Name           string        `json:"name,omitempty"`
	Hostname       string        `json:"hostname,omitempty"`
	Network        string        `json:"network"`
	IP             netip.Addr    `json:"ip,omitzero"`
	HostVeth       string        `json:"host_veth,omitempty"`
	NetNSPath      string        `json:"netns,omitempty"`
	HostsPath      string        `json:"hosts"`
	ResolvConfPath string        `json:"resolv_conf"`
	Ports          []PortMapping `json:"ports,omitempty"`
	ExtraHosts     []string      `json:"extra_hosts,omitempty"`
	Aliases        []string      `json:"aliases,omitempty"`
	// WantIP is the address asked for (--ip), kept for later attaches.
	WantIP netip.Addr `json:"want_ip,omitzero"`
	// MAC is eth0's hardware address asked for (--mac-address).
	MAC []byte `json:"mac,omitempty"`
}

func (e *epRecord) endpoint(n *netRecord) *Endpoint {
	ep := &Endpoint{
		NetNSPath:      e.NetNSPath,
		IP:             e.IP,
		HostsPath:      e.HostsPath,
		ResolvConfPath: e.ResolvConfPath,
		Network:        e.Network,
		Ports:          append([]PortMapping(nil), e.Ports...),
	}
	if n != nil {
		ep.Gateway = n.Gateway
	}
	return ep
}

func (m *Manager) statePath() string { return filepath.Join(m.opts.StateDir, "state.json") }

// locked runs fn with StateDir locked against other Managers and processes
// and the state loaded; fn saves the state itself when it changes it.
func (m *Manager) locked(ctx context.Context, fn func(st *state) error) error {
	unlock, err := m.lock(ctx)
	if err != nil {
		return err
	}
	defer unlock()
	st, err := m.load()
	if err != nil {
		return err
	}
	return fn(st)
}

// lock takes an exclusive flock on StateDir/lock, waiting for it until ctx
// is done. flock locks belong to the open file, so this also excludes other
// Managers of the same process.
func (m *Manager) lock(ctx context.Context) (func(), error) {
	if err := os.MkdirAll(m.opts.StateDir, 0o700); err != nil {
		return nil, fmt.Errorf("network state: %w", err)
	}
	f, err := os.OpenFile(filepath.Join(m.opts.StateDir, "lock"), os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("network state: %w", err)
	}
	for {
		err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB)
		if err == nil {
			break
		}
		if !errors.Is(err, unix.EWOULDBLOCK) && !errors.Is(err, unix.EINTR) {
			f.Close()
			return nil, fmt.Errorf("lock network state: %w", err)
		}
		select {
		case <-ctx.Done():
			f.Close()
			return nil, fmt.Errorf("lock network state: %w", ctx.Err())
		case <-time.After(5 * time.Millisecond):
		}
	}
	return func() { f.Close() }, nil
}

func (m *Manager) load() (*state, error) {
	st := &state{Version: stateVersion}
	data, err := os.ReadFile(m.statePath())
	switch {
	case errors.Is(err, fs.ErrNotExist):
	case err != nil:
		return nil, fmt.Errorf("read network state: %w", err)
	default:
		if err := json.Unmarshal(data, st); err != nil {
			return nil, fmt.Errorf("read network state %s: %w", m.statePath(), err)
		}
		if st.Version != stateVersion {
			return nil, fmt.Errorf("read network state %s: unknown version %d", m.statePath(), st.Version)
		}
	}
	if st.Networks == nil {
		st.Networks = map[string]*netRecord{}
	}
	if st.Endpoints == nil {
		st.Endpoints = map[string]*epRecord{}
	}
	return st, nil
}

// save writes the state to a temporary file and renames it into place.
func (m *Manager) save(st *state) error {
	data, err := json.MarshalIndent(st, "", "\t")
	if err != nil {
		return fmt.Errorf("write network state: %w", err)
	}
	f, err := os.CreateTemp(m.opts.StateDir, ".state-*.json")
	if err != nil {
		return fmt.Errorf("write network state: %w", err)
	}
	_, err = f.Write(append(data, '\n'))
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(f.Name(), m.statePath())
	}
	if err != nil {
		os.Remove(f.Name())
		return fmt.Errorf("write network state: %w", err)
	}
	if d, err := os.Open(m.opts.StateDir); err == nil {
		d.Sync()
		d.Close()
	}
	return nil
}

// endpointsOn returns the endpoints attached to the network.
func (st *state) endpointsOn(network string) []*epRecord {
	var out []*epRecord
	for _, e := range st.Endpoints {
		if e.Network == network {
			out = append(out, e)
		}
	}
	return out
}

// newID returns a random 64-hex-digit network ID.
func newID() string {
	var b [32]byte
	rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// builtinID gives the built-in networks stable IDs.
func builtinID(name string) string {
	sum := sha256.Sum256([]byte("kiln-network-" + name))
	return hex.EncodeToString(sum[:])
}
