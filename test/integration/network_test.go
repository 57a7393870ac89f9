package integration

// Network tests build their whole world in network namespaces they create:
//
//	uplink netns ("the internet")      host netns (berth runs here)        container netns
//	  lo: 203.0.113.1 (TCP echo :7)      uplink0 198.51.100.2/24             c1, c2 ...
//	      192.0.2.53  (DNS :53)          default via 198.51.100.1            eth0 10.x.y.N
//	  wan0 198.51.100.1/24  <--veth-->   bridge + nft table inet berth  <--veth-->
//
// The uplink has no route to the container subnet, so a reply only comes back
// if berth masqueraded the traffic. berth is run with nsenter --net, which
// switches only the network namespace: the named netns it pins stay visible
// to the test process.

import (
	"bufio"
	"bytes"
	"crypto/rand"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"berth/internal/testutil"

	"golang.org/x/sys/unix"
)

const (
	nwUplinkIP   = "198.51.100.1"
	nwHostIP     = "198.51.100.2"
	nwEchoIP     = "203.0.113.1"
	nwDNSIP      = "192.0.2.53"
	nwDNSName    = "example.test"
	nwTestSubnet = "10.89.77.0/24"
	nwTestGW     = "10.89.77.1"
)

type nwWorld struct {
	sfx      string
	host     string // netns names under /run/netns
	uplink   string
	stateDir string
	netnsDir string
	bridge   string
}

