package network

import (
	"net/netip"
	"strings"
	"testing"
)

func TestParsePort(t *testing.T) {
	for _, c := range []struct {
		in     string
		want   string // PortMapping.String(), or "" for an error
		errHas string
	}{
		{"8080:80", "8080:80/tcp", ""},
		{"8080:80/udp", "8080:80/udp", ""},
		{"8080:80/TCP", "8080:80/tcp", ""},
		{"127.0.0.1:8080:80", "127.0.0.1:8080:80/tcp", ""},
		{"[::ffff:192.0.2.1]:53:53/udp", "192.0.2.1:53:53/udp", ""},
		{"80", "", "hostPort:containerPort"},
		{"a:b:c:d", "", "hostPort:containerPort"},
		{"0:80", "", "host port"},
		{"70000:80", "", "host port"},
		{"80:x", "", "container port"},
		{"8080:80/sctp", "", "tcp or udp"},
		{"host:8080:80", "", "not an IP address"},
		{"[2001:db8::1]:8080:80", "[2001:db8::1]:8080:80/tcp", ""},
		{"[fe80::1%eth0]:8080:80", "", "zone"},
		{"[::1:8080:80", "", "unterminated"},
	} {
		got, err := ParsePort(c.in)
		if c.want != "" {
			if err != nil || got.String() != c.want {
				t.Errorf("%s: got %v %v, want %s", c.in, got, err, c.want)
			}
			continue
		}
		if err == nil || !strings.Contains(err.Error(), c.errHas) || !strings.Contains(err.Error(), c.in) {
			t.Errorf("%s: got %v, want an error naming the input and %q", c.in, err, c.errHas)
		}
	}
}

func TestPortsConflict(t *testing.T) {
	pm := func(ip string, hp uint16, proto string) PortMapping {
		p := PortMapping{HostPort: hp, ContainerPort: 1, Protocol: proto}
		if ip != "" {
			p.HostIP = netip.MustParseAddr(ip)
		}
		return p
	}
	for _, c := range []struct {
		a, b PortMapping
		want bool
	}{
		{pm("", 80, "tcp"), pm("", 80, "tcp"), true},
		{pm("", 80, "tcp"), pm("", 80, "udp"), false}, // tcp and udp on one port are fine
		{pm("", 80, "tcp"), pm("", 81, "tcp"), false},
		{pm("10.0.0.1", 80, "tcp"), pm("", 80, "tcp"), true},
		{pm("10.0.0.1", 80, "tcp"), pm("10.0.0.2", 80, "tcp"), false},
		{pm("10.0.0.1", 80, "tcp"), pm("10.0.0.1", 80, "tcp"), true},
	} {
		if got := portsConflict(c.a, c.b); got != c.want {
			t.Errorf("%s vs %s: %t", c.a, c.b, got)
		}
	}
}
