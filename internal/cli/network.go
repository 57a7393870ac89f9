package cli

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"strings"
	"text/tabwriter"
	"time"

	"berth/internal/network"

	"github.com/urfave/cli"
)

func init() {
	register(cli.Command{
		Name:  "network",
		Usage: "create and wire container networks (bridge, veth, netns, NAT, DNS)",
		// urfave/cli prints a parent's Description as its NAME line, so it
		// starts with the one-line summary.
		Description: `create and wire container networks

Networks are Linux bridges with a gateway address, NAT and forwarding rules in
berth's own nftables table ("inet berth"), and a persistent IPAM lease store.
Everything is done in-process through netlink and nftables; no ip, iptables or
nft binary is needed.

Example:

    # berth network create web
    # berth network connect web --netns c1 --create-netns -p 8080:80
    # berth network connect web --netns c1 --rootfs bundle/rootfs --hostname c1
    # berth network disconnect web --netns c1
    # berth network rm web`,
		Flags: []cli.Flag{
			cli.StringFlag{Name: "state-dir", EnvVar: network.EnvStateDir, Value: network.DefaultStateDir, Usage: "directory of network definitions and leases"},
			cli.StringFlag{Name: "netns-dir", EnvVar: network.EnvNetnsDir, Value: network.DefaultNetnsDir, Usage: "directory of named network namespaces"},
		},
		Subcommands: []cli.Command{
			netCreateCmd, netConnectCmd, netDisconnectCmd, netRmCmd, netLsCmd,
			netInspectCmd, netPruneCmd, netCheckCmd, netDNSCmd,
		},
	})
}

// netManager builds the manager from the parent command's flags.
func netManager(c *cli.Context) *network.Manager {
	p := c.Parent()
	opts := []network.Option{network.WithRuntimeRoot(c.GlobalString("root"))}
	if p != nil {
		opts = append(opts, network.WithStateDir(p.String("state-dir")), network.WithNetnsDir(p.String("netns-dir")))
	}
	return network.New(opts...)
}

func oneArg(c *cli.Context) (string, error) {
	if c.NArg() != 1 {
		return "", fmt.Errorf("%s: expects exactly one argument, a network name (got %d)", c.Command.Name, c.NArg())
	}
	return c.Args().First(), nil
}

var formatFlag = cli.StringFlag{Name: "format, f", Value: "text", Usage: "output format: text or json"}

func writeJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

func checkFormat(c *cli.Context) (string, error) {
	f := c.String("format")
	if f != "text" && f != "json" {
		return "", fmt.Errorf("invalid --format %q: want text or json", f)
	}
	return f, nil
}

var netCreateCmd = cli.Command{
	Name:      "create",
	Usage:     "create a bridge network",
	ArgsUsage: "NAME",
	Description: `Creates the bridge with the gateway address, turns on IP forwarding, adds
masquerade and forward rules for the subnet to nftables table "inet berth"
(plus accepts in docker's DOCKER-USER chain when it exists, since docker's
FORWARD policy is DROP), and saves the definition. Creating an existing network with the same (or no)
options repairs it and succeeds; conflicting options are an error.

Example:

    # berth network create web --subnet 10.89.7.0/24 --bridge br-web
    # berth network create lab --ipv6 fd00:89:7::/64 --no-nat`,
	Flags: []cli.Flag{
		cli.StringFlag{Name: "subnet", Usage: "IPv4 subnet in CIDR form (default: a free private /24 from 10.89.0.0/16 on)"},
		cli.StringFlag{Name: "gateway", Usage: "gateway address on the bridge (default: the subnet's first address)"},
		cli.StringFlag{Name: "bridge", Usage: "bridge interface name (default: berthN, the first free N)"},
		cli.StringFlag{Name: "ipv6", Usage: "also give the network this IPv6 subnet"},
		cli.StringFlag{Name: "gateway6", Usage: "IPv6 gateway (default: the IPv6 subnet's first address)"},
		cli.BoolFlag{Name: "no-nat", Usage: "route the subnet without masquerading it"},
		formatFlag,
	},
	Action: func(c *cli.Context) error {
		name, err := oneArg(c)
		if err != nil {
			return err
		}
		format, err := checkFormat(c)
		if err != nil {
			return err
		}
		n, err := netManager(c).Create(context.Background(), network.CreateOptions{
			Name: name, Subnet: c.String("subnet"), Gateway: c.String("gateway"), Bridge: c.String("bridge"),
			Subnet6: c.String("ipv6"), Gateway6: c.String("gateway6"), NoNAT: c.Bool("no-nat"),
		})
		if err != nil {
			return fmt.Errorf("network create: %w", err)
		}
		if format == "json" {
			return writeJSON(c.App.Writer, n)
		}
		fmt.Fprintf(c.App.Writer, "%s bridge=%s subnet=%s gateway=%s", n.Name, n.Bridge, n.Subnet, n.Gateway)
		if n.Subnet6.IsValid() {
			fmt.Fprintf(c.App.Writer, " subnet6=%s gateway6=%s", n.Subnet6, n.Gateway6)
		}
		fmt.Fprintf(c.App.Writer, " nat=%t\n", n.NAT)
		return nil
	},
}

