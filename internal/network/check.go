package network

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"sort"

	"github.com/google/nftables"
	"github.com/vishvananda/netlink"
)

// Problem is one inconsistency found by Check.
type Problem struct {
	// Kind is one of: stale-lease, unfinished-connect, missing-veth,
	// leaked-veth, leaked-rule, missing-rules, missing-bridge, leaked-bridge,
	// unfinished-network, leaked-netns, stale-marker. Only what berth can prove it made is reported as leaked
	// (and removed by prune): rules by their comment, links by their alias,
	// netns by the identities recorded in their marker.
	Kind    string `json:"kind"`
	Network string `json:"network,omitempty"`
	Detail  string `json:"detail"`
	// Fixed is set by Prune when it repaired the problem.
	Fixed bool `json:"fixed,omitempty"`
}

func (p Problem) String() string {
	s := p.Kind
	if p.Network != "" {
		s += " network=" + p.Network
	}
	s += ": " + p.Detail
	if p.Fixed {
		s += " (fixed)"
	}
	return s
}

// Report is the result of Check or Prune.
type Report struct {
	Problems []Problem `json:"problems"`
	// Removed lists networks Prune removed because nothing was connected.
	Removed []string `json:"removed,omitempty"`
}

// Check reports leaked veths, rules, leases and netns files without changing
// anything.
func (m *Manager) Check(ctx context.Context) (*Report, error) { return m.scan(false, false) }

// Prune repairs what Check reports: stale leases are released, leaked rules,
// veths and netns files removed, missing bridges and rules recreated. With
// unused it also removes networks that have no endpoint.
func (m *Manager) Prune(ctx context.Context, unused bool) (*Report, error) {
	return m.scan(true, unused)
}

func (m *Manager) scan(fix, unused bool) (*Report, error) {
	g, err := m.lockGlobal()
	if err != nil {
		return nil, err
	}
	defer func() { g.Unlock() }() // g is re-taken below when pruning networks
	h, err := hostHandle()
	if err != nil {
		return nil, err
	}
	defer h.Close()
	fw, err := newFirewall()
	if err != nil {
		return nil, err
	}
	nets, err := m.listNetworks()
	if err != nil {
		return nil, err
	}
	// Every network lock is held for the whole scan: links, rules, leases
	// and netns markers are then one consistent picture, and no connect or
	// disconnect is half-way through while we judge what leaked.
	netLocks := map[string]*lock{}
	unlockAll := func() {
		for name, l := range netLocks {
			l.Unlock()
			delete(netLocks, name)
		}
	}
	defer unlockAll()
	for _, n := range nets {
		l, err := m.lockNetwork(n.Name)
		if err != nil {
			return nil, err
		}
		netLocks[n.Name] = l
	}
	sc, err := newScanner(m, h, fw, fix)
	if err != nil {
		return nil, err
	}
	for _, n := range nets {
		if err := sc.endpoints(n); err != nil {
			return nil, err
		}
		if err := sc.network(n); err != nil {
			return nil, err
		}
	}
	steps := []func([]*Network) error{sc.dockerRules, sc.leakedRules, sc.emptyTable, sc.leakedLinks, sc.netnsMarkers}
	for _, step := range steps {
		if err := step(nets); err != nil {
			return nil, err
		}
	}
	rep := sc.rep
	if fix && unused {
		unlockAll() // Remove takes the network locks itself.
		for _, n := range nets {
			info, err := m.info(n)
			if err != nil {
				return nil, err
			}
			if len(info.Endpoints) > 0 {
				continue
			}
			g.Unlock() // Remove takes the global lock itself.
			err = m.Remove(context.Background(), n.Name, false)
			if g, err = relock(m, err); err != nil {
				return nil, err
			}
			rep.Removed = append(rep.Removed, n.Name)
		}
	}
	sort.SliceStable(rep.Problems, func(i, j int) bool { return rep.Problems[i].Kind < rep.Problems[j].Kind })
	return rep, nil
}

