// Package network gives kiln's containers their networks, the way
// "docker run --network" does: a default Linux bridge "kiln0" and
// user-defined bridges, each with a subnet of its own; a network namespace
// per container joined by a veth pair, an address from a persistent
// allocator, NAT to reach outside, published ports, and name resolution
// between containers of a user bridge through a hosts file. Everything
// Attach sets up is removed by Detach.
//
// The kernel side is Linux only: links, addresses, routes and namespaces go
// through netlink (github.com/vishvananda/netlink), NAT and published ports
// are nftables rules (github.com/google/nftables) in a table of kiln's own
// ("kiln" unless Options.Table says otherwise). Only IPv4 is set up.
//
// State lives in Options.StateDir:
//
//	lock            flock taken around every change, so several kiln
//	                processes may share one StateDir
//	state.json      networks and attached endpoints (the address allocator)
//	netns/<id>      bind mount of each container's network namespace
//	hosts/<id>      the container's /etc/hosts
//	resolv/<id>     the container's /etc/resolv.conf
//
// On other systems every Manager method returns errors.ErrUnsupported.
package network
