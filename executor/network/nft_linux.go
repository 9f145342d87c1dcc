package network

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"

	"github.com/google/nftables"
	"github.com/google/nftables/binaryutil"
	"github.com/google/nftables/expr"
	"github.com/google/nftables/userdata"
	"golang.org/x/sys/unix"
)

// firewall keeps kiln's rules in one nftables table of family ip:
//
//	prerouting  (nat, dstnat)  fib daddr type local jump ports
//	output      (nat, dstnat)  fib daddr type local jump ports
//	ports                      one DNAT rule per published port
//	postrouting (nat, srcnat)  per network: masquerade the subnet leaving
//	                           through other interfaces, loopback sources
//	                           DNAT-ed onto the bridge, and hairpin DNAT
//	guard (filter, raw)        per network: drop packets from the bridge to
//	                           127.0.0.0/8, which route_localnet (needed for
//	                           ports published on loopback) would otherwise
//	                           let containers reach
//
// Every rule carries a comment tag saying who owns it ("kiln:base",
// "kiln:network:<bridge>", "kiln:endpoint:<host veth>"); rules are removed
// by tag.
type firewall struct{ table string }

const (
	chainPrerouting  = "prerouting"
	chainOutput      = "output"
	chainPostrouting = "postrouting"
	chainPorts       = "ports"
	chainGuard       = "guard"
	tagBase          = "kiln:base"
)

var allChains = []string{chainPorts, chainPrerouting, chainOutput, chainPostrouting, chainGuard}

func networkTag(bridge string) string { return "kiln:network:" + bridge }
func endpointTag(veth string) string  { return "kiln:endpoint:" + veth }

func (f firewall) tbl() *nftables.Table {
	return &nftables.Table{Name: f.table, Family: nftables.TableFamilyIPv4}
}

func (f firewall) chain(name string) *nftables.Chain {
	c := &nftables.Chain{Name: name, Table: f.tbl()}
	switch name {
	case chainPrerouting:
		c.Type, c.Hooknum, c.Priority = nftables.ChainTypeNAT, nftables.ChainHookPrerouting, nftables.ChainPriorityNATDest
	case chainOutput:
		c.Type, c.Hooknum, c.Priority = nftables.ChainTypeNAT, nftables.ChainHookOutput, nftables.ChainPriorityNATDest
	case chainPostrouting:
		c.Type, c.Hooknum, c.Priority = nftables.ChainTypeNAT, nftables.ChainHookPostrouting, nftables.ChainPriorityNATSource
	case chainGuard:
		c.Type, c.Hooknum, c.Priority = nftables.ChainTypeFilter, nftables.ChainHookPrerouting, nftables.ChainPriorityRaw
	}
	return c
}

// ensureBase creates the table, its chains and the jumps into "ports".
func (f firewall) ensureBase() error {
	c, err := nftables.New()
	if err != nil {
		return fmt.Errorf("nftables: %w", err)
	}
	c.AddTable(f.tbl())
	for _, name := range allChains {
		c.AddChain(f.chain(name))
	}
	if err := c.Flush(); err != nil {
		return fmt.Errorf("nftables: create table %s: %w", f.table, err)
	}
	for _, name := range []string{chainPrerouting, chainOutput} {
		has, err := f.hasTag(c, name, tagBase)
		if err != nil {
			return err
		}
		if !has {
			c.AddRule(f.rule(name, tagBase, concat(
				matchDaddrLocal(),
				[]expr.Any{&expr.Verdict{Kind: expr.VerdictJump, Chain: chainPorts}},
			)))
		}
	}
	if err := c.Flush(); err != nil {
		return fmt.Errorf("nftables: add jumps to %s: %w", chainPorts, err)
	}
	return nil
}

func (f firewall) rule(chain, tag string, exprs []expr.Any) *nftables.Rule {
	return &nftables.Rule{
		Table:    f.tbl(),
		Chain:    f.chain(chain),
		Exprs:    exprs,
		UserData: userdata.AppendString(nil, userdata.TypeComment, tag),
	}
}