func nwRun(t *testing.T, name string, args ...string) string {
	t.Helper()
	out, err := exec.Command(name, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
	return string(out)
}

// nwNewWorld creates the host netns (and, with uplink, the uplink netns and
// its servers) and registers their removal.
func nwNewWorld(t *testing.T, uplink bool) *nwWorld {
	t.Helper()
	testutil.RequireRoot(t)
	b := make([]byte, 3)
	_, _ = rand.Read(b)
	w := &nwWorld{sfx: hex.EncodeToString(b)}
	w.host = "bnh-" + w.sfx
	w.bridge = "bbr" + w.sfx
	w.stateDir = t.TempDir()
	w.netnsDir = t.TempDir()
	t.Cleanup(func() {
		// berth made the netns dir a shared bind mount of itself.
		for unix.Unmount(w.netnsDir, unix.MNT_DETACH) == nil {
		}
	})
	nwRun(t, "ip", "netns", "add", w.host)
	t.Cleanup(func() { exec.Command("ip", "netns", "del", w.host).Run() })
	nwRun(t, "ip", "-n", w.host, "link", "set", "lo", "up")
	// Probe for nftables NAT in the host netns (nf_nat may be missing).
	if out, err := exec.Command("ip", "netns", "exec", w.host, "nft", "add table ip probe; add chain ip probe p { type nat hook postrouting priority 100; }; delete table ip probe").CombinedOutput(); err != nil {
		testutil.Require(t, false, "nftables NAT unavailable: "+string(out))
	}
	if !uplink {
		return w
	}
	w.uplink = "bnu-" + w.sfx
	nwRun(t, "ip", "netns", "add", w.uplink)
	t.Cleanup(func() { exec.Command("ip", "netns", "del", w.uplink).Run() })
	for _, c := range [][]string{
		{"-n", w.host, "link", "add", "uplink0", "type", "veth", "peer", "name", "wan0", "netns", w.uplink},
		{"-n", w.host, "addr", "add", nwHostIP + "/24", "dev", "uplink0"},
		{"-n", w.host, "link", "set", "uplink0", "up"},
		{"-n", w.host, "route", "add", "default", "via", nwUplinkIP},
		{"-n", w.uplink, "link", "set", "lo", "up"},
		{"-n", w.uplink, "addr", "add", nwEchoIP + "/32", "dev", "lo"},
		{"-n", w.uplink, "addr", "add", nwDNSIP + "/32", "dev", "lo"},
		{"-n", w.uplink, "addr", "add", nwUplinkIP + "/24", "dev", "wan0"},
		{"-n", w.uplink, "link", "set", "wan0", "up"},
	} {
		nwRun(t, "ip", c...)
	}
	// The echo server answers with the source address it saw.
	var ln net.Listener
	var pc net.PacketConn
	nwIn(t, w.ns(w.uplink), func() (err error) {
		if ln, err = net.Listen("tcp", nwEchoIP+":7"); err != nil {
			return err
		}
		pc, err = net.ListenPacket("udp", nwDNSIP+":53")
		return err
	})
	t.Cleanup(func() { ln.Close(); pc.Close() })
	go nwServeSource(ln, "uplink")
	go nwServeDNS(pc)
	return w
}

func (w *nwWorld) ns(name string) string { return "/run/netns/" + name }

// cns is the path of a container netns berth created.
func (w *nwWorld) cns(name string) string { return filepath.Join(w.netnsDir, name) }

// berth runs the binary inside the host netns with the test's state dirs.
func (w *nwWorld) berth(args ...string) (string, error) {
	cmd := exec.Command("nsenter", append([]string{"--net=" + w.ns(w.host), berthBin}, args...)...)
	cmd.Env = append(os.Environ(), "BERTH_NETWORK_DIR="+w.stateDir, "BERTH_NETNS_DIR="+w.netnsDir)
	out, err := cmd.CombinedOutput()
	return string(out), err
}

func (w *nwWorld) mustBerth(t *testing.T, args ...string) string {
	t.Helper()
	out, err := w.berth(args...)
	if err != nil {
		t.Fatalf("berth %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return out
}

type nwEndpoint struct {
	ID       string `json:"id"`
	IPv4     string `json:"ipv4"`
	HostVeth string `json:"hostVeth"`
	Netns    string `json:"netns"`
}

func (w *nwWorld) connect(t *testing.T, args ...string) nwEndpoint {
	t.Helper()
	out := w.mustBerth(t, append([]string{"network", "connect", "--format", "json"}, args...)...)
	var ep nwEndpoint
	if err := json.Unmarshal([]byte(out), &ep); err != nil {
		t.Fatalf("connect output: %v\n%s", err, out)
	}
	return ep
}

func nwIP(ep nwEndpoint) string { return strings.Split(ep.IPv4, "/")[0] }

// nwSnap is what must be identical before a network exists and after it is
// gone: links and the nft ruleset of the host netns, berth's state files, and
// the netns files and mounts (the netns dir's own bind mount aside).
type nwSnap struct {
	Links, Ruleset, Files, Netns, Mounts string
}

func (w *nwWorld) snapshot(t *testing.T) nwSnap {
	t.Helper()
	var s nwSnap
	var links []string
	for _, l := range strings.Split(nwRun(t, "ip", "-n", w.host, "-o", "link", "show"), "\n") {
		if f := strings.Fields(l); len(f) > 1 {
			links = append(links, strings.TrimSuffix(strings.Split(f[1], "@")[0], ":"))
		}
	}
	sort.Strings(links)
	s.Links = strings.Join(links, " ")
	s.Ruleset = nwRun(t, "ip", "netns", "exec", w.host, "nft", "-s", "list", "ruleset") // -s: without counters
	var files []string
	filepath.WalkDir(w.stateDir, func(p string, d fs.DirEntry, err error) error {
		if err == nil && !d.IsDir() && !strings.HasSuffix(p, ".lock") {
			files = append(files, strings.TrimPrefix(p, w.stateDir))
		}
		return nil
	})
	s.Files = strings.Join(files, " ")
	ents, _ := os.ReadDir(w.netnsDir)
	for _, e := range ents {
		s.Netns += e.Name() + " "
	}
	for _, m := range mountsUnder(w.netnsDir) {
		if m != w.netnsDir {
			s.Mounts += m + " "
		}
	}
	return s
}

func nwSameSnap(t *testing.T, what string, before, after nwSnap) {
	t.Helper()
	if before != after {
		t.Errorf("%s: state differs\nbefore: %+v\nafter:  %+v", what, before, after)
	}
}

// nwIn runs fn on a thread switched into the netns at path. Sockets created
// in fn stay in that netns after the thread switches back.
func nwIn(t *testing.T, path string, fn func() error) {
	t.Helper()
	if err := nwInErr(path, fn); err != nil {
		t.Fatalf("in netns %s: %v", path, err)
	}
}

func nwInErr(path string, fn func() error) error {
	runtime.LockOSThread()
	orig, err := os.Open("/proc/thread-self/ns/net")
	if err != nil {
		runtime.UnlockOSThread()
		return err
	}
	defer orig.Close()
	target, err := os.Open(path)
	if err != nil {
		runtime.UnlockOSThread()
		return err
	}
	defer target.Close()
	if err := unix.Setns(int(target.Fd()), unix.CLONE_NEWNET); err != nil {
		runtime.UnlockOSThread()
		return os.NewSyscallError("setns", err)
	}
	ferr := fn()
	if err := unix.Setns(int(orig.Fd()), unix.CLONE_NEWNET); err != nil {
		// Leave the thread locked: the runtime discards it with the goroutine.
		return errors.Join(ferr, os.NewSyscallError("setns back", err))
	}
	runtime.UnlockOSThread()
	return ferr
}

// nwServeSource answers every connection with "<who> <source-ip>\n".
func nwServeSource(ln net.Listener, who string) {
	for {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		host, _, _ := net.SplitHostPort(c.RemoteAddr().String())
		fmt.Fprintf(c, "%s %s\n", who, host)
		c.Close()
	}
}

// nwDial connects from inside netns ns and returns the server's line.
func nwDial(t *testing.T, ns, addr string) (string, error) {
	t.Helper()
	var c net.Conn
	err := nwInErr(ns, func() (err error) {
		c, err = net.DialTimeout("tcp", addr, 3*time.Second)
		return err
	})
	if err != nil {
		return "", err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(3 * time.Second))
	line, err := bufio.NewReader(c).ReadString('\n')
	return strings.TrimSpace(line), err
}

// nwServeDNS is a tiny authoritative server: A example.test -> 203.0.113.1,
// any other question gets an empty NOERROR answer.
func nwServeDNS(pc net.PacketConn) {
	buf := make([]byte, 1500)
	for {
		n, from, err := pc.ReadFrom(buf)
		if err != nil {
			return
		}
		q := buf[:n]
		if len(q) < 12 || binary.BigEndian.Uint16(q[4:]) != 1 {
			continue
		}
		// Walk the question name.
		i := 12
		var labels []string
		for i < len(q) && q[i] != 0 {
			l := int(q[i])
			if i+1+l > len(q) {
				break
			}
			labels = append(labels, string(q[i+1:i+1+l]))
			i += 1 + l
		}
		if i+5 > len(q) {
			continue
		}
		qtype := binary.BigEndian.Uint16(q[i+1:])
		qend := i + 5
		resp := append([]byte(nil), q[:qend]...)
		resp[2], resp[3] = 0x81, 0x80 // response, recursion desired+available, NOERROR
		binary.BigEndian.PutUint16(resp[6:], 0)
		binary.BigEndian.PutUint16(resp[8:], 0)
		binary.BigEndian.PutUint16(resp[10:], 0)
		if strings.EqualFold(strings.Join(labels, "."), nwDNSName) && qtype == 1 {
			binary.BigEndian.PutUint16(resp[6:], 1)
			resp = append(resp, 0xc0, 12, 0, 1, 0, 1, 0, 0, 0, 60, 0, 4)
			resp = append(resp, net.ParseIP(nwEchoIP).To4()...)
		}
		pc.WriteTo(resp, from)
	}
}

// TestNetworkTopology is the end-to-end check: gateway ping, masqueraded
// outbound TCP, DNS through the written resolv.conf, published ports from the
// host, localhost, the uplink and a container (hairpin), container to
// container, and a teardown that leaves nothing behind.
func TestNetworkTopology(t *testing.T) {
	w := nwNewWorld(t, true)
	// Someone else's rules (docker, firewalld, the admin) must survive
	// untouched and must not break berth's: a foreign table with its own
	// forward and NAT base chains.
	nwRun(t, "ip", "netns", "exec", w.host, "nft", "add table ip foreign; "+
		"add chain ip foreign forwarding { type filter hook forward priority 10; policy accept; }; add rule ip foreign forwarding counter; "+
		"add chain ip foreign natpost { type nat hook postrouting priority 50; }; add rule ip foreign natpost ip saddr 192.0.2.0/24 masquerade")
	before := w.snapshot(t)

	out := w.mustBerth(t, "network", "create", "web", "--subnet", nwTestSubnet, "--bridge", w.bridge)
	if !strings.Contains(out, "gateway="+nwTestGW) {
		t.Fatalf("create output: %s", out)
	}
	// A subnet over the host's own uplink route is refused.
	if out, err := w.berth("network", "create", "clash", "--subnet", "198.51.100.0/25"); err == nil || !strings.Contains(out, "host route 198.51.100.0/24 dev uplink0") {
		t.Errorf("subnet over the uplink: err=%v %s", err, out)
	}
	// Idempotent create; a conflicting one fails and names the conflict.
	w.mustBerth(t, "network", "create", "web")
	if out, err := w.berth("network", "create", "web", "--subnet", "10.89.78.0/24"); err == nil || !strings.Contains(out, "subnet") {
		t.Fatalf("conflicting create: err=%v out=%s", err, out)
	}

	rootfs := t.TempDir()
	if err := os.MkdirAll(filepath.Join(rootfs, "bin"), 0o755); err != nil {
		t.Fatal(err)
	}
	nwRun(t, "cp", "/bin/busybox", filepath.Join(rootfs, "bin", "busybox"))
	c1 := w.connect(t, "web", "--netns", "c1", "--create-netns", "-p", "8080:80",
		"--rootfs", rootfs, "--hostname", "c1", "--dns", nwDNSIP, "--dns-search", "test")
	c2 := w.connect(t, "web", "--netns", "c2", "--create-netns")
	// Connecting again returns the same endpoint.
	if again := w.connect(t, "web", "--netns", "c1"); again.IPv4 != c1.IPv4 || again.HostVeth != c1.HostVeth {
		t.Errorf("reconnect gave %+v, want %+v", again, c1)
	}
	if out, err := w.berth("network", "connect", "web", "--netns", "c1", "-p", "9999:80"); err == nil || !strings.Contains(out, "already connected") {
		t.Errorf("reconnect asking for other ports: err=%v %s", err, out)
	}

	// A server in c1 for the published port and container-to-container.
	var ln net.Listener
	nwIn(t, w.cns("c1"), func() (err error) { ln, err = net.Listen("tcp", "0.0.0.0:80"); return err })
	defer ln.Close()
	go nwServeSource(ln, "c1")

	t.Run("PingGateway", func(t *testing.T) {
		nwRun(t, "nsenter", "--net="+w.cns("c1"), "busybox", "ping", "-c", "1", "-W", "2", nwTestGW)
	})
	t.Run("MasqueradedUplink", func(t *testing.T) {
		got, err := nwDial(t, w.cns("c1"), nwEchoIP+":7")
		if err != nil || got != "uplink "+nwHostIP {
			t.Errorf("uplink saw %q (err %v), want the host address %s", got, err, nwHostIP)
		}
	})
	t.Run("DNS", func(t *testing.T) {
		rc, err := os.ReadFile(filepath.Join(rootfs, "etc", "resolv.conf"))
		if err != nil || !strings.Contains(string(rc), "nameserver "+nwDNSIP) || !strings.Contains(string(rc), "search test") {
			t.Fatalf("resolv.conf: %q %v", rc, err)
		}
		hosts, _ := os.ReadFile(filepath.Join(rootfs, "etc", "hosts"))
		if !strings.Contains(string(hosts), nwIP(c1)+"\tc1") {
			t.Errorf("hosts lacks %s c1:\n%s", nwIP(c1), hosts)
		}
		// busybox nslookup in the chroot reads the written resolv.conf.
		out := nwRun(t, "nsenter", "--net="+w.cns("c1"), "chroot", rootfs, "/bin/busybox", "nslookup", nwDNSName)
		if !strings.Contains(out, nwEchoIP) {
			t.Errorf("nslookup through resolv.conf:\n%s", out)
		}
	})
	t.Run("PublishedPort", func(t *testing.T) {
		for _, c := range []struct{ name, ns, addr, wantSrc string }{
			{"from host", w.ns(w.host), nwHostIP + ":8080", nwHostIP},
			{"from localhost", w.ns(w.host), "127.0.0.1:8080", nwTestGW},
			{"from uplink", w.ns(w.uplink), nwHostIP + ":8080", nwUplinkIP},
			{"hairpin from c2", w.cns("c2"), nwHostIP + ":8080", nwTestGW},
		} {
			got, err := nwDial(t, c.ns, c.addr)
			if err != nil || got != "c1 "+c.wantSrc {
				t.Errorf("%s: got %q (err %v), want %q", c.name, got, err, "c1 "+c.wantSrc)
			}
		}
	})
	t.Run("ContainerToContainer", func(t *testing.T) {
		got, err := nwDial(t, w.cns("c2"), nwIP(c1)+":80")
		if err != nil || got != "c1 "+nwIP(c2) {
			t.Errorf("c2 -> c1: got %q (err %v)", got, err)
		}
	})
	t.Run("UnpublishedPortIsClosed", func(t *testing.T) {
		// The uplink routing straight to a container address must be dropped
		// by the forward rules (give it a route so only the firewall stops it).
		nwRun(t, "ip", "-n", w.uplink, "route", "add", nwTestSubnet, "via", nwHostIP)
		var err error
		nwInErr(w.ns(w.uplink), func() error {
			var c net.Conn
			c, err = net.DialTimeout("tcp", nwIP(c1)+":80", 300*time.Millisecond)
			if err == nil {
				c.Close()
			}
			return nil
		})
		if err == nil {
			t.Errorf("uplink reached %s:80 directly, want it dropped", nwIP(c1))
		}
	})

	t.Run("BerthRunJoinsNetns", func(t *testing.T) {
		// A container started by berth whose config names c2's netns path
		// joins it and reaches the uplink through the bridge and NAT.
		bundle := nwBundle(t, "/bin/busybox nc "+nwEchoIP+" 7 </dev/null", w.cns("c2"))
		root, id := t.TempDir(), "nwrun-"+w.sfx
		t.Cleanup(func() { exec.Command(berthBin, "--root", root, "delete", "--force", id).Run() })
		out, err := exec.Command("timeout", "20", berthBin, "--root", root, "run", "-b", bundle, id).CombinedOutput()
		if err != nil || strings.TrimSpace(string(out)) != "uplink "+nwHostIP {
			t.Errorf("berth run in c2's netns: err=%v output %q, want %q", err, out, "uplink "+nwHostIP)
		}
	})
	t.Run("ConnectByContainerID", func(t *testing.T) {
		// The runtime's own flow: create (new netns), connect by id through
		// the state file, start, delete, disconnect after the netns is gone.
		bundle := nwBundle(t, "/bin/busybox nc "+nwEchoIP+" 7 </dev/null", "")
		root, id := t.TempDir(), "nwct-"+w.sfx
		t.Cleanup(func() { exec.Command(berthBin, "--root", root, "delete", "--force", id).Run() })
		outFile, err := os.Create(filepath.Join(t.TempDir(), "out"))
		if err != nil {
			t.Fatal(err)
		}
		defer outFile.Close()
		create := exec.Command(berthBin, "--root", root, "create", "-b", bundle, id)
		create.Stdout, create.Stderr = outFile, outFile
		if err := create.Run(); err != nil {
			b, _ := os.ReadFile(outFile.Name())
			t.Fatalf("berth create: %v\n%s", err, b)
		}
		var ep nwEndpoint
		out := w.mustBerth(t, "--root", root, "network", "connect", "--format", "json", "web", "--container", id)
		if err := json.Unmarshal([]byte(out), &ep); err != nil {
			t.Fatalf("connect output: %v\n%s", err, out)
		}
		if ep.ID != "container:"+id || !strings.HasPrefix(ep.Netns, "/proc/") {
			t.Fatalf("endpoint %+v", ep)
		}
		nwRun(t, berthBin, "--root", root, "start", id)
		deadline := time.Now().Add(10 * time.Second)
		for time.Now().Before(deadline) {
			st, _ := exec.Command(berthBin, "--root", root, "state", id).Output()
			if strings.Contains(string(st), `"stopped"`) {
				break
			}
			time.Sleep(20 * time.Millisecond)
		}
		b, _ := os.ReadFile(outFile.Name())
		if strings.TrimSpace(string(b)) != "uplink "+nwHostIP {
			t.Errorf("container output %q, want %q", b, "uplink "+nwHostIP)
		}
		nwRun(t, berthBin, "--root", root, "delete", "--force", id)
		w.mustBerth(t, "--root", root, "network", "disconnect", "web", "--container", id)
	})

	if out, err := w.berth("network", "check"); err != nil {
		t.Errorf("check on a healthy network: %v\n%s", err, out)
	}
	if out, err := w.berth("network", "rm", "web"); err == nil || !strings.Contains(out, "endpoint") {
		t.Errorf("rm with endpoints: err=%v out=%s", err, out)
	}
	ln.Close()
	w.mustBerth(t, "network", "disconnect", "web", "--netns", "c1")
	w.mustBerth(t, "network", "disconnect", "web", "--netns", "c1") // idempotent
	w.mustBerth(t, "network", "rm", "--force", "web")               // c2 still connected
	w.mustBerth(t, "network", "rm", "--force", "web")               // idempotent with --force
	nwSameSnap(t, "after teardown", before, w.snapshot(t))
}

// TestNetworkCycles: 100 connect/disconnect cycles (with a published port)
// leave no link, rule, lease or netns file behind.
func TestNetworkCycles(t *testing.T) {
	w := nwNewWorld(t, false)
	w.mustBerth(t, "network", "create", "cyc", "--bridge", w.bridge)
	before := w.snapshot(t)
	for i := 0; i < 100; i++ {
		w.mustBerth(t, "network", "connect", "cyc", "--netns", "cy", "--create-netns", "-p", "9000:80")
		w.mustBerth(t, "network", "disconnect", "cyc", "--netns", "cy")
	}
	nwSameSnap(t, "after 100 cycles", before, w.snapshot(t))
	if out, err := w.berth("network", "check"); err != nil {
		t.Errorf("check: %v\n%s", err, out)
	}
	w.mustBerth(t, "network", "rm", "cyc")
}

// TestNetworkConcurrentConnects: 30 simultaneous connects all succeed with
// distinct addresses, and 30 simultaneous disconnects clean up completely.
func TestNetworkConcurrentConnects(t *testing.T) {
	w := nwNewWorld(t, false)
	w.mustBerth(t, "network", "create", "par", "--bridge", w.bridge)
	before := w.snapshot(t)
	const n = 30
	eps := make([]nwEndpoint, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			// Half of them publish a port: those serialise on the global lock
			// while the others do not, and all of them touch nftables.
			args := []string{"network", "connect", "par", "--format", "json", "--netns", fmt.Sprintf("p%d", i), "--create-netns"}
			if i%2 == 0 {
				args = append(args, "-p", fmt.Sprintf("%d:80", 10000+i))
			}
			out, err := w.berth(args...)
			if err == nil {
				err = json.Unmarshal([]byte(out), &eps[i])
			}
			if err != nil {
				errs[i] = fmt.Errorf("connect %d: %w: %s", i, err, out)
			}
		}(i)
	}
	// prune and check running meanwhile must not take an unfinished connect
	// for a leak.
	pruneErrs := make([]error, 3)
	for i := range pruneErrs {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			if out, err := w.berth("network", "prune"); err != nil || strings.TrimSpace(out) != "" {
				pruneErrs[i] = fmt.Errorf("prune during connects: %w: %q", err, out)
			}
		}(i)
	}
	wg.Wait()
	for _, err := range pruneErrs {
		if err != nil {
			t.Error(err)
		}
	}
	if out, err := w.berth("network", "check"); err != nil {
		t.Errorf("check after concurrent connects: %v\n%s", err, out)
	}
	seen := map[string]int{}
	for i := 0; i < n; i++ {
		if errs[i] != nil {
			t.Error(errs[i])
			continue
		}
		if j, dup := seen[eps[i].IPv4]; dup {
			t.Errorf("endpoints %d and %d both got %s", j, i, eps[i].IPv4)
		}
		seen[eps[i].IPv4] = i
	}
	var info []struct {
		Endpoints []nwEndpoint `json:"endpoints"`
	}
	if err := json.Unmarshal([]byte(w.mustBerth(t, "network", "inspect", "par")), &info); err != nil || len(info) != 1 || len(info[0].Endpoints) != n {
		t.Errorf("inspect: want %d endpoints, got %+v (%v)", n, info, err)
	}
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			if out, err := w.berth("network", "disconnect", "par", "--netns", fmt.Sprintf("p%d", i)); err != nil {
				errs[i] = fmt.Errorf("disconnect %d: %w: %s", i, err, out)
			}
		}(i)
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			t.Error(err)
		}
	}
	nwSameSnap(t, "after concurrent disconnects", before, w.snapshot(t))
	w.mustBerth(t, "network", "rm", "par")
}

