// Connecting an endpoint: a netns joins a network (lease, veth, addresses,
// routes, port forwards); an endpoint is the lease that records it.

package network

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/vishvananda/netlink"

	"berth/internal/killpoint"
	"berth/internal/state"
)

// ConnectOptions say which namespace to connect and how.
type ConnectOptions struct {
	// Netns is a netns name (in the netns dir) or a path; Container is a
	// container id. With only Container, the netns is found through the
	// runtime's state; with both, Netns is used and the endpoint is keyed by
	// the container id.
	Netns     string
	Container string
	// CreateNetns creates the named netns if missing; disconnect then
	// removes it.
	CreateNetns bool
	Ifname      string // default eth0
	IP          string // requested IPv4 address; default: the next free one
	IP6         string
	MAC         string
	Ports       []PortMapping
}

// endpointID is the stable key of the target.
func (m *Manager) endpointID(o *ConnectOptions) (id, nsPath string, err error) {
	if o.Ifname == "" {
		o.Ifname = DefaultIfname
	}
	if err := validIfname(o.Ifname); err != nil {
		return "", "", err
	}
	if o.Netns != "" {
		if nsPath, err = m.resolveNetns(o.Netns); err != nil {
			return "", "", err
		}
		if o.CreateNetns && filepath.Dir(nsPath) != filepath.Clean(m.netnsDir) {
			return "", "", fmt.Errorf("%w: --create-netns creates named netns in %s, not %s", ErrInvalid, m.netnsDir, nsPath)
		}
	}
	switch {
	case o.Container != "":
		// Keyed by container even when the netns path is given (the
		// runtime passes /proc/PID/ns/net), so disconnect works by id
		// after the process is gone.
		if strings.ContainsAny(o.Container, "/\x00") || o.Container == "." || o.Container == ".." {
			return "", "", fmt.Errorf("%w: container id %q", ErrInvalid, o.Container)
		}
		if o.CreateNetns {
			return "", "", fmt.Errorf("%w: --create-netns needs --netns NAME", ErrInvalid)
		}
		id = "container:" + o.Container
	case o.Netns != "":
		id = nsPath
	default:
		return "", "", fmt.Errorf("%w: no netns or container given", ErrInvalid)
	}
	if o.Ifname != DefaultIfname {
		id += "#" + o.Ifname
	}
	return id, nsPath, nil
}