func (f firewall) hasTag(c *nftables.Conn, chain, tag string) (bool, error) {
	rules, err := c.GetRules(f.tbl(), f.chain(chain))
	if err != nil {
		return false, fmt.Errorf("nftables: list %s %s: %w", f.table, chain, err)
	}
	for _, r := range rules {
		if s, ok := userdata.GetString(r.UserData, userdata.TypeComment); ok && s == tag {
			return true, nil
		}
	}
	return false, nil
}

// ensureNetwork adds a network's postrouting rules unless they are there.
func (f firewall) ensureNetwork(bridge string, subnet netip.Prefix) error {
	if err := f.ensureBase(); err != nil {
		return err
	}
	c, err := nftables.New()
	if err != nil {
		return fmt.Errorf("nftables: %w", err)
	}
	tag := networkTag(bridge)
	has, err := f.hasTag(c, chainPostrouting, tag)
	if err != nil || has {
		return err
	}
	masq := []expr.Any{&expr.Masq{}}
	// Containers reaching outside: ip saddr SUBNET oifname != BRIDGE masquerade.
	c.AddRule(f.rule(chainPostrouting, tag, concat(matchSaddr(subnet), matchOifname(expr.CmpOpNeq, bridge), masq)))
	// Ports published on loopback: the packet keeps source 127.0.0.1 after
	// DNAT; give it the bridge's address so the container can answer.
	loopback := netip.MustParsePrefix("127.0.0.0/8")
	c.AddRule(f.rule(chainPostrouting, tag, concat(matchOifname(expr.CmpOpEq, bridge), matchSaddr(loopback), masq)))
	// Hairpin: a container reaching a published port of a container of the
	// same bridge through a host address must see the answer come from the
	// host, not straight from the peer.
	c.AddRule(f.rule(chainPostrouting, tag, concat(matchOifname(expr.CmpOpEq, bridge), matchSaddr(subnet), matchCtDNAT(), masq)))
	// iifname BRIDGE ip daddr 127.0.0.0/8 counter drop.
	c.AddRule(f.rule(chainGuard, tag, concat(
		[]expr.Any{&expr.Meta{Key: expr.MetaKeyIIFNAME, Register: 1}, &expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: ifname(bridge)}},
		matchDaddrPrefix(loopback),
		[]expr.Any{&expr.Counter{}, &expr.Verdict{Kind: expr.VerdictDrop}},
	)))
	if err := c.Flush(); err != nil {
		return fmt.Errorf("nftables: add NAT rules for %s: %w", bridge, err)
	}
	return nil
}

// addPorts adds the DNAT rules of an endpoint's published ports.
func (f firewall) addPorts(tag string, ip netip.Addr, ports []PortMapping) error {
	if len(ports) == 0 {
		return nil
	}
	if err := f.ensureBase(); err != nil {
		return err
	}
	c, err := nftables.New()
	if err != nil {
		return fmt.Errorf("nftables: %w", err)
	}
	for _, p := range ports {
		var exprs []expr.Any
		if p.HostIP.IsValid() {
			exprs = append(exprs, matchDaddr(p.HostIP)...)
		}
		proto := byte(unix.IPPROTO_TCP)
		if p.Proto == "udp" {
			proto = unix.IPPROTO_UDP
		}
		exprs = append(exprs,
			&expr.Meta{Key: expr.MetaKeyL4PROTO, Register: 1},
			&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{proto}},
			&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseTransportHeader, Offset: 2, Len: 2},
			&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: binaryutil.BigEndian.PutUint16(p.HostPort)},
			&expr.Immediate{Register: 1, Data: ip.AsSlice()},
			&expr.Immediate{Register: 2, Data: binaryutil.BigEndian.PutUint16(p.ContainerPort)},
			&expr.NAT{Type: expr.NATTypeDestNAT, Family: unix.NFPROTO_IPV4, RegAddrMin: 1, RegProtoMin: 2, Specified: true},
		)
		c.AddRule(f.rule(chainPorts, tag, exprs))
	}
	if err := c.Flush(); err != nil {
		return fmt.Errorf("nftables: publish ports: %w", err)
	}
	return nil
}