// TestNetworkNetnsGone: when a container's netns disappears without a
// disconnect (crash, reboot), check reports the stale lease, disconnect still
// succeeds, prune releases leases, and a leaked veth and rule are found.
func TestNetworkNetnsGone(t *testing.T) {
	w := nwNewWorld(t, false)
	w.mustBerth(t, "network", "create", "gone", "--bridge", w.bridge)
	before := w.snapshot(t)

	// Disconnect after the netns was deleted behind berth's back.
	w.connect(t, "gone", "--netns", "g1", "--create-netns", "-p", "9100:80")
	nwDelNetns(t, w.cns("g1"))
	if out, err := w.berth("network", "check"); err == nil || !strings.Contains(out, "stale-lease") {
		t.Errorf("check after netns vanished: err=%v\n%s", err, out)
	}
	w.mustBerth(t, "network", "disconnect", "gone", "--netns", "g1")
	nwSameSnap(t, "disconnect of a vanished netns", before, w.snapshot(t))

	// prune releases a stale lease (and its port rule).
	w.connect(t, "gone", "--netns", "g2", "--create-netns", "-p", "9101:80")
	nwDelNetns(t, w.cns("g2"))
	out := w.mustBerth(t, "network", "prune")
	if !strings.Contains(out, "stale-lease") || !strings.Contains(out, "(fixed)") {
		t.Errorf("prune output:\n%s", out)
	}
	if out, err := w.berth("network", "check"); err != nil {
		t.Errorf("check after prune: %v\n%s", err, out)
	}
	nwSameSnap(t, "after prune", before, w.snapshot(t))

	// A leaked veth and a leaked rule (as lost state would leave): berth's
	// by their alias and comment. A veth merely named like berth's is not.
	nwRun(t, "ip", "-n", w.host, "link", "add", "bv00deadbeef", "type", "veth", "peer", "name", "bvpeer"+w.sfx)
	nwRun(t, "ip", "-n", w.host, "link", "set", "bv00deadbeef", "alias", "berth net=gone")
	nwRun(t, "ip", "-n", w.host, "link", "add", "bv00cafef00d", "type", "veth", "peer", "name", "bvpeeq"+w.sfx)
	nwRun(t, "ip", "netns", "exec", w.host, "nft", "add", "rule", "inet", "berth", "hostports", "tcp", "dport", "9999", "dnat", "ip", "to", "10.89.0.9:80", "comment", `"berth ep=gone/ghost"`)
	out, err := w.berth("network", "check")
	if err == nil || !strings.Contains(out, "leaked-veth network=gone: bv00deadbeef") || !strings.Contains(out, "leaked-rule") || strings.Contains(out, "bv00cafef00d") {
		t.Errorf("check with leaks: err=%v\n%s", err, out)
	}
	w.mustBerth(t, "network", "prune")
	if _, err := exec.Command("ip", "-n", w.host, "link", "show", "bv00cafef00d").CombinedOutput(); err != nil {
		t.Errorf("prune removed a veth that is not berth's: %v", err)
	}
	nwRun(t, "ip", "-n", w.host, "link", "del", "bv00cafef00d")
	nwSameSnap(t, "after pruning leaks", before, w.snapshot(t))
	w.mustBerth(t, "network", "prune", "--networks")
	if out := w.mustBerth(t, "network", "ls", "-q"); strings.TrimSpace(out) != "" {
		t.Errorf("prune --networks left: %s", out)
	}
}

