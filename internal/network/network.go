// Networks: create (idempotent, repairing what a killed create left),
// remove, list and inspect.

package network

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"strconv"
	"time"

	"github.com/vishvananda/netlink"

	"berth/internal/killpoint"
)

// CreateOptions are the parameters of Create; empty strings mean defaults.
type CreateOptions struct {
	Name     string
	Subnet   string // default: a free private /24
	Gateway  string // default: the subnet's first address
	Bridge   string // default: berthN, the first free N
	Subnet6  string // IPv6 subnet; empty: no IPv6
	Gateway6 string
	NoNAT    bool
}

// Create creates the network and its bridge, addresses and firewall rules. It
// is idempotent: creating an existing network with compatible options repairs
// and returns it; conflicting options are an error.
func (m *Manager) Create(ctx context.Context, o CreateOptions) (_ *Network, retErr error) {
	if err := ValidateName(o.Name); err != nil {
		return nil, err
	}
	g, err := m.lockGlobal()
	if err != nil {
		return nil, err
	}
	defer g.Unlock()
	h, err := hostHandle()
	if err != nil {
		return nil, err
	}
	defer h.Close()

	if n, err := m.loadNetwork(o.Name); err == nil {
		return m.finishCreate(h, n, o)
	} else if !errors.Is(err, ErrNotExist) {
		return nil, err
	}

	nets, err := m.listNetworks()
	if err != nil {
		return nil, err
	}
	n, err := newNetwork(h, o, nets)
	if err != nil {
		return nil, err
	}

	// The definition is saved, unfinished, before the bridge and rules
	// exist: a create killed at any later point leaves the record of what it
	// was making (the bridge by name and MAC, the rules by their tag), which
	// create finishes and rm removes.
	n.Pending = true
	if err := m.saveNetwork(n); err != nil {
		return nil, fmt.Errorf("save network %s: %w", n.Name, err)
	}
	killpoint.At("network create: definition saved")
	defer func() {
		if retErr == nil {
			return
		}
		// Roll back in teardown order: rules, then the bridge.
		if err := m.removeFirewall(n.Name, len(nets) == 0); err != nil {
			retErr = errors.Join(retErr, err)
		}
		if !n.BridgeExisted {
			if err := delOwnedLink(h, n.Bridge, n.Name, n.BridgeMAC); err != nil {
				retErr = errors.Join(retErr, err)
			}
		}
		os.RemoveAll(m.netDir(n.Name))
	}()
	if _, err := ensureBridge(h, n); err != nil {
		return nil, err
	}
	killpoint.At("network create: bridge up")
	if err := m.ensureFirewall(n); err != nil {
		return nil, err
	}
	killpoint.At("network create: rules written")
	n.Pending = false
	if err := m.saveNetwork(n); err != nil {
		return nil, fmt.Errorf("save network %s: %w", n.Name, err)
	}
	return n, nil
}

// finishCreate is create of a network that exists: the options must not
// contradict it, and its bridge, rules and port forwards are made again
// where they are missing (a reboot, a flushed ruleset, a create killed
// half-way, which this finishes).
func (m *Manager) finishCreate(h *netlink.Handle, n *Network, o CreateOptions) (*Network, error) {
	if err := compatible(n, o); err != nil {
		return nil, err
	}
	if _, err := ensureBridge(h, n); err != nil {
		return nil, err
	}
	if err := m.ensureFirewall(n); err != nil {
		return nil, err
	}
	if err := m.restorePorts(n); err != nil {
		return nil, err
	}
	if n.Pending { // a create that was killed, finished now
		n.Pending = false
		if err := m.saveNetwork(n); err != nil {
			return nil, fmt.Errorf("save network %s: %w", n.Name, err)
		}
	}
	return n, nil
}

