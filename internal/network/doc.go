// Package network wires containers to bridge networks in-process: a Linux
// bridge with the gateway address, veth pairs created directly in their final
// namespaces, a persistent IPAM lease store, NAT, forwarding and published
// ports in berth's own nftables table, and resolv.conf/hosts/hostname written
// into a rootfs without following its symlinks.
//
// Everything goes through netlink (vishvananda/netlink) and nftables
// (google/nftables); no ip/iptables/nft binaries are executed. Every
// operation is idempotent and teardown removes firewall rules before links, so
// a DNAT rule can never outlive the container it points at.
//
// The package never prints and never imports the image or runtime packages:
// the runtime reaches it through Attach and Detach only.
//
// On-disk layout (StateDir, default /var/lib/berth/networks):
//
//	.lock                 global lock: create/rm, port reservations, firewall repair
//	NAME/network.json     the definition (atomic temp file + rename)
//	NAME/.lock            per-network lock: lease changes
//	NAME/endpoints.json   the leases: one endpoint per address, with its boot id
//	.netns/NSNAME         marker for a named netns that connect created
//	.netns.lock           serialises making the netns dir a shared mount
//
// Lock order is always the global lock, then network locks in name order.
package network