// TestNetworkRepair: after what a reboot or `nft flush ruleset` leaves (no
// bridge, no rules, dead netns), the next connect rebuilds the network and
// releases the dead leases; check is clean afterwards.
func TestNetworkRepair(t *testing.T) {
	w := nwNewWorld(t, false)
	w.mustBerth(t, "network", "create", "rep", "--bridge", w.bridge, "--subnet", nwTestSubnet)
	w.connect(t, "rep", "--netns", "r1", "--create-netns", "-p", "9200:80")
	w.connect(t, "rep", "--netns", "r3", "--create-netns", "-p", "9300:80") // survives the "reboot"
	nwDelNetns(t, w.cns("r1"))
	nwRun(t, "ip", "netns", "exec", w.host, "nft", "flush", "ruleset")
	nwRun(t, "ip", "-n", w.host, "link", "del", w.bridge)
	out, err := w.berth("network", "check")
	if err == nil || !strings.Contains(out, "missing-bridge") || !strings.Contains(out, "missing-rules") || !strings.Contains(out, "stale-lease") {
		t.Errorf("check after a simulated reboot: err=%v\n%s", err, out)
	}
	// The dead endpoint's port is free again once its lease is collected.
	w.connect(t, "rep", "--netns", "r2", "--create-netns", "-p", "9200:80")
	nwRun(t, "nsenter", "--net="+w.cns("r2"), "busybox", "ping", "-c", "1", "-W", "2", nwTestGW)
	if out, err := w.berth("network", "check"); err != nil {
		t.Errorf("check after repair: %v\n%s", err, out)
	}
	rules := nwRun(t, "ip", "netns", "exec", w.host, "nft", "list", "table", "inet", "berth")
	if !strings.Contains(rules, "masquerade") || strings.Count(rules, "dport 9200") != 1 || strings.Count(rules, "dport 9300") != 1 {
		t.Errorf("rules after repair:\n%s", rules)
	}
	// A flushed ruleset with everything else alive: check names the missing
	// rules and prune puts them back.
	nwRun(t, "ip", "netns", "exec", w.host, "nft", "flush", "ruleset")
	if out, err := w.berth("network", "check"); err == nil || !strings.Contains(out, "missing-rules") {
		t.Errorf("check after flush: err=%v\n%s", err, out)
	}
	w.mustBerth(t, "network", "prune")
	if out, err := w.berth("network", "check"); err != nil {
		t.Errorf("check after prune: %v\n%s", err, out)
	}
	if rules := nwRun(t, "ip", "netns", "exec", w.host, "nft", "list", "table", "inet", "berth"); strings.Count(rules, "dport 9300") != 1 {
		t.Errorf("prune did not restore the DNAT rule:\n%s", rules)
	}
	w.mustBerth(t, "network", "rm", "--force", "rep")
}

