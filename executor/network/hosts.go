package network

import (
	"bufio"
	"bytes"
	"github.com/kiln-build/kiln/executor"
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
	b.WriteString(executor.LoopbackHosts)
	writeEntry := func(e hostEntry) { b.Write(appendHostEntry(nil, e)) }
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

// appendHostEntry appends the hosts line of e to b, nothing when e has no
// address or no usable name.
func appendHostEntry(b []byte, e hostEntry) []byte {
	names := uniqueNames(e.Names)
	if !e.IP.IsValid() || len(names) == 0 {
		return b
	}
	return append(b, e.IP.String()+"\t"+strings.Join(names, " ")+"\n"...)
}

// extraHostEntries parses the extra hosts of a container (docker's
// --add-host), skipping any that do not parse (they were checked when the
// container was made).
func extraHostEntries(extra []string) []hostEntry {
	var out []hostEntry
	for _, e := range extra {
		if name, ip, err := executor.ParseExtraHost(e); err == nil {
			out = append(out, hostEntry{IP: ip, Names: []string{name}})
		}
	}
	return out
}
