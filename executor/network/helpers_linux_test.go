package network

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"runtime"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/nftables"
	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// TestMain puts IPv4 forwarding back the way it found it: Attach turns it
// on, as docker does, but tests should not leave the host a router. It
// leaves it on when a real kiln network (kiln0 or kiln-*; the tests' own
// are gone by then) came up meanwhile and needs it.
func TestMain(m *testing.M) {
	const key = "/proc/sys/net/ipv4/ip_forward"
	before, err := os.ReadFile(key)
	code := m.Run()
	if err == nil && os.Geteuid() == 0 && os.Getenv(helperEnv) == "" {
		after, _ := os.ReadFile(key)
		if !bytes.Equal(before, after) && !otherKilnBridges() {
			os.WriteFile(key, before, 0o644)
		}
	}
	os.Exit(code)
}

func otherKilnBridges() bool {
	links, _ := netlink.LinkList()
	for _, l := range links {
		name := l.Attrs().Name
		if l.Type() == "bridge" && (name == DefaultBridgeName || strings.HasPrefix(name, "kiln-")) {
			return true
		}
	}
	return false
}

func requireRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("requires root for network namespaces; run as root: go test ./executor/network/")
	}
}

func randHex(n int) string {
	b := make([]byte, (n+1)/2)
	rand.Read(b)
	return hex.EncodeToString(b)[:n]
}

// testManager returns a Manager on a temporary StateDir with its own
// default bridge name and nftables table, and checks when the test ends
// that everything it set up is gone: detaching what is still attached and
// removing its networks first, then tearing down.
func testManager(t *testing.T) *Manager {
	t.Helper()
	requireRoot(t)
	suffix := randHex(6)
	m, err := New(Options{
		StateDir:      t.TempDir(),
		DefaultBridge: "kt" + suffix,
		Table:         "kilntest_" + suffix,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cleanupAndCheck(t, m) })
	return m
}

func cleanupAndCheck(t *testing.T, m *Manager) {
	t.Helper()
	ctx := context.Background()
	st, err := m.load()
	if err != nil {
		t.Fatal(err)
	}
	for id := range st.Endpoints {
		if err := m.Detach(ctx, id); err != nil {
			t.Errorf("cleanup: %v", err)
		}
	}
	for name := range st.Networks {
		if name != Bridge {
			if err := m.Remove(ctx, name); err != nil {
				t.Errorf("cleanup: %v", err)
			}
		}
	}
	if err := m.Teardown(ctx); err != nil {
		t.Errorf("cleanup: %v", err)
	}
	links, err := netlink.LinkList()
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range links {
		name := l.Attrs().Name
		for _, n := range st.Networks {
			if name == n.Bridge {
				t.Errorf("bridge %s left behind", name)
			}
		}
	}
	if _, err := listTable(m.opts.Table); err == nil {
		t.Errorf("nftables table %s left behind", m.opts.Table)
	}
	checkNoMounts(t, m)
}

func listTable(name string) (*nftables.Table, error) {
	c, err := nftables.New()
	if err != nil {
		return nil, err
	}
	return c.ListTableOfFamily(name, nftables.TableFamilyIPv4)
}

// checkNoMounts fails if anything is mounted under the state dir.
func checkNoMounts(t *testing.T, m *Manager) {
	t.Helper()
	checkNoMountsUnder(t, m.opts.StateDir)
}

func checkNoMountsUnder(t *testing.T, dir string) {
	t.Helper()
	data, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		t.Fatal(err)
	}
	for line := range strings.Lines(string(data)) {
		if f := strings.Fields(line); len(f) > 4 && (f[4] == dir || strings.HasPrefix(f[4], dir+"/")) {
			t.Errorf("mount left behind: %s", strings.TrimSpace(line))
		}
	}
}

// checkNoEndpoint fails if anything of the container is still there.
func checkNoEndpoint(t *testing.T, m *Manager, id string) {
	t.Helper()
	if _, err := netlink.LinkByName(m.vethName(id)); err == nil {
		t.Errorf("veth %s of %s left behind", m.vethName(id), id)
	}
	for _, p := range []string{m.netnsPath(id), m.hostsPath(id), m.resolvPath(id)} {
		if _, err := os.Lstat(p); err == nil {
			t.Errorf("%s left behind", p)
		}
	}
	if n := countRules(t, m, endpointTag(m.vethName(id))); n != 0 {
		t.Errorf("%d nftables rules of %s left behind", n, id)
	}
	st, err := m.load()
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := st.Endpoints[id]; ok {
		t.Errorf("endpoint record of %s left behind", id)
	}
	checkNoMountsUnder(t, m.netnsPath(id))
}

// countRules counts the rules of the manager's table carrying the tag ("":
// all of them).
func countRules(t *testing.T, m *Manager, tag string) int {
	t.Helper()
	c, err := nftables.New()
	if err != nil {
		t.Fatal(err)
	}
	f := m.fw()
	n := 0
	for _, chain := range allChains {
		rules, err := c.GetRules(f.tbl(), f.chain(chain))
		if errors.Is(err, unix.ENOENT) {
			continue
		}
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range rules {
			s, _ := userdataComment(r)
			if tag == "" || s == tag {
				n++
			}
		}
	}
	return n
}

