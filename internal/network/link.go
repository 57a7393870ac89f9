package network

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strings"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"

	"berth/internal/killpoint"
)

// vethPrefix starts every host-side veth berth creates.
const vethPrefix = "bv"

// vethName is the host end's name: derived from the network and endpoint, so
// a repeated connect or a disconnect after lost state finds the same link.
func vethName(net, id string) string {
	sum := sha256.Sum256([]byte(net + "\x00" + id))
	return vethPrefix + hex.EncodeToString(sum[:5])
}

// Every bridge and host-side veth berth creates carries an alias naming its
// network, set in the same netlink request that creates the link: the proof
// that the link is berth's. A name proves nothing (anyone can call a link
// bv0123456789 or berth0); berth deletes only links with its alias.
const aliasPrefix = "berth net="

func linkAlias(net string) string { return aliasPrefix + net }

// aliasNet returns the network a berth link belongs to, from its alias.
func aliasNet(l netlink.Link) (string, bool) {
	a := l.Attrs().Alias
	if !strings.HasPrefix(a, aliasPrefix) || len(a) == len(aliasPrefix) {
		return "", false
	}
	return a[len(aliasPrefix):], true
}

func validIfname(s string) error {
	if s == "" || len(s) >= unix.IFNAMSIZ || s == "." || s == ".." || strings.ContainsAny(s, "/: \t\n\x00") {
		return fmt.Errorf("%w: interface name %q: want 1-15 characters without '/', ':' or spaces", ErrInvalid, s)
	}
	return nil
}

func isNotFound(err error) bool {
	var lnf netlink.LinkNotFoundError
	return errors.As(err, &lnf) || errors.Is(err, unix.ENODEV) || errors.Is(err, unix.ENOENT)
}

// retryDump retries a netlink dump interrupted by a concurrent change: since
// netlink v1.3 such dumps return ErrDumpInterrupted with partial results.
func retryDump[T any](f func() (T, error)) (T, error) {
	var v T
	var err error
	for i := 0; i < 5; i++ {
		v, err = f()
		if !errors.Is(err, netlink.ErrDumpInterrupted) {
			return v, err
		}
	}
	return v, err
}

func hostHandle() (*netlink.Handle, error) {
	h, err := netlink.NewHandle(unix.NETLINK_ROUTE)
	if err != nil {
		return nil, fmt.Errorf("netlink: %w", err)
	}
	return h, nil
}

// writeSysctl sets a /proc/sys value unless it already has it (a write to
// ip_forward resets other per-device settings, so only write on change).
// /proc/sys/net follows the calling thread's netns.
func writeSysctl(name, value string) error {
	p := filepath.Join("/proc/sys", strings.ReplaceAll(name, ".", "/"))
	if cur, err := os.ReadFile(p); err == nil && strings.TrimSpace(string(cur)) == value {
		return nil
	}
	if err := os.WriteFile(p, []byte(value), 0o644); err != nil {
		return fmt.Errorf("sysctl %s=%s: %w", name, value, err)
	}
	return nil
}

func randomMAC() net.HardwareAddr {
	mac := make(net.HardwareAddr, 6)
	_, _ = rand.Read(mac)
	mac[0] = mac[0]&0xfe | 0x02 // unicast, locally administered
	return mac
}

