package network

import (
	"fmt"
	"net/netip"
	"strconv"
	"strings"
)

// ParsePort parses a -p value: [hostIP:]hostPort:containerPort[/tcp|udp].
// An IPv6 host address is written in brackets: [2001:db8::1]:8080:80; it
// needs a dual-stack network. Without a host address a dual-stack endpoint
// is published on IPv4 and IPv6.
func ParsePort(s string) (PortMapping, error) {
	bad := func(why string) (PortMapping, error) {
		return PortMapping{}, fmt.Errorf("%w: port %q: %s (want [hostIP:]hostPort:containerPort[/tcp|udp])", ErrInvalid, s, why)
	}
	pm := PortMapping{Protocol: "tcp"}
	rest := s
	if i := strings.LastIndexByte(rest, '/'); i >= 0 {
		pm.Protocol = strings.ToLower(rest[i+1:])
		rest = rest[:i]
		if pm.Protocol != "tcp" && pm.Protocol != "udp" {
			return bad("protocol must be tcp or udp")
		}
	}
	var host string
	if strings.HasPrefix(rest, "[") {
		end := strings.Index(rest, "]:")
		if end < 0 {
			return bad("unterminated [IPv6] host address")
		}
		host, rest = rest[1:end], rest[end+2:]
	} else if parts := strings.Split(rest, ":"); len(parts) == 3 {
		host, rest = parts[0], parts[1]+":"+parts[2]
	} else if len(parts) != 2 {
		return bad("need hostPort:containerPort")
	}
	if host != "" {
		a, err := netip.ParseAddr(host)
		if err != nil {
			return bad("host address " + strconv.Quote(host) + " is not an IP address")
		}
		if a.Zone() != "" {
			return bad("host address " + strconv.Quote(host) + " has a zone")
		}
		pm.HostIP = a.Unmap()
	}
	hp, cp, _ := strings.Cut(rest, ":")
	h, err := parsePortNum(hp)
	if err != nil {
		return bad("host port: " + err.Error())
	}
	c, err := parsePortNum(cp)
	if err != nil {
		return bad("container port: " + err.Error())
	}
	pm.HostPort, pm.ContainerPort = h, c
	return pm, nil
}

func parsePortNum(s string) (uint16, error) {
	n, err := strconv.ParseUint(s, 10, 16)
	if err != nil || n == 0 {
		return 0, fmt.Errorf("%q is not a port number 1-65535", s)
	}
	return uint16(n), nil
}

// portsConflict reports whether two mappings claim the same host socket: same
// protocol and port, and the same address or either on every address.
func portsConflict(a, b PortMapping) bool {
	if a.Protocol != b.Protocol || a.HostPort != b.HostPort {
		return false
	}
	return !a.HostIP.IsValid() || !b.HostIP.IsValid() || a.HostIP == b.HostIP
}
