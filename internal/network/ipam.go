package network

import (
	"crypto/rand"
	"errors"
	"fmt"
	"net"
	"net/netip"
)

// ErrExhausted means the subnet has no free address left.
var ErrExhausted = errors.New("no free address in subnet")

// maxScan bounds the search for a free address, so an IPv6 /64 cannot make an
// allocation loop for ever; an IPv4 /16 fits entirely.
const maxScan = 1 << 16

// usable reports whether a may be leased in subnet: inside it, not the
// network address, not the IPv4 broadcast address, not the gateway.
func usable(subnet netip.Prefix, gw, a netip.Addr) bool {
	if !subnet.Contains(a) || a == gw || a == subnet.Masked().Addr() {
		return false
	}
	if a.Is4() && a == lastAddr(subnet) && subnet.Bits() < 31 {
		return false
	}
	return true
}

// lastAddr is the highest address of p (the IPv4 broadcast address).
func lastAddr(p netip.Prefix) netip.Addr {
	b := p.Masked().Addr().AsSlice()
	bits := p.Bits()
	for i := range b {
		for j := 0; j < 8; j++ {
			if i*8+j >= bits {
				b[i] |= 0x80 >> j
			}
		}
	}
	a, _ := netip.AddrFromSlice(b)
	return a
}

// allocate picks the next free address after last (round robin, like CNI
// host-local, so a just-released address is not handed out again at once and
// stale connections to it do not reach a new container).
func allocate(subnet netip.Prefix, gw, last netip.Addr, used map[netip.Addr]bool) (netip.Addr, error) {
	start := last
	if !start.IsValid() || !subnet.Contains(start) {
		start = subnet.Masked().Addr()
	}
	a := start
	for i := 0; i < maxScan; i++ {
		a = a.Next()
		if !a.IsValid() || !subnet.Contains(a) {
			a = subnet.Masked().Addr() // wrap
			continue
		}
		if usable(subnet, gw, a) && !used[a] {
			return a, nil
		}
		if a == start {
			break
		}
	}
	return netip.Addr{}, fmt.Errorf("%w %s", ErrExhausted, subnet)
}

// firstHost is the default gateway of a subnet: network address + 1.
func firstHost(p netip.Prefix) netip.Addr { return p.Masked().Addr().Next() }

// parseSubnet parses a CIDR and insists it is written as a network (no host
// bits), so "10.1.2.3/24" is not silently taken for 10.1.2.0/24.
func parseSubnet(s string, want6 bool) (netip.Prefix, error) {
	p, err := netip.ParsePrefix(s)
	if err != nil {
		return netip.Prefix{}, fmt.Errorf("%w: subnet %q: %w", ErrInvalid, s, err)
	}
	if p.Addr().Is4() == want6 || p.Addr().Is4In6() {
		fam := "IPv4"
		if want6 {
			fam = "IPv6"
		}
		return netip.Prefix{}, fmt.Errorf("%w: subnet %q is not an %s subnet", ErrInvalid, s, fam)
	}
	if p != p.Masked() {
		return netip.Prefix{}, fmt.Errorf("%w: subnet %q has host bits set (did you mean %s?)", ErrInvalid, s, p.Masked())
	}
	max := 30
	if want6 {
		max = 126
	}
	if p.Bits() > max || p.Bits() < 8 {
		return netip.Prefix{}, fmt.Errorf("%w: subnet %q: prefix length must be between 8 and %d", ErrInvalid, s, max)
	}
	return p, nil
}

// defaultSubnetCandidates are the private /24s tried, in order, when create is
// given no --subnet: 10.89.0.0/24 ... 10.89.255.0/24, then 10.90.x, ...
// (podman uses 10.88/16 for its default network and docker 172.17/16).
func defaultSubnetCandidates(yield func(netip.Prefix) bool) {
	for second := 89; second < 128; second++ {
		for third := 0; third < 256; third++ {
			p := netip.PrefixFrom(netip.AddrFrom4([4]byte{10, byte(second), byte(third), 0}), 24)
			if !yield(p) {
				return
			}
		}
	}
}

// pickSubnet returns the first candidate that overlaps none of taken.
func pickSubnet(taken []netip.Prefix) (netip.Prefix, error) {
	var found netip.Prefix
	defaultSubnetCandidates(func(p netip.Prefix) bool {
		for _, t := range taken {
			if t.Overlaps(p) {
				return true
			}
		}
		found = p
		return false
	})
	if !found.IsValid() {
		return found, errors.New("no free private /24 subnet in 10.89.0.0-10.127.255.0: pass --subnet")
	}
	return found, nil
}

// macFor makes a locally administered unicast MAC from the IPv4 address
// (docker's 02:42:<ip> scheme): unique within the subnet, and stable across a
// reconnect, so neighbours' ARP caches stay right.
func macFor(ip netip.Addr) net.HardwareAddr {
	mac := make(net.HardwareAddr, 6)
	mac[0], mac[1] = 0x02, 0x42
	if ip.Is4() {
		b := ip.As4()
		copy(mac[2:], b[:])
		return mac
	}
	_, _ = rand.Read(mac[2:])
	return mac
}

func parseMAC(s string) (net.HardwareAddr, error) {
	hw, err := net.ParseMAC(s)
	if err != nil || len(hw) != 6 {
		return nil, fmt.Errorf("%w: mac %q: want six colon-separated hex bytes", ErrInvalid, s)
	}
	if hw[0]&1 == 1 {
		return nil, fmt.Errorf("%w: mac %q is a multicast address", ErrInvalid, s)
	}
	return hw, nil
}
