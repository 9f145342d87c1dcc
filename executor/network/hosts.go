package network

import (
	"bufio"
	"bytes"
	"net/netip"
	"slices"
	"strings"
)

// hostEntry is one line of a hosts file.
type hostEntry struct {
	IP    netip.Addr
	Names []string
}

// renderHosts writes a container's hosts file: the loopback names, the
// extra entries (--add-host), the container's own address and names
// (self.IP may be zero, on the none network) and, under a comment, the
// other containers of its network.
func renderHosts(self hostEntry, extra, peers []hostEntry) []byte {
	var b bytes.Buffer
	b.WriteString("127.0.0.1\tlocalhost\n")
	b.WriteString("::1\tlocalhost ip6-localhost ip6-loopback\n")
	b.WriteString("fe00::0\tip6-localnet\n") // written as Docker does
	b.WriteString("ff00::0\tip6-mcastprefix\n")
	b.WriteString("ff02::1\tip6-allnodes\n")
	b.WriteString("ff02::2\tip6-allrouters\n")
	writeEntry := func(e hostEntry) {
		names := uniqueNames(e.Names)
		if !e.IP.IsValid() || len(names) == 0 {
			return
		}
		b.WriteString(e.IP.String() + "\t" + strings.Join(names, " ") + "\n")
	}
	for _, e := range extra {
		writeEntry(e)
	}
	writeEntry(self)
	peers = slices.Clone(peers)
	slices.SortStableFunc(peers, func(a, b hostEntry) int { return a.IP.Compare(b.IP) })
	if len(peers) > 0 {
		b.WriteString("# other containers on the network\n")
	}
	for _, p := range peers {
		writeEntry(p)
	}
	return b.Bytes()
}

func uniqueNames(names []string) []string {
	var out []string
	for _, n := range names {
		if n != "" && !strings.ContainsAny(n, " \t\n#") && !slices.Contains(out, n) {
			out = append(out, n)
		}
	}
	return out
}

// filterResolvConf drops the nameservers on loopback addresses, which mean
// the host's own resolver and cannot be reached from a container's network
// namespace. When no nameserver is left it returns an empty file.
func filterResolvConf(data []byte) []byte {
	var out bytes.Buffer
	kept := 0
	sc := bufio.NewScanner(bytes.NewReader(data))
	for sc.Scan() {
		line := sc.Text()
		f := strings.Fields(line)
		if len(f) >= 2 && f[0] == "nameserver" {
			addr, _, _ := strings.Cut(f[1], "%")
			if a, err := netip.ParseAddr(addr); err == nil && a.Unmap().IsLoopback() {
				continue
			}
			kept++
		}
		out.WriteString(line + "\n")
	}
	if kept == 0 {
		return nil
	}
	return out.Bytes()
}

// extraHostEntries parses "name ip" entries (docker's --add-host), skipping
// any that do not parse (they were checked when the container was made).
func extraHostEntries(extra []string) []hostEntry {
	var out []hostEntry
	for _, e := range extra {
		f := strings.Fields(e)
		if len(f) != 2 {
			continue
		}
		ip, err := netip.ParseAddr(f[1])
		if err != nil {
			continue
		}
		out = append(out, hostEntry{IP: ip, Names: []string{f[0]}})
	}
	return out
}
