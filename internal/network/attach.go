package network

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"time"
)

// DefaultNetwork is the network the one-shot run attaches to when none is
// named; EnsureNetwork creates it on first use.
const DefaultNetwork = "berth"

// AttachOptions configure Attach; zero values mean defaults (eth0, the next
// free address, a MAC derived from it, no published ports, no DNS files).
type AttachOptions struct {
	// Container, if set, keys the endpoint by container id instead of by
	// netns path, so Detach works after the container's processes (and
	// with them /proc/PID/ns/net) are gone.
	Container string
	Ifname    string
	IP        string
	MAC       string
	Ports     []PortMapping
	// Rootfs (a rootfs or a bundle directory), if set, receives etc/resolv.conf (and etc/hosts and
	// etc/hostname when DNS.Hostname is set) for the new endpoint.
	Rootfs string
	DNS    DNSConfig
	// Manager options (state dir, netns dir); default New().
	ManagerOptions []Option
}

// EnsureNetwork returns network name, creating it with default settings (a
// free private /24, NAT) if it does not exist yet. Safe to call concurrently.
func EnsureNetwork(ctx context.Context, name string, opts ...Option) (*Network, error) {
	m := New(opts...)
	if n, err := m.loadNetwork(name); err == nil && !n.Pending {
		return n, nil
	}
	return m.Create(ctx, CreateOptions{Name: name})
}

// Attach connects the network namespace at netnsPath to network netName and,
// with opts.Rootfs, writes its DNS files. It is the runtime's entry point for
// the one-shot path: the runtime defines an interface with this shape, so it
// never depends on netlink or nftables. On error nothing new is left behind.
func Attach(ctx context.Context, netName, netnsPath string, opts AttachOptions) (*Endpoint, error) {
	m := New(opts.ManagerOptions...)
	co := ConnectOptions{Netns: netnsPath, Container: opts.Container, Ifname: opts.Ifname, IP: opts.IP, MAC: opts.MAC, Ports: opts.Ports}
	start := time.Now().UTC()
	ep, err := m.Connect(ctx, netName, co)
	if err != nil || opts.Rootfs == "" {
		return ep, err
	}
	addrs := []netip.Addr{ep.IPv4.Addr()}
	if ep.IPv6.IsValid() {
		addrs = append(addrs, ep.IPv6.Addr())
	}
	rootfs, err := ResolveRootfs(opts.Rootfs)
	if err == nil {
		err = WriteDNS(rootfs, opts.DNS, addrs)
	}
	if err != nil {
		err = fmt.Errorf("write DNS files into %s: %w", opts.Rootfs, err)
		if !ep.Created.Before(start) { // this call made the endpoint
			if derr := m.Disconnect(ctx, netName, co); derr != nil {
				err = errors.Join(err, fmt.Errorf("undo attach: %w", derr))
			}
		}
		return nil, err
	}
	return ep, nil
}

// Detach disconnects what Attach connected; detaching twice, or after the
// namespace is gone, succeeds.
func Detach(ctx context.Context, netName, netnsPath string, opts AttachOptions) error {
	m := New(opts.ManagerOptions...)
	co := ConnectOptions{Netns: netnsPath, Container: opts.Container, Ifname: opts.Ifname}
	return m.Disconnect(ctx, netName, co)
}
