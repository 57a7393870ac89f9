package cli

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/urfave/cli"
	"github.com/vishvananda/netlink"

	"berth/internal/demo"
)

var demoNamespaces = []string{"pid", "mnt", "net", "uts", "ipc", "cgroup"}

func init() {
	register(cli.Command{
		Name:  "demo",
		Usage: "run the whole classic workflow offline: registry, copy, unpack, network, run, clean up",
		Description: `demo runs, on this machine and without internet, the workflow people type by
hand with skopeo, umoci, a config script, runc and ip/iptables, with berth
alone:

  1. serves a small image, built from berth's own binary, from an in-process
     registry on 127.0.0.1;
  2. berth copy docker://... oci:WORK/images/demo:latest      (skopeo copy)
  3. berth unpack --image WORK/images/demo:latest WORK/bundles/demo  (umoci unpack)
  4. berth network create / connect inside a private "host" network
     namespace, so the real host's links and firewall are not touched
  5. berth bundle edit: netns path, hostname, args      (the config script)
  6. berth run: the container prints its hostname, its namespaces and a reply
     from a peer reached over the bridge                            (runc run)
  7. tears everything down and checks that nothing was left behind.

Needs root. Example:
   sudo berth demo`,
		Flags: []cli.Flag{
			cli.StringFlag{Name: "work", Usage: "work directory (default: a new temporary directory, removed at the end)"},
		},
		Action: runDemo,
	})
	register(cli.Command{
		Name:   "demo-payload",
		Hidden: true,
		Usage:  "what the demo container runs (internal)",
		Flags: []cli.Flag{
			cli.StringFlag{Name: "peer"},
			cli.BoolFlag{Name: "lo-up"},
		},
		Action: demoPayload,
	})
}

func nsIDs(pid string) map[string]string {
	out := map[string]string{}
	for _, n := range demoNamespaces {
		if l, err := os.Readlink("/proc/" + pid + "/ns/" + n); err == nil {
			out[n] = l
		}
	}
	return out
}

// demoPayload runs inside the demo container.
func demoPayload(c *cli.Context) error {
	if c.Bool("lo-up") {
		lo, err := netlink.LinkByName("lo")
		if err != nil {
			return err
		}
		return netlink.LinkSetUp(lo)
	}
	host, _ := os.Hostname()
	fmt.Printf("hello from inside the container: hostname %q, pid %d\n", host, os.Getpid())
	var hostNS map[string]string
	_ = json.Unmarshal([]byte(os.Getenv("BERTH_DEMO_HOST_NS")), &hostNS)
	own := nsIDs("self")
	for _, n := range demoNamespaces {
		mark := "own"
		if own[n] == hostNS[n] {
			mark = "SHARED with the host"
		}
		fmt.Printf("  %-6s namespace %-22s %s\n", n, own[n], mark)
	}
	if ifs, err := net.Interfaces(); err == nil {
		for _, i := range ifs {
			addrs, _ := i.Addrs()
			var as []string
			for _, a := range addrs {
				as = append(as, a.String())
			}
			fmt.Printf("  interface %-5s %s\n", i.Name, strings.Join(as, " "))
		}
	}
	if peer := c.String("peer"); peer != "" {
		conn, err := net.DialTimeout("tcp", peer, 5*time.Second)
		if err != nil {
			return fmt.Errorf("reaching the peer %s: %w", peer, err)
		}
		defer conn.Close()
		conn.SetDeadline(time.Now().Add(5 * time.Second))
		line, err := bufio.NewReader(conn).ReadString('\n')
		if err != nil {
			return fmt.Errorf("reading from the peer %s: %w", peer, err)
		}
		fmt.Printf("  peer %s says: %s", peer, line)
	}
	return nil
}

// demoRun runs one berth command as the classic workflow would, printing it
// first and its output indented.
type demoRun struct {
	exe  string
	root string
}

func (d *demoRun) step(title string) { fmt.Printf("\n==> %s\n", title) }