// nwBundle makes a busybox bundle running sh -c script; netnsPath, if set,
// is the network namespace the container joins (else it gets a new one).
func nwBundle(t *testing.T, script, netnsPath string) string {
	t.Helper()
	bundle := t.TempDir()
	if err := os.MkdirAll(filepath.Join(bundle, "rootfs", "bin"), 0o755); err != nil {
		t.Fatal(err)
	}
	nwRun(t, "cp", "/bin/busybox", filepath.Join(bundle, "rootfs", "bin", "busybox"))
	cmd := exec.Command(berthBin, "spec")
	cmd.Dir = bundle
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("berth spec: %v\n%s", err, out)
	}
	var spec map[string]any
	b, _ := os.ReadFile(filepath.Join(bundle, "config.json"))
	if err := json.Unmarshal(b, &spec); err != nil {
		t.Fatal(err)
	}
	proc := spec["process"].(map[string]any)
	proc["terminal"] = false
	proc["args"] = []string{"/bin/busybox", "sh", "-c", script}
	linux := spec["linux"].(map[string]any)
	nss, _ := linux["namespaces"].([]any)
	found := false
	for _, n := range nss {
		if m := n.(map[string]any); m["type"] == "network" {
			found = true
			if netnsPath != "" {
				m["path"] = netnsPath
			}
		}
	}
	if !found {
		linux["namespaces"] = append(nss, map[string]any{"type": "network", "path": netnsPath})
	}
	b, _ = json.Marshal(spec)
	if err := os.WriteFile(filepath.Join(bundle, "config.json"), b, 0o644); err != nil {
		t.Fatal(err)
	}
	return bundle
}

