// The firewall of a network as the manager keeps it: made or repaired
// with the network, port forwards restored from the leases, removed with
// the last network (nft.go writes the rules).

package network

import (
	"fmt"
)

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