// newNetwork decides a new network's subnets, gateways and bridge: the
// ones asked for, checked against the other networks and the host's
// routes, or free ones picked.
func newNetwork(h *netlink.Handle, o CreateOptions, nets []*Network) (*Network, error) {
	n := &Network{Name: o.Name, NAT: !o.NoNAT, Created: time.Now().UTC()}
	routes, err := hostPrefixes(h)
	if err != nil {
		return nil, err
	}
	// A route through the requested bridge itself is fine: that is the
	// user's pre-existing bridge being adopted.
	brIndex := -1
	if o.Bridge != "" {
		if l, err := h.LinkByName(o.Bridge); err == nil {
			brIndex = l.Attrs().Index
		}
	}
	if o.Subnet != "" {
		if n.Subnet, err = parseSubnet(o.Subnet, false); err != nil {
			return nil, err
		}
		for _, other := range nets {
			if other.Subnet.Overlaps(n.Subnet) {
				return nil, fmt.Errorf("%w: subnet %s overlaps network %s (%s)", ErrInvalid, n.Subnet, other.Name, other.Subnet)
			}
		}
		for _, r := range routes {
			if r.dst.Overlaps(n.Subnet) && r.link != brIndex {
				dev := strconv.Itoa(r.link)
				if l, err := h.LinkByIndex(r.link); err == nil {
					dev = l.Attrs().Name
				}
				return nil, fmt.Errorf("%w: subnet %s overlaps the host route %s dev %s", ErrInvalid, n.Subnet, r.dst, dev)
			}
		}
	} else {
		var taken []netip.Prefix
		for _, r := range routes {
			taken = append(taken, r.dst)
		}
		for _, other := range nets {
			taken = append(taken, other.Subnet)
		}
		if n.Subnet, err = pickSubnet(taken); err != nil {
			return nil, err
		}
	}
	if n.Gateway, err = pickGateway(n.Subnet, o.Gateway); err != nil {
		return nil, err
	}
	if o.Subnet6 != "" {
		if n.Subnet6, err = parseSubnet(o.Subnet6, true); err != nil {
			return nil, err
		}
		for _, other := range nets {
			if other.Subnet6.IsValid() && other.Subnet6.Overlaps(n.Subnet6) {
				return nil, fmt.Errorf("%w: subnet %s overlaps network %s (%s)", ErrInvalid, n.Subnet6, other.Name, other.Subnet6)
			}
		}
		if n.Gateway6, err = pickGateway(n.Subnet6, o.Gateway6); err != nil {
			return nil, err
		}
	} else if o.Gateway6 != "" {
		return nil, fmt.Errorf("%w: --gateway6 needs an IPv6 subnet", ErrInvalid)
	}
	if n.Bridge, err = pickBridge(h, o.Bridge, nets); err != nil {
		return nil, err
	}
	if l, err := h.LinkByName(n.Bridge); err == nil && l.Type() == "bridge" {
		n.BridgeExisted = true
	} else {
		n.BridgeMAC = randomMAC().String()
	}

	return n, nil
}

// compatible checks that create options do not contradict an existing network.
func compatible(n *Network, o CreateOptions) error {
	conflict := func(what, want, have string) error {
		return fmt.Errorf("%w: %s exists with %s %s (asked for %s)", ErrExist, n.Name, what, have, want)
	}
	if o.Subnet != "" && o.Subnet != n.Subnet.String() {
		return conflict("subnet", o.Subnet, n.Subnet.String())
	}
	if o.Gateway != "" && o.Gateway != n.Gateway.String() {
		return conflict("gateway", o.Gateway, n.Gateway.String())
	}
	if o.Bridge != "" && o.Bridge != n.Bridge {
		return conflict("bridge", o.Bridge, n.Bridge)
	}
	if o.Subnet6 != "" && o.Subnet6 != n.Subnet6.String() {
		return conflict("IPv6 subnet", o.Subnet6, n.Subnet6.String())
	}
	if o.NoNAT == n.NAT {
		return conflict("nat", strconv.FormatBool(!o.NoNAT), strconv.FormatBool(n.NAT))
	}
	return nil
}

func pickGateway(subnet netip.Prefix, s string) (netip.Addr, error) {
	if s == "" {
		return firstHost(subnet), nil
	}
	a, err := netip.ParseAddr(s)
	if err != nil {
		return a, fmt.Errorf("%w: gateway %q is not an IP address", ErrInvalid, s)
	}
	if !subnet.Contains(a) || a == subnet.Masked().Addr() || (a.Is4() && a == lastAddr(subnet)) {
		return a, fmt.Errorf("%w: gateway %s is not a host address in %s", ErrInvalid, a, subnet)
	}
	return a, nil
}

func pickBridge(h *netlink.Handle, want string, nets []*Network) (string, error) {
	used := map[string]string{}
	for _, n := range nets {
		used[n.Bridge] = n.Name
	}
	if want != "" {
		if err := validIfname(want); err != nil {
			return "", err
		}
		if other, ok := used[want]; ok {
			return "", fmt.Errorf("%w: bridge %s is used by network %s", ErrInvalid, want, other)
		}
		if l, err := h.LinkByName(want); err == nil {
			if l.Type() != "bridge" {
				return "", fmt.Errorf("%w: %s exists and is a %s, not a bridge", ErrInvalid, want, l.Type())
			}
			if other, ok := aliasNet(l); ok {
				return "", fmt.Errorf("%w: bridge %s was made by berth for network %s, which no longer exists (berth network prune removes it)", ErrInvalid, want, other)
			}
		}
		return want, nil
	}
	for i := 0; i < 10000; i++ {
		name := "berth" + strconv.Itoa(i)
		if _, ok := used[name]; ok {
			continue
		}
		if _, err := h.LinkByName(name); isNotFound(err) {
			return name, nil
		}
	}
	return "", errors.New("no free bridge name berth0..berth9999: pass --bridge")
}

