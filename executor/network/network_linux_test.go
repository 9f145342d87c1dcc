package network

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/nftables"
	"github.com/google/nftables/expr"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

func TestUserNetworkPeers(t *testing.T) {
	m := testManager(t)
	ctx := t.Context()
	n, err := m.Create(ctx, "front", "")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(n.Bridge, "kiln-") || len(n.Bridge) > 15 || n.Gateway != n.Subnet.Addr().Next() {
		t.Fatalf("network %+v", n)
	}
	web := attach(t, m, AttachRequest{ContainerID: "web" + randHex(8), Name: "web", Network: "front"})
	db := attach(t, m, AttachRequest{ContainerID: "db" + randHex(8), Name: "db", Network: "front"})
	for _, ep := range []*Endpoint{web, db} {
		if !n.Subnet.Contains(ep.IP) || ep.IP == n.Gateway || ep.Gateway != n.Gateway || ep.Network != "front" {
			t.Fatalf("endpoint %+v on %+v", ep, n)
		}
	}
	if web.IP == db.IP {
		t.Fatalf("both containers got %s", web.IP)
	}

	// Inside: eth0 with the address, a default route through the gateway.
	h, ns, err := nsHandle(web.NetNSPath)
	if err != nil {
		t.Fatal(err)
	}
	eth0, err := h.LinkByName("eth0")
	if err != nil {
		t.Fatal(err)
	}
	addrs, _ := h.AddrList(eth0, netlink.FAMILY_V4)
	if len(addrs) != 1 || !addrs[0].IP.Equal(web.IP.AsSlice()) {
		t.Errorf("eth0 addresses %v, want %s", addrs, web.IP)
	}
	routes, _ := h.RouteList(eth0, netlink.FAMILY_V4)
	hasDefault := slices.ContainsFunc(routes, func(r netlink.Route) bool {
		return (r.Dst == nil || r.Dst.IP.IsUnspecified()) && r.Gw.Equal(n.Gateway.AsSlice())
	})
	if !hasDefault {
		t.Errorf("no default route via %s in %v", n.Gateway, routes)
	}
	h.Close()
	ns.Close()

	// Names resolve through the hosts files, both ways.
	if a, ok := lookupHosts(t, web.HostsPath, "db"); !ok || a != db.IP {
		t.Errorf("web resolves db to %s, %v; want %s", a, ok, db.IP)
	}
	if a, ok := lookupHosts(t, db.HostsPath, "web"); !ok || a != web.IP {
		t.Errorf("db resolves web to %s, %v; want %s", a, ok, web.IP)
	}
	if a, ok := lookupHosts(t, web.HostsPath, "web"); !ok || a != web.IP {
		t.Errorf("web resolves itself to %s, %v", a, ok)
	}
	if a, ok := lookupHosts(t, web.HostsPath, "localhost"); !ok || a != netip.MustParseAddr("127.0.0.1") {
		t.Errorf("localhost is %s, %v", a, ok)
	}

	// web reaches db by the name in its hosts file.
	echoServer(t, db.NetNSPath, "tcp", ":8000")
	dbIP, _ := lookupHosts(t, web.HostsPath, "db")
	inNetNS(t, web.NetNSPath, func() {
		if err := echo("tcp", netip.AddrPortFrom(dbIP, 8000).String()); err != nil {
			t.Errorf("web -> db: %v", err)
		}
	})

	// Peers' files change in place as containers come and go.
	before, err := os.Stat(web.HostsPath)
	if err != nil {
		t.Fatal(err)
	}
	cache := attach(t, m, AttachRequest{ContainerID: "cache" + randHex(8), Name: "cache", Network: "front"})
	if a, ok := lookupHosts(t, web.HostsPath, "cache"); !ok || a != cache.IP {
		t.Errorf("after attach, web resolves cache to %s, %v; want %s", a, ok, cache.IP)
	}
	dbID := strings.TrimPrefix(db.NetNSPath, m.opts.StateDir+"/netns/")
	if err := m.Detach(ctx, dbID); err != nil {
		t.Fatal(err)
	}
	checkNoEndpoint(t, m, dbID)
	if _, ok := lookupHosts(t, web.HostsPath, "db"); ok {
		t.Error("web still resolves db after it detached")
	}
	if _, ok := lookupHosts(t, cache.HostsPath, "db"); ok {
		t.Error("cache still resolves db after it detached")
	}
	after, err := os.Stat(web.HostsPath)
	if err != nil {
		t.Fatal(err)
	}
	if !os.SameFile(before, after) {
		t.Error("web's hosts file was replaced, not rewritten in place")
	}

	// resolv.conf has no loopback nameserver.
	resolv, err := os.ReadFile(web.ResolvConfPath)
	if err != nil {
		t.Fatal(err)
	}
	for line := range strings.Lines(string(resolv)) {
		if f := strings.Fields(line); len(f) >= 2 && f[0] == "nameserver" && strings.HasPrefix(f[1], "127.") {
			t.Errorf("resolv.conf keeps %q", line)
		}
	}
}