func nwDelNetns(t *testing.T, path string) {
	t.Helper()
	if err := unix.Unmount(path, unix.MNT_DETACH); err != nil {
		t.Fatalf("unmount %s: %v", path, err)
	}
	if err := os.Remove(path); err != nil {
		t.Fatal(err)
	}
}

// TestNetworkBadInput: bad input is refused with a message naming it, and
// leaves nothing behind.
func TestNetworkBadInput(t *testing.T) {
	w := nwNewWorld(t, false)
	before := w.snapshot(t)
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"network", "create", "bad/name"}, "network name"},
		{[]string{"network", "create", "x", "--subnet", "10.1.2.3/24"}, "host bits"},
		{[]string{"network", "create", "x", "--subnet", "fd00::/64"}, "not an IPv4 subnet"},
		{[]string{"network", "create", "x", "--subnet", "10.1.2.0/24", "--gateway", "10.1.3.1"}, "gateway"},
		{[]string{"network", "create", "x", "--bridge", "much-too-long-ifname"}, "interface name"},
		{[]string{"network", "connect", "nosuch", "--netns", "n1"}, "does not exist"},
		{[]string{"network", "connect", "nosuch"}, "--netns"},
	} {
		out, err := w.berth(c.args...)
		if err == nil || !strings.Contains(out, c.want) {
			t.Errorf("berth %v: err=%v, want message with %q, got %s", c.args, err, c.want, out)
		}
	}
	w.mustBerth(t, "network", "create", "ok", "--bridge", w.bridge)
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"-p", "80"}, "hostPort:containerPort"},
		{[]string{"-p", "8080:80/sctp"}, "tcp or udp"},
		{[]string{"--ip", "10.200.0.5"}, "not a free host address"},
		{[]string{"--mac", "zz:zz"}, "mac"},
		{[]string{"--ifname", "a/b"}, "interface name"},
		{[]string{"--rootfs", t.TempDir(), "--dns", "not-an-ip"}, "dns server"},
		{[]string{"--netns", "/nonexistent/ns"}, "nonexistent"},
		{[]string{"--rootfs", "/nonexistent/rootfs"}, "write DNS files"}, // connect is undone
	} {
		args := append([]string{"network", "connect", "ok"}, c.args...)
		if !strings.Contains(strings.Join(c.args, " "), "--netns") {
			args = append(args, "--netns", "b1", "--create-netns")
		}
		out, err := w.berth(args...)
		if err == nil || !strings.Contains(out, c.want) {
			t.Errorf("berth %v: err=%v, want message with %q, got %s", args, err, c.want, out)
		}
	}
	// Duplicate address and duplicate host port.
	first := w.connect(t, "ok", "--netns", "d1", "--create-netns", "-p", "7000:80")
	if out, err := w.berth("network", "connect", "ok", "--netns", "d2", "--create-netns", "--ip", nwIP(first)); err == nil || !strings.Contains(out, "already leased") {
		t.Errorf("duplicate ip: err=%v %s", err, out)
	}
	if out, err := w.berth("network", "connect", "ok", "--netns", "d2", "--create-netns", "-p", "7000:81"); err == nil || !strings.Contains(out, "already published") {
		t.Errorf("duplicate port: err=%v %s", err, out)
	}
	w.mustBerth(t, "network", "rm", "--force", "ok")
	nwSameSnap(t, "after bad input", before, w.snapshot(t))
}

