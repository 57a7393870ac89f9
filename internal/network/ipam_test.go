package network

import (
	"errors"
	"net/netip"
	"strings"
	"testing"
)

func TestAllocate(t *testing.T) {
	p := netip.MustParsePrefix
	a := netip.MustParseAddr
	set := func(ss ...string) map[netip.Addr]bool {
		m := map[netip.Addr]bool{}
		for _, s := range ss {
			m[a(s)] = true
		}
		return m
	}
	for _, c := range []struct {
		name, subnet, gw, last string
		used                   map[netip.Addr]bool
		want                   string // "" means ErrExhausted
	}{
		{"first skips network and gateway", "10.0.0.0/24", "10.0.0.1", "", nil, "10.0.0.2"},
		{"round robin after last", "10.0.0.0/24", "10.0.0.1", "10.0.0.7", nil, "10.0.0.8"},
		{"skips used", "10.0.0.0/24", "10.0.0.1", "10.0.0.7", set("10.0.0.8", "10.0.0.9"), "10.0.0.10"},
		{"never broadcast, wraps", "10.0.0.0/24", "10.0.0.1", "10.0.0.254", nil, "10.0.0.2"},
		{"gateway elsewhere", "10.0.0.0/24", "10.0.0.254", "10.0.0.252", nil, "10.0.0.253"},
		{"last outside subnet restarts", "10.0.0.0/24", "10.0.0.1", "192.168.0.9", nil, "10.0.0.2"},
		{"/30 has one host beside gw", "10.0.0.0/30", "10.0.0.1", "", nil, "10.0.0.2"},
		{"/30 exhausted", "10.0.0.0/30", "10.0.0.1", "", set("10.0.0.2"), ""},
		{"ipv6", "fd00::/64", "fd00::1", "", nil, "fd00::2"},
		{"ipv6 round robin", "fd00::/64", "fd00::1", "fd00::ff", set("fd00::100"), "fd00::101"},
	} {
		t.Run(c.name, func(t *testing.T) {
			var last netip.Addr
			if c.last != "" {
				last = a(c.last)
			}
			got, err := allocate(p(c.subnet), a(c.gw), last, c.used)
			if c.want == "" {
				if !errors.Is(err, ErrExhausted) {
					t.Fatalf("got %v, %v; want ErrExhausted", got, err)
				}
				return
			}
			if err != nil || got != a(c.want) {
				t.Fatalf("got %v, %v; want %s", got, err, c.want)
			}
		})
	}
}

func TestAllocateFillsSubnet(t *testing.T) {
	subnet, gw := netip.MustParsePrefix("10.1.0.0/28"), netip.MustParseAddr("10.1.0.1")
	used := map[netip.Addr]bool{}
	var last netip.Addr
	for i := 0; i < 13; i++ { // 16 - network - broadcast - gateway
		a, err := allocate(subnet, gw, last, used)
		if err != nil {
			t.Fatalf("allocation %d: %v", i, err)
		}
		if used[a] || !usable(subnet, gw, a) {
			t.Fatalf("allocation %d: %s reused or unusable", i, a)
		}
		used[a], last = true, a
	}
	if _, err := allocate(subnet, gw, last, used); !errors.Is(err, ErrExhausted) {
		t.Fatalf("full subnet: %v", err)
	}
}

func TestParseSubnet(t *testing.T) {
	for _, c := range []struct {
		in     string
		v6     bool
		errHas string
	}{
		{"10.89.0.0/24", false, ""},
		{"fd00:1::/64", true, ""},
		{"10.89.0.5/24", false, "host bits"},
		{"10.89.0.0", false, "subnet"},
		{"fd00::/64", false, "not an IPv4"},
		{"10.0.0.0/8", true, "not an IPv6"},
		{"10.0.0.0/31", false, "prefix length"},
		{"0.0.0.0/4", false, "prefix length"},
		{"::ffff:10.0.0.0/120", false, "not an IPv4"},
	} {
		_, err := parseSubnet(c.in, c.v6)
		if c.errHas == "" && err != nil {
			t.Errorf("%s: %v", c.in, err)
		}
		if c.errHas != "" && (err == nil || !strings.Contains(err.Error(), c.errHas) || !errors.Is(err, ErrInvalid)) {
			t.Errorf("%s: got %v, want error with %q", c.in, err, c.errHas)
		}
	}
}

func TestPickSubnet(t *testing.T) {
	p := netip.MustParsePrefix
	got, err := pickSubnet([]netip.Prefix{p("10.89.0.0/24"), p("10.89.1.128/25")})
	if err != nil || got != p("10.89.2.0/24") {
		t.Fatalf("got %v %v", got, err)
	}
	if _, err := pickSubnet([]netip.Prefix{p("10.0.0.0/8")}); err == nil {
		t.Fatal("10/8 taken: want an error")
	}
}

func TestLastAddr(t *testing.T) {
	for in, want := range map[string]string{"10.0.0.0/24": "10.0.0.255", "10.0.0.0/22": "10.0.3.255", "fd00::/120": "fd00::ff"} {
		if got := lastAddr(netip.MustParsePrefix(in)); got.String() != want {
			t.Errorf("%s: %s, want %s", in, got, want)
		}
	}
}

func TestMAC(t *testing.T) {
	if got := macFor(netip.MustParseAddr("10.89.0.2")).String(); got != "02:42:0a:59:00:02" {
		t.Errorf("macFor: %s", got)
	}
	if m := macFor(netip.MustParseAddr("fd00::2")); m[0] != 0x02 || m[1] != 0x42 {
		t.Errorf("macFor v6: %s", m)
	}
	if m := randomMAC(); m[0]&1 != 0 || m[0]&2 == 0 {
		t.Errorf("randomMAC not unicast+local: %s", m)
	}
	for in, ok := range map[string]bool{"02:00:00:00:00:01": true, "01:00:5e:00:00:01": false, "zz": false, "02:00:00:00:00:00:00:01": false} {
		if _, err := parseMAC(in); (err == nil) != ok {
			t.Errorf("parseMAC(%s): %v", in, err)
		}
	}
}
