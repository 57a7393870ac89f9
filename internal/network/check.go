package network

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"sort"

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
	links, err := retryDump(h.LinkList)
	if err != nil {
		return nil, fmt.Errorf("list links: %w", err)
	}
	linkByName := map[string]netlink.Link{}
	for _, l := range links {
		linkByName[l.Attrs().Name] = l
	}
	tags, err := fw.listTags()
	if err != nil {
		return nil, fmt.Errorf("nftables: %w", err)
	}
	// berth's accepts in docker's DOCKER-USER chains, by tag.
	dockerChains, err := fw.dockerUserChains()
	if err != nil {
		return nil, err
	}
	dockerTags := map[string]int{}
	for _, ch := range dockerChains {
		rules, err := fw.c.GetRules(ch.Table, ch)
		if err != nil {
			return nil, fmt.Errorf("nftables: list %s: %w", dockerUserChain, err)
		}
		for _, r := range rules {
			if _, _, ok := tagNet(ruleTag(r)); ok {
				dockerTags[ruleTag(r)]++
			}
		}
	}
	rep := &Report{Problems: []Problem{}}
	add := func(p Problem, repair func() error) error {
		if fix && repair != nil {
			if err := repair(); err != nil {
				return fmt.Errorf("%s: %w", p, err)
			}
			p.Fixed = true
		}
		rep.Problems = append(rep.Problems, p)
		return nil
	}

	knownVeth := map[string]bool{}
	knownEp := map[string]bool{} // "net/id"
	knownNet := map[string]bool{}
	referencedNetns := map[string]bool{}
	missingPorts := map[string]bool{} // networks whose endpoints lack DNAT rules
	for _, n := range nets {
		knownNet[n.Name] = true
		err := func() error {
			lf, err := m.loadLeases(n.Name)
			if err != nil {
				return err
			}
			changed := false
			for id, e := range lf.Endpoints {
				// Known even when collected below: teardown removes its rules,
				// which must not be reported again as leaked.
				knownEp[n.Name+"/"+id] = true
				// A dead endpoint: reported, and with fix torn down (its
				// netns too when dropNetns) and its lease released.
				kind, detail, dropNetns := "", "", true
				switch {
				case e.Pending:
					kind, detail = "unfinished-connect", fmt.Sprintf("%s (%s) holds %s but its connect was killed before it finished", id, e.HostVeth, e.IPv4.Addr())
				case endpointStale(e):
					kind, detail = "stale-lease", fmt.Sprintf("%s (%s) holds %s but its netns %s is gone", id, e.HostVeth, e.IPv4.Addr(), e.Netns)
				case linkByName[e.HostVeth] == nil:
					kind, detail, dropNetns = "missing-veth", fmt.Sprintf("%s holds %s but its veth %s is gone", id, e.IPv4.Addr(), e.HostVeth), false
				}
				if kind != "" {
					e := e
					if err := add(Problem{Kind: kind, Network: n.Name, Detail: detail},
						func() error { return m.teardown(h, fw, e, dropNetns) }); err != nil {
						return err
					}
					if fix {
						delete(lf.Endpoints, id)
						changed = true
						continue
					}
				}
				if want := portRuleCount(e); want > 0 {
					have := 0
					for _, t := range tags[chHostports] {
						if t == epTag(n.Name, id) {
							have++
						}
					}
					if have != want {
						missingPorts[n.Name] = true
						if err := add(Problem{Kind: "missing-rules", Network: n.Name,
							Detail: fmt.Sprintf("%s publishes %d port(s) but has %d DNAT rule(s)", id, want, have)}, nil); err != nil {
							return err
						}
					}
				}
				knownVeth[e.HostVeth] = true
				referencedNetns[e.Netns] = true
			}
			if changed {
				return m.saveLeases(n.Name, lf)
			}
			return nil
		}()
		if err != nil {
			return nil, err
		}
		n := n
		if n.Pending {
			if err := add(Problem{Kind: "unfinished-network", Network: n.Name,
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
				return nil, err
			}
		}
		if br := linkByName[n.Bridge]; br == nil {
			if err := add(Problem{Kind: "missing-bridge", Network: n.Name, Detail: "bridge " + n.Bridge + " does not exist"},
				func() error { _, err := ensureBridge(h, n); return err }); err != nil {
				return nil, err
			}
		}
		has := false
		for _, t := range tags[chForward] {
			if t == netTag(n.Name) {
				has = true
			}
		}
		if !has {
			if err := add(Problem{Kind: "missing-rules", Network: n.Name, Detail: "no forward/NAT rules in table inet " + tableName},
				func() error {
					if err := m.ensureFirewall(n); err != nil {
						return err
					}
					return m.restorePortsLocked(n)
				}); err != nil {
				return nil, err
			}
		}
		if missingPorts[n.Name] && fix && has {
			if err := m.restorePortsLocked(n); err != nil {
				return nil, err
			}
			for i := range rep.Problems {
				if rep.Problems[i].Kind == "missing-rules" && rep.Problems[i].Network == n.Name {
					rep.Problems[i].Fixed = true
				}
			}
		}
	}

	// Accepts in DOCKER-USER: missing for a network, or left by a removed one.
	for _, n := range nets {
		n := n
		if len(dockerChains) > 0 && dockerTags[netTag(n.Name)] == 0 {
			if err := add(Problem{Kind: "missing-rules", Network: n.Name, Detail: "no accept rules in iptables chain " + dockerUserChain},
				func() error { return m.ensureFirewall(n) }); err != nil {
				return nil, err
			}
		}
	}
	for t := range dockerTags {
		if net, _, _ := tagNet(t); !knownNet[net] {
			if err := add(Problem{Kind: "leaked-rule", Network: net, Detail: fmt.Sprintf("chain %s: %q", dockerUserChain, t)},
				func() error {
					if err := fw.dockerUserRules(&Network{Name: net}, true); err != nil {
						return err
					}
					return fw.c.Flush()
				}); err != nil {
				return nil, err
			}
		}
	}

	// Rules whose owner is gone.
	var leakedTags []string
	for ch, ts := range tags {
		for _, t := range ts {
			net, id, ok := tagNet(t)
			if t == tagBase {
				continue
			}
			if !ok || !knownNet[net] || (id != "" && !knownEp[net+"/"+id]) {
				leakedTags = append(leakedTags, t)
				if err := add(Problem{Kind: "leaked-rule", Network: net, Detail: fmt.Sprintf("chain %s: %q", ch, t)}, nil); err != nil {
					return nil, err
				}
			}
		}
	}
	if fix && len(leakedTags) > 0 {
		leaked := map[string]bool{}
		for _, t := range leakedTags {
			leaked[t] = true
		}
		if _, err := fw.delTagged(allChains, func(t string) bool { return leaked[t] }); err != nil {
			return nil, err
		}
		if err := fw.c.Flush(); err != nil {
			return nil, fmt.Errorf("nftables: remove leaked rules: %w", err)
		}
		for i := range rep.Problems {
			if rep.Problems[i].Kind == "leaked-rule" {
				rep.Problems[i].Fixed = true
			}
		}
	}
	if len(nets) == 0 && fix {
		if _, owned, _ := tableState(); owned {
			fw.c.DelTable(fw.table)
			if err := fw.c.Flush(); err != nil {
				return nil, fmt.Errorf("nftables: remove empty table: %w", err)
			}
		}
	}

	knownBridge := map[string]bool{}
	for _, n := range nets {
		knownBridge[n.Bridge] = true
	}
	for _, l := range links {
		name := l.Attrs().Name
		net, ours := aliasNet(l)
		if !ours {
			continue
		}
		switch {
		case l.Type() == "veth" && !knownVeth[name]:
			if err := add(Problem{Kind: "leaked-veth", Network: net, Detail: name},
				func() error { return delOwnedLink(h, name, net, "") }); err != nil {
				return nil, err
			}
		case l.Type() == "bridge" && !(knownNet[net] && knownBridge[name]):
			if err := add(Problem{Kind: "leaked-bridge", Network: net, Detail: name + " was created by berth for a network that does not exist"},
				func() error { return delOwnedLink(h, name, net, "") }); err != nil {
				return nil, err
			}
		}
	}

	// Taking the netns lock sweeps what a marker write that was killed left.
	nl, err := m.lockNetns()
	if err != nil {
		return nil, err
	}
	nl.Unlock()
	mfs, err := m.markerFiles()
	if err != nil {
		return nil, err
	}
	for _, mf := range mfs {
		mf := mf
		dropMarker := func() error { return os.Remove(filepath.Join(m.markerDir(), mf.name)) }
		if mf.err != nil {
			if err := add(Problem{Kind: "stale-marker", Detail: fmt.Sprintf("%s: %v (only the marker is removed)", mf.name, mf.err)}, dropMarker); err != nil {
				return nil, err
			}
			continue
		}
		p := mf.mk.Netns
		if referencedNetns[p] {
			continue
		}
		switch owns(mf.mk, p, nil) {
		case ownsNetns, ownsFile:
			if err := add(Problem{Kind: "leaked-netns", Network: mf.mk.Network, Detail: p + " was created by connect and has no endpoint"},
				func() error { return m.removeOwnedNetns(p, nil) }); err != nil {
				return nil, err
			}
		default:
			if err := add(Problem{Kind: "stale-marker", Network: mf.mk.Network,
				Detail: p + ": marker of a netns connect was making, which is gone or was never made (only the marker is removed)"},
				dropMarker); err != nil {
				return nil, err
			}
		}
	}

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

func relock(m *Manager, prev error) (*lock, error) {
	if prev != nil {
		return nil, prev
	}
	return m.lockGlobal()
}