// Remove deletes a network: rules, then endpoints' links, then the bridge,
// then its state. It refuses while endpoints are connected unless force.
func (m *Manager) Remove(ctx context.Context, name string, force bool) error {
	if err := ValidateName(name); err != nil {
		return err
	}
	g, err := m.lockGlobal()
	if err != nil {
		return err
	}
	defer g.Unlock()
	n, err := m.loadNetwork(name)
	if err != nil {
		return err
	}
	l, err := m.lockNetwork(name)
	if err != nil {
		return err
	}
	defer l.Unlock()
	lf, err := m.loadLeases(name)
	if err != nil {
		return err
	}
	live := 0
	for _, e := range lf.Endpoints {
		if !endpointDead(e) {
			live++
		}
	}
	if live > 0 && !force {
		return fmt.Errorf("%w: %s has %d endpoint(s); disconnect them or use --force", ErrInUse, name, live)
	}
	nets, err := m.listNetworks()
	if err != nil {
		return err
	}
	// Firewall first, so no DNAT rule points at an address that is about to
	// be reused or leak out through the default route.
	if err := m.removeFirewall(name, len(nets) <= 1); err != nil {
		return err
	}
	killpoint.At("network rm: rules removed")
	h, err := hostHandle()
	if err != nil {
		return err
	}
	defer h.Close()
	fw, err := newFirewall()
	if err != nil {
		return err
	}
	for id, e := range lf.Endpoints {
		e.Ports = nil // already removed with the network's rules
		if err := m.teardown(h, fw, e, true); err != nil {
			return err
		}
		delete(lf.Endpoints, id)
	}
	if err := m.saveLeases(name, lf); err != nil {
		return err
	}
	killpoint.At("network rm: endpoints removed")
	// What connects killed before saving their lease left: veths and netns,
	// each proven this network's.
	if err := m.removeUnleased(h, name); err != nil {
		return err
	}
	if err := delOwnedLink(h, n.Bridge, name, n.BridgeMAC); err != nil {
		return err
	}
	// A bridge that is not berth's (the user's, which the network was made
	// on) stays, without the addresses berth gave it.
	if err := delGatewayAddrs(h, n); err != nil {
		return err
	}
	killpoint.At("network rm: bridge removed")
	// Removed while still locked: a connect waiting for the lock then finds
	// no network.json and fails cleanly instead of writing into a dead dir.
	return os.RemoveAll(m.netDir(name))
}

// removeUnleased deletes the veths and named netns of network name that no
// lease records (the caller holds the network lock and released every lease).
func (m *Manager) removeUnleased(h *netlink.Handle, name string) error {
	links, err := retryDump(h.LinkList)
	if err != nil {
		return fmt.Errorf("list links: %w", err)
	}
	var errs []error
	for _, l := range links {
		if n, ok := aliasNet(l); ok && n == name && l.Type() == "veth" {
			if err := delOwnedLink(h, l.Attrs().Name, name, ""); err != nil {
				errs = append(errs, err)
			}
		}
	}
	mfs, err := m.markerFiles()
	if err != nil {
		return errors.Join(append(errs, err)...)
	}
	for _, mf := range mfs {
		if mf.mk == nil || mf.mk.Network != name {
			continue
		}
		if inUse, err := m.netnsInUse(mf.mk.Netns); err != nil {
			errs = append(errs, err)
		} else if !inUse {
			if err := m.removeOwnedNetns(mf.mk.Netns, nil); err != nil {
				errs = append(errs, err)
			}
		}
	}
	return errors.Join(errs...)
}

// NetworkInfo is a network with its endpoints, for ls and inspect.
type NetworkInfo struct {
	Network
	Endpoints []*Endpoint `json:"endpoints"`
}

// List returns every network with its endpoints.
func (m *Manager) List(ctx context.Context) ([]*NetworkInfo, error) {
	nets, err := m.listNetworks()
	if err != nil {
		return nil, err
	}
	out := make([]*NetworkInfo, 0, len(nets))
	for _, n := range nets {
		info, err := m.info(n)
		if err != nil {
			return nil, err
		}
		out = append(out, info)
	}
	return out, nil
}

// Inspect returns one network with its endpoints.
func (m *Manager) Inspect(ctx context.Context, name string) (*NetworkInfo, error) {
	n, err := m.loadNetwork(name)
	if err != nil {
		return nil, err
	}
	return m.info(n)
}

func (m *Manager) info(n *Network) (*NetworkInfo, error) {
	// Leases are replaced by rename, so reading without the lock sees a
	// whole file.
	lf, err := m.loadLeases(n.Name)
	if err != nil {
		return nil, err
	}
	info := &NetworkInfo{Network: *n, Endpoints: []*Endpoint{}}
	for _, e := range lf.Endpoints {
		info.Endpoints = append(info.Endpoints, e)
	}
	sortEndpoints(info.Endpoints)
	return info, nil
}

func sortEndpoints(eps []*Endpoint) {
	for i := 1; i < len(eps); i++ {
		for j := i; j > 0 && eps[j].IPv4.Addr().Less(eps[j-1].IPv4.Addr()); j-- {
			eps[j], eps[j-1] = eps[j-1], eps[j]
		}
	}
}