// TestNetworkExistingBridge: a network on a bridge that was already there
// keeps the bridge on rm, and takes back only its own address.
func TestNetworkExistingBridge(t *testing.T) {
	w := nwNewWorld(t, false)
	nwRun(t, "ip", "-n", w.host, "link", "add", w.bridge, "type", "bridge")
	nwRun(t, "ip", "-n", w.host, "addr", "add", "192.0.2.254/24", "dev", w.bridge)
	before := w.snapshot(t)
	addrsBefore := nwRun(t, "ip", "-n", w.host, "-4", "-o", "addr", "show", "dev", w.bridge)
	w.mustBerth(t, "network", "create", "ext", "--bridge", w.bridge, "--subnet", nwTestSubnet)
	w.connect(t, "ext", "--netns", "e1", "--create-netns")
	w.mustBerth(t, "network", "rm", "--force", "ext")
	nwSameSnap(t, "existing bridge", before, w.snapshot(t))
	if after := nwRun(t, "ip", "-n", w.host, "-4", "-o", "addr", "show", "dev", w.bridge); after != addrsBefore {
		t.Errorf("bridge addresses changed:\nbefore: %s\nafter:  %s", addrsBefore, after)
	}
}

// TestNetworkIPv6: a dual-stack network gives both addresses and routes.
func TestNetworkIPv6(t *testing.T) {
	w := nwNewWorld(t, false)
	w.mustBerth(t, "network", "create", "v6", "--bridge", w.bridge, "--subnet", nwTestSubnet, "--ipv6", "fd00:89:77::/64")
	out := w.mustBerth(t, "network", "connect", "v6", "--netns", "s1", "--create-netns", "-p", "8080:80", "-p", "[2001:db8::1]:8081:80")
	if !strings.Contains(out, "ip6=fd00:89:77::2/64") {
		t.Fatalf("connect: %s", out)
	}
	addrs := nwRun(t, "nsenter", "--net="+w.cns("s1"), "ip", "-6", "route", "show", "default")
	if !strings.Contains(addrs, "via fd00:89:77::1") {
		t.Errorf("IPv6 default route: %s", addrs)
	}
	nwRun(t, "nsenter", "--net="+w.cns("s1"), "busybox", "ping", "-6", "-c", "1", "-W", "2", "fd00:89:77::1")
	rules := nwRun(t, "ip", "netns", "exec", w.host, "nft", "list", "table", "inet", "berth")
	if !bytes.Contains([]byte(rules), []byte("ip6 saddr fd00:89:77::/64")) {
		t.Errorf("no IPv6 masquerade rule:\n%s", rules)
	}
	// Published on both families: from the host's own IPv6 and IPv4 addresses.
	// (a veth pair: the dummy driver may not be built)
	nwRun(t, "ip", "-n", w.host, "link", "add", "v6a", "type", "veth", "peer", "name", "v6b")
	nwRun(t, "ip", "-n", w.host, "link", "set", "v6a", "up")
	nwRun(t, "ip", "-n", w.host, "link", "set", "v6b", "up")
	nwRun(t, "ip", "-n", w.host, "addr", "add", "2001:db8::1/64", "dev", "v6a", "nodad")
	var ln net.Listener
	nwIn(t, w.cns("s1"), func() (err error) { ln, err = net.Listen("tcp", ":80"); return err })
	defer ln.Close()
	go nwServeSource(ln, "s1")
	for _, c := range []struct{ addr, want string }{
		{"[2001:db8::1]:8080", "s1 2001:db8::1"},
		{"[2001:db8::1]:8081", "s1 2001:db8::1"},
		{nwTestGW + ":8080", "s1 " + nwTestGW},
	} {
		if got, err := nwDial(t, w.ns(w.host), c.addr); err != nil || got != c.want {
			t.Errorf("%s: got %q (err %v), want %q", c.addr, got, err, c.want)
		}
	}
	if _, err := nwDial(t, w.ns(w.host), nwTestGW+":8081"); err == nil {
		t.Errorf("the IPv6-only mapping answered on IPv4")
	}
	if out, err := w.berth("network", "check"); err != nil {
		t.Errorf("check: %v\n%s", err, out)
	}
	w.mustBerth(t, "network", "rm", "--force", "v6")
	if out, err := w.berth("network", "create", "v4only", "--bridge", w.bridge); err != nil {
		t.Fatalf("create: %v %s", err, out)
	}
	if out, err := w.berth("network", "connect", "v4only", "--netns", "s2", "--create-netns", "-p", "[2001:db8::1]:8081:80"); err == nil || !strings.Contains(out, "--ipv6") {
		t.Errorf("IPv6 host address on an IPv4 network: err=%v %s", err, out)
	}
	w.mustBerth(t, "network", "rm", "--force", "v4only")
}

// TestNetworkDNSCommand: `network dns` on a bundle takes the host's resolvers
// minus loopback ones, and replaces a resolv.conf symlink that points at a
// host file instead of writing through it.
func TestNetworkDNSCommand(t *testing.T) {
	bundle := t.TempDir()
	etc := filepath.Join(bundle, "rootfs", "etc")
	if err := os.MkdirAll(etc, 0o755); err != nil {
		t.Fatal(err)
	}
	os.WriteFile(filepath.Join(bundle, "config.json"), []byte(`{"root":{"path":"rootfs"}}`), 0o644)
	victim := filepath.Join(t.TempDir(), "host-file")
	os.WriteFile(victim, []byte("precious\n"), 0o644)
	if err := os.Symlink(victim, filepath.Join(etc, "resolv.conf")); err != nil {
		t.Fatal(err)
	}
	hostConf := filepath.Join(t.TempDir(), "resolv.conf")
	os.WriteFile(hostConf, []byte("nameserver 127.0.0.1\nnameserver 192.0.2.9\nsearch lan\n"), 0o644)
	nwRun(t, berthBin, "network", "dns", bundle, "--host-resolv-conf", hostConf, "--hostname", "box", "--ip", "10.89.0.5")
	if b, _ := os.ReadFile(victim); string(b) != "precious\n" {
		t.Fatalf("wrote through the symlink: %q", b)
	}
	rc, err := os.ReadFile(filepath.Join(etc, "resolv.conf"))
	if err != nil || !strings.Contains(string(rc), "nameserver 192.0.2.9\nsearch lan\n") || strings.Contains(string(rc), "127.0.0.1") {
		t.Errorf("resolv.conf: %q %v", rc, err)
	}
	if fi, err := os.Lstat(filepath.Join(etc, "resolv.conf")); err != nil || !fi.Mode().IsRegular() {
		t.Errorf("resolv.conf is not a regular file: %v", err)
	}
	if b, _ := os.ReadFile(filepath.Join(etc, "hosts")); !strings.Contains(string(b), "10.89.0.5\tbox\n") {
		t.Errorf("hosts: %q", b)
	}
	if b, _ := os.ReadFile(filepath.Join(etc, "hostname")); string(b) != "box\n" {
		t.Errorf("hostname: %q", b)
	}
}

