package network

import (
	"errors"
	"net/netip"
	"strings"
	"testing"
)

func TestParsePortMapping(t *testing.T) {
	for _, tc := range []struct {
		spec    string
		want    PortMapping
		wantErr string
	}{
		{spec: "80", want: PortMapping{ContainerPort: 80, Proto: "tcp"}},
		{spec: "8080:80", want: PortMapping{HostPort: 8080, ContainerPort: 80, Proto: "tcp"}},
		{spec: "127.0.0.1:8080:80/udp", want: PortMapping{HostIP: netip.MustParseAddr("127.0.0.1"), HostPort: 8080, ContainerPort: 80, Proto: "udp"}},
		{spec: "127.0.0.1::80", want: PortMapping{HostIP: netip.MustParseAddr("127.0.0.1"), ContainerPort: 80, Proto: "tcp"}},
		{spec: "0.0.0.0:53:53/tcp", want: PortMapping{HostPort: 53, ContainerPort: 53, Proto: "tcp"}},
		{spec: "8080:80/sctp", wantErr: "only tcp and udp"},
		{spec: "8000-8010:80", wantErr: "ranges"},
		{spec: "::1:8080:80", wantErr: "IPv6"},
		{spec: "x:8080:80", wantErr: "not an IPv4 address"},
		{spec: "8080:0", wantErr: "not a port number"},
		{spec: "70000:80", wantErr: "not a port number"},
		{spec: "", wantErr: "not a port number"},
	} {
		t.Run(tc.spec, func(t *testing.T) {
			got, err := ParsePortMapping(tc.spec)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("ParsePortMapping(%q) = %v, %v; want error containing %q", tc.spec, got, err, tc.wantErr)
				}
				return
			}
			if err != nil || got != tc.want {
				t.Fatalf("ParsePortMapping(%q) = %+v, %v; want %+v", tc.spec, got, err, tc.want)
			}
			again, err := ParsePortMapping(got.String())
			if err != nil || again != got {
				t.Errorf("round trip through %q = %+v, %v", got.String(), again, err)
			}
		})
	}
}

func TestNormalizePorts(t *testing.T) {
	lo := netip.MustParseAddr("127.0.0.1")
	for _, tc := range []struct {
		name    string
		ports   []PortMapping
		wantErr string
	}{
		{name: "ok", ports: []PortMapping{{HostPort: 80, ContainerPort: 80}, {HostPort: 80, ContainerPort: 80, Proto: "udp"}}},
		{name: "two addresses", ports: []PortMapping{{HostIP: lo, HostPort: 80, ContainerPort: 80}, {HostIP: netip.MustParseAddr("127.0.0.2"), HostPort: 80, ContainerPort: 81}}},
		{name: "clash", ports: []PortMapping{{HostPort: 80, ContainerPort: 80}, {HostIP: lo, HostPort: 80, ContainerPort: 81}}, wantErr: "port 80 is already in use on 127.0.0.1"},
		{name: "no container port", ports: []PortMapping{{HostPort: 80}}, wantErr: "container port is required"},
		{name: "ipv6", ports: []PortMapping{{HostIP: netip.IPv6Loopback(), HostPort: 80, ContainerPort: 80}}, wantErr: "only IPv4"},
		{name: "proto", ports: []PortMapping{{HostPort: 80, ContainerPort: 80, Proto: "sctp"}}, wantErr: "only tcp and udp"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := normalizePorts(tc.ports)
			if tc.wantErr == "" {
				if err != nil {
					t.Fatal(err)
				}
				for _, p := range got {
					if p.Proto == "" {
						t.Errorf("proto not defaulted: %+v", p)
					}
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("err = %v; want %q", err, tc.wantErr)
			}
		})
	}
}

