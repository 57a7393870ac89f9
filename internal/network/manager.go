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

// Defaults; the environment variables exist so tests and benchmarks can
// isolate their state from the host's.
const (
	DefaultStateDir  = "/var/lib/berth/networks"
	EnvStateDir      = "BERTH_NETWORK_DIR"
	EnvNetnsDir      = "BERTH_NETNS_DIR"
	DefaultIfname    = "eth0"
	DefaultRuntimeRt = "/run/berth"
)

// Manager performs network operations on the host netns of the calling
// process, keeping state under its state dir.
type Manager struct {
	stateDir    string
	netnsDir    string
	runtimeRoot string
}

// Option configures a Manager.
type Option func(*Manager)

// WithStateDir sets where definitions and leases live (default $BERTH_NETWORK_DIR,
// else /var/lib/berth/networks).
func WithStateDir(d string) Option { return func(m *Manager) { m.stateDir = d } }

// WithNetnsDir sets where named netns are pinned (default $BERTH_NETNS_DIR,
// else /var/run/netns, the directory `ip netns` uses).
func WithNetnsDir(d string) Option { return func(m *Manager) { m.netnsDir = d } }

// WithRuntimeRoot sets the runtime state root used to resolve container ids
// (default /run/berth).
func WithRuntimeRoot(d string) Option { return func(m *Manager) { m.runtimeRoot = d } }

// New returns a Manager.
func New(opts ...Option) *Manager {
	m := &Manager{stateDir: DefaultStateDir, netnsDir: DefaultNetnsDir, runtimeRoot: DefaultRuntimeRt}
	if d := os.Getenv(EnvStateDir); d != "" {
		m.stateDir = d
	}
	if d := os.Getenv(EnvNetnsDir); d != "" {
		m.netnsDir = d
	}
	for _, o := range opts {
		o(m)
	}
	return m
}

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
	} else if !errors.Is(err, ErrNotExist) {
		return nil, err
	}

	nets, err := m.listNetworks()
	if err != nil {
		return nil, err
	}
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

// ensureFirewall (re)writes the table, base chains and this network's rules in
// one transaction. The caller holds the global lock.
func (m *Manager) ensureFirewall(n *Network) error {
	fw, err := newFirewall()
	if err != nil {
		return err
	}
	if err := fw.ensureBase(); err != nil {
		return err
	}
	if _, err := fw.delTagged([]string{chPostrouting, chForward}, func(t string) bool { return t == netTag(n.Name) }); err != nil {
		return err
	}
	fw.netRules(n)
	if err := fw.dockerUserRules(n, false); err != nil {
		return err
	}
	if err := fw.c.Flush(); err != nil {
		return fmt.Errorf("nftables: rules for network %s: %w", n.Name, err)
	}
	return nil
}

// restorePorts re-adds the DNAT rules of n's live endpoints (after a
// flushed ruleset, netavark's firewall-reload case). The caller holds the
// global lock; the network lock is taken here, so a concurrent disconnect
// cannot have its rules resurrected.
func (m *Manager) restorePorts(n *Network) error {
	l, err := m.lockNetwork(n.Name)
	if err != nil {
		return err
	}
	defer l.Unlock()
	return m.restorePortsLocked(n)
}

// restorePortsLocked is restorePorts for a caller holding the network lock.
func (m *Manager) restorePortsLocked(n *Network) error {
	lf, err := m.loadLeases(n.Name)
	if err != nil {
		return err
	}
	fw, err := newFirewall()
	if err != nil {
		return err
	}
	live := map[string]*Endpoint{}
	for id, e := range lf.Endpoints {
		if len(e.Ports) > 0 && !endpointDead(e) {
			live[epTag(n.Name, id)] = e
		}
	}
	if len(live) == 0 {
		return nil
	}
	if _, err := fw.delTagged([]string{chHostports}, func(t string) bool { return live[t] != nil }); err != nil {
		return err
	}
	for _, e := range live {
		fw.portRules(e)
	}
	if err := fw.c.Flush(); err != nil {
		return fmt.Errorf("nftables: restore published ports of %s: %w", n.Name, err)
	}
	return nil
}

// firewallHealthy reports whether n's rules are in place (after a reboot or
// an `nft flush ruleset` they are not, and connect repairs them).
func firewallHealthy(n *Network) bool {
	fw, err := newFirewall()
	if err != nil {
		return false
	}
	rules, err := fw.c.GetRules(fw.table, fw.chain(chForward))
	if err != nil {
		return false
	}
	for _, r := range rules {
		if ruleTag(r) == netTag(n.Name) {
			return true
		}
	}
	return false
}