func (d *demoRun) berth(netns string, args ...string) error {
	fmt.Printf("    $ berth %s\n", strings.Join(args, " "))
	run := func() error {
		cmd := exec.Command(d.exe, args...)
		cmd.Stdout = newIndent(os.Stdout)
		cmd.Stderr = newIndent(os.Stderr)
		return cmd.Run()
	}
	var err error
	if netns != "" {
		err = demo.InNetns(netns, run)
	} else {
		err = run()
	}
	if err != nil {
		return fmt.Errorf("berth %s: %w", args[0], err)
	}
	return nil
}

// indent prefixes every line written through it.
type indent struct {
	w   io.Writer
	mid *bool // inside a line
}

func newIndent(w io.Writer) indent { return indent{w: w, mid: new(bool)} }

func (i indent) Write(p []byte) (int, error) {
	var b strings.Builder
	for _, c := range string(p) {
		if !*i.mid {
			b.WriteString("      ")
			*i.mid = true
		}
		b.WriteRune(c)
		if c == '\n' {
			*i.mid = false
		}
	}
	if _, err := io.WriteString(i.w, b.String()); err != nil {
		return 0, err
	}
	return len(p), nil
}

func runDemo(c *cli.Context) (retErr error) {
	if os.Geteuid() != 0 {
		return errors.New("demo needs root (namespaces, mounts, bridges): run it with sudo")
	}
	exe, err := os.Executable()
	if err != nil {
		return err
	}
	work := c.String("work")
	if work == "" {
		if work, err = os.MkdirTemp("", "berth-demo-"); err != nil {
			return err
		}
	} else if err := os.MkdirAll(work, 0o755); err != nil {
		return err
	}
	work, _ = filepath.Abs(work)
	os.Chmod(work, 0o755)
	tag := strconv.Itoa(os.Getpid())
	hostNS, ctrNS, netName, ctrID := "berth-demo-host-"+tag, "berth-demo-ctr-"+tag, "demo"+tag, "berth-demo-"+tag
	d := &demoRun{exe: exe, root: filepath.Join(work, "run")}
	netState := filepath.Join(work, "networks")
	os.Setenv("BERTH_NETWORK_STATE", netState)
	var cleanups []func() error
	defer func() {
		retErr = errors.Join(retErr, d.cleanUp(cleanups, work, c.String("work") == "", hostNS, ctrNS))
		if retErr == nil {
			fmt.Println("\ndemo finished: image → layout → bundle → network → container, all with one binary.")
		}
	}()

	d.step("serve a demo image (built from berth's own binary) from an in-process registry")
	img, err := demo.Image(exe)
	if err != nil {
		return err
	}
	reg, err := demo.Serve(img, "berth/demo:latest")
	if err != nil {
		return err
	}
	cleanups = append(cleanups, reg.Close)
	fmt.Printf("    registry listening on %s, serving berth/demo:latest\n", reg.Addr)

	d.step("copy the image into an OCI layout (instead of skopeo copy)")
	layoutRef := "oci:" + filepath.Join(work, "images", "demo") + ":latest"
	if err := d.berth("", "copy", "--quiet", "--src-tls-verify=false", "docker://"+reg.Addr+"/berth/demo:latest", layoutRef); err != nil {
		return err
	}

	d.step("unpack it into a runtime bundle (instead of umoci unpack)")
	bundle := filepath.Join(work, "bundles", "demo")
	if err := os.MkdirAll(filepath.Dir(bundle), 0o755); err != nil {
		return err
	}
	if err := d.berth("", "unpack", "--image", strings.TrimPrefix(layoutRef, "oci:"), bundle); err != nil {
		return err
	}
	cleanups = append(cleanups, func() error { return d.berth("", "bundle", "rm", bundle) })

	d.step("wire a network (instead of ip, brctl and iptables), inside a private \"host\" namespace")
	hostPath, err := demo.CreateNetns(hostNS)
	if err != nil {
		return err
	}
	cleanups = append(cleanups, func() error { return demo.DeleteNetns(hostNS) })
	fmt.Printf("    (the namespace %s stands in for the host, so this machine's own links and firewall stay untouched)\n", hostNS)
	netArgs := []string{"network", "--state-dir", netState}
	if err := d.berth(hostPath, append(netArgs, "create", "--subnet", "10.231.7.0/24", netName)...); err != nil {
		return err
	}
	cleanups = append(cleanups, func() error { return d.berth(hostPath, append(netArgs, "rm", netName)...) })
	if err := d.berth(hostPath, append(netArgs, "connect", "--netns", ctrNS, "--create-netns", "--rootfs", bundle, "--hostname", "berth-demo", netName)...); err != nil {
		return err
	}
	cleanups = append(cleanups, func() error { return d.berth(hostPath, append(netArgs, "disconnect", "--netns", ctrNS, netName)...) })
	peerAddr := "10.231.7.1:7777"
	peer, err := demo.StartPeer(hostPath, peerAddr, "hello from the peer on the bridge")
	if err != nil {
		return err
	}
	cleanups = append(cleanups, peer.Close)
	fmt.Printf("    a peer service listens on the bridge at %s\n", peerAddr)

	d.step("point the bundle at the network namespace and set its process (instead of a config script)")
	hostIDs, _ := json.Marshal(nsIDs("self"))
	args, _ := json.Marshal(append(append([]string(nil), demo.Payload...), "--peer", peerAddr))
	if err := d.berth("", "bundle", "edit", bundle, "--netns", filepath.Join(demo.NetnsDir, ctrNS),
		"--hostname", "berth-demo", "--terminal=false", "--args", string(args), "--env", "BERTH_DEMO_HOST_NS="+string(hostIDs)); err != nil {
		return err
	}

	d.step("run the container (instead of runc run)")
	cleanups = append(cleanups, func() error { return d.berth("", "--root", d.root, "delete", "--force", ctrID) })
	if err := d.berth("", "--root", d.root, "run", "-b", bundle, ctrID); err != nil {
		return err
	}
	return nil
}