func TestPortInUseError(t *testing.T) {
	err := error(&PortInUseError{Port: 8080, Proto: "tcp"})
	if got, want := err.Error(), "port 8080 is already in use"; got != want {
		t.Errorf("Error() = %q, want %q", got, want)
	}
	if !errors.Is(err, ErrPortInUse) {
		t.Error("errors.Is(err, ErrPortInUse) = false")
	}
	err = &PortInUseError{HostIP: netip.MustParseAddr("127.0.0.1"), Port: 53, Proto: "udp", Container: "dns"}
	if got, want := err.Error(), "udp port 53 is already in use on 127.0.0.1 (published by container dns)"; got != want {
		t.Errorf("Error() = %q, want %q", got, want)
	}
}

func TestAllocate(t *testing.T) {
	subnet := netip.MustParsePrefix("10.1.2.0/29") // hosts .1-.6
	gw := gatewayOf(subnet)
	if gw != netip.MustParseAddr("10.1.2.1") {
		t.Fatalf("gateway = %s", gw)
	}
	if b := broadcastOf(subnet); b != netip.MustParseAddr("10.1.2.7") {
		t.Fatalf("broadcast = %s", b)
	}
	used := map[netip.Addr]bool{}
	var last netip.Addr
	var got []string
	for range 5 {
		a, err := allocate(subnet, gw, last, func(a netip.Addr) bool { return used[a] })
		if err != nil {
			t.Fatal(err)
		}
		used[a], last = true, a
		got = append(got, a.String())
	}
	if want := "10.1.2.2 10.1.2.3 10.1.2.4 10.1.2.5 10.1.2.6"; strings.Join(got, " ") != want {
		t.Fatalf("allocated %v, want %s", got, want)
	}
	if a, err := allocate(subnet, gw, last, func(a netip.Addr) bool { return used[a] }); !errors.Is(err, errSubnetFull) {
		t.Fatalf("full subnet: got %s, %v", a, err)
	}
	// Round robin: after .6 comes .3 when .2 is taken and .3 released.
	delete(used, netip.MustParseAddr("10.1.2.3"))
	delete(used, netip.MustParseAddr("10.1.2.5"))
	a, err := allocate(subnet, gw, netip.MustParseAddr("10.1.2.4"), func(a netip.Addr) bool { return used[a] })
	if err != nil || a != netip.MustParseAddr("10.1.2.5") {
		t.Fatalf("after .4: %s, %v; want 10.1.2.5", a, err)
	}
	a, err = allocate(subnet, gw, netip.MustParseAddr("10.1.2.6"), func(a netip.Addr) bool { return used[a] })
	if err != nil || a != netip.MustParseAddr("10.1.2.3") {
		t.Fatalf("after .6: %s, %v; want 10.1.2.3", a, err)
	}
}

func TestPickSubnet(t *testing.T) {
	taken := []netip.Prefix{netip.MustParsePrefix("10.88.0.0/16"), netip.MustParsePrefix("10.87.5.0/24")}
	p, err := pickSubnet(slicePrefixes(defaultSubnets()), taken)
	if err != nil || p != netip.MustParsePrefix("10.86.0.0/16") {
		t.Fatalf("default: %s, %v", p, err)
	}
	p, err = pickSubnet(userSubnets, []netip.Prefix{netip.MustParsePrefix("10.89.0.0/23")})
	if err != nil || p != netip.MustParsePrefix("10.89.2.0/24") {
		t.Fatalf("user: %s, %v", p, err)
	}
	if _, err := pickSubnet(userSubnets, []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")}); err == nil {
		t.Fatal("no error with everything taken")
	}
}

func TestParseSubnet(t *testing.T) {
	p, err := parseSubnet("10.5.6.7/24")
	if err != nil || p != netip.MustParsePrefix("10.5.6.0/24") {
		t.Fatalf("got %s, %v", p, err)
	}
	for _, bad := range []string{"fd00::/64", "10.0.0.0/31", "10.0.0.0/4", "nope"} {
		if _, err := parseSubnet(bad); err == nil {
			t.Errorf("parseSubnet(%q) succeeded", bad)
		}
	}
}