// removeFirewall deletes every rule of network name (its own and its
// endpoints'); dropTable removes berth's table when no network is left.
func (m *Manager) removeFirewall(name string, dropTable bool) error {
	fw, err := newFirewall()
	if err != nil {
		return err
	}
	if err := fw.dockerUserRules(&Network{Name: name}, true); err != nil {
		return err
	}
	exists, owned, err := tableState()
	if err != nil {
		return err
	}
	if !exists {
		if err := fw.c.Flush(); err != nil {
			return fmt.Errorf("nftables: remove rules of %s: %w", name, err)
		}
		return nil
	}
	if dropTable && owned {
		fw.c.DelTable(fw.table)
	} else if _, err := fw.delTagged(allChains, func(t string) bool {
		n, _, ok := tagNet(t)
		return ok && n == name
	}); err != nil {
		return err
	}
	if err := fw.c.Flush(); err != nil {
		return fmt.Errorf("nftables: remove rules of %s: %w", name, err)
	}
	return nil
}

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
	var reqIP, reqIP6 netip.Addr
	if o.IP != "" {
		if reqIP, err = netip.ParseAddr(o.IP); err != nil || !usable(n.Subnet, n.Gateway, reqIP) {
			return nil, fmt.Errorf("%w: ip %q is not a free host address in %s", ErrInvalid, o.IP, n.Subnet)
		}
	}
	if o.IP6 != "" {
		if reqIP6, err = netip.ParseAddr(o.IP6); err != nil || !n.Subnet6.IsValid() || !usable(n.Subnet6, n.Gateway6, reqIP6) {
			return nil, fmt.Errorf("%w: ip6 %q is not a host address in the network's IPv6 subnet", ErrInvalid, o.IP6)
		}
	}
	var mac net.HardwareAddr
	if o.MAC != "" {
		if mac, err = parseMAC(o.MAC); err != nil {
			return nil, err
		}
	}
	for i, p := range o.Ports {
		// Library callers build PortMapping themselves; hold them to what
		// ParsePort guarantees.
		if (p.Protocol != "tcp" && p.Protocol != "udp") || p.HostPort == 0 || p.ContainerPort == 0 {
			return nil, fmt.Errorf("%w: port %s: want ports 1-65535 and protocol tcp or udp", ErrInvalid, p)
		}
		if p.HostIP.Is6() && !n.Subnet6.IsValid() {
			return nil, fmt.Errorf("%w: port %s: publishing on an IPv6 address needs a network with --ipv6", ErrInvalid, p)
		}
		for _, q := range o.Ports[:i] {
			if portsConflict(p, q) {
				return nil, fmt.Errorf("%w: ports %s and %s claim the same host port", ErrInvalid, p, q)
			}
		}
	}

	h, err := hostHandle()
	if err != nil {
		return nil, err
	}
	defer h.Close()

	// Lock order is global, then network. The global lock is needed to
	// reserve host ports across networks and to repair a network whose
	// bridge or rules vanished (reboot, flushed ruleset).
	br, brErr := h.LinkByName(n.Bridge)
	healthy := brErr == nil && br.Attrs().Flags&net.FlagUp != 0 && firewallHealthy(n)
	if !healthy || len(o.Ports) > 0 {
		g, err := m.lockGlobal()
		if err != nil {
			return nil, err
		}
		defer g.Unlock()
		if !healthy {
			if br, err = ensureBridge(h, n); err != nil {
				return nil, err
			}
			if err := m.ensureFirewall(n); err != nil {
				return nil, err
			}
			if err := m.restorePorts(n); err != nil {
				return nil, err
			}
		}
		if err := m.checkPorts(name, id, o.Ports); err != nil {
			return nil, err
		}
	}

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
	if old, ok := lf.Endpoints[id]; ok {
		if !old.Pending && old.NetnsDev == nsid.Dev && old.NetnsIno == nsid.Ino {
			if _, err := h.LinkByName(old.HostVeth); err == nil {
				if err := sameRequest(old, reqIP, reqIP6, mac, o.Ports); err != nil {
					return nil, err
				}
				return old, nil
			}
		}
		// Unfinished (its connect was killed), the namespace replaced or
		// the link gone: take the old endpoint down before connecting anew.
		if err := m.teardown(h, fw, old, false); err != nil {
			return nil, err
		}
		delete(lf.Endpoints, id)
	}
	if err := m.gcStale(h, fw, lf); err != nil {
		return nil, err
	}

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
	dropNetns = own
	ep := &Endpoint{
		ID: id, Network: name, Container: o.Container, Netns: nsPath,
		NetnsDev: nsid.Dev, NetnsIno: nsid.Ino, OwnNetns: own,
		Ifname: o.Ifname, HostVeth: vethName(name, id), HostMAC: randomMAC().String(),
		Gateway: n.Gateway, Gateway6: n.Gateway6, Ports: o.Ports, Created: time.Now().UTC(),
		Pending: true,
	}
	ip := reqIP
	if ip.IsValid() {
		if used[ip] {
			return nil, fmt.Errorf("%w: ip %s is already leased in network %s", ErrInvalid, ip, name)
		}
	} else if ip, err = allocate(n.Subnet, n.Gateway, lf.Last4, used); err != nil {
		return nil, fmt.Errorf("network %s: %w", name, err)
	}
	ep.IPv4 = netip.PrefixFrom(ip, n.Subnet.Bits())
	if n.Subnet6.IsValid() {
		ip6 := reqIP6
		if ip6.IsValid() {
			if used[ip6] {
				return nil, fmt.Errorf("%w: ip6 %s is already leased in network %s", ErrInvalid, ip6, name)
			}
		} else if ip6, err = allocate(n.Subnet6, n.Gateway6, lf.Last6, used); err != nil {
			return nil, fmt.Errorf("network %s: %w", name, err)
		}
		ep.IPv6 = netip.PrefixFrom(ip6, n.Subnet6.Bits())
	}
	if mac == nil {
		mac = macFor(ip)
	}
	ep.MAC = mac.String()
	if ip.Is4() && !reqIP.IsValid() {
		lf.Last4 = ip
	}
	if ep.IPv6.IsValid() && !reqIP6.IsValid() {
		lf.Last6 = ep.IPv6.Addr()
	}

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
	if err := addVeth(h, br, int(nsf.Fd()), ep, mac); err != nil {
		return nil, err
	}
	killpoint.At("network connect: veth created")
	if len(ep.Ports) > 0 {
		fw.portRules(ep)
		if err := fw.c.Flush(); err != nil {
			return nil, fmt.Errorf("nftables: publish ports: %w", err)
		}
		killpoint.At("network connect: ports published")
		if err := flushUDPConntrack(ep.Ports); err != nil {
			return nil, err
		}
	}
	ep.Pending = false
	if err := m.saveLeases(name, lf); err != nil {
		ep.Pending = true
		return nil, fmt.Errorf("save leases: %w", err)
	}
	killpoint.At("network connect: lease saved")
	return ep, nil
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