// ensureBridge makes the bridge exist, carry the gateway addresses and be up,
// with forwarding on.
func ensureBridge(h *netlink.Handle, n *Network) (netlink.Link, error) {
	br, err := h.LinkByName(n.Bridge)
	if err != nil && !isNotFound(err) {
		return nil, fmt.Errorf("bridge %s: %w", n.Bridge, err)
	}
	if br != nil && br.Type() != "bridge" {
		return nil, fmt.Errorf("%s exists and is a %s, not a bridge", n.Bridge, br.Type())
	}
	if br != nil && !n.BridgeExisted && n.BridgeMAC != "" && br.Attrs().HardwareAddr.String() == n.BridgeMAC {
		if _, ok := aliasNet(br); !ok {
			// Created by a create killed before it set the alias.
			if err := h.LinkSetAlias(br, linkAlias(n.Name)); err != nil {
				return br, fmt.Errorf("bridge %s alias: %w", n.Bridge, err)
			}
		}
	}
	if br == nil {
		// A fixed MAC: otherwise the bridge takes the lowest MAC of its
		// ports and changes it as containers come and go, leaving stale
		// gateway entries in the containers' ARP caches. It is also the
		// proof the bridge is berth's (see Network.BridgeMAC).
		mac, err := net.ParseMAC(n.BridgeMAC)
		if err != nil {
			mac = randomMAC()
		}
		nb := &netlink.Bridge{LinkAttrs: netlink.LinkAttrs{Name: n.Bridge, HardwareAddr: mac}}
		if err := h.LinkAdd(nb); err != nil {
			return nil, fmt.Errorf("create bridge %s: %w", n.Bridge, err)
		}
		if br, err = h.LinkByName(n.Bridge); err != nil {
			return nil, fmt.Errorf("bridge %s: %w", n.Bridge, err)
		}
		killpoint.At("network create: bridge created")
		// The kernel ignores an alias in the creating request.
		if err := h.LinkSetAlias(br, linkAlias(n.Name)); err != nil {
			return br, fmt.Errorf("bridge %s alias: %w", n.Bridge, err)
		}
	}
	if n.Subnet6.IsValid() {
		// The gateway must not autoconfigure from router advertisements of
		// its own containers.
		if err := writeSysctl("net.ipv6.conf."+n.Bridge+".accept_ra", "0"); err != nil {
			return br, err
		}
	}
	addrs := []*netlink.Addr{{IPNet: prefixNet(netip.PrefixFrom(n.Gateway, n.Subnet.Bits()))}}
	if n.Subnet6.IsValid() {
		addrs = append(addrs, &netlink.Addr{IPNet: prefixNet(netip.PrefixFrom(n.Gateway6, n.Subnet6.Bits())), Flags: unix.IFA_F_NODAD})
	}
	for _, a := range addrs {
		if err := h.AddrReplace(br, a); err != nil {
			return br, fmt.Errorf("address %s on %s: %w", a.IPNet, n.Bridge, err)
		}
	}
	if err := h.LinkSetUp(br); err != nil {
		return br, fmt.Errorf("bridge %s up: %w", n.Bridge, err)
	}
	// route_localnet lets 127.0.0.1:hostPort be DNATed out through the
	// bridge (the portmap plugin's approach).
	if err := writeSysctl("net.ipv4.conf."+n.Bridge+".route_localnet", "1"); err != nil {
		return br, err
	}
	if err := writeSysctl("net.ipv4.ip_forward", "1"); err != nil {
		return br, err
	}
	if n.Subnet6.IsValid() {
		if err := writeSysctl("net.ipv6.conf.all.forwarding", "1"); err != nil {
			return br, err
		}
	}
	return br, nil
}

func prefixNet(p netip.Prefix) *net.IPNet {
	return &net.IPNet{IP: p.Addr().AsSlice(), Mask: net.CIDRMask(p.Bits(), p.Addr().BitLen())}
}