var targetFlags = []cli.Flag{
	cli.StringFlag{Name: "netns", Usage: "network namespace: a name (in the netns dir) or a path such as /proc/PID/ns/net"},
	cli.StringFlag{Name: "container", Usage: "container id; its netns comes from the runtime state (or from --netns)"},
	cli.StringFlag{Name: "ifname", Value: network.DefaultIfname, Usage: "interface name inside the namespace"},
}

func targetOptions(c *cli.Context) (network.ConnectOptions, error) {
	o := network.ConnectOptions{Netns: c.String("netns"), Container: c.String("container"), Ifname: c.String("ifname")}
	if o.Netns == "" && o.Container == "" {
		return o, errors.New("need --netns NAME|PATH or --container ID")
	}
	return o, nil
}

var netConnectCmd = cli.Command{
	Name:      "connect",
	Usage:     "connect a network namespace to a network",
	ArgsUsage: "NAME",
	Description: `Creates a veth pair with one end directly inside the namespace (named --ifname,
default eth0) and the other on the bridge, leases an address, brings lo and the
interface up and adds the default route via the gateway. -p publishes ports
through nftables DNAT (reachable from other hosts, the host itself, 127.0.0.1
and other containers; on a dual-stack network also over IPv6, except ::1). --rootfs also writes etc/resolv.conf, and with
--hostname etc/hosts and etc/hostname, never following symlinks in the rootfs.
Connecting an endpoint that is already connected prints it again.

Example:

    # berth network connect web --netns c1 --create-netns -p 8080:80 \
        --rootfs /bundles/c1/rootfs --hostname c1 --dns 192.0.2.53
    # berth network connect web --container c2 --netns /proc/4242/ns/net`,
	Flags: append(append([]cli.Flag{}, targetFlags...),
		cli.BoolFlag{Name: "create-netns", Usage: "create the named netns (as ip netns add does) if missing; disconnect then removes it"},
		cli.StringFlag{Name: "ip", Usage: "IPv4 address to lease (default: the next free one)"},
		cli.StringFlag{Name: "ip6", Usage: "IPv6 address to lease (IPv6 networks only)"},
		cli.StringFlag{Name: "mac", Usage: "MAC address of the interface (default: 02:42 + the IPv4 address)"},
		cli.StringSliceFlag{Name: "publish, p", Usage: "publish a port: [hostIP:]hostPort:containerPort[/tcp|udp] (repeatable)"},
		cli.StringFlag{Name: "rootfs", Usage: "write resolv.conf (and hosts, hostname) into this rootfs (or bundle directory)"},
		cli.StringFlag{Name: "hostname", Usage: "hostname for etc/hostname and etc/hosts (with --rootfs)"},
		cli.StringSliceFlag{Name: "dns", Usage: "nameserver for resolv.conf (default: the host's, without loopback ones)"},
		cli.StringSliceFlag{Name: "dns-search", Usage: "search domain for resolv.conf"},
		cli.StringSliceFlag{Name: "dns-option", Usage: "resolver option for resolv.conf"},
		cli.StringSliceFlag{Name: "add-host", Usage: "extra etc/hosts entry NAME:IP"},
		formatFlag,
	),
	Action: func(c *cli.Context) error {
		name, err := oneArg(c)
		if err != nil {
			return err
		}
		format, err := checkFormat(c)
		if err != nil {
			return err
		}
		o, err := targetOptions(c)
		if err != nil {
			return fmt.Errorf("network connect: %w", err)
		}
		o.CreateNetns, o.IP, o.IP6, o.MAC = c.Bool("create-netns"), c.String("ip"), c.String("ip6"), c.String("mac")
		for _, p := range c.StringSlice("publish") {
			pm, err := network.ParsePort(p)
			if err != nil {
				return fmt.Errorf("network connect: %w", err)
			}
			o.Ports = append(o.Ports, pm)
		}
		dns := dnsConfig(c)
		if c.String("rootfs") == "" && (c.String("hostname") != "" || len(dns.Nameservers)+len(dns.Search)+len(dns.Options)+len(dns.ExtraHosts) > 0) {
			return errors.New("network connect: --hostname, --dns, --dns-search, --dns-option and --add-host need --rootfs")
		}
		if c.String("rootfs") != "" {
			// Validate before wiring anything, so bad DNS input leaves nothing behind.
			if _, err := network.BuildResolvConf(dns); err != nil {
				return fmt.Errorf("network connect: %w", err)
			}
			if _, err := network.BuildHosts(dns.Hostname, nil, dns.ExtraHosts); err != nil {
				return fmt.Errorf("network connect: %w", err)
			}
		}
		m := netManager(c)
		start := time.Now().UTC()
		ep, err := m.Connect(context.Background(), name, o)
		if err != nil {
			return fmt.Errorf("network connect: %w", err)
		}
		if root := c.String("rootfs"); root != "" {
			addrs := []netip.Addr{ep.IPv4.Addr()}
			if ep.IPv6.IsValid() {
				addrs = append(addrs, ep.IPv6.Addr())
			}
			rootfs, err := network.ResolveRootfs(root)
			if err == nil {
				err = network.WriteDNS(rootfs, dns, addrs)
			}
			if err != nil {
				// Leave nothing half-done: undo the connect, unless the
				// endpoint was already there before this command.
				if !ep.Created.Before(start) {
					if derr := m.Disconnect(context.Background(), name, o); derr != nil {
						err = errors.Join(err, fmt.Errorf("undo connect: %w", derr))
					}
				}
				return fmt.Errorf("network connect: write DNS files into %s: %w", root, err)
			}
		}
		if format == "json" {
			return writeJSON(c.App.Writer, ep)
		}
		printEndpoint(c.App.Writer, ep)
		return nil
	},
}