// scanner is one Check or Prune: the picture of links and rules taken
// under the locks, what the definitions and leases account for so far,
// and the report.
type scanner struct {
	m   *Manager
	h   *netlink.Handle
	fw  *firewall
	fix bool
	rep *Report

	links        []netlink.Link
	linkByName   map[string]netlink.Link
	tags         map[string][]string // chain -> rule tags in berth's table
	dockerChains []*nftables.Chain
	dockerTags   map[string]int // berth's accepts in docker's DOCKER-USER chains, by tag

	knownVeth       map[string]bool
	knownEp         map[string]bool // "net/id"
	knownNet        map[string]bool
	referencedNetns map[string]bool
	missingPorts    map[string]bool // networks whose endpoints lack DNAT rules
}

func newScanner(m *Manager, h *netlink.Handle, fw *firewall, fix bool) (*scanner, error) {
	sc := &scanner{m: m, h: h, fw: fw, fix: fix, rep: &Report{Problems: []Problem{}},
		linkByName: map[string]netlink.Link{}, dockerTags: map[string]int{},
		knownVeth: map[string]bool{}, knownEp: map[string]bool{}, knownNet: map[string]bool{},
		referencedNetns: map[string]bool{}, missingPorts: map[string]bool{}}
	var err error
	if sc.links, err = retryDump(h.LinkList); err != nil {
		return nil, fmt.Errorf("list links: %w", err)
	}
	for _, l := range sc.links {
		sc.linkByName[l.Attrs().Name] = l
	}
	if sc.tags, err = fw.listTags(); err != nil {
		return nil, fmt.Errorf("nftables: %w", err)
	}
	if sc.dockerChains, err = fw.dockerUserChains(); err != nil {
		return nil, err
	}
	for _, ch := range sc.dockerChains {
		rules, err := fw.c.GetRules(ch.Table, ch)
		if err != nil {
			return nil, fmt.Errorf("nftables: list %s: %w", dockerUserChain, err)
		}
		for _, r := range rules {
			if _, _, ok := tagNet(ruleTag(r)); ok {
				sc.dockerTags[ruleTag(r)]++
			}
		}
	}
	return sc, nil
}

// add reports p and, when fixing, repairs it first (a nil repair: the
// report only, a later step fixes it).
func (sc *scanner) add(p Problem, repair func() error) error {
	if sc.fix && repair != nil {
		if err := repair(); err != nil {
			return fmt.Errorf("%s: %w", p, err)
		}
		p.Fixed = true
	}
	sc.rep.Problems = append(sc.rep.Problems, p)
	return nil
}

// endpoints judges n's leases: dead endpoints (unfinished, netns gone,
// veth gone) are reported and, when fixing, torn down and released; port
// forwards short of their rules are reported for network to restore.
func (sc *scanner) endpoints(n *Network) error {
	sc.knownNet[n.Name] = true
	lf, err := sc.m.loadLeases(n.Name)
	if err != nil {
		return err
	}
	changed := false
	for id, e := range lf.Endpoints {
		// Known even when collected below: teardown removes its rules,
		// which must not be reported again as leaked.
		sc.knownEp[n.Name+"/"+id] = true
		// A dead endpoint: reported, and with fix torn down (its
		// netns too when dropNetns) and its lease released.
		kind, detail, dropNetns := "", "", true
		switch {
		case e.Pending:
			kind, detail = "unfinished-connect", fmt.Sprintf("%s (%s) holds %s but its connect was killed before it finished", id, e.HostVeth, e.IPv4.Addr())
		case endpointStale(e):
			kind, detail = "stale-lease", fmt.Sprintf("%s (%s) holds %s but its netns %s is gone", id, e.HostVeth, e.IPv4.Addr(), e.Netns)
		case sc.linkByName[e.HostVeth] == nil:
			kind, detail, dropNetns = "missing-veth", fmt.Sprintf("%s holds %s but its veth %s is gone", id, e.IPv4.Addr(), e.HostVeth), false
		}
		if kind != "" {
			if err := sc.add(Problem{Kind: kind, Network: n.Name, Detail: detail},
				func() error { return sc.m.teardown(sc.h, sc.fw, e, dropNetns) }); err != nil {
				return err
			}
			if sc.fix {
				delete(lf.Endpoints, id)
				changed = true
				continue
			}
		}
		if want := portRuleCount(e); want > 0 {
			have := 0
			for _, t := range sc.tags[chHostports] {
				if t == epTag(n.Name, id) {
					have++
				}
			}
			if have != want {
				sc.missingPorts[n.Name] = true
				if err := sc.add(Problem{Kind: "missing-rules", Network: n.Name,
					Detail: fmt.Sprintf("%s publishes %d port(s) but has %d DNAT rule(s)", id, want, have)}, nil); err != nil {
					return err
				}
			}
		}
		sc.knownVeth[e.HostVeth] = true
		sc.referencedNetns[e.Netns] = true
	}
	if changed {
		return sc.m.saveLeases(n.Name, lf)
	}
	return nil
}