func TestPublishedPorts(t *testing.T) {
	m := testManager(t)
	ctx := t.Context()
	lo := netip.MustParseAddr("127.0.0.1")
	onLoopback := freeHostPort(t, "tcp")
	everywhere := freeHostPort(t, "tcp")
	udp := freeHostPort(t, "udp")
	id := "pub" + randHex(8)
	ep := attach(t, m, AttachRequest{ContainerID: id, Name: "pub", Ports: []PortMapping{
		{HostIP: lo, HostPort: onLoopback, ContainerPort: 80},
		{HostPort: everywhere, ContainerPort: 80},
		{HostIP: lo, ContainerPort: 80}, // any free port
		{HostIP: lo, HostPort: udp, ContainerPort: 5353, Proto: "udp"},
	}})
	if ep.Network != Bridge || !ep.IP.IsValid() {
		t.Fatalf("endpoint %+v", ep)
	}
	picked := ep.Ports[2].HostPort
	if picked == 0 {
		t.Fatalf("no host port picked: %+v", ep.Ports)
	}
	nets, err := m.List(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if nets[0].Name != Bridge || nets[0].Bridge != m.opts.DefaultBridge || !nets[0].Subnet.Contains(ep.IP) {
		t.Fatalf("default network %+v, endpoint %s", nets[0], ep.IP)
	}
	gw := nets[0].Gateway

	echoServer(t, ep.NetNSPath, "tcp", ":80")
	echoServer(t, ep.NetNSPath, "udp", ":5353")
	for _, addr := range []netip.AddrPort{
		netip.AddrPortFrom(lo, onLoopback),
		netip.AddrPortFrom(lo, everywhere),
		netip.AddrPortFrom(gw, everywhere),
		netip.AddrPortFrom(lo, picked),
	} {
		if err := echo("tcp", addr.String()); err != nil {
			t.Errorf("host -> %s: %v", addr, err)
		}
	}
	if err := echo("udp", netip.AddrPortFrom(lo, udp).String()); err != nil {
		t.Errorf("host -> udp %d: %v", udp, err)
	}
	// Published on 127.0.0.1 only: the gateway address is not forwarded.
	if err := echo("tcp", netip.AddrPortFrom(gw, onLoopback).String()); err == nil {
		t.Errorf("port %d published on 127.0.0.1 answers on %s", onLoopback, gw)
	}

	// Hairpin: another container on the bridge reaches the published port
	// through the gateway address.
	peer := attach(t, m, AttachRequest{ContainerID: "peer" + randHex(8)})
	inNetNS(t, peer.NetNSPath, func() {
		if err := echo("tcp", netip.AddrPortFrom(gw, everywhere).String()); err != nil {
			t.Errorf("peer -> %s:%d: %v", gw, everywhere, err)
		}
	})

	// The same port again is refused, naming the container.
	_, err = m.Attach(ctx, AttachRequest{ContainerID: "dup" + randHex(8), Ports: []PortMapping{{HostPort: everywhere, ContainerPort: 80}}})
	if !errors.Is(err, ErrPortInUse) || !strings.Contains(err.Error(), fmt.Sprintf("port %d is already in use", everywhere)) || !strings.Contains(err.Error(), "pub") {
		t.Errorf("second publisher of %d: %v", everywhere, err)
	}

	if err := m.Detach(ctx, id); err != nil {
		t.Fatal(err)
	}
	checkNoEndpoint(t, m, id)
	if err := echo("tcp", netip.AddrPortFrom(lo, onLoopback).String()); err == nil {
		t.Error("port still forwarded after Detach")
	}
}

func TestPortInUse(t *testing.T) {
	m := testManager(t)
	ctx := t.Context()
	l, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	port := uint16(l.Addr().(*net.TCPAddr).Port)
	id := "busy" + randHex(8)
	for _, hostIP := range []netip.Addr{{}, netip.MustParseAddr("127.0.0.1")} {
		_, err = m.Attach(ctx, AttachRequest{ContainerID: id, Ports: []PortMapping{
			{HostPort: freeHostPort(t, "tcp"), ContainerPort: 81},
			{HostIP: hostIP, HostPort: port, ContainerPort: 80},
		}})
		want := fmt.Sprintf("port %d is already in use", port)
		if err == nil || !errors.Is(err, ErrPortInUse) || !strings.Contains(err.Error(), want) {
			t.Fatalf("Attach with port %d taken: %v; want %q", port, err, want)
		}
		checkNoEndpoint(t, m, id)
	}
	// Only the base jumps and the network's own rules are left.
	if n := countRules(t, m, "") - countRules(t, m, tagBase) - countRules(t, m, networkTag(m.opts.DefaultBridge)); n != 0 {
		t.Errorf("%d endpoint rules after the failed attach", n)
	}
	// Nothing was held: the first container still gets the first address.
	ep := attach(t, m, AttachRequest{ContainerID: id})
	nets, _ := m.List(ctx)
	if want := nets[0].Gateway.Next(); ep.IP != want {
		t.Errorf("after a failed attach, got %s; want %s", ep.IP, want)
	}
	if _, err := m.Attach(ctx, AttachRequest{ContainerID: id}); !errors.Is(err, ErrAttached) {
		t.Errorf("attaching twice: %v", err)
	}
}

func TestAttachFailureLeavesNothing(t *testing.T) {
	m := testManager(t)
	ctx := t.Context()
	n, err := m.Create(ctx, "fail", freeSubnet(t, 24).String())
	if err != nil {
		t.Fatal(err)
	}
	// A peer whose hosts file must come back to what it was.
	peer := attach(t, m, AttachRequest{ContainerID: "peer" + randHex(8), Name: "peer", Network: "fail"})
	peerHosts, _ := os.ReadFile(peer.HostsPath)
	for _, step := range []string{"netns", "veth", "ports", "files", "save"} {
		for _, network := range []string{"fail", None} {
			t.Run(step+"/"+network, func(t *testing.T) {
				if network == None && (step == "veth" || step == "ports") {
					t.Skip("no such step on the none network")
				}
				boom := errors.New("injected failure")
				m.failpoint = func(s string) error {
					if s == step {
						return boom
					}
					return nil
				}
				defer func() { m.failpoint = nil }()
				id := "victim" + randHex(8)
				req := AttachRequest{ContainerID: id, Name: "victim", Network: network}
				if network != None {
					req.Ports = []PortMapping{{HostIP: netip.MustParseAddr("127.0.0.1"), ContainerPort: 80}}
				}
				if _, err := m.Attach(ctx, req); !errors.Is(err, boom) {
					t.Fatalf("Attach = %v; want the injected failure", err)
				}
				checkNoEndpoint(t, m, id)
				if got, _ := os.ReadFile(peer.HostsPath); !bytes.Equal(got, peerHosts) {
					t.Errorf("peer's hosts file changed:\n%s", got)
				}
			})
		}
	}
	// No address was held: the next one is handed out.
	ep := attach(t, m, AttachRequest{ContainerID: "after" + randHex(8), Network: "fail"})
	if want := peer.IP.Next(); ep.IP != want {
		t.Errorf("got %s after the failures; want %s", ep.IP, want)
	}
	_ = n
}

func TestNoneNetwork(t *testing.T) {
	m := testManager(t)
	id := "none" + randHex(8)
	ep := attach(t, m, AttachRequest{ContainerID: id, Name: "alone", Network: None})
	if ep.NetNSPath == "" || ep.IP.IsValid() || ep.Network != None {
		t.Fatalf("endpoint %+v", ep)
	}
	inNetNS(t, ep.NetNSPath, func() {
		ifs, err := net.Interfaces()
		if err != nil {
			t.Fatal(err)
		}
		if len(ifs) != 1 || ifs[0].Name != "lo" || ifs[0].Flags&net.FlagUp == 0 {
			t.Errorf("interfaces %v; want only lo, up", ifs)
		}
	})
	if a, ok := lookupHosts(t, ep.HostsPath, "localhost"); !ok || a != netip.MustParseAddr("127.0.0.1") {
		t.Errorf("localhost = %s, %v", a, ok)
	}
	if _, err := os.Stat(ep.ResolvConfPath); err != nil {
		t.Error(err)
	}
	if err := m.Detach(t.Context(), id); err != nil {
		t.Fatal(err)
	}
	checkNoEndpoint(t, m, id)
}

func TestHostNetwork(t *testing.T) {
	m := testManager(t)
	id := "host" + randHex(8)
	ep := attach(t, m, AttachRequest{ContainerID: id, Network: Host})
	if ep.NetNSPath != "" || ep.IP.IsValid() {
		t.Fatalf("endpoint %+v", ep)
	}
	if _, err := os.Stat(ep.HostsPath); err != nil {
		t.Error(err)
	}
	if _, err := m.Attach(t.Context(), AttachRequest{ContainerID: "h2", Network: Host, Ports: []PortMapping{{HostPort: 1, ContainerPort: 1}}}); err == nil {
		t.Error("publishing on the host network succeeded")
	}
	if err := m.Detach(t.Context(), id); err != nil {
		t.Fatal(err)
	}
	checkNoEndpoint(t, m, id)
}

func TestAllocatorPersists(t *testing.T) {
	m1 := testManager(t)
	ctx := t.Context()
	subnet := freeSubnet(t, 29) // gateway .1, containers .2 to .6
	if _, err := m1.Create(ctx, "small", subnet.String()); err != nil {
		t.Fatal(err)
	}
	m2, err := New(m1.opts)
	if err != nil {
		t.Fatal(err)
	}
	host := func(i int) netip.Addr {
		a := subnet.Addr()
		for range i {
			a = a.Next()
		}
		return a
	}
	ip := func(m *Manager, id string) netip.Addr {
		t.Helper()
		return attach(t, m, AttachRequest{ContainerID: id, Name: id, Network: "small"}).IP
	}
	if got := ip(m1, "a"); got != host(2) {
		t.Fatalf("a = %s, want %s", got, host(2))
	}
	if got := ip(m2, "b"); got != host(3) {
		t.Fatalf("b (second manager) = %s, want %s", got, host(3))
	}
	if err := m2.Detach(ctx, "a"); err != nil {
		t.Fatal(err)
	}
	// Round robin: the released .2 is not handed out straight away.
	for i, id := range []string{"c", "d", "e"} {
		if got := ip(m1, id); got != host(4+i) {
			t.Fatalf("%s = %s, want %s", id, got, host(4+i))
		}
	}
	if got := ip(m2, "f"); got != host(2) {
		t.Fatalf("f = %s, want the released %s", got, host(2))
	}
	if _, err := m1.Attach(ctx, AttachRequest{ContainerID: "g", Network: "small"}); !errors.Is(err, errSubnetFull) {
		t.Fatalf("attach to a full subnet: %v", err)
	}
	checkNoEndpoint(t, m1, "g")

	// A third Manager sees all of it.
	m3, _ := New(m1.opts)
	nets, err := m3.List(ctx)
	if err != nil {
		t.Fatal(err)
	}
	names := []string{}
	for _, n := range nets {
		names = append(names, n.Name)
	}
	if want := "bridge host none small"; strings.Join(names, " ") != want {
		t.Errorf("List = %v, want %s", names, want)
	}
}

func TestDetachTwice(t *testing.T) {
	m := testManager(t)
	ctx := t.Context()
	id := "twice" + randHex(8)
	attach(t, m, AttachRequest{ContainerID: id})
	for range 2 {
		if err := m.Detach(ctx, id); err != nil {
			t.Fatal(err)
		}
		checkNoEndpoint(t, m, id)
	}
	if err := m.Detach(ctx, "never-attached"); err != nil {
		t.Errorf("Detach of an unknown container: %v", err)
	}
	if err := m.Detach(ctx, "../etc"); err == nil {
		t.Error("Detach accepted a path as container ID")
	}
}

func TestCreateRemove(t *testing.T) {
	m := testManager(t)
	ctx := t.Context()
	subnet := freeSubnet(t, 24)
	n, err := m.Create(ctx, "busy", subnet.String())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := netlink.LinkByName(n.Bridge); err != nil {
		t.Fatalf("bridge %s: %v", n.Bridge, err)
	}
	if _, err := m.Create(ctx, "busy", ""); !errors.Is(err, ErrExists) {
		t.Errorf("duplicate name: %v", err)
	}
	if _, err := m.Create(ctx, "other", subnet.String()); err == nil || !strings.Contains(err.Error(), "overlaps") {
		t.Errorf("overlapping subnet: %v", err)
	}
	if _, err := m.Create(ctx, Host, ""); err == nil {
		t.Error("created a network named host")
	}
	id := "c" + randHex(8)
	attach(t, m, AttachRequest{ContainerID: id, Network: "busy"})
	if err := m.Remove(ctx, "busy"); !errors.Is(err, ErrInUse) {
		t.Errorf("Remove with an endpoint attached: %v", err)
	}
	if err := m.Remove(ctx, Bridge); err == nil {
		t.Error("removed the default network")
	}
	if err := m.Remove(ctx, "nope"); !errors.Is(err, ErrNotFound) {
		t.Errorf("Remove of an unknown network: %v", err)
	}
	if _, err := m.Attach(ctx, AttachRequest{ContainerID: "x", Network: "nope"}); !errors.Is(err, ErrNotFound) {
		t.Errorf("Attach to an unknown network: %v", err)
	}
	if err := m.Detach(ctx, id); err != nil {
		t.Fatal(err)
	}
	if err := m.Remove(ctx, "busy"); err != nil {
		t.Fatal(err)
	}
	if _, err := netlink.LinkByName(n.Bridge); err == nil {
		t.Errorf("bridge %s left after Remove", n.Bridge)
	}
	if c := countRules(t, m, networkTag(n.Bridge)); c != 0 {
		t.Errorf("%d rules of %s left after Remove", c, n.Bridge)
	}
}

// The helper process attaches containers for TestConcurrentProcesses.
const helperEnv = "KILN_NETWORK_TEST_HELPER"

func TestHelperProcess(t *testing.T) {
	if os.Getenv(helperEnv) == "" {
		t.Skip("helper for TestConcurrentProcesses")
	}
	var opts Options
	if err := json.Unmarshal([]byte(os.Getenv(helperEnv)), &opts); err != nil {
		t.Fatal(err)
	}
	m, err := New(opts)
	if err != nil {
		t.Fatal(err)
	}
	prefix := os.Getenv(helperEnv + "_PREFIX")
	for i := range 5 {
		if _, err := m.Attach(t.Context(), AttachRequest{ContainerID: prefix + strconv.Itoa(i), Name: prefix + strconv.Itoa(i), Network: "shared"}); err != nil {
			t.Fatal(err)
		}
	}
}

func TestConcurrentProcesses(t *testing.T) {
	m := testManager(t)
	ctx := t.Context()
	n, err := m.Create(ctx, "shared", "")
	if err != nil {
		t.Fatal(err)
	}
	cfg, _ := json.Marshal(m.opts)
	var wg sync.WaitGroup
	errs := make([]error, 2)
	for i, prefix := range []string{"p", "q"} {
		wg.Go(func() {
			cmd := exec.CommandContext(ctx, os.Args[0], "-test.run=^TestHelperProcess$", "-test.count=1")
			cmd.Env = append(os.Environ(), helperEnv+"="+string(cfg), helperEnv+"_PREFIX="+prefix)
			if out, err := cmd.CombinedOutput(); err != nil {
				errs[i] = fmt.Errorf("helper %s: %v\n%s", prefix, err, out)
			}
		})
	}
	// Meanwhile this process attaches too.
	for i := range 3 {
		attach(t, m, AttachRequest{ContainerID: "r" + strconv.Itoa(i), Name: "r" + strconv.Itoa(i), Network: "shared"})
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		t.Fatal(err)
	}
	st, err := m.load()
	if err != nil {
		t.Fatal(err)
	}
	seen := map[netip.Addr]string{}
	for id, e := range st.Endpoints {
		if other, dup := seen[e.IP]; dup {
			t.Errorf("%s and %s both have %s", id, other, e.IP)
		}
		seen[e.IP] = id
		if e.IP == n.Gateway || !n.Subnet.Contains(e.IP) {
			t.Errorf("%s got %s on %s", id, e.IP, n.Subnet)
		}
	}
	if len(seen) != 13 {
		t.Fatalf("%d endpoints, want 13", len(st.Endpoints))
	}
	// The namespaces outlive the processes that made them, and every hosts
	// file knows every other container.
	p0 := st.Endpoints["p0"]
	h, ns, err := nsHandle(p0.NetNSPath)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := h.LinkByName("eth0"); err != nil {
		t.Errorf("eth0 of p0 after its process exited: %v", err)
	}
	h.Close()
	ns.Close()
	for id, e := range st.Endpoints {
		for other, o := range st.Endpoints {
			if a, ok := lookupHosts(t, e.HostsPath, other); !ok || a != o.IP {
				t.Errorf("%s resolves %s to %s, %v; want %s", id, other, a, ok, o.IP)
			}
		}
	}
	echoServer(t, p0.NetNSPath, "tcp", ":7000")
	inNetNS(t, st.Endpoints["q4"].NetNSPath, func() {
		if err := echo("tcp", netip.AddrPortFrom(p0.IP, 7000).String()); err != nil {
			t.Errorf("q4 -> p0: %v", err)
		}
	})
	// Detach concurrently from two Managers.
	m2, _ := New(m.opts)
	var dwg sync.WaitGroup
	for id := range st.Endpoints {
		mm := m
		if id[0] == 'q' {
			mm = m2
		}
		dwg.Go(func() {
			if err := mm.Detach(ctx, id); err != nil {
				t.Error(err)
			}
		})
	}
	dwg.Wait()
	for id := range st.Endpoints {
		checkNoEndpoint(t, m, id)
	}
}

// TestLoopbackGuard plays a container that routes 127.0.0.0/8 through its
// eth0 to reach services the host binds to loopback: route_localnet on the
// bridge would let those packets in, the guard rule must drop them.
func TestLoopbackGuard(t *testing.T) {
	m := testManager(t)
	l, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			c.Close()
		}
	}()
	ep := attach(t, m, AttachRequest{ContainerID: "evil" + randHex(8)})
	h, ns, err := nsHandle(ep.NetNSPath)
	if err != nil {
		t.Fatal(err)
	}
	defer ns.Close()
	defer h.Close()
	eth0, err := h.LinkByName("eth0")
	if err != nil {
		t.Fatal(err)
	}
	lo, _ := h.LinkByName("lo")
	if err := h.LinkSetDown(lo); err != nil {
		t.Fatal(err)
	}
	local, err := h.RouteListFiltered(netlink.FAMILY_V4, &netlink.Route{Table: unix.RT_TABLE_LOCAL}, netlink.RT_FILTER_TABLE)
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range local {
		if r.Dst != nil && r.Dst.IP.IsLoopback() {
			h.RouteDel(&r)
		}
	}
	_, dst, _ := net.ParseCIDR("127.0.0.0/8")
	if err := h.RouteAdd(&netlink.Route{LinkIndex: eth0.Attrs().Index, Dst: dst, Gw: ep.Gateway.AsSlice(), Src: ep.IP.AsSlice()}); err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	inNetNS(t, ep.NetNSPath, func() {
		if err := os.WriteFile("/proc/sys/net/ipv4/conf/eth0/route_localnet", []byte("1"), 0o644); err != nil {
			t.Fatal(err)
		}
		c, err := net.DialTimeout("tcp4", addr, time.Second)
		if err == nil {
			c.Close()
			t.Errorf("container reached the host's %s", addr)
		}
	})
	// And it was the guard that stopped it.
	c, err := nftables.New()
	if err != nil {
		t.Fatal(err)
	}
	rules, err := c.GetRules(m.fw().tbl(), m.fw().chain(chainGuard))
	if err != nil {
		t.Fatal(err)
	}
	var dropped uint64
	for _, r := range rules {
		for _, e := range r.Exprs {
			if ctr, ok := e.(*expr.Counter); ok {
				dropped += ctr.Packets
			}
		}
	}
	if dropped == 0 {
		t.Error("the guard rule dropped nothing")
	}
}
