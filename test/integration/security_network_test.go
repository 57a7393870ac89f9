package integration

import (
	"encoding/binary"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// §2.I of the security reference (the rest of it is pinned by the network
// tests in network_test.go and internal/network).

// routerAdvert builds an ICMPv6 Router Advertisement announcing a default
// route (lifetime 1800 s) and an autoconfigurable prefix. The kernel fills
// in the checksum for ICMPv6 raw sockets.
func routerAdvert(prefix netip.Prefix) []byte {
	b := make([]byte, 16+32)
	b[0] = 134 // type: router advertisement
	b[4] = 64  // cur hop limit
	binary.BigEndian.PutUint16(b[6:], 1800)
	o := b[16:]
	o[0], o[1] = 3, 4 // prefix information, 4*8 bytes
	o[2] = byte(prefix.Bits())
	o[3] = 0xc0 // on-link, autonomous
	binary.BigEndian.PutUint32(o[4:], 86400)
	binary.BigEndian.PutUint32(o[8:], 14400)
	a := prefix.Addr().As16()
	copy(o[16:], a[:])
	return b
}

// TestCVE_2020_10749_RouterAdvertFromContainer: a container (CAP_NET_RAW is
// in the default capabilities) sends rogue IPv6 router advertisements on its
// network. The host side (the bridge, in the network's host netns) must not
// take a default route or an address from them.
func TestCVE_2020_10749_RouterAdvertFromContainer(t *testing.T) {
	w := nwNewWorld(t, false)
	w.mustBerth(t, "network", "create", "ra", "--bridge", w.bridge, "--subnet", nwTestSubnet, "--ipv6", "fd00:89:78::/64")
	t.Cleanup(func() { w.berth("network", "rm", "--force", "ra") })
	w.connect(t, "ra", "--netns", "ra1", "--create-netns")
	ns := w.cns("ra1")
	// The advertisement's source must be a usable (non-tentative) link-local.
	deadline := time.Now().Add(10 * time.Second)
	for {
		out, _ := exec.Command("nsenter", "--net="+ns, "ip", "-6", "addr", "show", "dev", "eth0", "scope", "link").CombinedOutput()
		if strings.Contains(string(out), "fe80") && !strings.Contains(string(out), "tentative") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no usable link-local address in the container netns:\n%s", out)
		}
		time.Sleep(100 * time.Millisecond)
	}
	routesBefore := nwRun(t, "ip", "-n", w.host, "-6", "route", "show")
	rogue := netip.MustParsePrefix("2001:db8:bad::/64")
	nwIn(t, ns, func() error {
		ifi, err := net.InterfaceByName("eth0")
		if err != nil {
			return err
		}
		fd, err := unix.Socket(unix.AF_INET6, unix.SOCK_RAW|unix.SOCK_CLOEXEC, unix.IPPROTO_ICMPV6)
		if err != nil {
			return os.NewSyscallError("socket", err)
		}
		defer unix.Close(fd)
		// RAs are only accepted with hop limit 255 (RFC 4861).
		if err := unix.SetsockoptInt(fd, unix.IPPROTO_IPV6, unix.IPV6_MULTICAST_HOPS, 255); err != nil {
			return err
		}
		if err := unix.SetsockoptInt(fd, unix.IPPROTO_IPV6, unix.IPV6_MULTICAST_IF, ifi.Index); err != nil {
			return err
		}
		to := &unix.SockaddrInet6{Addr: netip.MustParseAddr("ff02::1").As16(), ZoneId: uint32(ifi.Index)}
		for i := 0; i < 5; i++ {
			if err := unix.Sendto(fd, routerAdvert(rogue), 0, to); err != nil {
				return os.NewSyscallError("sendto", err)
			}
			time.Sleep(100 * time.Millisecond)
		}
		return nil
	})
	time.Sleep(500 * time.Millisecond)
	routes := nwRun(t, "ip", "-n", w.host, "-6", "route", "show")
	addrs := nwRun(t, "ip", "-n", w.host, "-6", "addr", "show")
	if strings.Contains(routes, "2001:db8:bad") || strings.Contains(addrs, "2001:db8:bad") {
		t.Errorf("the host took the rogue prefix:\n%s\n%s", routes, addrs)
	}
	if strings.Contains(routes, "default via fe80") && !strings.Contains(routesBefore, "default via fe80") {
		t.Errorf("the host took a default route from a container's advertisement:\n%s", routes)
	}
	if v := strings.TrimSpace(nwRun(t, "ip", "netns", "exec", w.host, "cat", "/proc/sys/net/ipv6/conf/"+w.bridge+"/accept_ra")); v != "0" {
		t.Errorf("accept_ra on the bridge = %s, want 0", v)
	}
}