// TestNetworkUDPPublish: a UDP flow that reached the host before the port was
// published (and so was bound to "no NAT" in conntrack) reaches the container
// once the port is published, even from the same source port.
func TestNetworkUDPPublish(t *testing.T) {
	w := nwNewWorld(t, true)
	w.mustBerth(t, "network", "create", "udp", "--bridge", w.bridge, "--subnet", nwTestSubnet)
	var client net.PacketConn
	nwIn(t, w.ns(w.uplink), func() (err error) { client, err = net.ListenPacket("udp", nwUplinkIP+":40000"); return err })
	defer client.Close()
	hostAddr := &net.UDPAddr{IP: net.ParseIP(nwHostIP), Port: 5300}
	if _, err := client.WriteTo([]byte("early"), hostAddr); err != nil {
		t.Fatal(err)
	}
	time.Sleep(50 * time.Millisecond) // let the unreplied flow settle in conntrack

	w.connect(t, "udp", "--netns", "u1", "--create-netns", "-p", "5300:53/udp")
	var srv net.PacketConn
	nwIn(t, w.cns("u1"), func() (err error) { srv, err = net.ListenPacket("udp", ":53"); return err })
	defer srv.Close()
	go func() {
		buf := make([]byte, 512)
		for {
			n, from, err := srv.ReadFrom(buf)
			if err != nil {
				return
			}
			srv.WriteTo(append([]byte("u1 "), buf[:n]...), from)
		}
	}()
	buf := make([]byte, 512)
	got := ""
	for i := 0; i < 3 && got == ""; i++ {
		client.WriteTo([]byte("late"), hostAddr)
		client.SetReadDeadline(time.Now().Add(500 * time.Millisecond))
		if n, _, err := client.ReadFrom(buf); err == nil {
			got = string(buf[:n])
		}
	}
	if got != "u1 late" {
		t.Errorf("UDP from a port seen before publishing: got %q, want %q", got, "u1 late")
	}
	w.mustBerth(t, "network", "rm", "--force", "udp")
}

// TestNetworkDockerForwardDrop: on a host where docker (iptables backend) set
// the FORWARD policy to DROP, berth's accepts in DOCKER-USER let its
// containers out; iptables still parses the chain; rm restores it exactly.
func TestNetworkDockerForwardDrop(t *testing.T) {
	if _, err := exec.LookPath("iptables"); err != nil {
		testutil.Require(t, false, "iptables not installed")
	}
	w := nwNewWorld(t, true)
	ipt := func(args ...string) string {
		return nwRun(t, "nsenter", append([]string{"--net=" + w.ns(w.host)}, args...)...)
	}
	if out, err := exec.Command("nsenter", "--net="+w.ns(w.host), "iptables", "--version").CombinedOutput(); err != nil || !strings.Contains(string(out), "nf_tables") {
		testutil.Require(t, false, "iptables is not the nf_tables variant: "+string(out))
	}
	ipt("iptables", "-N", "DOCKER-USER")
	ipt("iptables", "-A", "DOCKER-USER", "-j", "RETURN")
	ipt("iptables", "-P", "FORWARD", "DROP")
	ipt("iptables", "-I", "FORWARD", "-j", "DOCKER-USER")
	norm := func(s string) string {
		var keep []string
		for _, l := range strings.Split(s, "\n") {
			if !strings.HasPrefix(l, "#") {
				keep = append(keep, strings.Split(l, " [")[0]) // drop packet counters
			}
		}
		return strings.Join(keep, "\n")
	}
	before := norm(ipt("iptables-save"))

	w.mustBerth(t, "network", "create", "dk", "--bridge", w.bridge, "--subnet", nwTestSubnet)
	w.connect(t, "dk", "--netns", "k1", "--create-netns")
	if rules := ipt("iptables", "-S", "DOCKER-USER"); !strings.Contains(rules, "-A DOCKER-USER -i "+w.bridge+` -m comment --comment "berth net=dk" -j ACCEPT`) {
		t.Errorf("DOCKER-USER:\n%s", rules)
	}
	if got, err := nwDial(t, w.cns("k1"), nwEchoIP+":7"); err != nil || got != "uplink "+nwHostIP {
		t.Errorf("through FORWARD DROP: got %q (err %v)", got, err)
	}
	// Docker restarted and rebuilt its chain without berth's rules: check
	// notices, prune puts them back.
	ipt("iptables", "-F", "DOCKER-USER")
	ipt("iptables", "-A", "DOCKER-USER", "-j", "RETURN")
	if out, err := w.berth("network", "check"); err == nil || !strings.Contains(out, "DOCKER-USER") {
		t.Errorf("check after DOCKER-USER flush: err=%v\n%s", err, out)
	}
	w.mustBerth(t, "network", "prune")
	if out, err := w.berth("network", "check"); err != nil {
		t.Errorf("check after prune: %v\n%s", err, out)
	}
	w.mustBerth(t, "network", "rm", "--force", "dk")
	if after := norm(ipt("iptables-save")); after != before {
		t.Errorf("iptables after rm:\n%s\nbefore:\n%s", after, before)
	}
}
