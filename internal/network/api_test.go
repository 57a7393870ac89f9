package network

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"berth/internal/testutil"

	"golang.org/x/sys/unix"
)

// TestAttachDetach exercises the runtime's entry points. The library works on
// the calling process's netns, so the test re-runs itself inside a netns it
// creates (never the real host's) and does the work in TestAttachDetachInNetns.
func TestAttachDetach(t *testing.T) {
	testutil.RequireRoot(t)
	if _, err := exec.LookPath("nsenter"); err != nil {
		testutil.Require(t, false, "nsenter (util-linux) not installed")
	}
	b := make([]byte, 3)
	rand.Read(b)
	ns := "bna-" + hex.EncodeToString(b)
	if out, err := exec.Command("ip", "netns", "add", ns).CombinedOutput(); err != nil {
		t.Fatalf("ip netns add: %v %s", err, out)
	}
	t.Cleanup(func() { exec.Command("ip", "netns", "del", ns).Run() })
	cmd := exec.Command("nsenter", "--net=/run/netns/"+ns, os.Args[0], "-test.run", "^TestAttachDetachInNetns$", "-test.v")
	cmd.Env = append(os.Environ(), "BERTH_NET_IN_TEST_NETNS=1")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("in netns: %v\n%s", err, out)
	}
	t.Logf("%s", out)
}

func TestAttachDetachInNetns(t *testing.T) {
	if os.Getenv("BERTH_NET_IN_TEST_NETNS") != "1" {
		t.Skip("helper for TestAttachDetach")
	}
	ctx := context.Background()
	state, nsdir := t.TempDir(), t.TempDir()
	t.Cleanup(func() {
		for unix.Unmount(nsdir, unix.MNT_DETACH) == nil {
		}
	})
	opts := []Option{WithStateDir(state), WithNetnsDir(nsdir)}
	m := New(opts...)
	if _, err := m.Create(ctx, CreateOptions{Name: "api", Subnet: "10.89.66.0/24", Bridge: "bapi0"}); err != nil {
		t.Fatal(err)
	}
	// EnsureNetwork returns the existing network, or creates a default one.
	if n, err := EnsureNetwork(ctx, "api", opts...); err != nil || n.Subnet.String() != "10.89.66.0/24" {
		t.Fatalf("EnsureNetwork existing: %+v %v", n, err)
	}
	def, err := EnsureNetwork(ctx, DefaultNetwork, opts...)
	if err != nil || !def.NAT || def.Subnet.Bits() != 24 || def.Subnet.Overlaps(netip.MustParsePrefix("10.89.66.0/24")) {
		t.Fatalf("EnsureNetwork default: %+v %v", def, err)
	}
	if err := m.Remove(ctx, DefaultNetwork, false); err != nil {
		t.Fatal(err)
	}
	// The runtime hands over a netns path and its container id.
	nsPath := filepath.Join(nsdir, "ctr")
	if _, err := m.createOwnedNetns(nsPath, "test"); err != nil {
		t.Fatal(err)
	}
	// A DNS failure undoes the attach.
	bad := AttachOptions{Container: "ctr1", ManagerOptions: opts, Rootfs: filepath.Join(state, "no", "such", "rootfs")}
	if _, err := Attach(ctx, "api", nsPath, bad); err == nil {
		t.Fatal("attach with a missing rootfs: want an error")
	}
	if info, _ := m.Inspect(ctx, "api"); len(info.Endpoints) != 0 {
		t.Fatalf("failed attach left %d endpoint(s)", len(info.Endpoints))
	}
	rootfs := t.TempDir()
	ao := AttachOptions{Container: "ctr1", ManagerOptions: opts, Ports: []PortMapping{{HostPort: 8081, ContainerPort: 80, Protocol: "tcp"}},
		Rootfs: rootfs, DNS: DNSConfig{Nameservers: []string{"192.0.2.53"}, Hostname: "ctr1"}}
	ep, err := Attach(ctx, "api", nsPath, ao)
	if err != nil {
		t.Fatal(err)
	}
	if ep.ID != "container:ctr1" || ep.IPv4.String() != "10.89.66.2/24" || ep.OwnNetns {
		t.Fatalf("endpoint %+v", ep)
	}
	if b, err := os.ReadFile(filepath.Join(rootfs, "etc", "hosts")); err != nil || !strings.Contains(string(b), "10.89.66.2\tctr1") {
		t.Fatalf("hosts: %q %v", b, err)
	}
	again, err := Attach(ctx, "api", nsPath, ao)
	if err != nil || again.HostVeth != ep.HostVeth {
		t.Fatalf("second attach: %+v %v", again, err)
	}
	// The container dies: its netns goes away before Detach runs.
	if err := m.removeOwnedNetns(nsPath, nil); err != nil {
		t.Fatal(err)
	}
	if err := Detach(ctx, "api", "", AttachOptions{Container: "ctr1", ManagerOptions: opts}); err != nil {
		t.Fatalf("detach after the netns is gone: %v", err)
	}
	if err := Detach(ctx, "api", "", AttachOptions{Container: "ctr1", ManagerOptions: opts}); err != nil {
		t.Fatalf("detach twice: %v", err)
	}
	rep, err := m.Check(ctx)
	if err != nil || len(rep.Problems) != 0 {
		t.Fatalf("check: %+v %v", rep, err)
	}
	info, err := m.Inspect(ctx, "api")
	if err != nil || len(info.Endpoints) != 0 {
		t.Fatalf("inspect: %+v %v", info, err)
	}
	fw, _ := newFirewall()
	tags, _ := fw.listTags()
	if len(tags[chHostports]) != 0 {
		t.Fatalf("port rules left: %v", tags)
	}
	if err := m.Remove(ctx, "api", false); err != nil {
		t.Fatal(err)
	}
	if err := m.Remove(ctx, "api", false); !errors.Is(err, ErrNotExist) {
		t.Fatalf("remove twice: %v", err)
	}
	if ok, _, _ := tableState(); ok {
		t.Fatal("table inet berth left after the last network")
	}
}