// deleteTag removes every rule carrying the tag; a missing table is fine.
func (f firewall) deleteTag(tag string) error {
	c, err := nftables.New()
	if err != nil {
		return fmt.Errorf("nftables: %w", err)
	}
	n := 0
	for _, name := range allChains {
		rules, err := c.GetRules(f.tbl(), f.chain(name))
		if errors.Is(err, unix.ENOENT) {
			continue
		}
		if err != nil {
			return fmt.Errorf("nftables: list %s %s: %w", f.table, name, err)
		}
		for _, r := range rules {
			if s, ok := userdata.GetString(r.UserData, userdata.TypeComment); ok && s == tag {
				if err := c.DelRule(r); err != nil {
					return fmt.Errorf("nftables: %w", err)
				}
				n++
			}
		}
	}
	if n == 0 {
		return nil
	}
	if err := c.Flush(); err != nil {
		return fmt.Errorf("nftables: delete rules %s: %w", tag, err)
	}
	return nil
}

// deleteTable removes the whole table; a missing one is fine.
func (f firewall) deleteTable() error {
	c, err := nftables.New()
	if err != nil {
		return fmt.Errorf("nftables: %w", err)
	}
	if _, err := c.ListTableOfFamily(f.table, nftables.TableFamilyIPv4); err != nil {
		if errors.Is(err, unix.ENOENT) {
			return nil
		}
		return fmt.Errorf("nftables: look up table %s: %w", f.table, err)
	}
	c.DelTable(f.tbl())
	if err := c.Flush(); err != nil && !errors.Is(err, unix.ENOENT) {
		return fmt.Errorf("nftables: delete table %s: %w", f.table, err)
	}
	return nil
}

func concat(parts ...[]expr.Any) []expr.Any {
	var out []expr.Any
	for _, p := range parts {
		out = append(out, p...)
	}
	return out
}

// matchDaddrLocal: fib daddr type local.
func matchDaddrLocal() []expr.Any {
	return []expr.Any{
		&expr.Fib{Register: 1, FlagDADDR: true, ResultADDRTYPE: true},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: binaryutil.NativeEndian.PutUint32(unix.RTN_LOCAL)},
	}
}

// matchSaddr: ip saddr PREFIX.
func matchSaddr(p netip.Prefix) []expr.Any { return matchPrefix(12, p) }

// matchDaddrPrefix: ip daddr PREFIX.
func matchDaddrPrefix(p netip.Prefix) []expr.Any { return matchPrefix(16, p) }

// matchPrefix compares the IPv4 address at offset in the network header.
func matchPrefix(offset uint32, p netip.Prefix) []expr.Any {
	mask := make([]byte, 4)
	binary.BigEndian.PutUint32(mask, ^uint32(0)<<(32-p.Bits()))
	return []expr.Any{
		&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseNetworkHeader, Offset: offset, Len: 4},
		&expr.Bitwise{SourceRegister: 1, DestRegister: 1, Len: 4, Mask: mask, Xor: make([]byte, 4)},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: p.Masked().Addr().AsSlice()},
	}
}

// matchDaddr: ip daddr ADDR.
func matchDaddr(a netip.Addr) []expr.Any {
	return []expr.Any{
		&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseNetworkHeader, Offset: 16, Len: 4},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: a.AsSlice()},
	}
}

// matchOifname: oifname (==|!=) NAME.
func matchOifname(op expr.CmpOp, name string) []expr.Any {
	return []expr.Any{
		&expr.Meta{Key: expr.MetaKeyOIFNAME, Register: 1},
		&expr.Cmp{Op: op, Register: 1, Data: ifname(name)},
	}
}

// ifname pads an interface name the way the kernel compares it.
func ifname(name string) []byte {
	b := make([]byte, unix.IFNAMSIZ)
	copy(b, name)
	return b
}

// matchCtDNAT: ct status dnat.
func matchCtDNAT() []expr.Any {
	const ipsDstNAT = 1 << 5 // IPS_DST_NAT
	return []expr.Any{
		&expr.Ct{Register: 1, Key: expr.CtKeySTATUS},
		&expr.Bitwise{SourceRegister: 1, DestRegister: 1, Len: 4, Mask: binaryutil.NativeEndian.PutUint32(ipsDstNAT), Xor: make([]byte, 4)},
		&expr.Cmp{Op: expr.CmpOpNeq, Register: 1, Data: make([]byte, 4)},
	}
}