func userdataComment(r *nftables.Rule) (string, bool) {
	// Comments are TLVs of type 0 (see userdata.TypeComment).
	if len(r.UserData) >= 2 && r.UserData[0] == 0 && int(r.UserData[1]) <= len(r.UserData)-2 {
		return strings.TrimRight(string(r.UserData[2:2+int(r.UserData[1])]), "\x00"), true
	}
	return "", false
}

// inNetNS runs fn on a thread inside the namespace at path.
func inNetNS(t *testing.T, path string, fn func()) {
	t.Helper()
	runtime.LockOSThread()
	orig, err := netns.Get()
	if err != nil {
		runtime.UnlockOSThread()
		t.Fatal(err)
	}
	defer orig.Close()
	ns, err := netns.GetFromPath(path)
	if err != nil {
		runtime.UnlockOSThread()
		t.Fatal(err)
	}
	defer ns.Close()
	if err := netns.Set(ns); err != nil {
		runtime.UnlockOSThread()
		t.Fatal(err)
	}
	defer func() {
		// Only a thread back in the host namespace goes back to the pool;
		// otherwise it stays locked and dies with this goroutine.
		if netns.Set(orig) == nil {
			runtime.UnlockOSThread()
		}
	}()
	fn()
}

// echoServer listens inside the namespace (the socket stays there whatever
// thread serves it) and echoes every TCP connection or UDP datagram.
func echoServer(t *testing.T, nsPath, proto, addr string) {
	t.Helper()
	var l net.Listener
	var pc net.PacketConn
	inNetNS(t, nsPath, func() {
		var err error
		if proto == "udp" {
			pc, err = net.ListenPacket("udp4", addr)
		} else {
			l, err = net.Listen("tcp4", addr)
		}
		if err != nil {
			t.Fatal(err)
		}
	})
	var wg sync.WaitGroup
	if pc != nil {
		t.Cleanup(func() { pc.Close(); wg.Wait() })
		wg.Go(func() {
			buf := make([]byte, 1500)
			for {
				n, from, err := pc.ReadFrom(buf)
				if err != nil {
					return
				}
				pc.WriteTo(buf[:n], from)
			}
		})
		return
	}
	t.Cleanup(func() { l.Close(); wg.Wait() })
	wg.Go(func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			wg.Go(func() {
				defer c.Close()
				c.SetDeadline(time.Now().Add(5 * time.Second))
				io.Copy(c, c)
			})
		}
	})
}

// echo sends a line to addr and checks it comes back.
func echo(proto, addr string) error {
	c, err := net.DialTimeout(proto+"4", addr, 3*time.Second)
	if err != nil {
		return err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(3 * time.Second))
	msg := "hello " + randHex(8) + "\n"
	if _, err := io.WriteString(c, msg); err != nil {
		return err
	}
	got := make([]byte, len(msg))
	if _, err := io.ReadFull(c, got); err != nil {
		return fmt.Errorf("echo from %s: %w", addr, err)
	}
	if string(got) != msg {
		return fmt.Errorf("echo from %s: got %q, want %q", addr, got, msg)
	}
	return nil
}

// lookupHosts finds a name in a hosts file the way a resolver would.
func lookupHosts(t *testing.T, path, name string) (netip.Addr, bool) {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	sc := bufio.NewScanner(bytes.NewReader(data))
	for sc.Scan() {
		line, _, _ := strings.Cut(sc.Text(), "#")
		f := strings.Fields(line)
		if len(f) >= 2 && slices.Contains(f[1:], name) {
			a, err := netip.ParseAddr(f[0])
			if err != nil {
				t.Fatalf("%s: bad line %q", path, sc.Text())
			}
			return a, true
		}
	}
	return netip.Addr{}, false
}

func attach(t *testing.T, m *Manager, req AttachRequest) *Endpoint {
	t.Helper()
	ep, err := m.Attach(t.Context(), req)
	if err != nil {
		t.Fatal(err)
	}
	return ep
}

// freeSubnet picks a test subnet of the given size in 10.213.0.0/16 that no
// route of the host overlaps.
func freeSubnet(t *testing.T, bits int) netip.Prefix {
	t.Helper()
	routes, err := hostRoutes(nil)
	if err != nil {
		t.Fatal(err)
	}
	base := netip.MustParsePrefix("10.213.0.0/16")
	for range 200 {
		b := make([]byte, 2)
		rand.Read(b)
		p := netip.PrefixFrom(netip.AddrFrom4([4]byte{10, 213, b[0], b[1]}), bits).Masked()
		if base.Contains(p.Addr()) && !overlapsAny(p, routes) {
			return p
		}
	}
	t.Fatal("no free test subnet in 10.213.0.0/16")
	return netip.Prefix{}
}

func freeHostPort(t *testing.T, proto string) uint16 {
	t.Helper()
	p, err := freePort(PortMapping{HostIP: netip.MustParseAddr("127.0.0.1"), Proto: proto})
	if err != nil {
		t.Fatal(err)
	}
	return p
}