// Connect attaches a network namespace to the network and returns its
// endpoint. Connecting an already connected, live endpoint returns it
// unchanged.
func (m *Manager) Connect(ctx context.Context, name string, o ConnectOptions) (_ *Endpoint, retErr error) {
	id, nsPath, err := m.endpointID(&o)
	if err != nil {
		return nil, err
	}
	n, err := m.loadNetwork(name)
	if err != nil {
		return nil, err
	}
	if n.Pending {
		return nil, fmt.Errorf("%w: network %s: its create did not finish (run berth network create %s again, or rm it)", ErrInvalid, name, name)
	}
	initPid, initStart := 0, uint64(0)
	if nsPath == "" {
		if initPid, initStart, err = containerInit(m.runtimeRoot, o.Container); err != nil {
			return nil, err
		}
		nsPath = "/proc/" + strconv.Itoa(initPid) + "/ns/net"
	}
	req, err := parseConnectRequest(n, o)
	if err != nil {
		return nil, err
	}

	h, err := hostHandle()
	if err != nil {
		return nil, err
	}
	defer h.Close()
	br, g, err := m.readyNetwork(h, n, name, id, o.Ports)
	if err != nil {
		return nil, err
	}
	defer g.Unlock()

	// The network lock is taken before the netns is created, so prune (which
	// holds every network lock while it scans) never sees a netns of an
	// unfinished connect and takes it for a leak.
	l, err := m.lockNetwork(name)
	if err != nil {
		return nil, err
	}
	defer l.Unlock()

	made := netnsForeign
	if o.CreateNetns {
		if made, err = m.createOwnedNetns(nsPath, name); err != nil {
			return nil, fmt.Errorf("create netns %s: %w", nsPath, err)
		}
	}
	dropNetns := made == netnsCreated // on failure: undo what this connect made
	defer func() {
		if retErr != nil && dropNetns {
			if err := m.removeOwnedNetns(nsPath, nil); err != nil {
				retErr = errors.Join(retErr, err)
			}
		}
	}()
	nsf, nsid, err := openNetns(nsPath)
	if err != nil {
		return nil, fmt.Errorf("netns: %w", err)
	}
	defer nsf.Close()
	if initPid > 0 && !stillInit(initPid, initStart) {
		return nil, fmt.Errorf("container %s: %w", o.Container, state.ErrNotRunning)
	}

	lf, err := m.loadLeases(name)
	if err != nil {
		return nil, err
	}
	fw, err := newFirewall()
	if err != nil {
		return nil, err
	}
	if old, err := m.reconnect(h, fw, lf, id, nsid, req, o.Ports); old != nil || err != nil {
		return old, err
	}
	if err := m.gcStale(h, fw, lf); err != nil {
		return nil, err
	}
	ep, mac, own, err := newEndpoint(n, name, lf, id, nsPath, nsid, made, req, o)
	if err != nil {
		return nil, err
	}
	dropNetns = own

	// The lease is saved, unfinished, before anything it names exists: the
	// veth is then created with the MAC it records, so a connect killed at
	// any later point leaves proof of what it made (see Endpoint.Pending).
	lf.Endpoints[id] = ep
	if err := m.saveLeases(name, lf); err != nil {
		delete(lf.Endpoints, id)
		return nil, fmt.Errorf("save leases: %w", err)
	}
	killpoint.At("network connect: lease reserved")
	defer func() {
		if retErr != nil {
			var errs []error
			if err := m.teardown(h, fw, ep, false); err != nil {
				errs = append(errs, err)
			}
			delete(lf.Endpoints, id)
			if err := m.saveLeases(name, lf); err != nil {
				errs = append(errs, fmt.Errorf("release lease: %w", err))
			}
			retErr = errors.Join(append([]error{retErr}, errs...)...)
		}
	}()
	if err := plumb(h, fw, br, nsf, ep, mac); err != nil {
		return nil, err
	}
	ep.Pending = false
	if err := m.saveLeases(name, lf); err != nil {
		ep.Pending = true
		return nil, fmt.Errorf("save leases: %w", err)
	}
	killpoint.At("network connect: lease saved")
	return ep, nil
}

// plumb makes what the leased endpoint ep names: the veth pair into the
// netns open as nsf, with its addresses and routes, and its port forwards.
func plumb(h *netlink.Handle, fw *firewall, br netlink.Link, nsf *os.File, ep *Endpoint, mac net.HardwareAddr) error {
	if err := addVeth(h, br, int(nsf.Fd()), ep, mac); err != nil {
		return err
	}
	killpoint.At("network connect: veth created")
	if len(ep.Ports) == 0 {
		return nil
	}
	fw.portRules(ep)
	if err := fw.c.Flush(); err != nil {
		return fmt.Errorf("nftables: publish ports: %w", err)
	}
	killpoint.At("network connect: ports published")
	return flushUDPConntrack(ep.Ports)
}

// connectRequest is what a connect asks for beyond a lease: addresses and
// a MAC (unset: allocated, derived).
type connectRequest struct {
	ip, ip6 netip.Addr
	mac     net.HardwareAddr
}

// parseConnectRequest checks the addresses, MAC and ports asked for
// against network n, before anything is locked or made.
func parseConnectRequest(n *Network, o ConnectOptions) (connectRequest, error) {
	var req connectRequest
	var err error
	if o.IP != "" {
		if req.ip, err = netip.ParseAddr(o.IP); err != nil || !usable(n.Subnet, n.Gateway, req.ip) {
			return req, fmt.Errorf("%w: ip %q is not a free host address in %s", ErrInvalid, o.IP, n.Subnet)
		}
	}
	if o.IP6 != "" {
		if req.ip6, err = netip.ParseAddr(o.IP6); err != nil || !n.Subnet6.IsValid() || !usable(n.Subnet6, n.Gateway6, req.ip6) {
			return req, fmt.Errorf("%w: ip6 %q is not a host address in the network's IPv6 subnet", ErrInvalid, o.IP6)
		}
	}
	if o.MAC != "" {
		if req.mac, err = parseMAC(o.MAC); err != nil {
			return req, err
		}
	}
	for i, p := range o.Ports {
		// Library callers build PortMapping themselves; hold them to what
		// ParsePort guarantees.
		if (p.Protocol != "tcp" && p.Protocol != "udp") || p.HostPort == 0 || p.ContainerPort == 0 {
			return req, fmt.Errorf("%w: port %s: want ports 1-65535 and protocol tcp or udp", ErrInvalid, p)
		}
		if p.HostIP.Is6() && !n.Subnet6.IsValid() {
			return req, fmt.Errorf("%w: port %s: publishing on an IPv6 address needs a network with --ipv6", ErrInvalid, p)
		}
		for _, q := range o.Ports[:i] {
			if portsConflict(p, q) {
				return req, fmt.Errorf("%w: ports %s and %s claim the same host port", ErrInvalid, p, q)
			}
		}
	}
	return req, nil
}

