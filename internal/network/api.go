package network

import "context"

// AttachOptions configure Attach; zero values mean defaults (eth0, the next
// free address, a MAC derived from it, no published ports).
type AttachOptions struct {
	// Container, if set, keys the endpoint by container id instead of by
	// netns path, so Detach works after the container's processes (and
	// with them /proc/PID/ns/net) are gone.
	Container string
	Ifname    string
	IP        string
	MAC       string
	Ports     []PortMapping
	// Manager options (state dir, netns dir); default New().
	ManagerOptions []Option
}

// Attach connects the network namespace at netnsPath to network netName. It
// is the runtime's entry point for the one-shot path: the runtime defines an
// interface with this shape, so it never depends on netlink or nftables.
func Attach(ctx context.Context, netName, netnsPath string, opts AttachOptions) (*Endpoint, error) {
	m := New(opts.ManagerOptions...)
	co := ConnectOptions{Netns: netnsPath, Container: opts.Container, Ifname: opts.Ifname, IP: opts.IP, MAC: opts.MAC, Ports: opts.Ports}
	return m.Connect(ctx, netName, co)
}

// Detach disconnects what Attach connected; detaching twice, or after the
// namespace is gone, succeeds.
func Detach(ctx context.Context, netName, netnsPath string, opts AttachOptions) error {
	m := New(opts.ManagerOptions...)
	co := ConnectOptions{Netns: netnsPath, Ifname: opts.Ifname}
	if opts.Container != "" {
		co = ConnectOptions{Container: opts.Container, Ifname: opts.Ifname}
	}
	return m.Disconnect(ctx, netName, co)
}
