// Command netbench compares wiring a container network by hand (the classic
// tutorial: ip, bridge and iptables commands, then the cleanup list) with
// berth doing the same, paired, in the same run. run.sh starts it inside a
// throw-away network namespace; it must never run in the real host netns,
// because it adds iptables rules and a bridge.
//
// It prints the median of each side, the ratio berth/hand (target <= 0.05),
// and the median latency of one connect, both as a CLI invocation and
// in-process through the library (target <= 5 ms).
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/vishvananda/netlink"

	"berth/internal/network"
)

var (
	berthBin = flag.String("berth", "berth", "berth binary")
	rounds   = flag.Int("n", 20, "paired rounds")
	keep     = flag.Bool("v", false, "print every round")
)

// The tutorial sequence, including its broken cleanup step: deleting the
// netns already removed the veth, so `ip link del veth-host` fails and is
// tolerated, as a person typing it would shrug it off.
var handSetup = [][]string{
	{"ip", "link", "add", "name", "runc0", "type", "bridge"},
	{"ip", "addr", "add", "10.200.0.1/24", "dev", "runc0"},
	{"ip", "link", "set", "runc0", "up"},
	{"sysctl", "-qw", "net.ipv4.ip_forward=1"},
	{"ip", "netns", "add", "runcbench"},
	{"ip", "link", "add", "name", "veth-host", "type", "veth", "peer", "name", "veth-guest"},
	{"ip", "link", "set", "veth-guest", "netns", "runcbench"},
	{"ip", "link", "set", "veth-host", "master", "runc0"},
	{"ip", "link", "set", "veth-host", "up"},
	{"ip", "netns", "exec", "runcbench", "ip", "link", "set", "veth-guest", "name", "eth0"},
	{"ip", "netns", "exec", "runcbench", "ip", "addr", "add", "10.200.0.2/24", "dev", "eth0"},
	{"ip", "netns", "exec", "runcbench", "ip", "link", "set", "eth0", "up"},
	{"ip", "netns", "exec", "runcbench", "ip", "link", "set", "lo", "up"},
	{"ip", "netns", "exec", "runcbench", "ip", "route", "add", "default", "via", "10.200.0.1"},
	{"iptables", "-t", "nat", "-A", "POSTROUTING", "-s", "10.200.0.0/24", "!", "-o", "runc0", "-j", "MASQUERADE"},
	{"iptables", "-A", "FORWARD", "-i", "runc0", "-j", "ACCEPT"},
	{"iptables", "-A", "FORWARD", "-o", "runc0", "-m", "conntrack", "--ctstate", "RELATED,ESTABLISHED", "-j", "ACCEPT"},
	{"sh", "-c", "echo nameserver 192.0.2.53 > \"$ROOTFS/etc/resolv.conf\""},
}

var handCleanup = [][]string{
	{"iptables", "-t", "nat", "-D", "POSTROUTING", "-s", "10.200.0.0/24", "!", "-o", "runc0", "-j", "MASQUERADE"},
	{"iptables", "-D", "FORWARD", "-i", "runc0", "-j", "ACCEPT"},
	{"iptables", "-D", "FORWARD", "-o", "runc0", "-m", "conntrack", "--ctstate", "RELATED,ESTABLISHED", "-j", "ACCEPT"},
	{"ip", "netns", "del", "runcbench"},
	{"-ip", "link", "del", "veth-host"}, // fails: the netns took it along
	{"ip", "link", "del", "runc0"},
}

// perCmd collects each command's durations, keyed by its text, so the
// report can show where the time goes (kernel-bound link deletions included).
var perCmd = map[string][]time.Duration{}

func run(env []string, cmds [][]string) error {
	for _, c := range cmds {
		t0 := time.Now()
		tolerate := strings.HasPrefix(c[0], "-")
		name := strings.TrimPrefix(c[0], "-")
		cmd := exec.Command(name, c[1:]...)
		cmd.Env = env
		out, err := cmd.CombinedOutput()
		key := strings.Join(c, " ")
		perCmd[key] = append(perCmd[key], time.Since(t0))
		if err != nil && !tolerate {
			return fmt.Errorf("%s: %w: %s", key, err, out)
		}
	}
	return nil
}