// addVeth creates the pair with the peer born inside the container netns
// (no move, no rename), the host end up and on the bridge, then configures
// the container side through a netlink socket opened in that netns.
func addVeth(h *netlink.Handle, br netlink.Link, nsFd int, ep *Endpoint, mac net.HardwareAddr) error {
	mtu := br.Attrs().MTU
	hostMAC, err := net.ParseMAC(ep.HostMAC)
	if err != nil {
		return fmt.Errorf("host veth mac %q: %w", ep.HostMAC, err)
	}
	veth := &netlink.Veth{
		LinkAttrs: netlink.LinkAttrs{
			Name:         ep.HostVeth,
			HardwareAddr: hostMAC,
			MTU:          mtu,
			MasterIndex:  br.Attrs().Index,
			Flags:        net.FlagUp,
		},
		PeerName:         ep.Ifname,
		PeerNamespace:    netlink.NsFd(nsFd),
		PeerHardwareAddr: mac,
		PeerMTU:          uint32(mtu),
	}
	if err := h.LinkAdd(veth); err != nil {
		if errors.Is(err, unix.EEXIST) {
			return fmt.Errorf("create veth %s/%s: an interface named %s or %s already exists: %w", ep.HostVeth, ep.Ifname, ep.HostVeth, ep.Ifname, err)
		}
		return fmt.Errorf("create veth %s: %w", ep.HostVeth, err)
	}
	// The kernel ignores an alias in the creating request.
	if err := h.LinkSetAlias(veth, linkAlias(ep.Network)); err != nil {
		return fmt.Errorf("veth %s alias: %w", ep.HostVeth, err)
	}
	hc, err := netlink.NewHandleAt(netns.NsHandle(nsFd), unix.NETLINK_ROUTE)
	if err != nil {
		return fmt.Errorf("netlink in %s: %w", ep.Netns, err)
	}
	defer hc.Close()
	// Loopback is always ifindex 1 in a network namespace.
	if err := hc.LinkSetUp(&netlink.Device{LinkAttrs: netlink.LinkAttrs{Index: 1}}); err != nil {
		return fmt.Errorf("lo up in %s: %w", ep.Netns, err)
	}
	peer, err := hc.LinkByName(ep.Ifname)
	if err != nil {
		return fmt.Errorf("%s in %s: %w", ep.Ifname, ep.Netns, err)
	}
	if err := hc.AddrAdd(peer, &netlink.Addr{IPNet: prefixNet(ep.IPv4)}); err != nil {
		return fmt.Errorf("address %s on %s: %w", ep.IPv4, ep.Ifname, err)
	}
	if ep.IPv6.IsValid() {
		if err := hc.AddrAdd(peer, &netlink.Addr{IPNet: prefixNet(ep.IPv6), Flags: unix.IFA_F_NODAD}); err != nil {
			return fmt.Errorf("address %s on %s: %w", ep.IPv6, ep.Ifname, err)
		}
	}
	if err := hc.LinkSetUp(peer); err != nil {
		return fmt.Errorf("%s up: %w", ep.Ifname, err)
	}
	if err := hc.RouteAdd(&netlink.Route{LinkIndex: peer.Attrs().Index, Gw: ep.Gateway.AsSlice()}); err != nil {
		return fmt.Errorf("default route via %s: %w", ep.Gateway, err)
	}
	if ep.IPv6.IsValid() {
		if err := hc.RouteAdd(&netlink.Route{LinkIndex: peer.Attrs().Index, Gw: ep.Gateway6.AsSlice()}); err != nil {
			return fmt.Errorf("default route via %s: %w", ep.Gateway6, err)
		}
	}
	return nil
}

// delOwnedLink deletes the link called name if it is proven network net's:
// by its alias, or by mac, the address berth recorded before creating it
// (the alias is set right after creation, so only mac covers a create
// killed in between). A missing link is success (the netns was deleted and
// took the pair with it); a link that is not berth's is left alone.
func delOwnedLink(h *netlink.Handle, name, net, mac string) error {
	l, err := h.LinkByName(name)
	if isNotFound(err) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("link %s: %w", name, err)
	}
	if !ownedLink(l, net, mac) {
		return nil
	}
	if err := h.LinkDel(l); err != nil && !isNotFound(err) {
		return fmt.Errorf("delete link %s: %w", name, err)
	}
	return nil
}

func ownedLink(l netlink.Link, net, mac string) bool {
	if n, ok := aliasNet(l); ok && n == net {
		return true
	}
	return mac != "" && l.Attrs().HardwareAddr.String() == mac
}

// hostRoute is one IPv4 route of the host netns.
type hostRoute struct {
	dst  netip.Prefix
	link int
}