// network judges n itself: an unfinished create, a missing bridge, missing
// forward/NAT rules, and restores the port forwards endpoints found short.
func (sc *scanner) network(n *Network) error {
	m, h := sc.m, sc.h
	if n.Pending {
		if err := sc.add(Problem{Kind: "unfinished-network", Network: n.Name,
			Detail: "its create was killed before it finished (prune finishes it; berth network rm " + n.Name + " removes it)"},
			func() error {
				if _, err := ensureBridge(h, n); err != nil {
					return err
				}
				if err := m.ensureFirewall(n); err != nil {
					return err
				}
				n.Pending = false
				return m.saveNetwork(n)
			}); err != nil {
			return err
		}
	}
	if br := sc.linkByName[n.Bridge]; br == nil {
		if err := sc.add(Problem{Kind: "missing-bridge", Network: n.Name, Detail: "bridge " + n.Bridge + " does not exist"},
			func() error { _, err := ensureBridge(h, n); return err }); err != nil {
			return err
		}
	}
	has := false
	for _, t := range sc.tags[chForward] {
		if t == netTag(n.Name) {
			has = true
		}
	}
	if !has {
		if err := sc.add(Problem{Kind: "missing-rules", Network: n.Name, Detail: "no forward/NAT rules in table inet " + tableName},
			func() error {
				if err := m.ensureFirewall(n); err != nil {
					return err
				}
				return m.restorePortsLocked(n)
			}); err != nil {
			return err
		}
	}
	if sc.missingPorts[n.Name] && sc.fix && has {
		if err := m.restorePortsLocked(n); err != nil {
			return err
		}
		sc.markFixed(func(p Problem) bool { return p.Kind == "missing-rules" && p.Network == n.Name })
	}
	return nil
}

func (sc *scanner) markFixed(which func(Problem) bool) {
	for i := range sc.rep.Problems {
		if which(sc.rep.Problems[i]) {
			sc.rep.Problems[i].Fixed = true
		}
	}
}

// dockerRules judges berth's accepts in DOCKER-USER: missing for a
// network, or left by a removed one.
func (sc *scanner) dockerRules(nets []*Network) error {
	for _, n := range nets {
		if len(sc.dockerChains) > 0 && sc.dockerTags[netTag(n.Name)] == 0 {
			if err := sc.add(Problem{Kind: "missing-rules", Network: n.Name, Detail: "no accept rules in iptables chain " + dockerUserChain},
				func() error { return sc.m.ensureFirewall(n) }); err != nil {
				return err
			}
		}
	}
	for t := range sc.dockerTags {
		if net, _, _ := tagNet(t); !sc.knownNet[net] {
			if err := sc.add(Problem{Kind: "leaked-rule", Network: net, Detail: fmt.Sprintf("chain %s: %q", dockerUserChain, t)},
				func() error {
					if err := sc.fw.dockerUserRules(&Network{Name: net}, true); err != nil {
						return err
					}
					return sc.fw.c.Flush()
				}); err != nil {
				return err
			}
		}
	}
	return nil
}