func TestRenderHosts(t *testing.T) {
	got := string(renderHosts(
		hostEntry{IP: netip.MustParseAddr("10.0.0.2"), Names: []string{"abc123", "web", "web"}},
		extraHostEntries([]string{"registry 192.168.1.5", "bad", "v6 ::1"}),
		[]hostEntry{
			{IP: netip.MustParseAddr("10.0.0.10"), Names: []string{"db", "def456"}},
			{IP: netip.MustParseAddr("10.0.0.3"), Names: []string{"", "cache"}},
		},
	))
	want := "127.0.0.1\tlocalhost\n" +
		"::1\tlocalhost ip6-localhost ip6-loopback\n" +
		"fe00::0\tip6-localnet\n" +
		"ff00::0\tip6-mcastprefix\n" +
		"ff02::1\tip6-allnodes\n" +
		"ff02::2\tip6-allrouters\n" +
		"192.168.1.5\tregistry\n" +
		"::1\tv6\n" +
		"10.0.0.2\tabc123 web\n" +
		"# other containers on the network\n" +
		"10.0.0.3\tcache\n" +
		"10.0.0.10\tdb def456\n"
	if got != want {
		t.Errorf("got\n%s\nwant\n%s", got, want)
	}
	none := string(renderHosts(hostEntry{Names: []string{"lonely"}}, nil, nil))
	if strings.Contains(none, "lonely") || !strings.HasPrefix(none, "127.0.0.1\tlocalhost\n") {
		t.Errorf("no address:\n%s", none)
	}
}

func TestFilterResolvConf(t *testing.T) {
	for _, tc := range []struct{ name, in, want string }{
		{
			name: "mixed",
			in:   "# comment\nnameserver 127.0.0.53\nnameserver 192.0.2.53\nnameserver ::1\nsearch example.org\noptions edns0\n",
			want: "# comment\nnameserver 192.0.2.53\nsearch example.org\noptions edns0\n",
		},
		{name: "only loopback", in: "nameserver 127.0.0.1\nsearch example.org\n", want: ""},
		{name: "empty", in: "", want: ""},
		{name: "zone", in: "nameserver fe80::1%eth0\n", want: "nameserver fe80::1%eth0\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := string(filterResolvConf([]byte(tc.in))); got != tc.want {
				t.Errorf("got %q, want %q", got, tc.want)
			}
		})
	}
}

func TestNames(t *testing.T) {
	for _, id := range []string{"abc", "0123456789abcdef", "my_ctr.1-x"} {
		if err := checkContainerID(id); err != nil {
			t.Errorf("checkContainerID(%q) = %v", id, err)
		}
	}
	for _, id := range []string{"", "..", "../x", "a/b", ".hidden", "-x", "a b", strings.Repeat("a", 129)} {
		if err := checkContainerID(id); err == nil {
			t.Errorf("checkContainerID(%q) accepted", id)
		}
	}
	for _, name := range []string{"front", "my-net_1.x", "N1"} {
		if err := checkNetworkName(name); err != nil {
			t.Errorf("checkNetworkName(%q) = %v", name, err)
		}
	}
	for _, name := range []string{"", "-x", "a/b", "a b", strings.Repeat("a", 65)} {
		if err := checkNetworkName(name); err == nil {
			t.Errorf("checkNetworkName(%q) accepted", name)
		}
	}
	if _, err := New(Options{}); err == nil {
		t.Error("New without StateDir succeeded")
	}
	if _, err := New(Options{StateDir: "x", DefaultBridge: "much-too-long-name"}); err == nil {
		t.Error("New with a 18-character bridge name succeeded")
	}
	if _, err := New(Options{StateDir: "x", DefaultSubnet: "fd00::/64"}); err == nil {
		t.Error("New with an IPv6 default subnet succeeded")
	}
}
