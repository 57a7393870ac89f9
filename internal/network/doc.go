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
//	.netns/NSPATH         marker of a named netns that connect created (JSON:
//	                      path, network, the placeholder's and the
//	                      namespace's device and inode numbers)
//	.netns.lock           serialises creating and removing named netns (and
//	                      making the netns dir a shared mount)
//
// berth removes only what it can prove it made, never what a name suggests:
// a rule by its comment, the table by its comment, a bridge or veth by the
// alias it carries or the MAC it was born with (recorded before it was
// made), a named netns by the identities in its marker. Each record is
// written before the thing it names exists (definitions and leases saved
// "pending" first), so a command killed at any point leaves a record of
// exactly what it made: create, connect, disconnect or rm run again, or
// prune, finish or undo it. Lock order is always the global lock, then
// network locks in name order, then the netns lock.
package network
