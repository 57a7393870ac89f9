// Taking endpoints down: disconnect, the teardown every path shares, and
// collecting the endpoints whose netns or container is gone.

package network

import (
	"context"
	"errors"
	"fmt"

	"github.com/vishvananda/netlink"

	"berth/internal/killpoint"
)

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