// readyNetwork returns n's bridge, repairing the bridge and the firewall
// when they are not as the definition says (a reboot, a flushed
// ruleset), and reserves the host ports asked for. Both need the global
// lock (taken before any network lock): it is returned held, or nil when
// neither was needed; the caller unlocks it when the connect is done.
func (m *Manager) readyNetwork(h *netlink.Handle, n *Network, name, id string, ports []PortMapping) (netlink.Link, *lock, error) {
	br, brErr := h.LinkByName(n.Bridge)
	healthy := brErr == nil && br.Attrs().Flags&net.FlagUp != 0 && firewallHealthy(n)
	if healthy && len(ports) == 0 {
		return br, nil, nil
	}
	g, err := m.lockGlobal()
	if err != nil {
		return nil, nil, err
	}
	if !healthy {
		if br, err = ensureBridge(h, n); err == nil {
			if err = m.ensureFirewall(n); err == nil {
				err = m.restorePorts(n)
			}
		}
	}
	if err == nil {
		err = m.checkPorts(name, id, ports)
	}
	if err != nil {
		g.Unlock()
		return nil, nil, err
	}
	return br, g, nil
}

// reconnect answers a connect of an id that has a lease already: the live
// endpoint itself when the lease is finished, in the same netns and its
// link is there (if the request matches it); otherwise the old endpoint
// is taken down and its lease dropped, and reconnect returns nil for a
// fresh connect.
func (m *Manager) reconnect(h *netlink.Handle, fw *firewall, lf *leaseFile, id string, nsid fileID, req connectRequest, ports []PortMapping) (*Endpoint, error) {
	old, ok := lf.Endpoints[id]
	if !ok {
		return nil, nil
	}
	if !old.Pending && old.NetnsDev == nsid.Dev && old.NetnsIno == nsid.Ino {
		if _, err := h.LinkByName(old.HostVeth); err == nil {
			if err := sameRequest(old, req.ip, req.ip6, req.mac, ports); err != nil {
				return nil, err
			}
			return old, nil
		}
	}
	// Unfinished (its connect was killed), the namespace replaced or the
	// link gone: take the old endpoint down before connecting anew.
	if err := m.teardown(h, fw, old, false); err != nil {
		return nil, err
	}
	delete(lf.Endpoints, id)
	return nil, nil
}