func dnsConfig(c *cli.Context) network.DNSConfig {
	return network.DNSConfig{
		Nameservers: c.StringSlice("dns"), Search: c.StringSlice("dns-search"), Options: c.StringSlice("dns-option"),
		Hostname: c.String("hostname"), ExtraHosts: c.StringSlice("add-host"),
	}
}

func printEndpoint(w io.Writer, ep *network.Endpoint) {
	fmt.Fprintf(w, "%s netns=%s ifname=%s ip=%s", ep.ID, ep.Netns, ep.Ifname, ep.IPv4)
	if ep.IPv6.IsValid() {
		fmt.Fprintf(w, " ip6=%s", ep.IPv6)
	}
	fmt.Fprintf(w, " gateway=%s mac=%s veth=%s", ep.Gateway, ep.MAC, ep.HostVeth)
	for _, p := range ep.Ports {
		fmt.Fprintf(w, " publish=%s", p)
	}
	fmt.Fprintln(w)
}

var netDisconnectCmd = cli.Command{
	Name:      "disconnect",
	Usage:     "disconnect a network namespace from a network",
	ArgsUsage: "NAME",
	Description: `Removes the endpoint's published-port rules, then its veth pair, releases its
lease, and removes the netns if connect created it. Disconnecting something
that is not connected (or whose netns is already gone) succeeds.

Example:

    # berth network disconnect web --netns c1
    # berth network disconnect web --container c2`,
	Flags: targetFlags,
	Action: func(c *cli.Context) error {
		name, err := oneArg(c)
		if err != nil {
			return err
		}
		o, err := targetOptions(c)
		if err != nil {
			return fmt.Errorf("network disconnect: %w", err)
		}
		if err := netManager(c).Disconnect(context.Background(), name, o); err != nil {
			return fmt.Errorf("network disconnect: %w", err)
		}
		return nil
	},
}