// hostPrefixes lists the IPv4 prefixes already routed in this netns, which a
// network's subnet must not overlap (a container subnet shadowing the
// uplink's would cut the host off).
func hostPrefixes(h *netlink.Handle) ([]hostRoute, error) {
	routes, err := retryDump(func() ([]netlink.Route, error) { return h.RouteList(nil, netlink.FAMILY_V4) })
	if err != nil {
		return nil, fmt.Errorf("list routes: %w", err)
	}
	var out []hostRoute
	for _, r := range routes {
		if r.Dst == nil {
			continue
		}
		a, ok := netip.AddrFromSlice(r.Dst.IP)
		ones, _ := r.Dst.Mask.Size()
		if ok && ones > 0 {
			out = append(out, hostRoute{dst: netip.PrefixFrom(a.Unmap(), ones), link: r.LinkIndex})
		}
	}
	return out, nil
}

// delGatewayAddrs removes the gateway addresses from a bridge berth did not
// create; missing bridge or addresses are fine.
func delGatewayAddrs(h *netlink.Handle, n *Network) error {
	br, err := h.LinkByName(n.Bridge)
	if isNotFound(err) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("bridge %s: %w", n.Bridge, err)
	}
	addrs := []netip.Prefix{netip.PrefixFrom(n.Gateway, n.Subnet.Bits())}
	if n.Subnet6.IsValid() {
		addrs = append(addrs, netip.PrefixFrom(n.Gateway6, n.Subnet6.Bits()))
	}
	for _, a := range addrs {
		err := h.AddrDel(br, &netlink.Addr{IPNet: prefixNet(a)})
		if err != nil && !errors.Is(err, unix.EADDRNOTAVAIL) && !isNotFound(err) {
			return fmt.Errorf("remove %s from %s: %w", a, n.Bridge, err)
		}
	}
	return nil
}

// flushUDPConntrack drops conntrack entries aimed at newly published UDP
// host ports. A UDP flow seen before the DNAT rule existed stays bound to "no
// NAT" (or to a previous container) until it times out, so a client that
// keeps its source port would never reach the new container; the portmap
// plugin flushes for the same reason. TCP needs nothing: a new connection
// gets a new conntrack entry.
func flushUDPConntrack(ports []PortMapping) error {
	var v4, v6 []netlink.CustomConntrackFilter
	for _, p := range ports {
		if p.Protocol != "udp" {
			continue
		}
		f := &netlink.ConntrackFilter{}
		if err := f.AddProtocol(unix.IPPROTO_UDP); err != nil {
			return err
		}
		if err := f.AddPort(netlink.ConntrackOrigDstPort, p.HostPort); err != nil {
			return err
		}
		if p.HostIP.IsValid() {
			if err := f.AddIP(netlink.ConntrackOrigDstIP, p.HostIP.AsSlice()); err != nil {
				return err
			}
		}
		if !p.HostIP.IsValid() || p.HostIP.Is4() {
			v4 = append(v4, f)
		}
		if !p.HostIP.IsValid() || p.HostIP.Is6() {
			v6 = append(v6, f)
		}
	}
	if len(v4)+len(v6) == 0 {
		return nil
	}
	h, err := netlink.NewHandle(unix.NETLINK_NETFILTER)
	if err != nil {
		return fmt.Errorf("netlink conntrack: %w", err)
	}
	defer h.Close()
	for _, fam := range []struct {
		f       netlink.InetFamily
		filters []netlink.CustomConntrackFilter
	}{{netlink.FAMILY_V4, v4}, {netlink.FAMILY_V6, v6}} {
		if len(fam.filters) == 0 {
			continue
		}
		if _, err := h.ConntrackDeleteFilters(netlink.ConntrackTable, fam.f, fam.filters...); err != nil &&
			!errors.Is(err, unix.ENOENT) && !errors.Is(err, unix.EPROTONOSUPPORT) && !errors.Is(err, netlink.ErrDumpInterrupted) {
			return fmt.Errorf("flush UDP conntrack entries: %w", err)
		}
	}
	return nil
}