// newEndpoint makes the (pending) endpoint of a connect: its addresses
// (the ones asked for, or the next free ones), its MAC (asked for, or
// derived from the IPv4 address) and whether it owns its netns.
func newEndpoint(n *Network, name string, lf *leaseFile, id, nsPath string, nsid fileID, made netnsMade, req connectRequest, o ConnectOptions) (*Endpoint, net.HardwareAddr, bool, error) {
	used := map[netip.Addr]bool{}
	shared := false // another (live) endpoint of this network is in the netns
	for _, e := range lf.Endpoints {
		used[e.IPv4.Addr()] = true
		if e.IPv6.IsValid() {
			used[e.IPv6.Addr()] = true
		}
		shared = shared || e.Netns == nsPath
	}
	// The endpoint owns (and its disconnect removes) a netns this connect
	// created, or one that a connect of this network made and was killed
	// before it finished, unless another endpoint is in it.
	own := made == netnsCreated || (made == netnsLeft && !shared)
	ep := &Endpoint{
		ID: id, Network: name, Container: o.Container, Netns: nsPath,
		NetnsDev: nsid.Dev, NetnsIno: nsid.Ino, OwnNetns: own,
		Ifname: o.Ifname, HostVeth: vethName(name, id), HostMAC: randomMAC().String(),
		Gateway: n.Gateway, Gateway6: n.Gateway6, Ports: o.Ports, Created: time.Now().UTC(),
		Pending: true,
	}
	var err error
	ip := req.ip
	if ip.IsValid() {
		if used[ip] {
			return nil, nil, false, fmt.Errorf("%w: ip %s is already leased in network %s", ErrInvalid, ip, name)
		}
	} else if ip, err = allocate(n.Subnet, n.Gateway, lf.Last4, used); err != nil {
		return nil, nil, false, fmt.Errorf("network %s: %w", name, err)
	}
	ep.IPv4 = netip.PrefixFrom(ip, n.Subnet.Bits())
	if n.Subnet6.IsValid() {
		ip6 := req.ip6
		if ip6.IsValid() {
			if used[ip6] {
				return nil, nil, false, fmt.Errorf("%w: ip6 %s is already leased in network %s", ErrInvalid, ip6, name)
			}
		} else if ip6, err = allocate(n.Subnet6, n.Gateway6, lf.Last6, used); err != nil {
			return nil, nil, false, fmt.Errorf("network %s: %w", name, err)
		}
		ep.IPv6 = netip.PrefixFrom(ip6, n.Subnet6.Bits())
	}
	mac := req.mac
	if mac == nil {
		mac = macFor(ip)
	}
	ep.MAC = mac.String()
	if ip.Is4() && !req.ip.IsValid() {
		lf.Last4 = ip
	}
	if ep.IPv6.IsValid() && !req.ip6.IsValid() {
		lf.Last6 = ep.IPv6.Addr()
	}
	return ep, mac, own, nil
}

// sameRequest accepts a repeated connect only when what it asks for (if
// anything) is what the live endpoint already has; a different address, MAC
// or port list must not be silently ignored.
func sameRequest(ep *Endpoint, ip, ip6 netip.Addr, mac net.HardwareAddr, ports []PortMapping) error {
	differ := func(what, want, have string) error {
		return fmt.Errorf("%w: %s is already connected with %s %s (asked for %s); disconnect it first", ErrInvalid, ep.ID, what, have, want)
	}
	if ip.IsValid() && ip != ep.IPv4.Addr() {
		return differ("ip", ip.String(), ep.IPv4.Addr().String())
	}
	if ip6.IsValid() && ip6 != ep.IPv6.Addr() {
		return differ("ip6", ip6.String(), ep.IPv6.Addr().String())
	}
	if mac != nil && mac.String() != ep.MAC {
		return differ("mac", mac.String(), ep.MAC)
	}
	if len(ports) > 0 {
		key := func(ps []PortMapping) string {
			ss := make([]string, len(ps))
			for i, p := range ps {
				ss[i] = p.String()
			}
			sort.Strings(ss)
			return strings.Join(ss, ",")
		}
		if key(ports) != key(ep.Ports) {
			return differ("ports", key(ports), key(ep.Ports))
		}
	}
	return nil
}

// checkPorts refuses host ports another endpoint already publishes, in any
// network (a second DNAT rule would silently lose to the first). The caller
// holds the global lock, which every port change takes.
func (m *Manager) checkPorts(self, id string, ports []PortMapping) error {
	if len(ports) == 0 {
		return nil
	}
	nets, err := m.listNetworks()
	if err != nil {
		return err
	}
	for _, n := range nets {
		lf, err := m.loadLeases(n.Name)
		if err != nil {
			return err
		}
		for _, e := range lf.Endpoints {
			if n.Name == self && e.ID == id {
				continue
			}
			for _, p := range ports {
				for _, q := range e.Ports {
					if !portsConflict(p, q) {
						continue
					}
					if !endpointDead(e) {
						return fmt.Errorf("%w: host port %s is already published by %s in network %s", ErrInvalid, p, e.ID, n.Name)
					}
					// A dead endpoint holds the port: collect it now, or its
					// DNAT rule would shadow the new one (first match wins).
					if err := m.collect(n.Name); err != nil {
						return err
					}
				}
			}
		}
	}
	return nil
}