var netRmCmd = cli.Command{
	Name:      "rm",
	Aliases:   []string{"remove"},
	Usage:     "remove networks",
	ArgsUsage: "NAME [NAME...]",
	Description: `Removes the network's firewall rules, then its endpoints' links, then the
bridge and the saved definition. Refuses while endpoints are connected unless
--force, which disconnects them first. With --force a missing network is not
an error.

Example:

    # berth network rm web
    # berth network rm --force web lab`,
	Flags: []cli.Flag{cli.BoolFlag{Name: "force, f", Usage: "disconnect endpoints first; ignore missing networks"}},
	Action: func(c *cli.Context) error {
		if c.NArg() == 0 {
			return errors.New("rm: expects at least one network name")
		}
		m := netManager(c)
		var errs []error
		for _, name := range c.Args() {
			err := m.Remove(context.Background(), name, c.Bool("force"))
			if errors.Is(err, network.ErrNotExist) && c.Bool("force") {
				continue
			}
			if err != nil {
				errs = append(errs, fmt.Errorf("network rm %s: %w", name, err))
			}
		}
		return errors.Join(errs...)
	},
}

var netLsCmd = cli.Command{
	Name:    "ls",
	Aliases: []string{"list"},
	Usage:   "list networks",
	Description: `Lists networks with their bridge, subnets, NAT mode and number of endpoints.

Example:

    # berth network ls
    # berth network ls --format json`,
	Flags: []cli.Flag{formatFlag, cli.BoolFlag{Name: "quiet, q", Usage: "print names only"}},
	Action: func(c *cli.Context) error {
		format, err := checkFormat(c)
		if err != nil {
			return err
		}
		infos, err := netManager(c).List(context.Background())
		if err != nil {
			return fmt.Errorf("network ls: %w", err)
		}
		if format == "json" {
			return writeJSON(c.App.Writer, infos)
		}
		if c.Bool("quiet") {
			for _, i := range infos {
				fmt.Fprintln(c.App.Writer, i.Name)
			}
			return nil
		}
		tw := tabwriter.NewWriter(c.App.Writer, 0, 8, 2, ' ', 0)
		fmt.Fprintln(tw, "NAME\tBRIDGE\tSUBNET\tGATEWAY\tSUBNET6\tNAT\tENDPOINTS")
		for _, i := range infos {
			s6 := "-"
			if i.Subnet6.IsValid() {
				s6 = i.Subnet6.String()
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%t\t%d\n", i.Name, i.Bridge, i.Subnet, i.Gateway, s6, i.NAT, len(i.Endpoints))
		}
		return tw.Flush()
	},
}

var netInspectCmd = cli.Command{
	Name:      "inspect",
	Usage:     "show networks and their endpoints as JSON",
	ArgsUsage: "NAME [NAME...]",
	Description: `Prints a JSON array with each network's definition and its endpoints
(address, MAC, veth, netns, published ports).

Example:

    # berth network inspect web | jq '.[0].endpoints[].ipv4'`,
	Action: func(c *cli.Context) error {
		if c.NArg() == 0 {
			return errors.New("inspect: expects at least one network name")
		}
		m := netManager(c)
		var out []*network.NetworkInfo
		for _, name := range c.Args() {
			i, err := m.Inspect(context.Background(), name)
			if err != nil {
				return fmt.Errorf("network inspect: %w", err)
			}
			out = append(out, i)
		}
		return writeJSON(c.App.Writer, out)
	},
}

func printReport(c *cli.Context, rep *network.Report, format string) error {
	if format == "json" {
		return writeJSON(c.App.Writer, rep)
	}
	for _, p := range rep.Problems {
		fmt.Fprintln(c.App.Writer, p.String())
	}
	for _, n := range rep.Removed {
		fmt.Fprintf(c.App.Writer, "removed network %s\n", n)
	}
	return nil
}

var netPruneCmd = cli.Command{
	Name:  "prune",
	Usage: "clean up leaked network state",
	Description: `Releases leases whose netns is gone and those of connects that were killed
half-way, deletes leaked veths, bridges, firewall rules and netns files that
berth created, finishes networks whose create was killed, removes stale netns
markers, and recreates missing bridges and rules. Only what berth can prove it
made is deleted: rules and the table by their comment, links by their alias or
recorded MAC, netns by the identities recorded when they were made; a name
proves nothing. With --networks it also removes networks that have no
endpoints.

Example:

    # berth network prune
    # berth network prune --networks`,
	Flags: []cli.Flag{formatFlag, cli.BoolFlag{Name: "networks", Usage: "also remove networks without endpoints"}},
	Action: func(c *cli.Context) error {
		format, err := checkFormat(c)
		if err != nil {
			return err
		}
		rep, err := netManager(c).Prune(context.Background(), c.Bool("networks"))
		if err != nil {
			return fmt.Errorf("network prune: %w", err)
		}
		return printReport(c, rep, format)
	},
}

var netCheckCmd = cli.Command{
	Name:  "check",
	Usage: "report leaked or missing network state",
	Description: `Compares the saved networks and leases with the kernel: stale or unfinished
leases, missing or leaked veths, leaked or missing nftables rules, missing or
leaked bridges, unfinished networks, leaked netns files and stale netns
markers. Prints one line per problem and exits 1 if there is any; changes
nothing (see prune).

Example:

    # berth network check && echo clean`,
	Flags: []cli.Flag{formatFlag},
	Action: func(c *cli.Context) error {
		format, err := checkFormat(c)
		if err != nil {
			return err
		}
		rep, err := netManager(c).Check(context.Background())
		if err != nil {
			return fmt.Errorf("network check: %w", err)
		}
		if err := printReport(c, rep, format); err != nil {
			return err
		}
		if len(rep.Problems) > 0 {
			return withCode(1, nil)
		}
		return nil
	},
}

var netDNSCmd = cli.Command{
	Name:      "dns",
	Usage:     "write resolv.conf, hosts and hostname into a rootfs",
	ArgsUsage: "ROOTFS|BUNDLE",
	Description: `Writes ROOTFS/etc/resolv.conf from --dns/--dns-search/--dns-option, or from
the host's configuration with loopback nameservers dropped (and
systemd-resolved's upstream list when the host only names 127.0.0.53). With
--hostname also etc/hostname and etc/hosts (--ip adds the container's address).
A bundle directory means the rootfs its config.json names. Symlinks inside the
rootfs are never followed out of it.

Example:

    # berth network dns /bundles/c1/rootfs --dns 192.0.2.53 --hostname c1 --ip 10.89.0.2`,
	Flags: []cli.Flag{
		cli.StringFlag{Name: "hostname", Usage: "hostname for etc/hostname and etc/hosts"},
		cli.StringSliceFlag{Name: "ip", Usage: "container address for etc/hosts (repeatable)"},
		cli.StringSliceFlag{Name: "dns", Usage: "nameserver (default: the host's, without loopback ones)"},
		cli.StringSliceFlag{Name: "dns-search", Usage: "search domain"},
		cli.StringSliceFlag{Name: "dns-option", Usage: "resolver option"},
		cli.StringSliceFlag{Name: "add-host", Usage: "extra etc/hosts entry NAME:IP"},
		cli.StringFlag{Name: "host-resolv-conf", Value: network.DefaultHostResolvConf, Usage: "the host resolv.conf to start from"},
	},
	Action: func(c *cli.Context) error {
		if c.NArg() != 1 {
			return errors.New("dns: expects exactly one argument, the rootfs directory")
		}
		cfg := dnsConfig(c)
		cfg.HostResolvConf = c.String("host-resolv-conf")
		var addrs []netip.Addr
		for _, s := range c.StringSlice("ip") {
			a, err := netip.ParseAddr(strings.TrimSpace(s))
			if err != nil {
				return fmt.Errorf("network dns: --ip %q is not an IP address", s)
			}
			addrs = append(addrs, a)
		}
		rootfs, err := network.ResolveRootfs(c.Args().First())
		if err != nil {
			return fmt.Errorf("network dns: %w", err)
		}
		if err := network.WriteDNS(rootfs, cfg, addrs); err != nil {
			return fmt.Errorf("network dns: %w", err)
		}
		return nil
	},
}