// collect releases the stale leases of one network under its lock.
func (m *Manager) collect(name string) error {
	l, err := m.lockNetwork(name)
	if err != nil {
		return err
	}
	defer l.Unlock()
	lf, err := m.loadLeases(name)
	if err != nil {
		return err
	}
	h, err := hostHandle()
	if err != nil {
		return err
	}
	defer h.Close()
	fw, err := newFirewall()
	if err != nil {
		return err
	}
	if err := m.gcStale(h, fw, lf); err != nil {
		return err
	}
	return m.saveLeases(name, lf)
}

// teardown removes an endpoint's firewall rules, then its link, then (if
// berth created it and dropNetns) its netns. Every step tolerates a
// namespace or link that is already gone, and removes only what is proven
// berth's: rules by their tag, the veth by its alias, the netns by the
// identities its marker and the lease recorded.
func (m *Manager) teardown(h *netlink.Handle, fw *firewall, ep *Endpoint, dropNetns bool) error {
	var errs []error
	if len(ep.Ports) > 0 {
		if _, err := fw.delTagged([]string{chHostports}, func(t string) bool { return t == epTag(ep.Network, ep.ID) }); err != nil {
			errs = append(errs, err)
		} else if err := fw.c.Flush(); err != nil {
			errs = append(errs, fmt.Errorf("nftables: unpublish ports of %s: %w", ep.ID, err))
		}
		killpoint.At("network disconnect: ports unpublished")
	}
	if err := delOwnedLink(h, ep.HostVeth, ep.Network, ep.HostMAC); err != nil {
		errs = append(errs, err)
	}
	killpoint.At("network disconnect: veth removed")
	if dropNetns && ep.OwnNetns {
		if err := m.removeOwnedNetns(ep.Netns, &fileID{Dev: ep.NetnsDev, Ino: ep.NetnsIno}); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// endpointStale reports whether the endpoint's namespace is gone or replaced.
func endpointStale(e *Endpoint) bool {
	id, err := statNetns(e.Netns)
	return err != nil || id.Dev != e.NetnsDev || id.Ino != e.NetnsIno
}

// endpointDead reports whether the endpoint is stale or unfinished: its
// connect was killed before it completed. An unfinished lease seen under
// the network lock is always dead, since connect holds that lock until it
// finishes.
func endpointDead(e *Endpoint) bool { return e.Pending || endpointStale(e) }

// gcStale drops leases whose namespace no longer exists, so a container that
// died without a disconnect does not hold its address (or port) for ever,
// and those of connects that were killed half-way. The caller holds the
// network lock.
func (m *Manager) gcStale(h *netlink.Handle, fw *firewall, lf *leaseFile) error {
	for id, e := range lf.Endpoints {
		if endpointDead(e) {
			if err := m.teardown(h, fw, e, true); err != nil {
				return fmt.Errorf("clean stale endpoint %s: %w", id, err)
			}
			delete(lf.Endpoints, id)
		}
	}
	return nil
}

// Disconnect detaches the target from the network. Disconnecting something
// not connected succeeds, and still removes a link or rules left by a crash.
func (m *Manager) Disconnect(ctx context.Context, name string, o ConnectOptions) error {
	id, nsPath, err := m.endpointID(&o)
	if err != nil {
		return err
	}
	if _, err := m.loadNetwork(name); err != nil {
		return err
	}
	h, err := hostHandle()
	if err != nil {
		return err
	}
	defer h.Close()
	fw, err := newFirewall()
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
	ep, ok := lf.Endpoints[id]
	if !ok {
		return m.undoUnleased(h, fw, name, id, nsPath)
	}
	if err := m.teardown(h, fw, ep, true); err != nil {
		return err
	}
	delete(lf.Endpoints, id)
	if err := m.saveLeases(name, lf); err != nil {
		return err
	}
	killpoint.At("network disconnect: lease released")
	return nil
}

// undoUnleased removes what a connect of id to network name made before it
// was killed, or failed, without saving its lease: its veth (by alias), its
// port rules (by tag) and a netns it created (by its marker), unless another
// network's endpoint uses that netns now.
func (m *Manager) undoUnleased(h *netlink.Handle, fw *firewall, name, id, nsPath string) error {
	var errs []error
	if err := delOwnedLink(h, vethName(name, id), name, ""); err != nil {
		errs = append(errs, err)
	}
	if n, err := fw.delTagged([]string{chHostports}, func(t string) bool { return t == epTag(name, id) }); err != nil {
		errs = append(errs, err)
	} else if n > 0 {
		if err := fw.c.Flush(); err != nil {
			errs = append(errs, fmt.Errorf("nftables: unpublish ports of %s: %w", id, err))
		}
	}
	if nsPath != "" {
		// Under the netns lock, which also sweeps the temp file of a marker
		// whose write was killed.
		l, err := m.lockNetns()
		if err != nil {
			return errors.Join(append(errs, err)...)
		}
		l.Unlock()
		if mk := m.readMarker(nsPath); mk != nil && mk.Network == name {
			inUse, err := m.netnsInUse(nsPath)
			if err != nil {
				errs = append(errs, err)
			} else if !inUse {
				if err := m.removeOwnedNetns(nsPath, nil); err != nil {
					errs = append(errs, err)
				}
			}
		}
	}
	return errors.Join(errs...)
}

// netnsInUse reports whether a live endpoint of any network is in the netns
// at nsPath.
func (m *Manager) netnsInUse(nsPath string) (bool, error) {
	nets, err := m.listNetworks()
	if err != nil {
		return false, err
	}
	for _, n := range nets {
		lf, err := m.loadLeases(n.Name)
		if err != nil {
			return false, err
		}
		for _, e := range lf.Endpoints {
			if e.Netns == nsPath && !endpointStale(e) {
				return true, nil // unfinished ones too: their connect may run now
			}
		}
	}
	return false, nil
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