// cleanUp runs the cleanups in reverse (every one, whatever fails), removes
// the work directory when the demo made it, and fails when anything of
// the demo is left.
func (d *demoRun) cleanUp(cleanups []func() error, work string, removeWork bool, hostNS, ctrNS string) error {
	d.step("clean up (in reverse, and nothing may fail)")
	var errs []error
	for i := len(cleanups) - 1; i >= 0; i-- {
		if err := cleanups[i](); err != nil {
			errs = append(errs, err)
		}
	}
	leftovers := demoLeftovers(work, hostNS, ctrNS)
	if removeWork {
		if err := os.RemoveAll(work); err != nil {
			errs = append(errs, err)
		}
	}
	if len(leftovers) > 0 {
		errs = append(errs, fmt.Errorf("left behind: %s", strings.Join(leftovers, ", ")))
	} else {
		fmt.Println("    nothing left behind: no container, mount, netns, link or lease of the demo remains")
	}
	return errors.Join(errs...)
}

// demoLeftovers lists what the demo created and still exists.
func demoLeftovers(work, hostNS, ctrNS string) []string {
	var left []string
	for _, ns := range []string{hostNS, ctrNS} {
		if _, err := os.Stat(filepath.Join(demo.NetnsDir, ns)); err == nil {
			left = append(left, "netns "+ns)
		}
	}
	if b, err := os.ReadFile("/proc/self/mountinfo"); err == nil {
		for _, l := range strings.Split(string(b), "\n") {
			if strings.Contains(l, work+"/") {
				left = append(left, "mount "+strings.Fields(l)[4])
			}
		}
	}
	if ents, err := os.ReadDir(filepath.Join(work, "run")); err == nil && len(ents) > 0 {
		left = append(left, fmt.Sprintf("%d container state dirs", len(ents)))
	}
	return left
}