// leakedRules judges the rules of berth's table whose owner (network or
// endpoint) is gone; fixing removes them in one transaction.
func (sc *scanner) leakedRules([]*Network) error {
	var leakedTags []string
	for ch, ts := range sc.tags {
		for _, t := range ts {
			net, id, ok := tagNet(t)
			if t == tagBase {
				continue
			}
			if !ok || !sc.knownNet[net] || (id != "" && !sc.knownEp[net+"/"+id]) {
				leakedTags = append(leakedTags, t)
				if err := sc.add(Problem{Kind: "leaked-rule", Network: net, Detail: fmt.Sprintf("chain %s: %q", ch, t)}, nil); err != nil {
					return err
				}
			}
		}
	}
	if !sc.fix || len(leakedTags) == 0 {
		return nil
	}
	leaked := map[string]bool{}
	for _, t := range leakedTags {
		leaked[t] = true
	}
	if _, err := sc.fw.delTagged(allChains, func(t string) bool { return leaked[t] }); err != nil {
		return err
	}
	if err := sc.fw.c.Flush(); err != nil {
		return fmt.Errorf("nftables: remove leaked rules: %w", err)
	}
	sc.markFixed(func(p Problem) bool { return p.Kind == "leaked-rule" })
	return nil
}

// emptyTable removes berth's table, when fixing, once no network is left.
func (sc *scanner) emptyTable(nets []*Network) error {
	if len(nets) != 0 || !sc.fix {
		return nil
	}
	if _, owned, _ := tableState(); owned {
		sc.fw.c.DelTable(sc.fw.table)
		if err := sc.fw.c.Flush(); err != nil {
			return fmt.Errorf("nftables: remove empty table: %w", err)
		}
	}
	return nil
}

// leakedLinks judges the veths and bridges berth's alias marks as its own
// that no lease or definition accounts for.
func (sc *scanner) leakedLinks(nets []*Network) error {
	knownBridge := map[string]bool{}
	for _, n := range nets {
		knownBridge[n.Bridge] = true
	}
	for _, l := range sc.links {
		name := l.Attrs().Name
		net, ours := aliasNet(l)
		if !ours {
			continue
		}
		switch {
		case l.Type() == "veth" && !sc.knownVeth[name]:
			if err := sc.add(Problem{Kind: "leaked-veth", Network: net, Detail: name},
				func() error { return delOwnedLink(sc.h, name, net, "") }); err != nil {
				return err
			}
		case l.Type() == "bridge" && !(sc.knownNet[net] && knownBridge[name]):
			if err := sc.add(Problem{Kind: "leaked-bridge", Network: net, Detail: name + " was created by berth for a network that does not exist"},
				func() error { return delOwnedLink(sc.h, name, net, "") }); err != nil {
				return err
			}
		}
	}
	return nil
}

// netnsMarkers judges the netns a connect created: leaked when no endpoint
// is in it, a stale marker when the netns is gone or is not the one made.
func (sc *scanner) netnsMarkers([]*Network) error {
	m := sc.m
	// Taking the netns lock sweeps what a marker write that was killed left.
	nl, err := m.lockNetns()
	if err != nil {
		return err
	}
	nl.Unlock()
	mfs, err := m.markerFiles()
	if err != nil {
		return err
	}
	for _, mf := range mfs {
		dropMarker := func() error { return os.Remove(filepath.Join(m.markerDir(), mf.name)) }
		if mf.err != nil {
			if err := sc.add(Problem{Kind: "stale-marker", Detail: fmt.Sprintf("%s: %v (only the marker is removed)", mf.name, mf.err)}, dropMarker); err != nil {
				return err
			}
			continue
		}
		p := mf.mk.Netns
		if sc.referencedNetns[p] {
			continue
		}
		switch owns(mf.mk, p, nil) {
		case ownsNetns, ownsFile:
			if err := sc.add(Problem{Kind: "leaked-netns", Network: mf.mk.Network, Detail: p + " was created by connect and has no endpoint"},
				func() error { return m.removeOwnedNetns(p, nil) }); err != nil {
				return err
			}
		default:
			if err := sc.add(Problem{Kind: "stale-marker", Network: mf.mk.Network,
				Detail: p + ": marker of a netns connect was making, which is gone or was never made (only the marker is removed)"},
				dropMarker); err != nil {
				return err
			}
		}
	}
	return nil
}

func relock(m *Manager, prev error) (*lock, error) {
	if prev != nil {
		return nil, prev
	}
	return m.lockGlobal()
}