func median(d []time.Duration) time.Duration {
	s := append([]time.Duration(nil), d...)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	if len(s) == 0 {
		return 0
	}
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

func ms(d time.Duration) string { return fmt.Sprintf("%.2f ms", float64(d.Microseconds())/1000) }

func main() {
	flag.Parse()
	if err := bench(); err != nil {
		fmt.Fprintln(os.Stderr, "netbench:", err)
		os.Exit(1)
	}
}

func bench() error {
	tmp, err := os.MkdirTemp("", "netbench-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)
	rootfs := filepath.Join(tmp, "rootfs")
	state := filepath.Join(tmp, "state")
	nsdir := filepath.Join(tmp, "netns")
	if err := os.MkdirAll(filepath.Join(rootfs, "etc"), 0o755); err != nil {
		return err
	}
	env := append(os.Environ(), "ROOTFS="+rootfs, network.EnvStateDir+"="+state, network.EnvNetnsDir+"="+nsdir)
	berthSetup := [][]string{
		{*berthBin, "network", "create", "bench", "--subnet", "10.200.0.0/24", "--bridge", "runc0"},
		{*berthBin, "network", "connect", "bench", "--netns", "runcbench", "--create-netns", "--rootfs", rootfs, "--dns", "192.0.2.53"},
	}
	berthCleanup := [][]string{
		{*berthBin, "network", "disconnect", "bench", "--netns", "runcbench"},
		{*berthBin, "network", "rm", "bench"},
	}
	defer func() {
		// Leave nothing behind even if a round failed half-way.
		run(env, [][]string{{"-" + *berthBin, "network", "rm", "--force", "bench"}})
		run(env, [][]string{{"-iptables", "-t", "nat", "-F"}, {"-iptables", "-F"}, {"-ip", "netns", "del", "runcbench"}, {"-ip", "link", "del", "runc0"}})
		exec.Command("umount", "-l", nsdir).Run()
	}()

	var handT, berthT, handSetupT, berthSetupT, cliConnect []time.Duration
	timed := func(cmds [][]string) (time.Duration, error) {
		t0 := time.Now()
		err := run(env, cmds)
		return time.Since(t0), err
	}
	for i := 0; i < *rounds; i++ {
		// Alternate the order so neither side always runs on a warm cache.
		order := []string{"hand", "berth"}
		if i%2 == 1 {
			order = []string{"berth", "hand"}
		}
		for _, side := range order {
			if side == "hand" {
				s, err := timed(handSetup)
				if err != nil {
					return err
				}
				c, err := timed(handCleanup)
				if err != nil {
					return err
				}
				handSetupT, handT = append(handSetupT, s), append(handT, s+c)
				continue
			}
			s0, err := timed(berthSetup[:1])
			if err != nil {
				return err
			}
			s1, err := timed(berthSetup[1:])
			if err != nil {
				return err
			}
			c, err := timed(berthCleanup)
			if err != nil {
				return err
			}
			cliConnect = append(cliConnect, s1)
			berthSetupT, berthT = append(berthSetupT, s0+s1), append(berthT, s0+s1+c)
		}
		if *keep {
			fmt.Printf("round %2d: hand %s  berth %s\n", i, ms(handT[i]), ms(berthT[i]))
		}
	}

	// In-process connect latency: what the runtime's one-shot path pays.
	m := network.New(network.WithStateDir(state), network.WithNetnsDir(nsdir))
	ctx := context.Background()
	if _, err := m.Create(ctx, network.CreateOptions{Name: "bench", Subnet: "10.200.0.0/24", Bridge: "runc0"}); err != nil {
		return err
	}
	var libConnect, libDisconnect []time.Duration
	for i := 0; i < *rounds*5; i++ {
		o := network.ConnectOptions{Netns: "runcbench", CreateNetns: true}
		t0 := time.Now()
		if _, err := m.Connect(ctx, "bench", o); err != nil {
			return err
		}
		t1 := time.Now()
		if err := m.Disconnect(ctx, "bench", o); err != nil {
			return err
		}
		libConnect, libDisconnect = append(libConnect, t1.Sub(t0)), append(libDisconnect, time.Since(t1))
	}
	if err := m.Remove(ctx, "bench", true); err != nil {
		return err
	}

	// The kernel's share: deleting a network device waits for RCU callbacks
	// (rcu_barrier in netdev_run_todo), whoever asks. Both sides delete one
	// bridge (and berth its veth, the hand-typed list through netns deletion),
	// so this in-process RTM_DELLINK of an idle bridge bounds any ratio from
	// below.
	var floorT []time.Duration
	for i := 0; i < *rounds; i++ {
		br := &netlink.Bridge{LinkAttrs: netlink.LinkAttrs{Name: "floor0"}}
		if err := netlink.LinkAdd(br); err != nil {
			return fmt.Errorf("floor bridge: %w", err)
		}
		t0 := time.Now()
		if err := netlink.LinkDel(br); err != nil {
			return fmt.Errorf("floor bridge: %w", err)
		}
		floorT = append(floorT, time.Since(t0))
	}

	h, b := median(handT), median(berthT)
	fmt.Printf("rounds: %d paired (setup + cleanup, incl. resolv.conf)\n", *rounds)
	fmt.Printf("hand-typed  (%d commands): median %s (setup %s)\n", len(handSetup)+len(handCleanup), ms(h), ms(median(handSetupT)))
	fmt.Printf("berth       (4 commands):  median %s (setup %s)\n", ms(b), ms(median(berthSetupT)))
	fmt.Printf("ratio berth/hand: %.3f (setup only: %.3f)\n", float64(b)/float64(h), float64(median(berthSetupT))/float64(median(handSetupT)))
	fmt.Printf("kernel floor: deleting one idle bridge (in-process netlink) %s = %.3f of the hand-typed median\n", ms(median(floorT)), float64(median(floorT))/float64(h))
	fmt.Printf("connect median: CLI %s, in-process %s (disconnect in-process %s)\n", ms(median(cliConnect)), ms(median(libConnect)), ms(median(libDisconnect)))
	fmt.Println("per-command medians:")
	type kv struct {
		k string
		d time.Duration
	}
	var all []kv
	for k, v := range perCmd {
		if strings.HasPrefix(strings.TrimPrefix(k, "-"), *berthBin) || strings.HasPrefix(k, "ip link del") || strings.HasPrefix(k, "iptables") || strings.HasPrefix(k, "ip netns") {
			all = append(all, kv{strings.ReplaceAll(k, *berthBin, "berth"), median(v)})
		}
	}
	sort.Slice(all, func(i, j int) bool { return all[i].d > all[j].d })
	for _, e := range all {
		if len(e.k) > 70 {
			e.k = e.k[:70] + "..."
		}
		fmt.Printf("  %9s  %s\n", ms(e.d), e.k)
	}
	return nil
}
